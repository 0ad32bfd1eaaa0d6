package format

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/internal/frame"
)

// Source is what random access to an archive needs: a ReaderAt and its
// size. An object-store client that serves byte ranges fits it.
type Source interface {
	io.ReaderAt
	Size() int64
}

type sizedReaderAt struct {
	io.ReaderAt
	size int64
}

func (s sizedReaderAt) Size() int64 { return s.size }

// NewSource pairs a ReaderAt with its size.
func NewSource(r io.ReaderAt, size int64) Source { return sizedReaderAt{r, size} }

// tailRead is how much of the end of an archive OpenArchive reads to find
// the footer: enough for GNU tar's re-padding to a 10240-byte record.
const tailRead = 32 << 10

// Archive gives random access to an archive through its footer and
// summary: one read at each end to open it, one to read the summary.
type Archive struct {
	src    Source
	Header *Header
	Footer *Footer
	keys   *crypt.ArchiveKeys
	// Frame payload and LZ4 output buffers, reused across streams:
	// allocating (and zeroing) two chunk-sized buffers per member cost
	// more than the rest of extracting a small file.
	payloads, dbufs sync.Pool
}

// OpenArchive reads the footer record from the end of the archive and
// takes the archive header from the footer's copy of it (spec 8.2): one
// read at the end, record 0 unread, so that an archive in an object store
// opens with one range request. Given keys, it takes the one whose key
// check value the header carries (ErrWrongKey when none does) and checks
// both MACs. When no footer is found it reads record 0 to say what the
// input is: not a CBFS archive, or one of another version.
func OpenArchive(src Source, keys ...*crypt.Key) (*Archive, error) {
	a := &Archive{src: src}
	f, err := a.findFooter()
	if err != nil {
		if herr := a.identify(); herr != nil {
			return nil, herr
		}
		return nil, err
	}
	hdr := f.Header
	a.Header = &hdr
	if a.keys, err = hdr.pickKeys(keys); err != nil {
		return nil, err
	}
	if a.keys != nil {
		if !a.keys.MACMatches(hdr.MAC[:], hdr.encodeNoMAC()) {
			return nil, newErr(ClassFooter, int64(f.FooterOffset), -1, "MAC mismatch in the footer's copy of the archive header: the footer was changed")
		}
		if !f.Authenticate(a.keys) {
			return nil, newErr(ClassFooter, int64(f.FooterOffset), -1, "footer MAC mismatch")
		}
	}
	a.Footer = f
	return a, nil
}

// identify reads record 0 after the footer was not found, and returns
// its error when it says the input is not a CBFS archive or is one of
// another major version (spec 8.2 step 4): those, not the missing
// footer, are what the input is. Other damage to record 0 is not
// reported: the footer's failure is.
func (a *Archive) identify() error {
	_, _, err := readRecordZero(a.src)
	var ve *VersionError
	if errors.Is(err, ErrNotCBFS) || errors.As(err, &ve) {
		return err
	}
	return nil
}

// readRecordZero reads record 0 and processes it (spec 6.1 up to the
// key), returning its bytes as well; an error reading them is returned
// as it is.
func readRecordZero(src Source) (head []byte, h *Header, err error) {
	head = make([]byte, min(src.Size(), 2*BlockSize))
	if _, err := src.ReadAt(head, 0); err != nil && err != io.EOF {
		return nil, nil, err
	}
	pr := &physReader{r: bufioOf(head)}
	h, err = pr.readHeaderRecord()
	return head, h, err
}

// findFooter scans back over the end-of-archive zero blocks to the footer
// record and checks where it stands. When only the end-of-archive blocks
// are wrong (missing or cut) it returns the footer with the error: a
// random-access reader refuses the archive, a scan goes by the footer.
func (a *Archive) findFooter() (*Footer, error) {
	size := a.src.Size()
	if size%BlockSize != 0 {
		return nil, newErr(ClassTar, size, -1, "archive size %d is not a whole number of blocks (truncated?)", size)
	}
	// Scan back over the zero blocks to the last block that is not zero:
	// the footer record's body. One read in the common case.
	end := int64(-1)
	var tail []byte
	var tailStart int64
	for pos := size; pos > 0 && size-pos <= MaxTrailingZeros; {
		n := min(pos, tailRead)
		tail, tailStart = make([]byte, n), pos-n
		if _, err := a.src.ReadAt(tail, tailStart); err != nil && err != io.EOF {
			return nil, err
		}
		e := n
		for e >= BlockSize && frame.AllZero(tail[e-BlockSize:e]) {
			e -= BlockSize
		}
		if e > 0 {
			end = tailStart + e
			break
		}
		pos = tailStart
	}
	switch {
	case end < 0 && size > MaxTrailingZeros:
		return nil, newErr(ClassTar, size, -1, "over %d zero bytes at the end", MaxTrailingZeros)
	case end < 0:
		return nil, newErr(ClassFooter, 0, -1, "no footer: the archive is all zeros")
	case size-end < 2*BlockSize:
		// Still find the footer, for a scan to go by: a copy cut short
		// by a block or two has everything else.
		f, err := a.footerAt(end, tail, tailStart)
		if err != nil {
			// The last non-zero bytes are not the footer either: more
			// than the end blocks is wrong. Name where they start.
			last := tail[end-tailStart-BlockSize : end-tailStart]
			at := end - BlockSize + int64(slices.IndexFunc(last, func(c byte) bool { return c != 0 }))
			return nil, newErr(ClassTar, at, -1, "the archive does not end in its footer and two zero blocks: cut short, appended to, or damaged at the end")
		}
		return f, newErr(ClassTar, size, -1, "end-of-archive blocks are missing (truncated?)")
	case size-end > MaxTrailingZeros:
		return nil, newErr(ClassTar, end, -1, "over %d zero bytes after the footer", MaxTrailingZeros)
	}
	return a.footerAt(end, tail, tailStart)
}

// footerAt reads and checks the footer record that ends at end; tail holds
// the archive's bytes from tailStart.
func (a *Archive) footerAt(end int64, tail []byte, tailStart int64) (*Footer, error) {
	if end < 4*BlockSize {
		return nil, newErr(ClassFooter, end, -1, "no footer before the end-of-archive blocks")
	}
	off := end - 2*BlockSize
	rec := make([]byte, 2*BlockSize)
	if off >= tailStart {
		copy(rec, tail[off-tailStart:])
	} else if _, err := a.src.ReadAt(rec, off); err != nil && err != io.EOF {
		return nil, err
	}
	var b Block
	copy(b[:], rec)
	if b.VerifyChecksum() != nil {
		return nil, newErr(ClassFooter, off, -1, "no footer record before the end-of-archive blocks (was the archive appended to?)")
	}
	name := string(b.Name())
	id, recNum, ok := parseRecordName(name)
	if !ok || (a.Header != nil && id != a.Header.ID) {
		return nil, newErr(ClassFooter, off, -1, "last record %q is not this archive's footer (was the archive appended to?)", name)
	}
	bsize, err := parseOuterHeader(&b, id, recNum)
	if err != nil {
		return nil, newErr(ClassTar, off, -1, "footer record: %v", err)
	}
	if bsize != FrameHeaderSize+FooterSize {
		return nil, newErr(ClassFooter, off, -1, "footer record of %d bytes", bsize)
	}
	body := rec[BlockSize:]
	if err := checkFooterFrame(body[:bsize]); err != nil {
		return nil, withOffset(err, off+BlockSize)
	}
	if !frame.AllZero(body[bsize:]) {
		return nil, newErr(ClassTar, off+BlockSize+bsize, -1, "footer record padding is not zero")
	}
	f, err := DecodeFooter(body[FrameHeaderSize:bsize])
	if err != nil {
		return nil, withOffset(err, off+BlockSize)
	}
	if f.ID != id {
		return nil, newErr(ClassFooter, off, -1, "footer belongs to archive %x", f.ID)
	}
	// A scan knows record 0 (a.Header) and goes by it; a random-access
	// reader has only the copy.
	hdr := &f.Header
	if a.Header != nil {
		hdr = a.Header
	}
	if f.FooterOffset != uint64(off) {
		return nil, newErr(ClassFooter, off, -1, "footer says it is at offset %d, it is at %d", f.FooterOffset, off)
	}
	R := int64(hdr.RecordSize)
	records := (int64(f.StreamLength) + R - 1) / R
	last := int64(f.StreamLength) - (records-1)*R
	if f.StreamLength == 0 || physOf(int64(f.StreamLength)-1, R)+1+PadLen(last) != off || uint64(records+1) != recNum {
		return nil, newErr(ClassFooter, off, -1, "footer's stream length does not match the archive's layout")
	}
	if unit := summaryFrameLen(int64(hdr.ChunkSize)) + FrameHeaderSize; f.SummaryLength == 0 || f.SummaryLength%uint64(unit) != 0 {
		return nil, newErr(ClassFooter, off, -1, "footer's summary length %d is not a whole number of %d-byte summary frames", f.SummaryLength, unit)
	}
	if a.Header != nil && f.Header != *a.Header {
		// Returned with the footer, which a scan goes by.
		return f, newErr(ClassFooter, off, -1, "the footer's copy of the archive header differs from record 0")
	}
	return f, nil
}

// logicalReader reads the logical frame stream of a Source from a given
// logical offset, skipping record headers and padding.
type logicalReader struct {
	src Source
	R   int64
	off int64 // logical
	end int64 // logical end (exclusive)
}

func (l *logicalReader) Read(p []byte) (int, error) {
	if l.off >= l.end {
		return 0, io.EOF
	}
	inRec := l.R - l.off%l.R
	n := min(int64(len(p)), inRec, l.end-l.off)
	k, err := l.src.ReadAt(p[:n], physOf(l.off, l.R))
	l.off += int64(k)
	if err == io.EOF && int64(k) == n {
		err = nil
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return k, err
}

// readContent reads and opens the content frames of member stream in
// [off, off+length): each chunk's plaintext goes to fn and nothing is
// kept. (The summary has a reader of its own, summaryChunks.)
func (a *Archive) readContent(off, length int64, stream uint32, fn func([]byte) error) error {
	// Frames are read straight from the source, header then payload:
	// the source is a block cache wherever many small streams are read.
	lr := &logicalReader{src: a.src, R: int64(a.Header.RecordSize), off: off, end: off + length}
	cs := int64(a.Header.ChunkSize)
	var payload, dbuf []byte
	defer func() {
		if payload != nil {
			a.payloads.Put(&payload)
		}
		if dbuf != nil {
			a.dbufs.Put(&dbuf)
		}
	}()
	member := int64(stream)
	for index := uint64(0); ; index++ {
		phys := physOf(lr.off, lr.R)
		var hb [FrameHeaderSize]byte
		if _, err := io.ReadFull(lr, hb[:]); err != nil {
			return newErr(ClassMember, phys, member, "stream ends before its final frame")
		}
		fh, bad := parseFrameHeader(hb[:])
		if bad == "" && fh.Kind != KindContent {
			bad = fmt.Sprintf("%q frame in a %s stream", fh.Kind, frameName(KindContent))
		}
		if bad == "" {
			bad = checkFrameLen(fh, cs)
		}
		if bad != "" {
			return newErr(ClassMember, phys, member, "%s", bad)
		}
		if payload == nil {
			payload = poolBuf(&a.payloads, int(summaryFrameLen(cs)))
		}
		payload := payload[:fh.Len]
		if _, err := io.ReadFull(lr, payload); err != nil {
			return newErr(ClassMember, phys, member, "frame cut short")
		}
		if frame.CRC(hb[:], payload) != fh.CRC {
			return newErr(ClassMember, phys, member, "frame checksum mismatch")
		}
		if fh.LZ4() && dbuf == nil {
			dbuf = poolBuf(&a.dbufs, int(cs))
		}
		plain, bad := openChunk(a.keys, fh, hb[:], payload, stream, index, int(cs), dbuf)
		if bad != "" {
			return newErr(ClassMember, phys, member, "%s frame %d: %s", frameName(KindContent), index, bad)
		}
		if err := fn(plain); err != nil {
			return err
		}
		if fh.Final() {
			if rest := lr.end - lr.off; rest != 0 {
				return newErr(ClassMember, phys, member, "%d bytes after the final frame", rest)
			}
			return nil
		}
	}
}

// Meta reads a member's full metadata record (with xattrs and verbatim
// tar bytes, which the summary leaves out) and checks it against e.
func (a *Archive) Meta(e Entry) (*Meta, error) {
	R := int64(a.Header.RecordSize)
	lr := &logicalReader{src: a.src, R: R, off: e.Offset, end: e.Offset + e.Length}
	phys := physOf(e.Offset, R)
	var hb [FrameHeaderSize]byte
	if _, err := io.ReadFull(lr, hb[:]); err != nil {
		return nil, newErr(ClassMember, phys, int64(e.Number), "cannot read metadata frame: %v", err)
	}
	fh, bad := parseFrameHeader(hb[:])
	if bad == "" && (fh.Kind != KindMeta || !fh.Final() || int64(fh.Len) > metaFrameMax || fh.Len < crypt.TagSize) {
		bad = "not a metadata frame"
	}
	if bad != "" {
		return nil, newErr(ClassMember, phys, int64(e.Number), "%s", bad)
	}
	payload := make([]byte, fh.Len)
	if _, err := io.ReadFull(lr, payload); err != nil {
		return nil, newErr(ClassMember, phys, int64(e.Number), "metadata frame cut short")
	}
	if frame.CRC(hb[:], payload) != fh.CRC {
		return nil, newErr(ClassMember, phys, int64(e.Number), "frame checksum mismatch")
	}
	plain, err := frame.Open(a.keys, fh, hb[:], payload, e.Number, 0)
	if err != nil {
		return nil, newErr(ClassMember, phys, int64(e.Number), "metadata frame failed authentication")
	}
	m, err := decodeMetaFrame(plain, fh.LZ4())
	if err != nil {
		return nil, newErr(ClassMember, phys, int64(e.Number), "metadata record: %v", err)
	}
	if !m.sameSummary(e.Meta) {
		return nil, newErr(ClassSummary, phys, int64(e.Number), "summary entry does not match the member")
	}
	return m, nil
}

// Content writes a member's content to w, authenticating every chunk.
func (a *Archive) Content(e Entry, w io.Writer) error {
	R := int64(a.Header.RecordSize)
	// Skip the metadata frame: read its header for its length.
	var hb [FrameHeaderSize]byte
	lr := &logicalReader{src: a.src, R: R, off: e.Offset, end: e.Offset + e.Length}
	if _, err := io.ReadFull(lr, hb[:]); err != nil {
		return newErr(ClassMember, physOf(e.Offset, R), int64(e.Number), "cannot read metadata frame")
	}
	fh, bad := parseFrameHeader(hb[:])
	if bad != "" || fh.Kind != KindMeta || int64(fh.Len)+FrameHeaderSize >= e.Length {
		return newErr(ClassMember, physOf(e.Offset, R), int64(e.Number), "not a metadata frame")
	}
	start := e.Offset + FrameHeaderSize + int64(fh.Len)
	return a.readContent(start, e.Offset+e.Length-start, e.Number, func(p []byte) error {
		if len(p) > 0 && e.Meta != nil && emptyContent(e.Meta.Type) {
			return newErr(ClassMember, physOf(start, R), int64(e.Number), "a %s has content: a member of this type has none", e.Meta.Type)
		}
		_, err := w.Write(p)
		return err
	})
}

// PhysOffset maps a logical offset to a byte offset in the archive.
func (a *Archive) PhysOffset(l int64) int64 { return physOf(l, int64(a.Header.RecordSize)) }

// poolBuf takes a buffer of n bytes from pool, or makes one.
func poolBuf(pool *sync.Pool, n int) []byte {
	if b, ok := pool.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]byte, n)
}

// storedChunks reads member e's content frames and hands fn each one's
// stored plaintext, opened but not decompressed (an LZ4 block stays one),
// with its LZ4 and final flags: what a compaction re-seals unchanged.
// Every frame's header, length rule, checksum and seal are checked; the
// plaintext is not decoded. stored is valid until fn returns.
func (a *Archive) storedChunks(e Entry, fn func(stored []byte, lz4, final bool) error) error {
	R := int64(a.Header.RecordSize)
	cs := int64(a.Header.ChunkSize)
	lr := &logicalReader{src: a.src, R: R, off: e.Offset, end: e.Offset + e.Length}
	member := int64(e.Number)
	var hb [FrameHeaderSize]byte
	if _, err := io.ReadFull(lr, hb[:]); err != nil {
		return newErr(ClassMember, physOf(e.Offset, R), member, "cannot read metadata frame")
	}
	fh, bad := parseFrameHeader(hb[:])
	if bad != "" || fh.Kind != KindMeta || int64(fh.Len)+FrameHeaderSize >= e.Length {
		return newErr(ClassMember, physOf(e.Offset, R), member, "not a metadata frame")
	}
	lr.off += int64(fh.Len)
	payload := poolBuf(&a.payloads, int(summaryFrameLen(cs)))
	defer a.payloads.Put(&payload)
	for index := uint64(0); ; index++ {
		phys := physOf(lr.off, R)
		if _, err := io.ReadFull(lr, hb[:]); err != nil {
			return newErr(ClassMember, phys, member, "stream ends before its final frame")
		}
		fh, bad := parseFrameHeader(hb[:])
		if bad == "" && fh.Kind != KindContent {
			bad = fmt.Sprintf("%q frame in a content stream", fh.Kind)
		}
		if bad == "" {
			bad = checkFrameLen(fh, cs)
		}
		if bad != "" {
			return newErr(ClassMember, phys, member, "%s", bad)
		}
		p := payload[:fh.Len]
		if _, err := io.ReadFull(lr, p); err != nil {
			return newErr(ClassMember, phys, member, "frame cut short")
		}
		if frame.CRC(hb[:], p) != fh.CRC {
			return newErr(ClassMember, phys, member, "frame checksum mismatch")
		}
		stored, err := frame.Open(a.keys, fh, hb[:], p, e.Number, index)
		if err != nil {
			return newErr(ClassMember, phys, member, "content frame %d failed authentication", index)
		}
		if len(stored) > 0 && emptyContent(e.Meta.Type) {
			return newErr(ClassMember, phys, member, "a %s has content: a member of this type has none", e.Meta.Type)
		}
		if err := fn(stored, fh.LZ4(), fh.Final()); err != nil {
			return err
		}
		if fh.Final() {
			if rest := lr.end - lr.off; rest != 0 {
				return newErr(ClassMember, phys, member, "%d bytes after the final frame", rest)
			}
			return nil
		}
	}
}
