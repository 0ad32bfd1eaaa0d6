package format

import (
	"bytes"
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
