// Directories: the walk from the destination that never follows a
// symlink, and the attributes of directories set last, deepest first.

package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync/atomic"
)

// finishDirs sets the owner, mode and times of directories, deepest
// first, once nothing more is written into them.
func (x *extractor) finishDirs() error {
	names := make([]string, 0, len(x.dirMeta))
	for n := range x.dirMeta {
		names = append(names, n)
	}
	depth := func(s string) int { return strings.Count(s, "/") }
	slices.SortFunc(names, func(a, b string) int {
		if d := depth(b) - depth(a); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	for _, name := range names {
		m := x.dirMeta[name]
		comps := strings.Split(name, "/")
		parent, ok := x.walk.open(comps[:len(comps)-1], name)
		if !ok {
			continue
		}
		base := comps[len(comps)-1]
		fd, err := openDirAt(parent, base)
		if err != nil {
			x.report(Failed, name, "directory attributes not restored: %v", err)
			continue
		}
		if st, err := fstatFd(fd); err != nil || (nodeID{st.dev, st.ino}) != x.dirIDs[name] {
			x.report(Failed, name, "replaced while being extracted; its owner, mode and times were not set")
			closeFd(fd)
			continue
		}
		x.ownerAndMode(fd, name, m)
		x.setXattrs(fd, name, m, xattrsLate)
		if err := futimesNode(fd, m.ATime, m.MTime); err != nil {
			x.report(Failed, name, "times not restored: %v", err)
		}
		closeFd(fd)
	}
	return nil
}

// dirWalker opens the directories a member's path goes through, one
// component at a time from the destination, never following a symlink.
// It keeps the last chain open: members come in tree order, so most share
// their parent with the one before.
type dirWalker struct {
	root  *dirRef
	x     *extractor
	names []string
	refs  []*dirRef
}

// dirRef is an open directory shared by the walk and the workers writing
// files in it; the last to let go closes it.
type dirRef struct {
	fd   int
	refs atomic.Int32
}

func newDirRef(fd int) *dirRef {
	d := &dirRef{fd: fd}
	d.refs.Store(1)
	return d
}

func (d *dirRef) acquire() { d.refs.Add(1) }

func (d *dirRef) release() {
	if d.refs.Add(-1) == 0 {
		closeFd(d.fd)
	}
}

func (w *dirWalker) close() {
	for _, r := range w.refs {
		r.release()
	}
	w.names, w.refs = nil, nil
}

// open returns the directory comps, creating missing ones, or reports why
// member cannot go there and returns false. The descriptor stays valid
// until the next call.
func (w *dirWalker) open(comps []string, member string) (int, bool) {
	k := 0
	for k < len(w.names) && k < len(comps) && w.names[k] == comps[k] {
		k++
	}
	for _, r := range w.refs[k:] {
		r.release()
	}
	w.names, w.refs = w.names[:k], w.refs[:k]
	for _, c := range comps[k:] {
		fd, ok := w.step(w.cur(), comps[:len(w.refs)+1], member, "", true)
		if !ok {
			return -1, false
		}
		w.names = append(w.names, c)
		w.refs = append(w.refs, newDirRef(fd))
	}
	return w.cur(), true
}

// refOf returns the shared reference of the descriptor open returned
// last: the top of the chain, or the destination.
func (w *dirWalker) refOf(fd int) *dirRef {
	if n := len(w.refs); n > 0 && w.refs[n-1].fd == fd {
		return w.refs[n-1]
	}
	return w.root
}

func (w *dirWalker) cur() int {
	if len(w.refs) == 0 {
		return w.root.fd
	}
	return w.refs[len(w.refs)-1].fd
}

// openDetached opens the directory comps without creating anything and
// without disturbing the cached chain; the caller closes it.
// target, when set, is the hard link target the path is for, named in
// what is reported.
func (w *dirWalker) openDetached(comps []string, member, target string) (int, bool) {
	fd := w.root.fd
	for i := range comps {
		next, ok := w.step(fd, comps[:i+1], member, target, false)
		if fd != w.root.fd {
			closeFd(fd)
		}
		if !ok {
			return -1, false
		}
		fd = next
	}
	if fd == w.root.fd {
		fd, err := openDirAt(w.root.fd, ".")
		if err != nil {
			w.x.report(Failed, member, "cannot open the destination: %v", err)
			return -1, false
		}
		return fd, true
	}
	return fd, true
}

// step opens the last of comps inside dir.
func (w *dirWalker) step(dir int, comps []string, member, target string, create bool) (int, bool) {
	c := comps[len(comps)-1]
	path := strings.Join(comps, "/")
	fd, err := openDirAt(dir, c)
	if errors.Is(err, fs.ErrNotExist) && create {
		made := false
		if err = mkdirAt(dir, c, 0o777); err == nil || errors.Is(err, fs.ErrExist) {
			// Made by this run only if mkdir succeeded: a directory that
			// appeared meanwhile is someone else's, and a directory member
			// of this path must not get its owner and mode.
			made = err == nil
			if made {
				w.x.created[path] = true
			}
			fd, err = openDirAt(dir, c)
		}
		if err == nil && made {
			// Recorded so that a directory member of this path later gets
			// its attributes only on this very directory.
			st, serr := fstatFd(fd)
			if serr == nil && int64(st.uid) != int64(w.x.euid) {
				serr = fmt.Errorf("replaced while being extracted by a directory owned by uid %d", st.uid)
			}
			if serr != nil {
				closeFd(fd)
				w.x.report(Failed, member, "%q: %v; not extracted", path, serr)
				return -1, false
			}
			w.x.dirIDs[path] = nodeID{st.dev, st.ino}
		}
	}
	if err == nil {
		return fd, true
	}
	st, serr := fstatAt(dir, c)
	switch {
	case serr == nil && st.isLink:
		if target != "" {
			w.x.report(Rejected, member, "its hard link target %q goes through the symlink %q; not extracted", target, path)
		} else {
			w.x.report(Rejected, member, "its path goes through the symlink %q; not extracted", path)
		}
	case serr == nil && !st.isDir:
		w.x.report(Failed, member, "%q is not a directory; not extracted", path)
	default:
		w.x.report(Failed, member, "cannot open the directory %q: %v; not extracted", path, err)
	}
	return -1, false
}
