package format

import (
	"encoding/binary"
	"hash/crc32"
)

// Format version written by this code. Readers accept any minor version of
// Major and reject other majors with a VersionError.
const (
	Major uint8 = 1
	Minor uint8 = 0
)

// Frame kinds (spec "Frames").
const (
	KindHeader  = 'H'
	KindMeta    = 'm'
	KindContent = 'c'
	KindSummary = 's'
	KindFooter  = 'F'
)

// Frame flags.
const (
	FlagLZ4    = 1 << 0 // sealed plaintext is an LZ4 block
	FlagFinal  = 1 << 1 // last frame of its stream
	flagsKnown = FlagLZ4 | FlagFinal
)

// FrameHeaderSize is the size of the cleartext frame header:
// kind u8, flags u8, reserved u16 (zero), length u32le, crc32c u32le.
const FrameHeaderSize = 12

// Caps on input-controlled lengths. A reader rejects anything larger
// before allocating for it.
const (
	MinChunkSize     = 4 << 10
	MaxChunkSize     = 4 << 20
	DefaultChunkSize = 64 << 10

	MinRecordSize     = 64 << 10
	MaxRecordSize     = 64 << 20
	DefaultRecordSize = 1 << 20

	// MaxMetaSize caps a metadata record (its TLV bytes, before padding).
	MaxMetaSize = 8 << 20
	// MetaPad is the padding granularity of metadata records.
	MetaPad = 1024
	// MaxMembers caps the member count: member numbers are 32-bit in nonces.
	MaxMembers = 1<<32 - 1
	// MaxChunks caps the number of frames in one stream: 48-bit in nonces.
	MaxChunks = 1 << 48
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameHeader is a decoded frame header.
type frameHeader struct {
	Kind  byte
	Flags byte
	Len   uint32
	CRC   uint32
}

func (h frameHeader) final() bool { return h.Flags&FlagFinal != 0 }
func (h frameHeader) lz4() bool   { return h.Flags&FlagLZ4 != 0 }

// put writes the first 8 bytes (the AEAD associated data) of the header.
func (h frameHeader) putAD(b []byte) {
	b[0] = h.Kind
	b[1] = h.Flags
	b[2], b[3] = 0, 0
	binary.LittleEndian.PutUint32(b[4:8], h.Len)
}

// frameCRC is CRC-32C over the first 8 header bytes and the payload.
func frameCRC(ad, payload []byte) uint32 {
	c := crc32.Update(0, castagnoli, ad[:8])
	return crc32.Update(c, castagnoli, payload)
}

// appendFrame appends a complete frame (header and payload) to dst.
func appendFrame(dst []byte, kind, flags byte, payload []byte) []byte {
	var hb [FrameHeaderSize]byte
	h := frameHeader{Kind: kind, Flags: flags, Len: uint32(len(payload))}
	h.putAD(hb[:])
	binary.LittleEndian.PutUint32(hb[8:12], frameCRC(hb[:], payload))
	dst = append(dst, hb[:]...)
	return append(dst, payload...)
}

func parseFrameHeader(b []byte) (frameHeader, string) {
	h := frameHeader{Kind: b[0], Flags: b[1], Len: binary.LittleEndian.Uint32(b[4:8]), CRC: binary.LittleEndian.Uint32(b[8:12])}
	switch h.Kind {
	case KindHeader, KindMeta, KindContent, KindSummary, KindFooter:
	default:
		return h, "unknown frame kind"
	}
	if b[2] != 0 || b[3] != 0 {
		return h, "reserved frame header bytes are not zero"
	}
	if h.Flags&^flagsKnown != 0 {
		return h, "unknown frame flags"
	}
	return h, ""
}
