package format

import (
	"bufio"
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

// SummaryScratch holds the buffers a summary walk reuses from one archive
// to the next: a read window, one frame, one chunk and the bytes of an
// entry cut by a chunk boundary. The zero value is ready; one per
// goroutine.
type SummaryScratch struct {
	win       *bufio.Reader
	frame, lz []byte
	carry     []byte
}

// SummaryItems reads the summary and calls fn with each member's index
// fields, in member order. It is WalkEntries without building a Meta per
// member: the fields the index does not use are walked over, with their
// framing checked (tags in order, lengths in bounds, no unknown critical
// tag) but not decoded. The summary is read chunk by chunk into s's
// buffers: memory does not grow with the summary. Every check of the
// summary is made as the walk goes, so an error may come after fn was
// called for some members (a damaged frame late in the summary, a member
// count that does not match the footer's): discard what fn collected.
func (a *Archive) SummaryItems(s *SummaryScratch, fn func(*SummaryItem) error) error {
	var it SummaryItem
	return a.walkSummary(s, func(n uint32, off, length int64, meta []byte) error {
		if err := leanMeta(meta, &it); err != nil {
			return &summaryError{fmt.Sprintf("entry %d: %v", n, err)}
		}
		it.Member = n
		it.Offset = a.PhysOffset(off)
		it.Span = a.Header.PhysSpan(off, length)
		return fn(&it)
	})
}

// WalkEntries reads the summary chunk by chunk and calls fn with each
// member's entry, in member order; e.Meta is the member's decoded
// summary-form record, fn's to keep. Memory does not grow with the
// summary. As with SummaryItems, an error may come after fn was called
// for some members: discard what fn collected.
func (a *Archive) WalkEntries(fn func(e Entry) error) error {
	var s SummaryScratch
	return a.walkSummary(&s, decodingEntries(fn))
}

// decodingEntries is a summaryWalker's fn that decodes each entry's
// metadata record and hands the entry to fn. The records share what
// metaAlloc keeps (interned owner names, one buffer for the canonical
// check).
func decodingEntries(fn func(Entry) error) func(n uint32, off, length int64, meta []byte) error {
	var alloc metaAlloc
	return func(n uint32, off, length int64, meta []byte) error {
		m, err := decodeMeta(meta, &alloc)
		if err != nil {
			return &summaryError{fmt.Sprintf("entry %d: %v", n, err)}
		}
		return fn(Entry{Number: n, Offset: off, Length: length, Meta: m})
	}
}

// Entries reads and opens the summary. It needs the key.
func (a *Archive) Entries() ([]Entry, error) {
	var entries []Entry
	if a.Footer != nil {
		// The count is bounded by the bytes the summary's frames can
		// hold before anything is allocated for it (spec 8.1).
		entries = make([]Entry, 0, min(a.Footer.Members, uint64(a.summaryRoom())/minEntryLen))
	}
	if err := a.WalkEntries(func(e Entry) error {
		entries = append(entries, e)
		return nil
	}); err != nil {
		return nil, err
	}
	return entries, nil
}

// summaryRoom is the most plaintext the summary's frames can hold.
func (a *Archive) summaryRoom() int64 {
	cs := int64(a.Header.ChunkSize)
	unit := FrameHeaderSize + summaryFrameLen(cs)
	return (int64(a.Footer.SummaryLength) + unit - 1) / unit * cs
}

// walkSummary reads the summary's frames one at a time (summaryChunks)
// into a summaryWalker, and checks that the members it lists run up to
// the summary. What is wrong with the summary is an *Error of class
// summary; an error from fn is returned as it is.
func (a *Archive) walkSummary(s *SummaryScratch, fn func(n uint32, off, length int64, meta []byte) error) error {
	if a.keys == nil {
		return errors.New("the summary cannot be read without the key")
	}
	if a.Footer == nil {
		return errors.New("a salvaged archive has no summary to read")
	}
	defer func() { s.carry = s.carry[:0] }()
	w, err := newSummaryWalker(a.Footer.Members, a.summaryRoom(), s.carry[:0], fn)
	if err == nil {
		err = a.summaryChunks(s, func(p []byte, final bool) error {
			err := w.feed(p, final)
			s.carry = w.carry
			return err
		})
	}
	if err == nil {
		err = summaryEnds(w.prevEnd, int64(a.Footer.SummaryOffset))
	}
	var se *summaryError
	if errors.As(err, &se) {
		return newErr(ClassSummary, a.PhysOffset(int64(a.Footer.SummaryOffset)), -1, "%s", se.what)
	}
	return err
}

// minEntryLen is the smallest summary entry: a 1-byte offset, a 2-byte
// length (at least minMemberLen), a 1-byte meta-len and a 5-byte record.
const minEntryLen = 9

// summaryError is what is wrong with a summary's plaintext.
type summaryError struct{ what string }

func (e *summaryError) Error() string { return e.what }

// summaryWalker is the one parser of a summary's plaintext (spec 8.1),
// fed the plaintext in pieces (a chunk at a time) as it is opened: fn
// gets each entry's number, logical offset and length, and its metadata
// record's bytes (valid until fn returns). It checks what every reader
// of a summary relies on: minimal varints, entries that follow one
// another from offset 0, and the footer's member count (want). An entry
// cut by the end of a piece waits in carry for the next: memory is the
// largest entry, not the summary. What is wrong with the summary is a
// *summaryError; an error from fn is returned as it is.
type summaryWalker struct {
	want uint64
	// room is how many plaintext bytes may still come after what was
	// fed: exact once the last piece is in, an upper bound before.
	room    int64
	fn      func(n uint32, off, length int64, meta []byte) error
	n       uint64
	prevEnd int64
	carry   []byte
}

// newSummaryWalker starts a walk of a summary of at most room plaintext
// bytes whose footer counts want members. Each entry takes at least
// minEntryLen bytes: a count beyond what room holds is a lie, found
// before anything is read or allocated for it. carry is a buffer to
// reuse.
func newSummaryWalker(want uint64, room int64, carry []byte, fn func(n uint32, off, length int64, meta []byte) error) (*summaryWalker, error) {
	if want > uint64(room)/minEntryLen {
		return nil, &summaryError{fmt.Sprintf("footer counts %d members, the summary has room for fewer", want)}
	}
	return &summaryWalker{want: want, room: room, fn: fn, carry: carry}, nil
}

func badSummary(what string, args ...any) error {
	return &summaryError{fmt.Sprintf(what, args...)}
}

// feed walks the next piece of plaintext; final says it is the last.
// After the last piece it checks the member count.
func (w *summaryWalker) feed(p []byte, final bool) error {
	w.room -= int64(len(p))
	if final {
		w.room = 0
	}
	if w.room < 0 {
		return badSummary("summary longer than the room given for it")
	}
	// First the entry carried over from the last piece, completed with
	// as many of p's bytes as it needs.
	for len(w.carry) > 0 && (len(p) > 0 || final) {
		had := len(w.carry)
		take := min(len(p), w.needs())
		w.carry = append(w.carry, p[:take]...)
		k, err := w.entry(w.carry, w.room+int64(len(p)-take))
		if err != nil {
			return err
		}
		if k == 0 {
			p = p[take:]
			continue
		}
		// The entry ends k bytes into carry, past what it had (it was
		// incomplete without them): the rest is p's again.
		p = p[k-had:]
		w.carry = w.carry[:0]
	}
	for len(p) > 0 {
		k, err := w.entry(p, w.room)
		if err != nil {
			return err
		}
		if k == 0 {
			w.carry = append(w.carry[:0], p...)
			break
		}
		p = p[k:]
	}
	if final && w.n != w.want {
		return badSummary("summary lists %d members, the footer counts %d", w.n, w.want)
	}
	return nil
}

// needs is how many more bytes the carried entry may need: the rest of
// it when its varints are complete (entry checked its meta-len then),
// else as many as three varints take.
func (w *summaryWalker) needs() int {
	q := w.carry
	var v uint64
	for range 3 {
		var k int
		if v, k = binary.Uvarint(q); k <= 0 {
			return 3 * binary.MaxVarintLen64
		}
		q = q[k:]
	}
	v = min(v, MaxMetaSize)
	return int(v - min(v, uint64(len(q))))
}

// entry walks the entry at the start of p, more bytes of plaintext
// possibly following p: it returns the entry's length, or 0 when p holds
// only part of it (possible only when more > 0).
func (w *summaryWalker) entry(p []byte, more int64) (int, error) {
	n := w.n
	if n >= w.want {
		return 0, badSummary("more summary entries than the footer's %d members", w.want)
	}
	var vals [3]uint64
	q := p
	for i := range vals {
		v, k := binary.Uvarint(q)
		if k == 0 && more > 0 {
			return 0, nil // the varint goes on in the next piece
		}
		if k <= 0 || (k > 1 && q[k-1] == 0) { // overlong varints would not re-encode identically
			return 0, badSummary("entry %d: bad varint", n)
		}
		vals[i], q = v, q[k:]
	}
	if vals[2] > uint64(len(q))+uint64(more) {
		return 0, badSummary("entry %d: metadata past the end", n)
	}
	if vals[2] > MaxMetaSize {
		return 0, badSummary("entry %d: metadata record of %d bytes, over %d", n, vals[2], MaxMetaSize)
	}
	if vals[2] > uint64(len(q)) {
		return 0, nil
	}
	off, length := int64(vals[0]), int64(vals[1])
	if vals[0] > maxValue || vals[1] > maxValue || off != w.prevEnd || length < minMemberLen {
		return 0, badSummary("entry %d: offset %d and length %d do not follow the previous member", n, off, length)
	}
	w.prevEnd = off + length
	if err := w.fn(uint32(n), off, length, q[:vals[2]]); err != nil {
		return 0, err
	}
	w.n++
	return len(p) - len(q) + int(vals[2]), nil
}

// SummaryDecoder decodes a summary's plaintext given in pieces, as its
// chunks are opened one at a time: memory is the largest entry, not the
// summary. DecodeSummary is its one-piece form; both accept and refuse
// the same plaintexts, with the same errors, however it is cut.
type SummaryDecoder struct{ w *summaryWalker }

// NewSummaryDecoder starts decoding the plaintext of a summary of at most
// room bytes whose footer counts want members; fn gets each entry, its
// Meta decoded (fn's to keep).
func NewSummaryDecoder(want uint64, room int64, fn func(Entry) error) (*SummaryDecoder, error) {
	w, err := newSummaryWalker(want, room, nil, decodingEntries(fn))
	if err != nil {
		return nil, err
	}
	return &SummaryDecoder{w}, nil
}

// Write decodes the next piece of plaintext; final says it is the last
// (the member count is checked then). More than room bytes in all is an
// error.
func (d *SummaryDecoder) Write(p []byte, final bool) error { return d.w.feed(p, final) }

// End is where the members decoded end: after the final piece, where the
// summary must start.
func (d *SummaryDecoder) End() int64 { return d.w.prevEnd }

// DecodeSummary parses a summary's plaintext; want is the member count the
// footer gives.
func DecodeSummary(p []byte, want uint64) ([]Entry, error) {
	entries := make([]Entry, 0, min(want, uint64(len(p))/minEntryLen))
	d, err := NewSummaryDecoder(want, int64(len(p)), func(e Entry) error {
		entries = append(entries, e)
		return nil
	})
	if err == nil {
		err = d.Write(p, true)
	}
	if err != nil {
		return nil, err
	}
	return entries, nil
}

// summaryEnds checks that the members the summary lists run up to the
// summary itself.
func summaryEnds(end, summaryOffset int64) error {
	if end != summaryOffset {
		return &summaryError{fmt.Sprintf("the members listed end at %d, the summary starts at %d", end, summaryOffset)}
	}
	return nil
}

// summaryWindow is how many of the summary's bytes one read takes: a
// summary is read in reads of this size (or in one request, from a
// RangeReader), never whole.
const summaryWindow = 1 << 20

// RangeReader is a Source that can also read a range in order in one
// request, such as an object store's ranged GET. A summary larger than
// one read window is read through it: one request, whatever its size,
// in the memory of a window.
type RangeReader interface {
	// ReadRange reads the n bytes at off, in order.
	ReadRange(off, n int64) (io.ReadCloser, error)
}

// summaryChunks reads the summary's frames (spec 8.2 step 5) in order,
// with the content reader's checks (checkFrameLen, openChunk), and hands
// fn each chunk's plaintext (valid until fn returns; final for the
// last). The frames are read through a window: memory is a window, one
// frame and one chunk, whatever the summary's size.
func (a *Archive) summaryChunks(s *SummaryScratch, fn func(p []byte, final bool) error) error {
	R := int64(a.Header.RecordSize)
	cs := int64(a.Header.ChunkSize)
	start, end := int64(a.Footer.SummaryOffset), int64(a.Footer.StreamLength)
	pstart := physOf(start, R)
	plen := physOf(end-1, R) + 1 - pstart
	// Frames are at least the plaintext they hold: a summary over the
	// cap in frames is over it in plaintext too.
	if end-start > MaxSummarySize+MaxSummarySize/int64(MinChunkSize)*(FrameHeaderSize+summaryFrameLen(cs)-cs) {
		return newErr(ClassSummary, pstart, -1, "summary over %d bytes", int64(MaxSummarySize))
	}
	var phys io.Reader = io.NewSectionReader(a.src, pstart, plen)
	if rr, ok := a.src.(RangeReader); ok && plen > summaryWindow {
		rc, err := rr.ReadRange(pstart, plen)
		if err != nil {
			return err
		}
		defer rc.Close()
		phys = rc
	}
	if size := int(min(plen, summaryWindow)); s.win == nil || s.win.Size() < size {
		s.win = bufio.NewReaderSize(phys, size)
	} else {
		s.win.Reset(phys)
	}
	rs := &recordStream{r: s.win, R: R, l: start, end: end}
	s.frame = grow(s.frame, int(FrameHeaderSize+summaryFrameLen(cs)))
	s.lz = grow(s.lz, int(cs))
	var total int64
	for index := uint64(0); ; index++ {
		fo := rs.l
		bad := func(what string, args ...any) error {
			return newErr(ClassSummary, physOf(fo, R), -1, what, args...)
		}
		if end-fo < FrameHeaderSize {
			return bad("stream ends before its final frame")
		}
		hb := s.frame[:FrameHeaderSize]
		if _, err := io.ReadFull(rs, hb); err != nil {
			return err
		}
		fh, why := parseFrameHeader(hb)
		if why == "" && fh.Kind != KindSummary {
			why = fmt.Sprintf("%q frame in a summary stream", fh.Kind)
		}
		if why == "" {
			why = checkFrameLen(fh, cs)
		}
		if why == "" && int64(fh.Len) > end-rs.l {
			why = "frame cut short"
		}
		if why != "" {
			return bad("%s", why)
		}
		payload := s.frame[FrameHeaderSize : FrameHeaderSize+int(fh.Len)]
		if _, err := io.ReadFull(rs, payload); err != nil {
			return err
		}
		if frame.CRC(hb, payload) != fh.CRC {
			return bad("frame checksum mismatch")
		}
		plain, why := openChunk(a.keys, fh, hb, payload, 0, index, int(cs), s.lz)
		if why != "" {
			return bad("summary frame %d: %s", index, why)
		}
		if total += int64(len(plain)); total > MaxSummarySize {
			return bad("summary over %d bytes", int64(MaxSummarySize))
		}
		if fh.Final() && rs.l != end {
			return bad("%d bytes after the final frame", end-rs.l)
		}
		if err := fn(plain, fh.Final()); err != nil {
			return err
		}
		if fh.Final() {
			return nil
		}
	}
}

// recordStream gives the logical bytes [l, end) of an archive from r,
// which reads the archive's bytes in order from physOf(l): it drops the
// record headers between records.
type recordStream struct {
	r      *bufio.Reader
	R      int64
	l, end int64
	skip   int // bytes of a record header still to drop
}

func (s *recordStream) Read(p []byte) (int, error) {
	if s.skip > 0 {
		k, err := s.r.Discard(s.skip)
		s.skip -= k
		if err != nil {
			return 0, noEOF(err)
		}
	}
	if s.l >= s.end {
		return 0, io.EOF
	}
	n := min(int64(len(p)), s.R-s.l%s.R, s.end-s.l)
	k, err := s.r.Read(p[:n])
	s.l += int64(k)
	if s.l%s.R == 0 && s.l < s.end {
		s.skip = BlockSize
	}
	if err == io.EOF && k > 0 {
		err = nil
	}
	return k, noEOF(err)
}

// noEOF is err with an end of input inside a range read as what it is:
// the input was cut short.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Trim drops buffers over max bytes, so that one huge entry's do not
// stay for the next archive.
func (s *SummaryScratch) Trim(max int) {
	if cap(s.frame)+cap(s.lz)+cap(s.carry) > max {
		s.frame, s.lz, s.carry = nil, nil, nil
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
