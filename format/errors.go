// Package format implements the CBFS archive format v1 (spec/cbfs-archive-v1.md):
// the outer ustar framing, frames, the archive header and footer, metadata
// records, the summary, and streaming and random-access readers and a
// writer over them. Errors are typed so that callers (verify, export,
// rebuild) can say what failed where.
package format

import (
	"errors"
	"fmt"
)

// ErrWrongKey means the archive's key check value does not match the key:
// the archive was written under another key. It is not damage.
var ErrWrongKey = errors.New("wrong key: this archive was written under another key")

// ErrNotCBFS means the input does not start with a CBFS archive header.
var ErrNotCBFS = errors.New("not a CBFS archive")

// VersionError is returned for an archive of a major version this code
// does not read.
type VersionError struct {
	Major, Minor uint8
}

func (e *VersionError) Error() string {
	if e.Major < Major {
		// No release wrote it: version 1 is the first.
		return fmt.Sprintf("unsupported CBFS archive format version %d.%d (this cbfs reads version %d.x, the first; no cbfs writes %d.x: is the header damaged?)",
			e.Major, e.Minor, Major, e.Major)
	}
	return fmt.Sprintf("unsupported CBFS archive format version %d.%d (this cbfs reads version %d.x; a newer cbfs is needed)",
		e.Major, e.Minor, Major)
}

// Class says which part of the format an error was found in. Vectors,
// verify and the exit statuses are driven by it.
type Class string

const (
	ClassTar     Class = "tar"     // outer ustar framing
	ClassHeader  Class = "header"  // archive header record
	ClassFrame   Class = "frame"   // frame framing: kind, length, checksum, order
	ClassMember  Class = "member"  // a member's metadata or content
	ClassSummary Class = "summary" // the summary
	ClassFooter  Class = "footer"  // the footer
	ClassKey     Class = "key"     // wrong key
)

// Error is a problem found in an archive: where (physical byte offset, and
// the member number and path when known) and what.
type Error struct {
	Class  Class
	Offset int64 // physical offset in the archive, -1 if not known
	Member int64 // member number, -1 if not in a member
	Path   string
	What   string
	Err    error // underlying cause, if any
}

func (e *Error) Error() string {
	s := ""
	if e.Member >= 0 {
		if e.Path != "" {
			s = fmt.Sprintf("member %d (%q)", e.Member, e.Path)
		} else {
			s = fmt.Sprintf("member %d", e.Member)
		}
	} else {
		s = string(e.Class)
	}
	if e.Offset >= 0 {
		s += fmt.Sprintf(" at offset %d", e.Offset)
	}
	s += ": " + e.What
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

func newErr(c Class, off, member int64, what string, args ...any) *Error {
	return &Error{Class: c, Offset: off, Member: member, What: fmt.Sprintf(what, args...)}
}

// OutputError is a failure of the output an archive is written to (a
// full disk, a closed pipe): the archive is incomplete.
type OutputError struct{ Err error }

func (e *OutputError) Error() string { return "writing the archive: " + e.Err.Error() }
func (e *OutputError) Unwrap() error { return e.Err }

// IsDamage says whether err is damage to an archive (an *Error of any
// class: authentication, framing, layout), as opposed to an I/O error
// or the destination's.
func IsDamage(err error) bool {
	var fe *Error
	return errors.As(err, &fe)
}
