package store

import (
	"errors"
	"io"
	"os"
	"path/filepath"
)

// Object is a stored object opened for reading: its bytes at any offset
// (what a reader of an archive's footer and summary needs) and its size.
type Object interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// Source is an object to read: the name an index records for it, where
// it was found (for messages), and a way to open it. Open is called at
// most once, and the Object it returns is closed by its user.
type Source struct {
	// Name is the object's base name, without directories or prefix.
	Name string
	// Where is the path or URL it was found at; Location defaults it to
	// Name.
	Where string
	// Size is the object's size as listed, 0 when not known before it
	// is opened (for progress).
	Size int64
	Open func() (Object, error)
}

// Location is where the object is, for messages.
func (s Source) Location() string {
	if s.Where != "" {
		return s.Where
	}
	return s.Name
}

type file struct {
	*os.File
	size int64
}

func (f file) Size() int64 { return f.size }

// File is the local file at path.
func File(path string) Source {
	return Source{Name: filepath.Base(path), Where: path, Open: func() (Object, error) {
		f, err := OpenRegular(path)
		if err != nil {
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		return file{f, st.Size()}, nil
	}}
}

// ErrNotRegular is returned for an archive or index path that is not a
// regular file (a directory, a FIFO, a device).
var ErrNotRegular = errors.New("not a regular file")

// NotRegularError is a path that is not a regular file; it is
// ErrNotRegular.
type NotRegularError struct{ Path string }

func (e *NotRegularError) Error() string { return e.Path + ": " + ErrNotRegular.Error() }
func (e *NotRegularError) Unwrap() error { return ErrNotRegular }

// OpenRegular opens path if it is a regular file (else ErrNotRegular). It
// looks before it opens: opening a FIFO blocks until a writer comes,
// possibly forever.
func OpenRegular(path string) (*os.File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, &NotRegularError{Path: path}
	}
	return os.Open(path)
}
