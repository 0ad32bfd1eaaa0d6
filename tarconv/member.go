package tarconv

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
)

// Lookup finds the entry that holds path's current content in one
// archive: the last member with that path, as tar's extraction order
// makes the last one win. Paths match in their canonical form (spec
// cbfs-index-v1 2.7), as the index matches them: "./a", "/a", "a" and
// "a//b/" name the same files as "a" and "a/b". When no live member has
// the path, the error is a *NoMemberError.
func Lookup(entries []format.Entry, path []byte) (format.Entry, error) {
	want, err := index.CanonicalPath(path)
	ok := err == nil
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if !bytes.Equal(e.Meta.Path, path) {
			if got, gerr := index.CanonicalPath(e.Meta.Path); !ok || gerr != nil || !bytes.Equal(got, want) {
				continue
			}
		}
		if e.Meta.Type == format.TypeTombstone {
			return e, &NoMemberError{Path: path, Deleted: true, Tombstone: e.Number}
		}
		return e, nil
	}
	return format.Entry{}, &NoMemberError{Path: path}
}

// NoMemberError says that no live member has a path: there is none, or
// the last one is a tombstone (a recorded deletion).
type NoMemberError struct {
	Path      []byte
	Deleted   bool
	Tombstone uint32 // the tombstone's member number, when Deleted
}

func (e *NoMemberError) Error() string {
	if e.Deleted {
		return fmt.Sprintf("%q: deleted (tombstone at member %d)", e.Path, e.Tombstone)
	}
	return fmt.Sprintf("%q: no such member", e.Path)
}

// WriteContent writes the file content of one member to w: for a sparse
// member, with its holes as zeros; for an imported entry, as a tar reader
// would give it.
func WriteContent(a *format.Archive, e format.Entry, w io.Writer) error {
	m, err := a.Meta(e)
	if err != nil {
		return err
	}
	if m.Type != format.TypeRegular {
		return fmt.Errorf("member %d (%q) is a %s, not a file", e.Number, m.Path, m.Type)
	}
	if m.TarHeader != nil {
		return importedContent(a, e, m, w)
	}
	if m.Sparse != nil {
		sw := &sparseWriter{w: w, extents: m.Sparse}
		if err := a.Content(e, sw); err != nil {
			return err
		}
		return sw.finish(m.Size)
	}
	return a.Content(e, w)
}

// importedContent runs the entry's own header and data through Go's tar
// reader, which expands every sparse format tar writers use; GNU's pax
// sparse formats are expanded here (gnusparse.go), with maps too big for
// Go's reader.
func importedContent(a *format.Archive, e format.Entry, m *format.Meta, w io.Writer) error {
	if sp, ok, err := readPAXSparse(m.TarHeader); ok {
		if err != nil {
			return fmt.Errorf("member %d (%q): its tar header: %w", e.Number, m.Path, err)
		}
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(a.Content(e, pw)) }()
		defer pr.Close()
		if err := paxSparseContent(sp, pr, w); err != nil {
			var fe *format.Error
			if errors.As(err, &fe) {
				return err
			}
			return fmt.Errorf("member %d (%q): %w", e.Number, m.Path, err)
		}
		return nil
	}
	lead := len(m.TarHeader) % format.BlockSize
	pr, pw := io.Pipe()
	go func() {
		pw.Write(m.TarHeader[lead:])
		cw := &countWriter{w: pw}
		err := a.Content(e, cw)
		if err == nil {
			pad := (format.BlockSize - cw.n%format.BlockSize) % format.BlockSize
			_, err = pw.Write(make([]byte, pad+2*format.BlockSize))
		}
		pw.CloseWithError(err)
	}()
	defer pr.Close()
	tr := tar.NewReader(pr)
	if _, err := tr.Next(); err != nil {
		var fe *format.Error
		if errors.As(err, &fe) {
			return err
		}
		return fmt.Errorf("member %d (%q): its tar header: %w", e.Number, m.Path, err)
	}
	_, err := io.Copy(w, tr)
	return err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// sparseWriter turns the concatenated data extents of a sparse member
// back into the file's bytes, writing zeros for the holes.
type sparseWriter struct {
	w       io.Writer
	extents []format.Extent
	pos     int64 // logical position in the file
	used    int64 // bytes of the current extent written
}

func (s *sparseWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if len(s.extents) == 0 {
			return n, errors.New("sparse member has more data than its extents")
		}
		e := s.extents[0]
		if s.pos < e.Offset {
			if err := writeZeros(s.w, e.Offset-s.pos); err != nil {
				return n, err
			}
			s.pos = e.Offset
		}
		k := min(int64(len(p)), e.Length-s.used)
		if _, err := s.w.Write(p[:k]); err != nil {
			return n, err
		}
		p, n = p[k:], n+int(k)
		s.used += k
		s.pos += k
		if s.used == e.Length {
			s.extents, s.used = s.extents[1:], 0
		}
	}
	return n, nil
}

func (s *sparseWriter) finish(size int64) error {
	for len(s.extents) > 0 && s.extents[0].Length == 0 {
		s.extents = s.extents[1:]
	}
	if len(s.extents) > 0 {
		return errors.New("sparse member has less data than its extents")
	}
	if s.pos < size {
		return writeZeros(s.w, size-s.pos)
	}
	return nil
}
