package format

import (
	"fmt"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/internal/frame"
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
	FlagLZ4   = frame.FlagLZ4   // sealed plaintext is an LZ4 block
	FlagFinal = frame.FlagFinal // last frame of its stream
)

// FrameHeaderSize is the size of the cleartext frame header:
// kind u8, flags u8, reserved u16 (zero), length u32le, crc32c u32le.
const FrameHeaderSize = frame.HeaderSize

// Caps on input-controlled lengths. A reader rejects anything larger
// before allocating for it.
const (
	MinChunkSize     = frame.MinChunkSize
	MaxChunkSize     = frame.MaxChunkSize
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
	MaxChunks = frame.MaxChunks
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

// parseFrameHeader decodes a frame header of the archive's frame stream:
// a kind of the archive, then what every frame shares.
func parseFrameHeader(b []byte) (frame.Header, string) {
	h, err := frame.ParseHeader(b)
	switch h.Kind {
	case KindHeader, KindMeta, KindContent, KindSummary, KindFooter:
	default:
		return h, "unknown frame kind"
	}
	if err != nil {
		return h, err.Error()
	}
	return h, ""
}

// summaryFrameLen is the payload length of every summary frame: a summary
// chunk is padded to the chunk size after compression, so that the
// summary's size says nothing about path lengths finer than a chunk.
func summaryFrameLen(cs int64) int64 { return frame.PaddedLen(cs) }

// metaFrameMax is the largest payload of a metadata frame.
const metaFrameMax = 8 + MaxMetaSize + MetaPad + crypt.TagSize

// checkFrameLen applies the length rules of each frame kind, all of which
// a reader can check without the key. It returns what is wrong, or "".
func checkFrameLen(fh frame.Header, cs int64) string {
	n := int64(fh.Len)
	switch fh.Kind {
	case KindMeta:
		if n < MetaPad+crypt.TagSize || (n-crypt.TagSize)%MetaPad != 0 || n > metaFrameMax {
			return fmt.Sprintf("metadata frame length %d is not 16 plus a multiple of %d up to the cap", n, MetaPad)
		}
		if !fh.Final() {
			return "metadata frame without the final flag"
		}
	case KindContent:
		switch err := frame.CheckChunkLen(fh, cs); {
		case err == nil:
		case fh.LZ4():
			return fmt.Sprintf("compressed content frame length %d out of range", n)
		case !fh.Final():
			return fmt.Sprintf("content frame length %d; a stored frame that is not the last holds exactly %d", n, cs+crypt.TagSize)
		default:
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

// openChunk authenticates a content or summary frame and returns its
// chunk of plaintext, decompressed into dbuf (at least cs bytes) when it
// was compressed. It returns what is wrong, or "".
func openChunk(keys *crypt.ArchiveKeys, fh frame.Header, ad, payload []byte, stream uint32, index uint64, cs int, dbuf []byte) ([]byte, string) {
	plain, err := frame.OpenChunk(keys, fh, ad, payload, stream, index, cs, fh.Kind == KindSummary, dbuf)
	switch {
	case err == nil:
		return plain, ""
	case err == frame.ErrPadding:
		return nil, "bad summary chunk padding"
	}
	return nil, err.Error()
}
