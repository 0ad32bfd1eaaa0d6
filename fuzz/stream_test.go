package fuzz

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/internal/lz4enc"
	"github.com/pierrec/lz4/v4"
)

// The archive readers check a CRC, an AEAD tag and a MAC before they look
// at what a frame says, so byte mutations of a sealed archive (what
// FuzzArchiveReader does) rarely get past those checks. FuzzFrameStream
// goes further: the fuzz input is a program of frames, and a small
// independent writer below (written from the spec, not from
// format.Writer) seals each one with the right key, checksums and places
// it, so that the readers' grammar, size, LZ4, metadata, summary and
// footer checks all face authenticated hostile input.

var streamID = [crypt.IDSize]byte{0xcb, 0xf5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ustarRecordHeader is the canonical outer header of record n (spec "Outer
// tar"): every field fixed but the name and the size.
func ustarRecordHeader(id [crypt.IDSize]byte, n uint64, size int) []byte {
	b := make([]byte, format.BlockSize)
	copy(b[0:], fmt.Sprintf("cbfs-%x/%010d", id[:], n))
	copy(b[100:], "0000600\x00")
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", size))
	copy(b[136:], fmt.Sprintf("%011o\x00", format.OuterMTime))
	b[156] = '0'
	copy(b[257:], "ustar\x0000")
	copy(b[329:], "0000000\x00")
	copy(b[337:], "0000000\x00")
	copy(b[148:], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// mkFrame builds a frame: header (kind, flags, reserved, length, CRC-32C)
// and payload.
func mkFrame(kind, flags byte, payload []byte) []byte {
	h := make([]byte, format.FrameHeaderSize, format.FrameHeaderSize+len(payload))
	h[0], h[1] = kind, flags
	binary.LittleEndian.PutUint32(h[4:], uint32(len(payload)))
	c := crc32.Update(0, castagnoli, h[:8])
	binary.LittleEndian.PutUint32(h[8:], crc32.Update(c, castagnoli, payload))
	return append(h, payload...)
}

// sealed seals plain as a frame of kind and flags at (stream, index).
func sealed(ak *crypt.ArchiveKeys, kind, flags byte, stream uint32, index uint64, plain []byte) []byte {
	var ad [8]byte
	ad[0], ad[1] = kind, flags
	binary.LittleEndian.PutUint32(ad[4:], uint32(len(plain)+crypt.TagSize))
	payload := ak.Seal(nil, crypt.Nonce(kind, flags&format.FlagFinal != 0, stream, index), plain, ad[:])
	return mkFrame(kind, flags, payload)
}

// padRecord wraps a metadata record's stored bytes: stored length, raw
// length, the bytes, zeros to a multiple of MetaPad.
func padRecord(stored []byte, raw int) []byte {
	n := (8 + len(stored) + format.MetaPad - 1) / format.MetaPad * format.MetaPad
	out := make([]byte, n)
	binary.LittleEndian.PutUint32(out, uint32(len(stored)))
	binary.LittleEndian.PutUint32(out[4:], uint32(raw))
	copy(out[8:], stored)
	return out
}

// padChunk wraps a summary chunk's stored bytes: their u32le length, the
// bytes, zeros to cs+4 bytes in all.
func padChunk(stored []byte, cs int) []byte {
	out := make([]byte, max(cs+4, 4+len(stored)))
	binary.LittleEndian.PutUint32(out, uint32(len(stored)))
	copy(out[4:], stored)
	return out
}

// lz4Block compresses p as format's writers do (lz4enc up to 64 KiB,
// pierrec/lz4 above), so that what is sealed here can be compared with
// their bytes; false if the block would not be shorter.
func lz4Block(p []byte) ([]byte, bool) {
	out := make([]byte, lz4.CompressBlockBound(len(p)))
	var n int
	if len(p) <= lz4enc.MaxInput {
		var c lz4enc.Compressor
		n = c.Compress(out, p)
	} else {
		var err error
		if n, err = lz4.CompressBlock(p, out, nil); err != nil {
			n = 0
		}
	}
	if n == 0 || n >= len(p) {
		return nil, false
	}
	return out[:n], true
}

// streamGen assembles an archive from a frame program.
type streamGen struct {
	ak       *crypt.ArchiveKeys
	cs       int
	logical  []byte
	digestIn []byte // the frames' part of the digest input
	// The member and index a correct writer would be at, for the nonces.
	member           uint32
	inMember         bool
	cindex, sindex   uint64
	entries          []format.Entry
	summaryOffset    int64
	footerTweak      [5]uint64
	extraZeros       int
	autoSummary, lzS bool
}

func (g *streamGen) emit(kind, flags byte, stream uint32, index uint64, plain []byte, tamper bool) {
	if tamper {
		index++
	}
	f := sealed(g.ak, kind, flags, stream, index, plain)
	g.logical = append(g.logical, f...)
	// The digest input (spec 6.2): each frame's header and tag.
	g.digestIn = append(g.digestIn, f[:format.FrameHeaderSize]...)
	g.digestIn = append(g.digestIn, f[len(f)-crypt.TagSize:]...)
}

// plaintext reads a frame's plaintext from the program: a 16-bit length,
// then either that many bytes or, with the top bit set, a short pattern
// repeated to the length (how a program asks for a full chunk cheaply).
func plaintext(s *byteSource) []byte {
	n := s.u16()
	if n&0x8000 != 0 {
		return repeatTo(s.take(int(s.byte())), n&0x7fff)
	}
	return bytes.Clone(s.take(n))
}

// genArchive runs a frame program. Its first byte sets the chunk size, the
// summary (written by the generator from the members, or left to the
// program), its compression and extra end zeros; then each op byte is:
//
//	bits 0-2  kind: 0-1 'm', 2-4 'c', 5 's', 6 footer field tweak, 7 raw kind byte
//	bit 3     final flag
//	bits 4-5  0: stored, 1: LZ4 when it shrinks, 2: FlagLZ4 on the bytes as
//	          given, 3: an unknown flag bit
//	bit 6     wrong frame index in the nonce
//	bit 7     ('m', 's') the record or chunk bytes as given, without the
//	          lengths and padding around them
func genArchive(data []byte) []byte {
	s := &byteSource{data}
	opt := s.byte()
	g := &streamGen{ak: crypt.DeriveArchiveKeys(fuzzKey, streamID), cs: format.MinChunkSize << (opt & 1), summaryOffset: -1,
		autoSummary: opt&2 != 0, lzS: opt&4 != 0}
	switch (opt >> 3) & 3 {
	case 1:
		g.extraZeros = 10240
	case 2:
		g.extraZeros = 40 << 10 // past one 32 KiB tail read
	case 3:
		g.extraZeros = 511
	}
	var cur format.Entry
	for len(s.b) > 0 {
		op := s.byte()
		flags := byte(0)
		if op&8 != 0 {
			flags |= format.FlagFinal
		}
		lzMode := (op >> 4) & 3
		tamper := op&0x40 != 0
		compress := func(p []byte) []byte {
			switch lzMode {
			case 1:
				if c, ok := lz4Block(p); ok {
					flags |= format.FlagLZ4
					return c
				}
			case 2:
				flags |= format.FlagLZ4
			case 3:
				flags |= 4
			}
			return p
		}
		switch k := op & 7; {
		case k <= 1: // metadata
			rec := plaintext(s)
			if op&0x80 == 0 {
				raw := len(rec)
				rec = padRecord(compress(rec), raw)
			} else {
				rec = compress(rec)
			}
			if !g.inMember {
				cur = format.Entry{Number: g.member, Offset: int64(len(g.logical))}
				tlv := bytes.Clone(plaintextTLV(rec, flags))
				cur.Meta, _ = format.DecodeMeta(tlv)
				if cur.Meta == nil {
					cur.Meta = &format.Meta{Type: format.TypeRegular}
				}
			}
			g.emit(format.KindMeta, flags, g.member, 0, rec, tamper)
			g.inMember, g.cindex = true, 0
		case k <= 4: // content
			p := compress(plaintext(s))
			g.emit(format.KindContent, flags, g.member, g.cindex, p, tamper)
			g.cindex++
			if flags&format.FlagFinal != 0 && g.inMember {
				cur.Length = int64(len(g.logical)) - cur.Offset
				g.entries = append(g.entries, cur)
				g.member++
				g.inMember = false
			}
		case k == 5: // summary, by hand
			if g.summaryOffset < 0 {
				g.summaryOffset = int64(len(g.logical))
			}
			p := compress(plaintext(s))
			if op&0x80 == 0 {
				p = padChunk(p, g.cs)
			}
			g.emit(format.KindSummary, flags, 0, g.sindex, p, tamper)
			g.sindex++
		case k == 6:
			g.footerTweak[s.byte()%5] += uint64(s.byte()) | uint64(s.byte())<<8
		default: // a frame of any kind byte
			kind := s.byte()
			g.emit(kind, flags, g.member, 0, compress(plaintext(s)), tamper)
		}
	}
	if g.autoSummary {
		if g.summaryOffset < 0 {
			g.summaryOffset = int64(len(g.logical))
		}
		sum := format.EncodeSummary(g.entries)
		for i := uint64(0); ; i++ {
			n := min(g.cs, len(sum))
			flags := byte(0)
			if n == len(sum) {
				flags = format.FlagFinal
			}
			p := sum[:n]
			if c, ok := lz4Block(p); ok && g.lzS {
				p, flags = c, flags|format.FlagLZ4
			}
			g.emit(format.KindSummary, flags, 0, g.sindex+i, padChunk(p, g.cs), false)
			sum = sum[n:]
			if flags&format.FlagFinal != 0 {
				break
			}
		}
	}
	if g.summaryOffset < 0 {
		g.summaryOffset = int64(len(g.logical))
	}
	return g.assemble()
}

// plaintextTLV undoes padRecord and LZ4 the way a reader does, to learn
// the member's metadata for the generated summary; nil if it cannot.
func plaintextTLV(rec []byte, flags byte) []byte {
	if len(rec) < 8 {
		return nil
	}
	stored, raw := binary.LittleEndian.Uint32(rec), binary.LittleEndian.Uint32(rec[4:])
	if uint64(stored)+8 > uint64(len(rec)) || raw > format.MaxMetaSize {
		return nil
	}
	body := rec[8 : 8+stored]
	if flags&format.FlagLZ4 == 0 {
		return body
	}
	out := make([]byte, raw)
	n, err := lz4.UncompressBlock(body, out)
	if err != nil {
		return nil
	}
	return out[:n]
}

// assemble lays the logical stream out in records, after a header record,
// and adds the footer record and the end blocks.
func (g *streamGen) assemble() []byte {
	R := format.MinRecordSize
	h := format.Header{Major: format.Major, Minor: format.Minor, Suite: format.SuiteAES256GCM,
		ChunkSize: uint32(g.cs), RecordSize: uint32(R), ID: streamID, Check: g.ak.Check()}
	enc := h.Encode()
	h.MAC = g.ak.MAC(enc[:len(enc)-crypt.MACSize])
	var out []byte
	rec := uint64(0)
	put := func(body []byte) {
		out = append(out, ustarRecordHeader(streamID, rec, len(body))...)
		out = append(out, body...)
		out = append(out, make([]byte, (format.BlockSize-len(body)%format.BlockSize)%format.BlockSize)...)
		rec++
	}
	hf := mkFrame(format.KindHeader, format.FlagFinal, h.Encode())
	put(hf)
	for l := g.logical; len(l) > 0; {
		n := min(R, len(l))
		put(l[:n])
		l = l[n:]
	}
	f := format.Footer{Major: format.Major, Minor: format.Minor, ID: streamID,
		Members:       uint64(len(g.entries)) + g.footerTweak[0],
		SummaryOffset: uint64(g.summaryOffset) + g.footerTweak[1],
		SummaryLength: uint64(int64(len(g.logical))-g.summaryOffset) + g.footerTweak[2],
		StreamLength:  uint64(len(g.logical)) + g.footerTweak[3],
		FooterOffset:  uint64(len(out)) + g.footerTweak[4],
		Digest:        sha256.Sum256(append(hf, g.digestIn...)), Header: h}
	enc = f.Encode()
	f.MAC = g.ak.MAC(enc[:len(enc)-crypt.MACSize])
	put(mkFrame(format.KindFooter, format.FlagFinal, f.Encode()))
	return append(out, make([]byte, 2*format.BlockSize+g.extraZeros)...)
}

// programs are frame programs of valid archives: empty, one member of each
// shape, several members, compressed frames, a summary of several chunks.
func streamPrograms() [][]byte {
	meta := func(m format.Meta) []byte {
		tlv := m.Encode(nil)
		return append(binary.LittleEndian.AppendUint16(nil, uint16(len(tlv))), tlv...)
	}
	reg := meta(format.Meta{Type: format.TypeRegular, Path: []byte("f"), Size: 3})
	dir := meta(format.Meta{Type: format.TypeDir, Path: []byte("d"), Mode: 0o755})
	full := []byte{0x00, 0x90, 4, 'a', 'b', 'c', 'd'} // 0x9000: 4096 bytes of "abcd"
	empty := []byte{0, 0}
	three := []byte{3, 0, 'x', 'y', 'z'}
	var ps [][]byte
	ps = append(ps, []byte{2})
	ps = append(ps, bytes.Join([][]byte{{2, 0x08}, reg, {0x0a}, three}, nil))
	ps = append(ps, bytes.Join([][]byte{{2 | 4, 0x18}, reg, {0x12}, full, {0x1a}, three, {0x08}, dir, {0x0a}, empty}, nil))
	ps = append(ps, bytes.Join([][]byte{{2, 0x08}, dir, {0x0a}, empty, {0x08}, reg, {0x02}, full, {0x02}, full, {0x1a}, three}, nil))
	// The summary by hand: one member, then its summary entry.
	e := format.EncodeSummary([]format.Entry{{Offset: 0, Length: 12 + 16 + 1024 + 12 + 16 + 3, Meta: &format.Meta{Type: format.TypeRegular, Path: []byte("f"), Size: 3}}})
	ps = append(ps, bytes.Join([][]byte{{0, 0x08}, reg, {0x0a}, three, {0x0d}, binary.LittleEndian.AppendUint16(nil, uint16(len(e))), e}, nil))
	return ps
}

// FuzzFrameStream: archives with authenticated but hostile frame streams
// face the same properties as in FuzzArchiveReader (see checkArchive).
func FuzzFrameStream(f *testing.F) {
	for _, p := range streamPrograms() {
		f.Add(p)
		f.Add(append(bytes.Clone(p), 0x46, 3, 1, 0)) // footer stream length + 1
		q := bytes.Clone(p)
		q[0] |= 8 // GNU record padding
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		checkArchive(t, genArchive(prog))
	})
}

// TestStreamProgramsAccepted checks the generator against the readers:
// the seed programs describe valid archives, and both readers must accept
// them, so that fuzzing starts from the accepting paths.
func TestStreamProgramsAccepted(t *testing.T) {
	for i, p := range streamPrograms() {
		if !checkArchive(t, genArchive(p)) {
			_, err := streamRead(t, genArchive(p), fuzzKey)
			t.Errorf("program %d: not accepted: %v", i, err)
		}
	}
}
