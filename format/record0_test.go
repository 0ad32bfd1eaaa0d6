package format

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/cbfs/cbfs/internal/frame"
	"github.com/cbfs/cbfs/internal/testutil"
)

// TestRecordZeroBitFlips flips every bit of record 0's ustar header of a
// valid archive, one at a time, and reads the result. Record 0 keeps its
// body (with CBFSARCH) and its name's "cbfs-" through any single flip but
// one of those bytes' own, so every flip is damage to a CBFS archive
// (spec 6.1 step 1), never "not a CBFS archive".
func TestRecordZeroBitFlips(t *testing.T) {
	key := testutil.Key(t, 3)
	arc, _ := writeArchive(t, key, sampleMembers()[:2], WriterOptions{RecordSize: MinRecordSize, ChunkSize: MinChunkSize})
	var damage, notCBFS, version, other int
	for bit := 0; bit < BlockSize*8; bit++ {
		b := bytes.Clone(arc)
		b[bit/8] ^= 1 << (bit % 8)
		_, err := NewReader(bytes.NewReader(b), key, ReaderOptions{Workers: 1})
		var fe *Error
		var ve *VersionError
		switch {
		case errors.Is(err, ErrNotCBFS):
			notCBFS++
			t.Errorf("bit %d of byte %d: %v, want damage", bit%8, bit/8, err)
		case errors.As(err, &ve):
			version++
			t.Errorf("bit %d of byte %d: %v, want damage", bit%8, bit/8, err)
		case errors.As(err, &fe) && (fe.Class == ClassHeader || fe.Class == ClassTar):
			damage++
		default:
			other++
			t.Errorf("bit %d of byte %d: %v, want damage", bit%8, bit/8, err)
		}
	}
	t.Logf("record 0 ustar header, %d single-bit flips: %d damage, %d not a CBFS archive, %d version, %d other",
		BlockSize*8, damage, notCBFS, version, other)
	if damage != BlockSize*8 {
		t.Errorf("%d of %d flips reported as damage", damage, BlockSize*8)
	}
}

// TestRecordZeroMajorFlip: a bit flip in the header's major version byte
// breaks the v1 frame's CRC, so it is damage, not a newer version; a
// major of 2 with a correct CRC is a version error.
func TestRecordZeroMajorFlip(t *testing.T) {
	key := testutil.Key(t, 3)
	arc, _ := writeArchive(t, key, sampleMembers()[:1], WriterOptions{RecordSize: MinRecordSize, ChunkSize: MinChunkSize})
	const major = BlockSize + FrameHeaderSize + 8
	for bit := 0; bit < 8; bit++ {
		b := bytes.Clone(arc)
		b[major] ^= 1 << bit
		_, err := NewReader(bytes.NewReader(b), key, ReaderOptions{Workers: 1})
		var fe *Error
		if !errors.As(err, &fe) || fe.Class != ClassHeader {
			t.Errorf("major byte bit %d flipped: %v, want header damage", bit, err)
		}
	}
	b := bytes.Clone(arc)
	b[major] = 2
	body := b[BlockSize : BlockSize+FrameHeaderSize+HeaderSize]
	crc := frame.CRC(body, body[FrameHeaderSize:])
	body[8], body[9], body[10], body[11] = byte(crc), byte(crc>>8), byte(crc>>16), byte(crc>>24)
	_, err := NewReader(bytes.NewReader(b), key, ReaderOptions{Workers: 1})
	var ve *VersionError
	if !errors.As(err, &ve) || ve.Major != 2 {
		t.Errorf("major 2 with a correct CRC: %v, want a version error", err)
	}
}

// TestFooterHeaderCopy: random access opens an archive from the footer's
// copy of the header alone, so damage to record 0 does not stop it; a
// copy that differs from record 0 (its MACs right) is accepted by random
// access and reported by a scan as one problem, the footer, the scan
// going on by the footer; a copy that fails its MAC is refused with the
// key.
func TestFooterHeaderCopy(t *testing.T) {
	key := testutil.Key(t, 3)
	arc, _ := writeArchive(t, key, sampleMembers()[:2], WriterOptions{RecordSize: MinRecordSize, ChunkSize: MinChunkSize})
	src := func(b []byte) Source { return NewSource(bytes.NewReader(b), int64(len(b))) }

	b := bytes.Clone(arc)
	b[BlockSize+FrameHeaderSize+36] ^= 1 // record 0's sequence number
	if _, err := OpenArchive(src(b), key); err != nil {
		t.Errorf("random access with record 0 damaged: %v", err)
	}

	// The footer body sits before the two end-of-archive blocks.
	body := len(arc) - 3*BlockSize
	copyAt := body + FrameHeaderSize + footerHeaderAt
	fixCRC := func(b []byte) {
		fr := b[body : body+FrameHeaderSize+FooterSize]
		binary.LittleEndian.PutUint32(fr[8:], frame.CRC(fr, fr[FrameHeaderSize:]))
	}
	a, err := OpenArchive(src(arc), key)
	if err != nil {
		t.Fatal(err)
	}
	ak := a.keys
	// Another sequence number in the copy, both MACs recomputed.
	b = bytes.Clone(arc)
	h := a.Header
	h2 := *h
	h2.Sequence++
	h2.MAC = ak.MAC(h2.encodeNoMAC())
	copy(b[copyAt:], h2.Encode())
	f2 := *a.Footer
	f2.Header = h2
	f2.MAC = ak.MAC(f2.encodeNoMAC())
	copy(b[body+FrameHeaderSize:], f2.Encode())
	fixCRC(b)
	if a2, err := OpenArchive(src(b), key); err != nil || a2.Header.Sequence != h.Sequence+1 {
		t.Errorf("random access with the copy differing from record 0: %v", err)
	}
	rep, err := ScanArchive(src(b), ScanOptions{Key: key, Content: true, Digest: true}, nil)
	if err != nil || len(rep.Problems) != 1 || rep.Problems[0].Class != ClassFooter || rep.Footer == nil {
		t.Errorf("scan of a copy differing from record 0: %v, %+v", err, rep.Problems)
	}
	// The copy's MAC wrong, the footer's recomputed over it.
	b = bytes.Clone(arc)
	h2.MAC = h.MAC
	f2.Header = h2
	f2.MAC = ak.MAC(f2.encodeNoMAC())
	copy(b[body+FrameHeaderSize:], f2.Encode())
	fixCRC(b)
	var fe *Error
	if _, err := OpenArchive(src(b), key); !errors.As(err, &fe) || fe.Class != ClassFooter {
		t.Errorf("random access with the copy's MAC wrong: %v, want footer damage", err)
	}
	if _, err := OpenArchive(src(b)); err != nil {
		t.Errorf("keyless random access cannot tell: %v", err)
	}

	scan := func(b []byte) (*ScanReport, int, error) {
		n := 0
		rep, err := ScanArchive(src(b), ScanOptions{Key: key, Content: true, Digest: true}, func(Entry) error { n++; return nil })
		return rep, n, err
	}
	hasClass := func(rep *ScanReport, c Class) bool {
		for _, p := range rep.Problems {
			if p.Class == c {
				return true
			}
		}
		return false
	}
	// Record 0's key check damaged (CRC not updated): damage, not a
	// wrong key; the scan goes by the footer's authenticated copy.
	b = bytes.Clone(arc)
	b[BlockSize+FrameHeaderSize+44] ^= 1
	if rep, n, err := scan(b); err != nil || n != 2 || !hasClass(rep, ClassHeader) || !rep.HeaderAuthenticated {
		t.Errorf("scan with record 0's key check damaged: %v, %d members, %+v", err, n, rep)
	}
	// Record 0's sequence changed, its CRC right, its MAC not: the
	// header is the copy, authenticated, with the sequence written.
	b = bytes.Clone(arc)
	b[BlockSize+FrameHeaderSize+36] ^= 1
	fr := b[BlockSize : BlockSize+FrameHeaderSize+HeaderSize]
	binary.LittleEndian.PutUint32(fr[8:], frame.CRC(fr, fr[FrameHeaderSize:]))
	if rep, n, err := scan(b); err != nil || n != 2 || !hasClass(rep, ClassHeader) || !rep.HeaderAuthenticated || rep.Header.Sequence != h.Sequence {
		t.Errorf("scan with record 0's MAC failing: %v, %d members, %+v", err, n, rep)
	}
	// Record 0 all zeros: not recognisable from its start, but the end
	// is a CBFS footer: damage, every member read.
	b = bytes.Clone(arc)
	clear(b[:2*BlockSize])
	if rep, n, err := scan(b); err != nil || n != 2 || !hasClass(rep, ClassHeader) {
		t.Errorf("scan with record 0 zeroed: %v, %d members, %+v", err, n, rep)
	}
	// The footer's digest damaged (CRC not updated): one problem, not a
	// second one about bytes after the summary.
	b = bytes.Clone(arc)
	b[body+FrameHeaderSize+70] ^= 1
	if rep, _, err := scan(b); err != nil || len(rep.Problems) != 1 || rep.Problems[0].Class != ClassFooter {
		t.Errorf("scan with the footer damaged: %v, %+v", err, rep.Problems)
	}

	// Record 0's fields destroyed (its magic kept, so it is recognised):
	// a scan takes them from the footer's copy and reads every member.
	b = bytes.Clone(arc)
	clear(b[BlockSize+FrameHeaderSize+8 : BlockSize+FrameHeaderSize+HeaderSize])
	n := 0
	rep, err = ScanArchive(src(b), ScanOptions{Key: key, Content: true, Digest: true}, func(Entry) error { n++; return nil })
	if err != nil || n != 2 || len(rep.Problems) == 0 {
		t.Errorf("scan with record 0's fields destroyed: %v, %d members, problems %+v", err, n, rep.Problems)
	}
}

// TestEndDamageOffset: a byte changed in the end-of-archive zero blocks is
// reported at its own offset, not at the end of the file.
func TestEndDamageOffset(t *testing.T) {
	key := testutil.Key(t, 3)
	arc, _ := writeArchive(t, key, sampleMembers()[:2], WriterOptions{RecordSize: MinRecordSize, ChunkSize: MinChunkSize})
	for _, at := range []int{len(arc) - 2*BlockSize, len(arc) - BlockSize - 7, len(arc) - 1} {
		b := bytes.Clone(arc)
		b[at] = 'x'
		_, err := OpenArchive(NewSource(bytes.NewReader(b), int64(len(b))), key)
		var fe *Error
		if !errors.As(err, &fe) || fe.Class != ClassTar || fe.Offset != int64(at) {
			t.Errorf("byte %d of %d changed: %v, want class tar at offset %d", at, len(b), err, at)
		}
	}
}
