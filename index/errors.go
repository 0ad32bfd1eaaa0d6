package index

import (
	"errors"
	"fmt"

	"github.com/cbfs/cbfs/format"
)

// ErrNotIndex means the input does not start with a master index header.
var ErrNotIndex = errors.New("not a CBFS master index")

// VersionError is returned for an index of a major version this code
// does not read.
type VersionError struct {
	Major, Minor uint8
}

func (e *VersionError) Error() string {
	if e.Major < Major {
		return fmt.Sprintf("unsupported CBFS index version %d.%d (this cbfs reads index version %d.x, the first; no cbfs writes %d.x: is the index damaged?)",
			e.Major, e.Minor, Major, e.Major)
	}
	return fmt.Sprintf("unsupported CBFS index version %d.%d (this cbfs reads index version %d.x; a newer cbfs is needed)",
		e.Major, e.Minor, Major)
}

// Error is damage found in a sealed index: where (a byte offset in the
// index file, or -1 when the problem is in the plaintext) and what.
type Error struct {
	Offset int64
	What   string
}

func (e *Error) Error() string {
	s := "index"
	if e.Offset >= 0 {
		s += fmt.Sprintf(" at offset %d", e.Offset)
	}
	return s + ": " + e.What
}

func newErr(off int64, what string, args ...any) *Error {
	return &Error{Offset: off, What: fmt.Sprintf(what, args...)}
}

// errWrongKey is format.ErrWrongKey, worded for an index: callers test
// for one wrong-key error whatever they read.
type errWrongKey struct{}

func (errWrongKey) Error() string        { return "wrong key: this index was written under another key" }
func (errWrongKey) Is(target error) bool { return target == format.ErrWrongKey }
