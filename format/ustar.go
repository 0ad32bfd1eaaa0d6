package format

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cbfs/cbfs/crypt"
)

// BlockSize is the tar block size.
const BlockSize = 512

// Block is a typed view of one 512-byte tar header block. The offsets are
// those of POSIX ustar; the old GNU fields that reuse the prefix area are
// named where a reader needs them.
type Block [BlockSize]byte

func (b *Block) Name() []byte     { return cstr(b[0:100]) }
func (b *Block) Mode() []byte     { return b[100:108] }
func (b *Block) UID() []byte      { return b[108:116] }
func (b *Block) GID() []byte      { return b[116:124] }
func (b *Block) Size() []byte     { return b[124:136] }
func (b *Block) MTime() []byte    { return b[136:148] }
func (b *Block) Chksum() []byte   { return b[148:156] }
func (b *Block) Typeflag() byte   { return b[156] }
func (b *Block) Linkname() []byte { return cstr(b[157:257]) }
func (b *Block) Magic() []byte    { return b[257:263] }
func (b *Block) Version() []byte  { return b[263:265] }
func (b *Block) Uname() []byte    { return cstr(b[265:297]) }
func (b *Block) Gname() []byte    { return cstr(b[297:329]) }
func (b *Block) DevMajor() []byte { return b[329:337] }
func (b *Block) DevMinor() []byte { return b[337:345] }
func (b *Block) Prefix() []byte   { return cstr(b[345:500]) }

// GNU-only fields (magic "ustar  \x00").
func (b *Block) GNUATime() []byte      { return b[345:357] }
func (b *Block) GNUCTime() []byte      { return b[357:369] }
func (b *Block) GNUIsExtended() bool   { return b[482] != 0 }
func (b *Block) GNURealSize() []byte   { return b[483:495] }
func (b *Block) IsGNU() bool           { return bytes.Equal(b[257:265], []byte("ustar  \x00")) }
func (b *Block) IsUSTAR() bool         { return bytes.Equal(b[257:263], []byte("ustar\x00")) }
func (b *Block) IsZero() bool          { return b.isZero() }
func (b *Block) isZero() bool          { return *b == Block{} }
func (b *Block) IsStar() bool          { return b.IsUSTAR() && bytes.Equal(b[508:512], []byte("tar\x00")) }
func (b *Block) StarPrefix() []byte    { return cstr(b[345:476]) }
func (b *Block) SetChecksum()          { copy(b[148:156], fmt.Sprintf("%06o\x00 ", b.checksum())) }
func (b *Block) checksum() (sum int64) { return checksums(b)[0] }

// checksums returns the unsigned and signed sums with the checksum field
// taken as eight spaces; historic tars wrote either.
func checksums(b *Block) [2]int64 {
	var u, s int64
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		u += int64(c)
		s += int64(int8(c))
	}
	return [2]int64{u, s}
}

// ErrChecksum is a header block whose checksum does not match.
var ErrChecksum = errors.New("header checksum mismatch")

// VerifyChecksum checks the header checksum the way tar readers do: the
// field is octal, and either the unsigned or the signed sum may match.
func (b *Block) VerifyChecksum() error {
	v, err := ParseNumeric(b.Chksum())
	if err != nil {
		return ErrChecksum
	}
	sums := checksums(b)
	if v != sums[0] && v != sums[1] {
		return ErrChecksum
	}
	return nil
}

func cstr(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

// ErrNumeric is a numeric header field that is neither octal nor base-256.
var ErrNumeric = errors.New("invalid numeric field")

// ParseNumeric parses a tar numeric field: octal digits surrounded by
// spaces and NULs, or GNU base-256 (first byte 0x80 positive, 0xff
// negative) when it fits in an int64.
func ParseNumeric(b []byte) (int64, error) {
	if len(b) > 0 && b[0]&0x80 != 0 {
		// Base-256, two's complement, big-endian; the first byte's top bit
		// is the marker, its next bit the sign.
		inv := byte(0)
		if b[0]&0x40 != 0 {
			inv = 0xff
		}
		var x uint64
		for i, c := range b {
			c ^= inv
			if i == 0 {
				c &= 0x7f
			}
			if x>>56 != 0 {
				return 0, ErrNumeric // overflow
			}
			x = x<<8 | uint64(c)
		}
		if x>>63 != 0 {
			return 0, ErrNumeric
		}
		if inv == 0xff {
			return ^int64(x), nil
		}
		return int64(x), nil
	}
	// Octal: leading spaces, digits, then spaces or NULs.
	b = bytes.Trim(b, " \x00")
	if len(b) == 0 {
		return 0, nil
	}
	v, err := strconv.ParseUint(string(b), 8, 63)
	if err != nil {
		return 0, ErrNumeric
	}
	return int64(v), nil
}

// Outer header constants of format v1 (spec "Outer tar").
const (
	outerMode  = "0000600\x00"
	outerZero8 = "0000000\x00"
	// OuterMTime is the fixed modification time of every outer header:
	// 2016-08-18, the date CBFS archive encryption was first discussed. A
	// fixed time leaks nothing and keeps tar from warning about it.
	OuterMTime = 1471478400
	// MaxRecordBody is the largest body a ustar size field can state.
	MaxRecordBody = 1<<33 - 1
)

// RecordName is the outer member name of record n of an archive.
func RecordName(id [crypt.IDSize]byte, n uint64) string {
	return fmt.Sprintf("cbfs-%x/%010d", id[:], n)
}

// parseRecordName reads the archive id and record number from a record
// name (spec 4.3): cbfs-, 32 lowercase hex digits, a slash, 10 decimal
// digits. The rest of the header is checked by parseOuterHeader.
func parseRecordName(name string) (id [crypt.IDSize]byte, n uint64, ok bool) {
	const hexEnd = len("cbfs-") + 2*crypt.IDSize
	if len(name) != hexEnd+11 || !strings.HasPrefix(name, "cbfs-") || name[hexEnd] != '/' {
		return id, 0, false
	}
	for _, c := range []byte(name[5:hexEnd]) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return id, 0, false
		}
	}
	for _, c := range []byte(name[hexEnd+1:]) {
		if c < '0' || c > '9' {
			return id, 0, false
		}
	}
	hex.Decode(id[:], []byte(name[5:hexEnd]))
	n, err := strconv.ParseUint(name[hexEnd+1:], 10, 64)
	return id, n, err == nil
}

// outerHeader builds the canonical ustar header of a record.
func outerHeader(id [crypt.IDSize]byte, n uint64, size int64) *Block {
	var b Block
	copy(b[0:100], RecordName(id, n))
	copy(b[100:108], outerMode)
	copy(b[108:116], outerZero8)
	copy(b[116:124], outerZero8)
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], fmt.Sprintf("%011o\x00", OuterMTime))
	b[156] = '0'
	copy(b[257:263], "ustar\x00")
	copy(b[263:265], "00")
	copy(b[329:337], outerZero8)
	copy(b[337:345], outerZero8)
	b.SetChecksum()
	return &b
}

// parseOuterHeader checks that b is the canonical header of record n of
// archive id and returns its body size. The check is byte-for-byte
// against the header a writer makes, so that any change to a header is
// found without the key.
func parseOuterHeader(b *Block, id [crypt.IDSize]byte, n uint64) (int64, error) {
	if err := b.VerifyChecksum(); err != nil {
		return 0, err
	}
	size, err := ParseNumeric(b.Size())
	if err != nil || size < 0 || size > MaxRecordBody {
		return 0, fmt.Errorf("bad size field")
	}
	want := outerHeader(id, n, size)
	if *want != *b {
		if !bytes.Equal(b.Name(), []byte(RecordName(id, n))) {
			return 0, fmt.Errorf("record name %q, want %q", b.Name(), RecordName(id, n))
		}
		return 0, fmt.Errorf("header of record %d is not canonical", n)
	}
	return size, nil
}

// PadLen is the zero padding that follows n bytes of a tar member's
// data, to a whole block.
func PadLen(n int64) int64 { return (BlockSize - n%BlockSize) % BlockSize }
