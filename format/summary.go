package format

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cbfs/cbfs/internal/frame"
)

// PhysOffset maps a logical offset of the archive's frame stream to its
// byte offset in the archive.
func (h *Header) PhysOffset(l int64) int64 { return physOf(l, int64(h.RecordSize)) }

// PhysSpan is the number of archive bytes that hold the logical range
// [off, off+length), record headers included. It ends at the range's last
// byte, so that a range ending on a record boundary does not take in the
// next record's header.
func (h *Header) PhysSpan(off, length int64) int64 {
	if length <= 0 {
		return 0
	}
	return h.PhysOffset(off+length-1) + 1 - h.PhysOffset(off)
}

// SummaryItem is one member's summary entry as the master index takes
// it: where the member lies in the archive's bytes, and the fields of its
// metadata a lookup needs.
type SummaryItem struct {
	Member uint32
	Type   Type
	Path   []byte // valid until the callback returns
	// Offset is the physical offset of the member's metadata frame; Span
	// the bytes from there to the end of its last content frame, record
	// headers included (see Header.PhysSpan).
	Offset, Span int64
	Size         int64
	Inode        uint64
	// Replaces is a replaces record's list (spec 7.7), nil on any other
	// member.
	Replaces []Replaced
}

// SummaryScratch holds the buffers SummaryItems reuses from one archive to
// the next. The zero value is ready; one per goroutine.
type SummaryScratch struct {
	phys, logical, plain, lz []byte
}

// SummaryItems reads the summary and calls fn with each member's index
// fields, in member order. It is Entries without building a Meta per
// member: the fields the index does not use are walked over, with their
// framing checked (tags in order, lengths in bounds, no unknown critical
// tag) but not decoded. The summary is read with one ReadAt into s's
// buffers. On an error fn may have been called for some members: discard
// what it collected.
func (a *Archive) SummaryItems(s *SummaryScratch, fn func(*SummaryItem) error) error {
	if a.keys == nil {
		return errors.New("the summary cannot be read without the key")
	}
	plain, err := a.summaryPlain(s)
	if err != nil {
		return err
	}
	sumErr := func(format string, args ...any) error {
		return newErr(ClassSummary, a.PhysOffset(int64(a.Footer.SummaryOffset)), -1, format, args...)
	}
	var it SummaryItem
	end, err := walkSummary(plain, a.Footer.Members, func(n uint32, off, length int64, meta []byte) error {
		if err := leanMeta(meta, &it); err != nil {
			return &summaryError{fmt.Sprintf("entry %d: %v", n, err)}
		}
		it.Member = n
		it.Offset = a.PhysOffset(off)
		it.Span = a.Header.PhysSpan(off, length)
		return fn(&it)
	})
	if err == nil {
		err = summaryEnds(end, int64(a.Footer.SummaryOffset))
	}
	var se *summaryError
	if errors.As(err, &se) {
		return sumErr("%s", se.what)
	}
	return err
}

// minEntryLen is the smallest summary entry: a 1-byte offset, a 2-byte
// length (at least minMemberLen), a 1-byte meta-len and a 5-byte record.
const minEntryLen = 9

// summaryError is what is wrong with a summary's plaintext.
type summaryError struct{ what string }

func (e *summaryError) Error() string { return e.what }

// walkSummary walks a summary's plaintext (spec 8.1), the one parser of
// it: fn gets each entry's number, logical offset and length, and its
// metadata record's bytes. It checks what every reader of a summary
// relies on: minimal varints, entries that follow one another from
// offset 0, and the footer's member count (want). It returns where the
// members end. What is wrong with the summary is a *summaryError; an
// error from fn is returned as it is.
func walkSummary(p []byte, want uint64, fn func(n uint32, off, length int64, meta []byte) error) (int64, error) {
	bad := func(what string, args ...any) (int64, error) {
		return 0, &summaryError{fmt.Sprintf(what, args...)}
	}
	// Each entry takes at least minEntryLen bytes: a count beyond that
	// is a lie, found before anything is allocated for it.
	if want > uint64(len(p))/minEntryLen {
		return bad("footer counts %d members, the summary has room for fewer", want)
	}
	var prevEnd int64
	n := uint64(0)
	for ; len(p) > 0; n++ {
		if n >= want {
			return bad("more summary entries than the footer's %d members", want)
		}
		var vals [3]uint64
		for i := range vals {
			v, k := binary.Uvarint(p)
			if k <= 0 || (k > 1 && p[k-1] == 0) { // overlong varints would not re-encode identically
				return bad("entry %d: bad varint", n)
			}
			vals[i], p = v, p[k:]
		}
		if vals[2] > uint64(len(p)) {
			return bad("entry %d: metadata past the end", n)
		}
		off, length := int64(vals[0]), int64(vals[1])
		if vals[0] > maxValue || vals[1] > maxValue || off != prevEnd || length < minMemberLen {
			return bad("entry %d: offset %d and length %d do not follow the previous member", n, off, length)
		}
		prevEnd = off + length
		if err := fn(uint32(n), off, length, p[:vals[2]]); err != nil {
			return 0, err
		}
		p = p[vals[2]:]
	}
	if n != want {
		return bad("summary lists %d members, the footer counts %d", n, want)
	}
	return prevEnd, nil
}

// DecodeSummary parses a summary's plaintext; want is the member count the
// footer gives.
func DecodeSummary(p []byte, want uint64) ([]Entry, error) {
	entries := make([]Entry, 0, min(want, uint64(len(p))/minEntryLen))
	var alloc metaAlloc
	_, err := walkSummary(p, want, func(n uint32, off, length int64, meta []byte) error {
		m, err := decodeMeta(meta, &alloc)
		if err != nil {
			return &summaryError{fmt.Sprintf("entry %d: %v", n, err)}
		}
		entries = append(entries, Entry{Number: n, Offset: off, Length: length, Meta: m})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return entries, nil
}

// entriesEnd is where the last of entries ends: 0 for none.
func entriesEnd(entries []Entry) int64 {
	if n := len(entries); n > 0 {
		return entries[n-1].Offset + entries[n-1].Length
	}
	return 0
}

// summaryEnds checks that the members the summary lists run up to the
// summary itself.
func summaryEnds(end, summaryOffset int64) error {
	if end != summaryOffset {
		return &summaryError{fmt.Sprintf("the members listed end at %d, the summary starts at %d", end, summaryOffset)}
	}
	return nil
}

// summaryPlain reads the summary's frames with one ReadAt and opens
// them, with readStream's checks (checkFrameLen, openChunk), into s's
// buffers.
func (a *Archive) summaryPlain(s *SummaryScratch) ([]byte, error) {
	R := int64(a.Header.RecordSize)
	cs := int64(a.Header.ChunkSize)
	start, end := int64(a.Footer.SummaryOffset), int64(a.Footer.StreamLength)
	pstart := physOf(start, R)
	plen := physOf(end-1, R) + 1 - pstart
	// Frames are at least the plaintext they hold: a summary over the
	// cap in frames is over it in plaintext too.
	if end-start > MaxSummarySize+MaxSummarySize/int64(MinChunkSize)*(FrameHeaderSize+summaryFrameLen(cs)-cs) {
		return nil, newErr(ClassSummary, pstart, -1, "summary over %d bytes", int64(MaxSummarySize))
	}
	s.phys = grow(s.phys, int(plen))
	if n, err := a.src.ReadAt(s.phys, pstart); n < len(s.phys) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	// The logical bytes: the physical ones without the record headers,
	// which is the physical bytes themselves when no record starts
	// within the summary.
	logical := s.phys
	if plen != end-start {
		s.logical = s.logical[:0]
		for l := start; l < end; {
			k := min(R-l%R, end-l)
			o := physOf(l, R) - pstart
			s.logical = append(s.logical, s.phys[o:o+k]...)
			l += k
		}
		logical = s.logical
	}
	s.plain = s.plain[:0]
	s.lz = grow(s.lz, int(cs))
	rest := logical
	for index := uint64(0); ; index++ {
		fo := end - int64(len(rest))
		bad := func(what string, args ...any) ([]byte, error) {
			return nil, newErr(ClassSummary, physOf(fo, R), -1, what, args...)
		}
		if len(rest) < FrameHeaderSize {
			return bad("stream ends before its final frame")
		}
		hb := rest[:FrameHeaderSize]
		fh, why := parseFrameHeader(hb)
		if why == "" && fh.Kind != KindSummary {
			why = fmt.Sprintf("%q frame in a summary stream", fh.Kind)
		}
		if why == "" {
			why = checkFrameLen(fh, cs)
		}
		if why == "" && int64(fh.Len) > int64(len(rest)-FrameHeaderSize) {
			why = "frame cut short"
		}
		if why != "" {
			return bad("%s", why)
		}
		payload := rest[FrameHeaderSize : FrameHeaderSize+int(fh.Len)]
		rest = rest[FrameHeaderSize+int(fh.Len):]
		if frame.CRC(hb, payload) != fh.CRC {
			return bad("frame checksum mismatch")
		}
		plain, why := openChunk(a.keys, fh, hb, payload, 0, index, int(cs), s.lz)
		if why != "" {
			return bad("summary frame %d: %s", index, why)
		}
		if int64(len(s.plain))+int64(len(plain)) > MaxSummarySize {
			return bad("summary over %d bytes", int64(MaxSummarySize))
		}
		s.plain = append(s.plain, plain...)
		if fh.Final() {
			if len(rest) != 0 {
				return bad("%d bytes after the final frame", len(rest))
			}
			return s.plain, nil
		}
	}
}

// Trim drops buffers over max bytes, so that one huge summary's do not
// stay for the next archive.
func (s *SummaryScratch) Trim(max int) {
	if cap(s.phys)+cap(s.logical)+cap(s.plain) > max {
		*s = SummaryScratch{}
	}
}

// grow returns b resized to n, reusing its memory when it is big enough.
func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n, n+n/4)
	}
	return b[:n]
}

// leanMeta takes the type, path, size and inode from a summary-form
// metadata record, checking the record's framing on the way.
func leanMeta(b []byte, it *SummaryItem) error {
	*it = SummaryItem{}
	seenType, seenPath := false, false
	err := metaFields(b, func(tag int, v []byte) error {
		num := func() (uint64, error) {
			x, n := binary.Uvarint(v)
			if n <= 0 || n != len(v) || (n > 1 && v[n-1] == 0) {
				return 0, fmt.Errorf("field %d: bad varint", tag)
			}
			return x, nil
		}
		switch tag {
		case tagType:
			t, err := num()
			if err != nil {
				return err
			}
			if t == 0 || t > uint64(maxType) {
				return fmt.Errorf("unknown member type %d", t)
			}
			it.Type, seenType = Type(t), true
		case tagPath:
			if len(v) > MaxPathLen {
				return fmt.Errorf("path over %d bytes", MaxPathLen)
			}
			it.Path, seenPath = v, true
		case tagSize:
			s, err := num()
			if err != nil {
				return err
			}
			if s > maxValue {
				return errors.New("size over 2^62")
			}
			it.Size = int64(s)
		case tagInode:
			x, err := num()
			if err != nil {
				return err
			}
			it.Inode = x
		case tagReplaces:
			rs, err := decodeReplaces(v)
			if err != nil {
				return err
			}
			it.Replaces = rs
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !seenType || !seenPath {
		return errors.New("no type or no path field")
	}
	if it.Type == TypeTombstone && len(it.Path) == 0 {
		return errors.New("tombstone without a path")
	}
	if (it.Type == TypeReplaces) != (it.Replaces != nil) {
		return errors.New("a replaces list on a member that is not a replaces record, or a replaces record without one")
	}
	return nil
}
