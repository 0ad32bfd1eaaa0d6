package format

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/cbfs/cbfs/crypt"
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

	// MaxMetaSize caps a metadata record (its TLV bytes, before padding):
	// an imported entry's header bytes (MaxTarHeaderLen) with its paths,
	// names and xattrs.
	MaxMetaSize = 72 << 20
	// MetaPad is the padding granularity of metadata records.
	MetaPad = 1024
	// MaxMembers caps the member count: member numbers are 32-bit in nonces.
	MaxMembers = 1<<32 - 1
	// MaxChunks caps the number of frames in one stream: 48-bit in nonces.
	MaxChunks = 1 << 48
	// MaxSummarySize caps a summary's plaintext, which a reader holds in
	// memory: 1 GiB is some ten million members.
	MaxSummarySize = 1 << 30
	// MaxRecords caps the records of an archive: record numbers are ten
	// decimal digits in the outer names.
	MaxRecords = 10_000_000_000
	// MaxTrailingZeros caps the zero bytes after the footer record: the
	// two end blocks and a tar's re-padding to its record size.
	MaxTrailingZeros = 8 << 20
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

// summaryFrameLen is the payload length of every summary frame: a summary
// chunk is padded to the chunk size after compression, so that the
// summary's size says nothing about path lengths finer than a chunk.
func summaryFrameLen(cs int64) int64 { return cs + 4 + crypt.TagSize }

// metaFrameMax is the largest payload of a metadata frame.
const metaFrameMax = 8 + MaxMetaSize + MetaPad + crypt.TagSize

// checkFrameLen applies the length rules of each frame kind, all of which
// a reader can check without the key. It returns what is wrong, or "".
func checkFrameLen(fh frameHeader, cs int64) string {
	n := int64(fh.Len)
	switch fh.Kind {
	case KindMeta:
		if n < MetaPad+crypt.TagSize || (n-crypt.TagSize)%MetaPad != 0 || n > metaFrameMax {
			return fmt.Sprintf("metadata frame length %d is not 16 plus a multiple of %d up to the cap", n, MetaPad)
		}
		if !fh.final() {
			return "metadata frame without the final flag"
		}
	case KindContent:
		switch {
		case fh.lz4() && (n <= crypt.TagSize || n >= cs+crypt.TagSize):
			return fmt.Sprintf("compressed content frame length %d out of range", n)
		case !fh.lz4() && !fh.final() && n != cs+crypt.TagSize:
			return fmt.Sprintf("content frame length %d; a stored frame that is not the last holds exactly %d", n, cs+crypt.TagSize)
		case !fh.lz4() && (n < crypt.TagSize || n > cs+crypt.TagSize):
			return fmt.Sprintf("content frame length %d out of range", n)
		}
	case KindSummary:
		if n != summaryFrameLen(cs) {
			return fmt.Sprintf("summary frame length %d, want %d", n, summaryFrameLen(cs))
		}
	default:
		return fmt.Sprintf("%q frame inside the frame stream", fh.Kind)
	}
	return ""
}

// padSummary frames a summary chunk's stored bytes: u32le length, the
// bytes, zeros up to cs+4.
func padSummary(stored []byte, cs int) []byte {
	out := make([]byte, cs+4)
	binary.LittleEndian.PutUint32(out, uint32(len(stored)))
	copy(out[4:], stored)
	return out
}

// openChunk authenticates a content or summary frame and returns its
// chunk of plaintext, decompressed into dbuf (at least cs bytes) when it
// was compressed. It returns what is wrong, or "".
func openChunk(keys *crypt.ArchiveKeys, fh frameHeader, ad, payload []byte, stream uint32, index uint64, cs int, dbuf []byte) ([]byte, string) {
	plain, err := keys.Open(payload[:0], crypt.Nonce(fh.Kind, fh.final(), stream, index), payload, ad[:8])
	if err != nil {
		return nil, "failed authentication"
	}
	if fh.Kind == KindSummary {
		n := binary.LittleEndian.Uint32(plain)
		if uint64(n) > uint64(cs) || !allZero(plain[4+n:]) {
			return nil, "bad summary chunk padding"
		}
		plain = plain[4 : 4+n]
	}
	if fh.lz4() {
		n, err := lz4Decode(plain, dbuf[:cs])
		if err == errLZ4End {
			return nil, "bad LZ4 block: " + err.Error()
		}
		if err != nil || n <= len(plain) {
			return nil, "bad LZ4 block"
		}
		plain = dbuf[:n]
	}
	if !fh.final() && len(plain) != cs {
		return nil, fmt.Sprintf("holds %d bytes; every frame but the last holds %d", len(plain), cs)
	}
	if fh.final() && len(plain) == 0 && index != 0 {
		return nil, "empty final frame after others"
	}
	return plain, ""
}
