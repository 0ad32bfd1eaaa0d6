// Package frame is the frame grammar that CBFS archives and master indexes
// share (archive spec section 5, index spec section 4.2): the 12-byte
// frame header, its CRC-32C, the associated data a seal covers, the length
// rules of a frame that carries one chunk of a stream, sealing and opening
// such a frame, and LZ4 compress-or-store with bounded decompression.
//
// Each decoder above it words the problems it reports in its own terms
// (a member, a summary, an index frame), so the checks here return typed
// errors rather than messages.
package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strconv"

	"github.com/cbfs/cbfs/crypt"
)

// HeaderSize is the size of the cleartext frame header:
// kind u8, flags u8, reserved u16 (zero), length u32le, crc32c u32le.
const HeaderSize = 12

// ADSize is how much of the header the seal authenticates: all of it but
// the CRC, which is computed over the sealed payload.
const ADSize = 8

// Flags.
const (
	FlagLZ4    = 1 << 0 // sealed plaintext is an LZ4 block
	FlagFinal  = 1 << 1 // last frame of its stream
	FlagsKnown = FlagLZ4 | FlagFinal
)

// Caps shared by every chunked stream.
const (
	MinChunkSize = 4 << 10
	MaxChunkSize = 4 << 20
	// MaxChunks caps the number of frames in one stream: 48-bit in nonces.
	MaxChunks = 1 << 48
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header is a decoded frame header.
type Header struct {
	Kind  byte
	Flags byte
	Len   uint32
	CRC   uint32
}

func (h Header) Final() bool { return h.Flags&FlagFinal != 0 }
func (h Header) LZ4() bool   { return h.Flags&FlagLZ4 != 0 }

// PutAD writes the first ADSize bytes of the header into b.
func (h Header) PutAD(b []byte) {
	b[0] = h.Kind
	b[1] = h.Flags
	b[2], b[3] = 0, 0
	binary.LittleEndian.PutUint32(b[4:8], h.Len)
}

// Problems with a frame header that ParseHeader finds.
var (
	ErrReserved = errors.New("reserved frame header bytes are not zero")
	ErrFlags    = errors.New("unknown frame flags")
)

// ParseHeader decodes the first HeaderSize bytes of b and checks what
// every frame shares: the reserved bytes and the flags. Which kinds are
// allowed is the caller's grammar; it checks the kind first.
func ParseHeader(b []byte) (Header, error) {
	h := Header{Kind: b[0], Flags: b[1], Len: binary.LittleEndian.Uint32(b[4:8]), CRC: binary.LittleEndian.Uint32(b[8:12])}
	if b[2] != 0 || b[3] != 0 {
		return h, ErrReserved
	}
	if h.Flags&^FlagsKnown != 0 {
		return h, ErrFlags
	}
	return h, nil
}

// CRC is CRC-32C over the first ADSize header bytes and the payload.
func CRC(hdr, payload []byte) uint32 {
	c := crc32.Update(0, castagnoli, hdr[:ADSize])
	return crc32.Update(c, castagnoli, payload)
}

// Append appends a complete frame with a clear payload (an archive's
// header and footer) to dst.
func Append(dst []byte, kind, flags byte, payload []byte) []byte {
	var hb [HeaderSize]byte
	h := Header{Kind: kind, Flags: flags, Len: uint32(len(payload))}
	h.PutAD(hb[:])
	binary.LittleEndian.PutUint32(hb[8:12], CRC(hb[:], payload))
	dst = append(dst, hb[:]...)
	return append(dst, payload...)
}

// Sealer and Opener are the archive's or the index's AEAD keys.
type Sealer interface {
	Seal(dst []byte, nonce [crypt.NonceSize]byte, plaintext, ad []byte) []byte
}

type Opener interface {
	Open(dst []byte, nonce [crypt.NonceSize]byte, ciphertext, ad []byte) ([]byte, error)
}

// Seal appends a sealed frame holding plain to dst: the header (its
// associated data) first, then the payload, then the CRC over both. The
// nonce binds the frame to its kind, finality, stream and position.
func Seal(dst []byte, s Sealer, kind, flags byte, stream uint32, index uint64, plain []byte) []byte {
	start := len(dst)
	h := Header{Kind: kind, Flags: flags, Len: uint32(len(plain) + crypt.TagSize)}
	dst = append(dst, make([]byte, HeaderSize)...)
	hb := dst[start : start+HeaderSize]
	h.PutAD(hb)
	// The associated data is the header in dst, which sealing (after it)
	// leaves as it is: plain may be where the payload goes, dst[start+12:].
	dst = s.Seal(dst, crypt.Nonce(kind, h.Final(), stream, index), plain, hb[:ADSize])
	hb = dst[start : start+HeaderSize]
	binary.LittleEndian.PutUint32(hb[8:12], CRC(hb, dst[start+HeaderSize:]))
	return dst
}

// ErrAuth is a frame whose seal does not open.
var ErrAuth = errors.New("failed authentication")

// Open authenticates a frame's payload in place and returns its plaintext.
func Open(o Opener, h Header, ad, payload []byte, stream uint32, index uint64) ([]byte, error) {
	plain, err := o.Open(payload[:0], crypt.Nonce(h.Kind, h.Final(), stream, index), payload, ad[:ADSize])
	if err != nil {
		return nil, ErrAuth
	}
	return plain, nil
}

// Length problems of a chunk frame (CheckChunkLen).
var (
	ErrLZ4Len    = errors.New("compressed frame length out of range")
	ErrStoredLen = errors.New("a stored frame that is not the last is not exactly a chunk")
	ErrLen       = errors.New("frame length out of range")
)

// CheckChunkLen applies the payload length rules of a frame carrying one
// chunk of a stream cut into cs-byte chunks (archive spec 5.2, content
// frames; index spec 4.2): compressed, it is shorter than a stored whole
// chunk and holds more than the tag; stored, it is at most a whole chunk,
// and exactly one unless it is the last.
func CheckChunkLen(h Header, cs int64) error {
	n := int64(h.Len)
	switch {
	case n < crypt.TagSize || n > cs+crypt.TagSize:
		return ErrLen
	case h.LZ4() && (n == crypt.TagSize || n == cs+crypt.TagSize):
		return ErrLZ4Len
	case !h.LZ4() && !h.Final() && n != cs+crypt.TagSize:
		return ErrStoredLen
	}
	return nil
}

// ChunkSizeError is a chunk of the wrong plaintext size: every chunk but
// the last holds exactly the chunk size; the last is empty only when it
// is the only one.
type ChunkSizeError struct {
	Len, CS    int
	EmptyFinal bool
}

func (e *ChunkSizeError) Error() string {
	if e.EmptyFinal {
		return "empty final frame after others"
	}
	return "holds " + strconv.Itoa(e.Len) + " bytes; every frame but the last holds " + strconv.Itoa(e.CS)
}

// ErrPadding is a padded chunk whose length prefix or padding is wrong.
var ErrPadding = errors.New("bad chunk padding")

// Pad frames a chunk's stored bytes to a fixed size: u32le length, the
// bytes, zeros up to cs+4. A summary is padded so that its size says
// nothing about path lengths finer than a chunk.
func Pad(stored []byte, cs int) []byte {
	out := make([]byte, cs+4)
	binary.LittleEndian.PutUint32(out, uint32(len(stored)))
	copy(out[4:], stored)
	return out
}

// PaddedLen is the payload length of every frame of a padded stream.
func PaddedLen(cs int64) int64 { return cs + 4 + crypt.TagSize }

// OpenChunk authenticates a frame carrying chunk index of stream and
// returns its plaintext: unpadded when padded, decompressed into dbuf (at
// least cs bytes) when it was compressed, and checked for its size.
func OpenChunk(o Opener, h Header, ad, payload []byte, stream uint32, index uint64, cs int, padded bool, dbuf []byte) ([]byte, error) {
	plain, err := Open(o, h, ad, payload, stream, index)
	if err != nil {
		return nil, err
	}
	if padded {
		n := binary.LittleEndian.Uint32(plain)
		if uint64(n) > uint64(cs) || !AllZero(plain[4+n:]) {
			return nil, ErrPadding
		}
		plain = plain[4 : 4+n]
	}
	if h.LZ4() {
		n, err := Decompress(plain, dbuf[:cs])
		if err != nil {
			return nil, err
		}
		plain = dbuf[:n]
	}
	if !h.Final() && len(plain) != cs {
		return nil, &ChunkSizeError{Len: len(plain), CS: cs}
	}
	if h.Final() && len(plain) == 0 && index != 0 {
		return nil, &ChunkSizeError{CS: cs, EmptyFinal: true}
	}
	return plain, nil
}

// zeros is what AllZero compares against, a page at a time (bytes.Equal
// is vectorised; a byte loop is several times slower).
var zeros [4096]byte

// AllZero reports whether b holds only zero bytes.
func AllZero(b []byte) bool {
	for len(b) > len(zeros) {
		if !bytes.Equal(b[:len(zeros)], zeros[:]) {
			return false
		}
		b = b[len(zeros):]
	}
	return bytes.Equal(b, zeros[:len(b)])
}
