package vecgen

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/pierrec/lz4/v4"
)

// This file is a second, frame-level writer of the archive format, written
// from the spec rather than from package format: it lays out records,
// seals frames, and computes the footer. It rebuilds an archive written
// by format.Writer byte for byte (Generate checks that for every archive
// it takes apart), and it lets a vector break exactly one rule while
// keeping every other check (CRCs, digest, MACs) consistent.

const (
	block    = 512
	tagSize  = crypt.TagSize
	hdrSize  = format.FrameHeaderSize
	metaPad  = format.MetaPad
	outerMT  = "12755175200\x00"
	macStart = 60                          // header payload bytes covered by its MAC
	footHdr  = 100                         // where the footer's copy of the header payload starts
	macFoot  = footHdr + format.HeaderSize // footer payload bytes covered by its MAC
	footBody = hdrSize + format.FooterSize // the footer record's body
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frame is one frame of the logical stream.
type frame struct {
	Kind, Flags byte
	Stream      uint32
	Index       uint64
	// Plain is sealed under (Kind, final flag, Stream, Index) when Payload
	// is nil. For 'm' and 's' frames it is the padded plaintext.
	Plain []byte
	// Payload, when set, is stored as it is (already sealed, or garbage).
	Payload []byte
	// Reserved goes into frame header bytes 2..3.
	Reserved [2]byte
	// DeclLen, when non-zero, is written as the length field instead of
	// the payload's real length.
	DeclLen uint32
	// BadCRC stores a CRC that does not match.
	BadCRC bool
}

func (f *frame) final() bool { return f.Flags&format.FlagFinal != 0 }

func (f *frame) clone() *frame {
	g := *f
	g.Plain = bytes.Clone(f.Plain)
	g.Payload = bytes.Clone(f.Payload)
	return &g
}

// layout is an archive taken apart: the header's fields, the frames, and
// knobs that break one rule at a time.
type layout struct {
	Keys   *crypt.ArchiveKeys
	Hdr    format.Header
	R      int // record size used to cut the stream (normally Hdr.RecordSize)
	Frames []*frame

	// HeaderPost may change the header payload after its MAC; the frame
	// CRC is computed after it.
	HeaderPost func(p []byte) []byte
	// FooterPre changes footer fields before the MAC; FooterPost the
	// payload after it (the frame CRC is computed after both).
	FooterPre  func(f *format.Footer)
	FooterPost func(p []byte) []byte
	// CopyPost changes the footer's copy of the header payload (which is
	// otherwise record 0's payload as written, HeaderPost included)
	// before the footer MAC.
	CopyPost func(p []byte) []byte
	// Cuts, when set, are the data record body sizes (the last one takes
	// the rest); otherwise every record but the last holds R bytes.
	Cuts []int
	// Trailing is the number of zero bytes after the footer record.
	Trailing int
}

func (l *layout) clone() *layout {
	m := *l
	m.Frames = make([]*frame, len(l.Frames))
	for i, f := range l.Frames {
		m.Frames[i] = f.clone()
	}
	m.Cuts = append([]int(nil), l.Cuts...)
	return &m
}

func crc(hdr8, payload []byte) uint32 {
	c := crc32.Update(0, castagnoli, hdr8[:8])
	return crc32.Update(c, castagnoli, payload)
}

// rawFrame encodes a frame header and payload, CRC included.
func rawFrame(kind, flags byte, reserved [2]byte, declLen uint32, payload []byte, badCRC bool) []byte {
	b := make([]byte, hdrSize, hdrSize+len(payload))
	b[0], b[1], b[2], b[3] = kind, flags, reserved[0], reserved[1]
	n := uint32(len(payload))
	if declLen != 0 {
		n = declLen
	}
	binary.LittleEndian.PutUint32(b[4:8], n)
	c := crc(b, payload)
	if badCRC {
		c ^= 1
	}
	binary.LittleEndian.PutUint32(b[8:12], c)
	return append(b, payload...)
}

// seal seals plain as the frame f would be sealed: the associated data is
// the frame header's first 8 bytes.
func (l *layout) seal(f *frame, plain []byte) []byte {
	var ad [8]byte
	ad[0], ad[1], ad[2], ad[3] = f.Kind, f.Flags, f.Reserved[0], f.Reserved[1]
	binary.LittleEndian.PutUint32(ad[4:], uint32(len(plain)+tagSize))
	return l.Keys.Seal(nil, crypt.Nonce(f.Kind, f.final(), f.Stream, f.Index), plain, ad[:])
}

func (l *layout) frameBytes(f *frame) []byte {
	p := f.Payload
	if p == nil {
		p = l.seal(f, f.Plain)
	}
	return rawFrame(f.Kind, f.Flags, f.Reserved, f.DeclLen, p, f.BadCRC)
}

// outerHeader is the canonical ustar header of record n (spec 4.2).
func outerHeader(id [crypt.IDSize]byte, n uint64, size int) []byte {
	b := make([]byte, block)
	copy(b[0:], fmt.Sprintf("cbfs-%x/%010d", id[:], n))
	copy(b[100:], "0000600\x00")
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", size))
	copy(b[136:], outerMT)
	b[156] = '0'
	copy(b[257:], "ustar\x00")
	copy(b[263:], "00")
	copy(b[329:], "0000000\x00")
	copy(b[337:], "0000000\x00")
	setChecksum(b)
	return b
}

// setChecksum writes a ustar header block's checksum: six octal digits,
// NUL, space.
func setChecksum(b []byte) {
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b[:block] {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

func pad(n int) int { return (block - n%block) % block }

func appendRecord(out []byte, id [crypt.IDSize]byte, n uint64, body []byte) []byte {
	out = append(out, outerHeader(id, n, len(body))...)
	out = append(out, body...)
	return append(out, make([]byte, pad(len(body)))...)
}

// build writes the archive.
func (l *layout) build() []byte {
	hp := l.Hdr.Encode()
	mac := l.Keys.MAC(hp[:macStart])
	copy(hp[macStart:], mac[:])
	if l.HeaderPost != nil {
		hp = l.HeaderPost(hp)
	}
	id := l.Hdr.ID
	hf := rawFrame(format.KindHeader, format.FlagFinal, [2]byte{}, 0, hp, false)
	out := appendRecord(nil, id, 0, hf)
	// The digest (spec 6.2), written out here apart from the format
	// package's, which the vectors test: the header frame, then each
	// frame's 12-byte header and last 16 bytes.
	digest := sha256.New()
	digest.Write(hf)

	var stream []byte
	members := uint64(0)
	sumOff := -1
	for _, f := range l.Frames {
		if f.Kind == format.KindMeta {
			members++
		}
		if f.Kind == format.KindSummary && sumOff < 0 {
			sumOff = len(stream)
		}
		fb := l.frameBytes(f)
		digest.Write(fb[:hdrSize])
		digest.Write(fb[max(hdrSize, len(fb)-16):])
		stream = append(stream, fb...)
	}
	if sumOff < 0 {
		sumOff = len(stream)
	}
	rec := uint64(1)
	rest := stream
	for i := 0; len(rest) > 0 || (i < len(l.Cuts) && l.Cuts[i] == 0); i++ {
		n := min(l.R, len(rest))
		if i < len(l.Cuts) {
			n = min(l.Cuts[i], len(rest))
		}
		out = appendRecord(out, id, rec, rest[:n])
		rec++
		rest = rest[n:]
	}
	f := format.Footer{Major: format.Major, Minor: format.Minor, ID: id, Members: members,
		SummaryOffset: uint64(sumOff), SummaryLength: uint64(len(stream) - sumOff),
		StreamLength: uint64(len(stream)), FooterOffset: uint64(len(out))}
	digest.Sum(f.Digest[:0])
	if l.FooterPre != nil {
		l.FooterPre(&f)
	}
	fp := f.Encode()
	if len(hp) == format.HeaderSize {
		copy(fp[footHdr:macFoot], hp)
	} else {
		// A record 0 payload of another length: the copy is the header
		// as a writer makes it.
		h := l.Hdr
		h.MAC = l.Keys.MAC(h.Encode()[:macStart])
		copy(fp[footHdr:macFoot], h.Encode())
	}
	if l.CopyPost != nil {
		copy(fp[footHdr:macFoot], l.CopyPost(bytes.Clone(fp[footHdr:macFoot])))
	}
	fmac := l.Keys.MAC(fp[:macFoot])
	copy(fp[macFoot:], fmac[:])
	if l.FooterPost != nil {
		fp = l.FooterPost(fp)
	}
	out = appendRecord(out, id, rec, rawFrame(format.KindFooter, format.FlagFinal, [2]byte{}, 0, fp, false))
	return append(out, make([]byte, l.Trailing)...)
}

// parse takes apart a valid archive written under key: the inverse of
// build for what format.Writer writes.
func parse(b []byte, key *crypt.Key) (*layout, error) {
	size := func(h []byte) (int, error) {
		v, err := strconv.ParseUint(string(bytes.TrimRight(h[124:135], "\x00")), 8, 40)
		return int(v), err
	}
	n0, err := size(b[:block])
	if err != nil {
		return nil, err
	}
	hdr, err := format.DecodeHeader(b[block+hdrSize : block+n0])
	if err != nil {
		return nil, err
	}
	l := &layout{Hdr: *hdr, R: int(hdr.RecordSize), Keys: crypt.DeriveArchiveKeys(key, hdr.ID)}
	// The footer record is the last one before the zero blocks.
	end := len(b)
	for end >= block && allZero(b[end-block:end]) {
		end -= block
	}
	l.Trailing = len(b) - end
	foot, err := format.DecodeFooter(b[end-block+hdrSize : end-block+hdrSize+format.FooterSize])
	if err != nil {
		return nil, err
	}
	var stream []byte
	pos := 2 * block
	for len(stream) < int(foot.StreamLength) {
		n, err := size(b[pos : pos+block])
		if err != nil {
			return nil, err
		}
		stream = append(stream, b[pos+block:pos+block+n]...)
		pos += block + n + pad(n)
	}
	member, index := uint32(0), uint64(0)
	inSummary := false
	for off := 0; off < len(stream); {
		h := stream[off : off+hdrSize]
		n := int(binary.LittleEndian.Uint32(h[4:8]))
		f := &frame{Kind: h[0], Flags: h[1]}
		payload := stream[off+hdrSize : off+hdrSize+n]
		switch f.Kind {
		case format.KindMeta:
			f.Stream, f.Index = member, 0
			index = 0
		case format.KindContent:
			f.Stream, f.Index = member, index
			index++
			if f.final() {
				member++
			}
		case format.KindSummary:
			if !inSummary {
				inSummary, index = true, 0
			}
			f.Stream, f.Index = 0, index
			index++
		}
		plain, err := l.Keys.Open(nil, crypt.Nonce(f.Kind, f.final(), f.Stream, f.Index), payload, h[:8])
		if err != nil {
			return nil, fmt.Errorf("frame at %d: %v", off, err)
		}
		f.Plain = plain
		l.Frames = append(l.Frames, f)
		off += hdrSize + n
	}
	return l, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// member returns the frames [i, j) of member n.
func (l *layout) member(n uint32) (int, int) {
	i := -1
	for k, f := range l.Frames {
		if f.Kind == format.KindMeta && f.Stream == n {
			i = k
		}
		if i >= 0 && k > i && f.Kind != format.KindContent {
			return i, k
		}
	}
	panic(fmt.Sprintf("vecgen: no member %d", n))
}

// summary returns the index of the first summary frame.
func (l *layout) summary() int {
	for k, f := range l.Frames {
		if f.Kind == format.KindSummary {
			return k
		}
	}
	panic("vecgen: no summary")
}

// padMeta frames a metadata record as an 'm' frame plaintext (spec 5.6).
func padMeta(stored []byte, raw int) []byte {
	n := 8 + len(stored)
	out := make([]byte, (n+metaPad-1)/metaPad*metaPad)
	binary.LittleEndian.PutUint32(out[0:], uint32(len(stored)))
	binary.LittleEndian.PutUint32(out[4:], uint32(raw))
	copy(out[8:], stored)
	return out
}

// padSum frames a summary chunk's stored bytes as an 's' frame plaintext
// (spec 5.7).
func padSum(stored []byte, cs int) []byte {
	out := make([]byte, cs+4)
	binary.LittleEndian.PutUint32(out, uint32(len(stored)))
	copy(out[4:], stored)
	return out
}

// summaryFrames chunks a summary plaintext into stored (uncompressed) 's'
// frames.
func summaryFrames(plain []byte, cs int) []*frame {
	var out []*frame
	for i := uint64(0); ; i++ {
		n := min(cs, len(plain))
		f := &frame{Kind: format.KindSummary, Index: i, Plain: padSum(plain[:n], cs)}
		plain = plain[n:]
		if len(plain) == 0 {
			f.Flags = format.FlagFinal
			return append(out, f)
		}
		out = append(out, f)
	}
}

// summaryEntry encodes one summary entry around a raw metadata record.
func summaryEntry(off, length int, rec []byte) []byte {
	b := binary.AppendUvarint(nil, uint64(off))
	b = binary.AppendUvarint(b, uint64(length))
	b = binary.AppendUvarint(b, uint64(len(rec)))
	return append(b, rec...)
}

// frameLen is a frame's length in the logical stream.
func (l *layout) frameLen(f *frame) int {
	if f.Payload != nil {
		return hdrSize + len(f.Payload)
	}
	return hdrSize + len(f.Plain) + tagSize
}

// summaryPlain is the summary the frames before the first summary frame
// call for, with rec(n, record) choosing each member's summary record.
func (l *layout) summaryPlain(rec func(n uint32, r []byte) []byte) []byte {
	var out []byte
	off, start := 0, 0
	var cur []byte
	var num uint32
	for _, f := range l.Frames {
		if f.Kind == format.KindSummary {
			break
		}
		if f.Kind == format.KindMeta {
			start, num = off, f.Stream
			cur = metaRecord(f.Plain, f.Flags&format.FlagLZ4 != 0)
		}
		off += l.frameLen(f)
		if f.Kind == format.KindContent && f.final() {
			out = append(out, summaryEntry(start, off-start, rec(num, cur))...)
		}
	}
	return out
}

// metaRecord returns the TLV record inside an 'm' plaintext.
func metaRecord(p []byte, compressed bool) []byte {
	stored := binary.LittleEndian.Uint32(p)
	raw := binary.LittleEndian.Uint32(p[4:])
	body := p[8 : 8+stored]
	if !compressed {
		return body
	}
	out := make([]byte, raw)
	if _, err := lz4.UncompressBlock(body, out); err != nil {
		panic(err)
	}
	return out
}

// summaryForm is a metadata record without xattrs and tar header bytes
// (spec 7.4).
func summaryForm(rec []byte) []byte {
	m, err := format.DecodeMeta(rec)
	if err != nil {
		panic(err)
	}
	m.Xattrs, m.TarHeader = nil, nil
	return m.Encode(nil)
}

// setSummary replaces the summary frames with stored frames of plain.
func (l *layout) setSummary(plain []byte) {
	l.Frames = append(l.Frames[:l.summary()], summaryFrames(plain, int(l.Hdr.ChunkSize))...)
}
