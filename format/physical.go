package format

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/internal/frame"
)

// physReader reads the physical archive: the ustar records around the
// logical frame stream.
type physReader struct {
	r       *bufio.Reader
	id      [crypt.IDSize]byte
	size    int64 // record size
	next    uint64
	left    int64 // unread bytes of the current data record
	cursize int64 // size of the current data record
	short   bool  // the current data record is shorter than size: it is the last
	logical int64
	phys    int64
	// digest is the footer's digest of what was read, from the header
	// record on; the caller adds each frame it reads.
	digest *Digest
}

func (pr *physReader) readRaw(p []byte) error {
	n, err := io.ReadFull(pr.r, p)
	pr.phys += int64(n)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return newErr(ClassTar, pr.phys, -1, "archive is truncated")
		}
		return err
	}
	return nil
}

// physOf maps a logical offset to its physical offset: records of
// pr.size bytes each, after the 1024-byte header record.
func (pr *physReader) physOf(l int64) int64 { return physOf(l, pr.size) }

func physOf(l, size int64) int64 {
	return 2*BlockSize + (l/size)*(size+BlockSize) + BlockSize + l%size
}

func (pr *physReader) readHeaderRecord() (*Header, error) {
	// Step 1: recognise the input. What is not recognisably CBFS is not
	// a CBFS archive; what is, is damaged when any later check fails.
	head, err := pr.r.Peek(2 * BlockSize)
	if !cbfsSignature(head) {
		if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
			return nil, err
		}
		return nil, ErrNotCBFS
	}
	var b Block
	if err := pr.readRaw(b[:]); err != nil {
		return nil, errHeaderDamaged("the input ends inside record 0's ustar header (%d bytes)", len(head))
	}
	// Step 2: the name gives the archive id; then the whole ustar header
	// must be the canonical one (spec 4.2).
	id, ok := recordZeroName(b[0:100])
	if !ok {
		return nil, errHeaderDamaged("record 0's name is not cbfs-<32 lowercase hex digits>/0000000000")
	}
	pr.id = id
	size, err := parseOuterHeader(&b, pr.id, 0)
	if err != nil {
		return nil, newErr(ClassTar, 0, -1, "%v", err)
	}
	pr.next = 1
	// Every version keeps its header record within one block, with the
	// magic and the major version where v1 has them, so that a reader
	// can tell a newer version from damage.
	if size < FrameHeaderSize+10 || size > BlockSize {
		return nil, newErr(ClassHeader, BlockSize, -1, "header record of %d bytes", size)
	}
	body := make([]byte, size+PadLen(size))
	if err := pr.readRaw(body); err != nil {
		return nil, err
	}
	p := body[FrameHeaderSize:size]
	fh, bad := parseFrameHeader(body)
	v1Frame := bad == "" && fh.Kind == KindHeader && fh.Flags == FlagFinal && int64(fh.Len) == size-FrameHeaderSize
	if bytes.Equal(p[:8], headerMagic) && p[8] != Major {
		// A frame laid out as v1's whose CRC fails is a damaged v1
		// header (a flipped major byte), not a newer version.
		if !v1Frame || frame.CRC(body, p) == fh.CRC {
			return nil, &VersionError{p[8], p[9]}
		}
	}
	if !v1Frame {
		return nil, newErr(ClassHeader, BlockSize, -1, "bad header frame")
	}
	if frame.CRC(body, p) != fh.CRC {
		return nil, newErr(ClassHeader, BlockSize, -1, "header checksum mismatch")
	}
	if !frame.AllZero(body[size:]) {
		return nil, newErr(ClassTar, BlockSize+size, -1, "record 0 padding is not zero")
	}
	h, err := DecodeHeader(p)
	if err != nil {
		var fe *Error
		if errors.As(err, &fe) {
			fe.Offset = BlockSize
		}
		return nil, err
	}
	if h.ID != pr.id {
		return nil, newErr(ClassHeader, BlockSize, -1, "archive id differs from the record names")
	}
	pr.digest = NewDigest(body[:size])
	return h, nil
}

// cbfsSignature reports whether the start of an input is recognisably a
// CBFS archive (spec 6.1 step 1): its first bytes are a record name's
// "cbfs-", or record 0's body holds the header magic where every version
// keeps it. head is as much of the first 1024 bytes as the input has.
func cbfsSignature(head []byte) bool {
	if bytes.HasPrefix(head, []byte("cbfs-")) {
		return true
	}
	const at = BlockSize + FrameHeaderSize
	return len(head) >= at+len(headerMagic) && bytes.Equal(head[at:at+len(headerMagic)], headerMagic)
}

// errHeaderDamaged is record 0 of a recognisable CBFS archive that breaks
// a rule of spec 6.1 step 2: damage, not "not a CBFS archive".
func errHeaderDamaged(what string, args ...any) error {
	return newErr(ClassHeader, 0, -1, "damaged CBFS archive header: "+what, args...)
}

// recordZeroName checks that name is record 0's name (spec 4.3): cbfs-,
// 32 lowercase hex digits, /0000000000, and 52 NUL bytes; it returns the
// archive id.
func recordZeroName(field []byte) ([crypt.IDSize]byte, bool) {
	var id [crypt.IDSize]byte
	const n = len("cbfs-") + 2*crypt.IDSize + len("/0000000000")
	if !bytes.HasPrefix(field, []byte("cbfs-")) || !bytes.Equal(field[n-11:n], []byte("/0000000000")) || !frame.AllZero(field[n:100]) {
		return id, false
	}
	for _, c := range field[5 : 5+2*crypt.IDSize] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return id, false
		}
	}
	hex.Decode(id[:], field[5:5+2*crypt.IDSize])
	return id, true
}

func (pr *physReader) finishRecord() error {
	if pr.cursize == 0 {
		return nil
	}
	pad := make([]byte, PadLen(pr.cursize))
	if err := pr.readRaw(pad); err != nil {
		return err
	}
	if !frame.AllZero(pad) {
		return newErr(ClassTar, pr.phys-int64(len(pad)), -1, "record %d padding is not zero", pr.next-1)
	}
	pr.cursize = 0
	return nil
}

func (pr *physReader) readLogical(p []byte) error {
	for len(p) > 0 {
		if pr.left == 0 {
			if pr.short {
				return newErr(ClassFrame, pr.phys, -1, "frame stream runs past its last data record (one shorter than the record size)")
			}
			if err := pr.finishRecord(); err != nil {
				return err
			}
			off := pr.phys
			var b Block
			if err := pr.readRaw(b[:]); err != nil {
				return err
			}
			size, err := parseOuterHeader(&b, pr.id, pr.next)
			if err != nil {
				return newErr(ClassTar, off, -1, "%v", err)
			}
			if size == 0 || size > pr.size {
				return newErr(ClassTar, off, -1, "data record of %d bytes (record size %d)", size, pr.size)
			}
			pr.next++
			pr.left, pr.cursize, pr.short = size, size, size < pr.size
		}
		n := min(int64(len(p)), pr.left)
		if err := pr.readRaw(p[:n]); err != nil {
			return err
		}
		pr.left -= n
		pr.logical += n
		p = p[n:]
	}
	return nil
}

func (pr *physReader) readFooterRecord() (*Footer, error) {
	if pr.left != 0 {
		return nil, newErr(ClassFrame, pr.phys, -1, "%d bytes after the summary", pr.left)
	}
	if err := pr.finishRecord(); err != nil {
		return nil, err
	}
	off := pr.phys
	var b Block
	if err := pr.readRaw(b[:]); err != nil {
		return nil, newErr(ClassFooter, off, -1, "footer record missing: the archive ends after the summary")
	}
	if b.isZero() {
		return nil, newErr(ClassFooter, off, -1, "footer record missing: a zero block follows the summary")
	}
	size, err := parseOuterHeader(&b, pr.id, pr.next)
	if err != nil {
		return nil, newErr(ClassTar, off, -1, "footer record: %v", err)
	}
	if size != FrameHeaderSize+FooterSize {
		return nil, newErr(ClassFooter, off, -1, "footer record of %d bytes", size)
	}
	body := make([]byte, size+PadLen(size))
	if err := pr.readRaw(body); err != nil {
		return nil, err
	}
	if err := checkFooterFrame(body[:size]); err != nil {
		return nil, withOffset(err, off+BlockSize)
	}
	if !frame.AllZero(body[size:]) {
		return nil, newErr(ClassTar, off+BlockSize+size, -1, "footer record padding is not zero")
	}
	f, err := DecodeFooter(body[FrameHeaderSize:size])
	if err != nil {
		return nil, withOffset(err, off+BlockSize)
	}
	if f.FooterOffset != uint64(off) {
		return nil, newErr(ClassFooter, off, -1, "footer says it is at offset %d", f.FooterOffset)
	}
	// End of archive: at least two zero blocks, then nothing but zeros
	// (GNU tar may pad to its record size), up to MaxTrailingZeros.
	var zeros int64
	buf := make([]byte, 32<<10)
	for {
		n, err := io.ReadFull(pr.r, buf)
		if !frame.AllZero(buf[:n]) {
			return nil, newErr(ClassTar, pr.phys+zeros, -1, "data after the footer (was the archive appended to, as by tar -r?)")
		}
		zeros += int64(n)
		if zeros > MaxTrailingZeros {
			return nil, newErr(ClassTar, pr.phys+zeros, -1, "over %d zero bytes after the footer", MaxTrailingZeros)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if zeros < 2*BlockSize || zeros%BlockSize != 0 {
		return nil, newErr(ClassTar, pr.phys+zeros, -1, "end-of-archive blocks are missing or cut (%d bytes after the footer)", zeros)
	}
	return f, nil
}

// checkFooterFrame checks the footer record's frame header and CRC
// (spec 8.3 step 6).
func checkFooterFrame(b []byte) error {
	fh, bad := parseFrameHeader(b)
	if bad != "" || fh.Kind != KindFooter || fh.Flags != FlagFinal || int(fh.Len) != len(b)-FrameHeaderSize {
		return newErr(ClassFooter, -1, -1, "bad footer frame")
	}
	if frame.CRC(b, b[FrameHeaderSize:]) != fh.CRC {
		return newErr(ClassFooter, -1, -1, "footer checksum mismatch")
	}
	return nil
}

func withOffset(err error, off int64) error {
	var fe *Error
	if errors.As(err, &fe) && fe.Offset < 0 {
		fe.Offset = off
	}
	return err
}
