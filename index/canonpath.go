package index

import (
	"bytes"
	"fmt"
)

// The canonical form of a path (spec/cbfs-index-v1.md section 2.7): the
// one form an index keys a path on, so that "data/f1", "./data/f1",
// "/data/f1" and "data//f1/" are one path of the file system, as tar
// treats them on extraction. A member's own metadata keeps the bytes it
// came with; only the index's keys are canonical.

// CanonicalPathError says why a path has no canonical form. Such a path
// is kept out of the index.
type CanonicalPathError struct {
	Path []byte
	// Root is set for a path that names the root itself ("", ".", "/",
	// "./"): it holds no file below the root, and no index record. Else
	// the path has a ".." component, which could name a file outside
	// the tree.
	Root bool
}

func (e *CanonicalPathError) Error() string {
	if e.Root {
		return fmt.Sprintf("%q names the root itself, not a path below it", e.Path)
	}
	return fmt.Sprintf("%q has a '..' component", e.Path)
}

// IsCanonicalPath reports whether p is in canonical form: not empty, no
// leading or trailing '/', no empty, "." or ".." component.
func IsCanonicalPath(p []byte) bool {
	if len(p) == 0 {
		return false
	}
	for len(p) > 0 {
		c := p
		if i := bytes.IndexByte(p, '/'); i >= 0 {
			c, p = p[:i], p[i+1:]
			if len(p) == 0 {
				return false // a trailing '/'
			}
		} else {
			p = nil
		}
		if len(c) == 0 || (len(c) == 1 && c[0] == '.') || (len(c) == 2 && c[0] == '.' && c[1] == '.') {
			return false
		}
	}
	return true
}

// CanonicalPath returns p's canonical form: leading "./" and "/" removed,
// repeated and trailing '/' collapsed, "." components dropped. A path
// with a ".." component, or one that names the root, has none (a
// *CanonicalPathError). A path already canonical is returned as it is,
// without a copy.
func CanonicalPath(p []byte) ([]byte, error) {
	if IsCanonicalPath(p) {
		return p, nil
	}
	out := make([]byte, 0, len(p))
	for rest := p; len(rest) > 0; {
		c := rest
		if i := bytes.IndexByte(rest, '/'); i >= 0 {
			c, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		switch string(c) {
		case "", ".":
			continue
		case "..":
			return nil, &CanonicalPathError{Path: p}
		}
		if len(out) > 0 {
			out = append(out, '/')
		}
		out = append(out, c...)
	}
	if len(out) == 0 {
		return nil, &CanonicalPathError{Path: p, Root: true}
	}
	return out, nil
}
