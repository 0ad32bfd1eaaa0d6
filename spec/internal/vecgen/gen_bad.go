package vecgen

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/pierrec/lz4/v4"
)

// footerAt is the physical offset of the footer record of a valid
// archive: the two blocks before the trailing zero blocks.
func footerAt(b []byte) int {
	end := len(b)
	for end >= block && allZero(b[end-block:end]) {
		end -= block
	}
	return end - 2*block
}

// lz4Block compresses b into one LZ4 block.
func lz4Block(b []byte) []byte {
	out := make([]byte, lz4.CompressBlockBound(len(b)))
	var c lz4.Compressor
	n, err := c.CompressBlock(b, out)
	if err != nil || n == 0 {
		panic("vecgen: lz4")
	}
	return out[:n]
}

// literalBlock is an LZ4 block that stores b as literals only: always
// longer than b.
func literalBlock(b []byte) []byte {
	n := len(b)
	var out []byte
	if n < 15 {
		out = append(out, byte(n<<4))
	} else {
		out = append(out, 0xf0)
		r := n - 15
		for r >= 255 {
			out = append(out, 255)
			r -= 255
		}
		out = append(out, byte(r))
	}
	return append(out, b...)
}

func (g *gen) invalidOuter() {
	// Not a CBFS archive (spec 6.1 step 1), and damage to record 0 of
	// one that is (spec 6.1 step 2 on).
	l := g.base("bad-magic", false)
	l.HeaderPost = func(p []byte) []byte { p[0] = 'X'; return p }
	g.bad("bad-magic", cHeader, "", "", "record 0, named cbfs-<id>/0000000000, holds a frame whose magic is XBFSARCH (its CRC is correct): a damaged CBFS header", l.build())
	g.bad("not-a-tar", notCBFS, "", "", "4096 random bytes", randBytes("not-a-tar", 4096))
	g.bad("plain-tar", notCBFS, "", "", "a plain ustar tar", ustarTar())
	g.bad("empty-file", notCBFS, "", "", "an empty file", []byte{})
	valid := g.write("trunc-first-block", small, g.baseMembers())
	g.bad("trunc-first-block", cHeader, "", "", "truncated to 300 bytes, inside record 0's ustar header (it starts with cbfs-): a damaged CBFS header", valid[:300])
	// Random access takes the header from the footer's copy and does
	// not read record 0 (spec 8.2): damage to record 0 alone is for a
	// full read to find.
	rec0 := func(name, expect, desc string, f func(b []byte) []byte) {
		g.bad(name, expect, "", success, desc, f(g.write(name, small, g.baseMembers())))
	}
	rec0("record0-name-uppercase", cHeader, "record 0's name has its hex digits in upper case (checksum correct): a damaged CBFS header", func(b []byte) []byte {
		copy(b[5:37], strings.ToUpper(string(b[5:37])))
		setChecksum(b[:block])
		return b
	})
	rec0("record0-name-long", cHeader, "record 0's name is 49 bytes: cbfs-<id>/00000000000 (checksum correct): a damaged CBFS header", func(b []byte) []byte {
		b[48] = '0'
		setChecksum(b[:block])
		return b
	})
	rec0("record0-name-flipped", cHeader, "record 0's name starts cbfr- (one bit flipped, checksum correct); its body holds CBFSARCH: a damaged CBFS header", func(b []byte) []byte {
		b[3] ^= 1
		setChecksum(b[:block])
		return b
	})
	rec0("record0-no-ustar-magic", cTar, "record 0's ustar magic and version are NUL bytes, as in a pre-POSIX tar header (checksum correct)", func(b []byte) []byte {
		clear(b[257:265])
		setChecksum(b[:block])
		return b
	})
	rec0("record0-checksum-form", cTar, "record 0's checksum field is the right value as 7 octal digits and a NUL, a form tar readers accept", func(b []byte) []byte {
		setChecksum(b[:block])
		v, _ := format.ParseNumeric(b[148:156])
		copy(b[148:156], fmt.Sprintf("%07o\x00", v))
		return b
	})
	rec0("record0-zeroed", notCBFS, "record 0 (its two blocks) all zeros, the rest intact: a streaming reader, meeting it first, finds no CBFS archive; one that sees the end finds a valid footer (spec 6.1 step 1)", func(b []byte) []byte {
		clear(b[:2*block])
		return b
	})
	rec0("record0-major-flipped", cHeader, "bit 1 of the header's major version byte flipped (it reads 3), CRC not updated: damage, not a newer version", func(b []byte) []byte {
		b[block+hdrSize+8] ^= 2
		return b
	})

	// Versions (spec 9).
	l = g.base("version-header", false)
	l.HeaderPost = func(p []byte) []byte { p[8] = 2; return p }
	g.bad("version-header", cVer, "", "", "header major version 2 (CRC correct)", l.build())
	{
		id := [crypt.IDSize]byte(randBytes("version-v2-layout id", 16))
		body := randBytes("version-v2-layout body", 300)
		copy(body[12:], "CBFSARCH\x02\x07")
		data := appendRecord(nil, id, 0, body)
		data = append(data, make([]byte, 2*block)...)
		g.bad("version-v2-layout", cVer, "", "", "a future major version: record 0 of 300 bytes, nothing of v1 but CBFSARCH 2.7 at body bytes 12..21", data)
	}
	l = g.base("version-footer", false)
	l.FooterPost = func(p []byte) []byte { p[8] = 2; return p }
	g.bad("version-footer", cFooter, "", "", "footer major version 2 in a version 1 archive (CRC correct): damage, not a version error", l.build())

	// Header (spec 6.1).
	hdr := func(name, expect, keyless, desc string, f func(p []byte) []byte) {
		l := g.base(name, false)
		l.HeaderPost = f
		g.bad(name, expect, keyless, "", desc, l.build())
	}
	hdr("header-mac", cHeader, success, "sequence number changed after the MAC; CRC and digest recomputed: only the key finds it",
		func(p []byte) []byte { p[36] ^= 1; return p })
	hdr("header-check-forged", cKey, success, "key check value changed, CRC and digest recomputed: reported as a wrong key (spec 10.3)",
		func(p []byte) []byte { p[44] ^= 1; return p })
	hdr("header-reserved", cHeader, "", "reserved header byte 11 is 1 (CRC correct)", func(p []byte) []byte { p[11] = 1; return p })
	hdr("header-suite", cHeader, "", "cipher suite 2 (CRC correct)", func(p []byte) []byte { p[10] = 2; return p })
	setU32 := func(off int, v uint32) func(p []byte) []byte {
		return func(p []byte) []byte { binary.LittleEndian.PutUint32(p[off:], v); return p }
	}
	hdr("header-chunk-not-power", cHeader, "", "chunk size 5000, not a power of two", setU32(12, 5000))
	hdr("header-chunk-small", cHeader, "", "chunk size 2048, below 4096", setU32(12, 2048))
	hdr("header-chunk-large", cHeader, "", "chunk size 8 MiB, above 4 MiB", setU32(12, 8<<20))
	hdr("header-record-not-multiple", cHeader, "", "record size 65537, not a multiple of 512", setU32(16, 65537))
	hdr("header-record-small", cHeader, "", "record size 32768, below 65536", setU32(16, 32768))
	hdr("header-record-large", cHeader, "", "record size 64 MiB + 512, above 64 MiB", setU32(16, 64<<20+512))
	hdr("header-id-mismatch", cHeader, "", "the archive id in the header differs from the record names'", func(p []byte) []byte { p[20] ^= 1; return p })
	for _, v := range []struct {
		name, ra, desc string
		n              int
	}{
		{"header-payload-long", success, "header payload of 93 bytes in record 0: one byte more than v1's 92 (the footer's copy intact)", 1},
		// Record 0 of three blocks moves every data record: the footer's
		// offset no longer fits the layout (spec 6.2 check 6).
		{"header-record-over-block", fail, "record 0 body of 600 bytes, over the one-block limit (the footer's copy intact)", 496},
	} {
		l := g.base(v.name, false)
		l.HeaderPost = func(p []byte) []byte { return append(p, make([]byte, v.n)...) }
		g.bad(v.name, cHeader, "", v.ra, v.desc, l.build())
	}
	{
		b := g.write("header-crc", small, g.baseMembers())
		b[block+hdrSize+44] ^= 1
		g.bad("header-crc", cHeader, "", success, "a bit of record 0's key check value flipped, CRC not updated: damage, not a wrong key", b)
		b = g.write("header-frame-reserved", small, g.baseMembers())
		b[block+2] = 1
		binary.LittleEndian.PutUint32(b[block+8:], crc(b[block:block+8], b[block+hdrSize:block+hdrSize+format.HeaderSize]))
		g.bad("header-frame-reserved", cHeader, "", success, "record 0's header frame reserved byte non-zero (CRC correct)", b)
	}
	g.badKey("wrong-key", cKey, success, "", "a valid archive read with another key", g.write("wrong-key", small, g.baseMembers()), g.rawB)

	// Outer ustar (spec 4).
	raw := func(name, expect, ra, desc string, f func(b []byte) []byte) {
		g.bad(name, expect, "", ra, desc, f(g.write(name, small, g.baseMembers())))
	}
	raw("record0-mtime", cTar, success, "record 0's ustar header has another mtime (checksum correct)", func(b []byte) []byte {
		copy(b[136:], "12755175201")
		setChecksum(b[:block])
		return b
	})
	const r1 = 2 * block // record 1's header
	raw("record1-mtime", cTar, success, "record 1's ustar header has another mtime (checksum correct)", func(b []byte) []byte {
		copy(b[r1+136:], "00000000000")
		setChecksum(b[r1 : r1+block])
		return b
	})
	raw("record1-uname", cTar, success, "record 1's ustar header names owner root (checksum correct)", func(b []byte) []byte {
		copy(b[r1+265:], "root")
		setChecksum(b[r1 : r1+block])
		return b
	})
	raw("record1-checksum", cTar, success, "record 1's ustar header checksum is wrong", func(b []byte) []byte {
		b[r1+148] ^= 1
		return b
	})
	raw("record1-name-uppercase", cTar, success, "record 1's name has its hex digits in upper case (checksum correct)", func(b []byte) []byte {
		up := []byte(strings.ToUpper(string(b[r1+5 : r1+37])))
		if bytes.Equal(up, b[r1+5:r1+37]) {
			panic("vecgen: archive id without letters")
		}
		copy(b[r1+5:], up)
		setChecksum(b[r1 : r1+block])
		return b
	})
	raw("record1-size-base256", cTar, success, "record 1's size field in base-256 with the right value (checksum correct)", func(b []byte) []byte {
		n, _ := format.ParseNumeric(b[r1+124 : r1+136])
		f := make([]byte, 12)
		f[0] = 0x80
		binary.BigEndian.PutUint64(f[4:], uint64(n))
		copy(b[r1+124:], f)
		setChecksum(b[r1 : r1+block])
		return b
	})
	raw("record1-size-huge", cTar, success, "record 1's size field says 8 GiB - 1 (checksum correct)", func(b []byte) []byte {
		copy(b[r1+124:], "77777777777")
		setChecksum(b[r1 : r1+block])
		return b
	})
	raw("header-record-padding", cTar, success, "a non-zero byte in record 0's padding", func(b []byte) []byte { b[block+104] = 1; return b })
	raw("data-record-padding", cTar, success, "a non-zero byte in the last data record's padding", func(b []byte) []byte {
		f := footerAt(b)
		if allZero(b[f-1:f]) == false {
			panic("vecgen: no padding")
		}
		b[f-1] = 1
		return b
	})
	raw("footer-record-padding", cTar, "", "a non-zero byte in the footer record's padding", func(b []byte) []byte {
		b[footerAt(b)+block+footBody] = 1
		return b
	})
	raw("footer-record-padding-crc", cFooter, "", "a non-zero byte in the footer record's padding and a bit of its member count flipped, CRC not updated: the CRC is checked first", func(b []byte) []byte {
		b[footerAt(b)+block+footBody] = 1
		b[footerAt(b)+block+hdrSize+30] ^= 1
		return b
	})
	raw("footer-record-padding-offset", cTar, "", "a non-zero byte in the footer record's padding and the footer's offset field wrong (CRC correct): the padding is checked first", func(b []byte) []byte {
		f := footerAt(b)
		b[f+block+footBody] = 1
		b[f+block+hdrSize+60] ^= 2
		binary.LittleEndian.PutUint32(b[f+block+8:], crc(b[f+block:f+block+8], b[f+block+hdrSize:f+block+footBody]))
		return b
	})
	raw("trailing-garbage", cTar, "", "the last byte of the end-of-archive blocks is 0x01", func(b []byte) []byte { b[len(b)-1] = 1; return b })
	raw("tar-r-appended", cTar, "", "a ustar member appended after the footer, as tar -r does", func(b []byte) []byte {
		b = b[:len(b)-2*block]
		h := hdrBlock("appended.txt", 9, '0', false)
		setChecksum(h)
		b = append(b, h...)
		b = append(b, dataBlocks([]byte("appended\n"))...)
		return padTo(append(b, make([]byte, 2*block)...), 10240)
	})
	raw("concatenated", cTar, "", "two archives concatenated", func(b []byte) []byte {
		return append(b, g.write("concatenated second", small, g.baseMembers())...)
	})
	raw("end-blocks-missing", cTar, "", "no end-of-archive blocks", func(b []byte) []byte { return b[:len(b)-2*block] })
	raw("end-block-one", cTar, "", "one end-of-archive block instead of two", func(b []byte) []byte { return b[:len(b)-block] })
	raw("trailing-not-blocks", cTar, "", "100 zero bytes after the end-of-archive blocks", func(b []byte) []byte { return append(b, make([]byte, 100)...) })
	raw("trunc-in-header", cTar, "", "truncated to 700 bytes, inside record 0's body", func(b []byte) []byte { return b[:700] })
	raw("trunc-in-data", cTar, "", "truncated to 4096 bytes, inside the data record", func(b []byte) []byte { return b[:4096] })
	raw("trunc-before-footer", cFooter, "", "truncated just before the footer record: a missing footer record", func(b []byte) []byte { return b[:footerAt(b)] })
	raw("trunc-in-footer", cTar, "", "truncated after the footer record's ustar header", func(b []byte) []byte { return b[:footerAt(b)+block] })
	raw("no-footer", cFooter, "", "the footer record removed, end-of-archive blocks kept: a missing footer record, as when the file ends there", func(b []byte) []byte {
		f := footerAt(b)
		return append(b[:f], make([]byte, 2*block)...)
	})

	// Record layout of a stream of several records.
	multi := func(name string) *layout {
		ms := []mem{fileMem("big.bin", randBytes("multi "+name, 70000))}
		l, err := parse(g.write(name, small, ms), g.keyA)
		if err != nil {
			panic(err)
		}
		return l
	}
	{
		b := multi("trunc-record-boundary").build()
		g.bad("trunc-record-boundary", cTar, "", "", "truncated at the end of the first data record", b[:2*block+block+format.MinRecordSize])
		l := multi("data-record-short")
		l.Cuts = []int{format.MinRecordSize / 2}
		g.bad("data-record-short", cFrame, "", "", "the first data record is half the record size and more records follow", l.build())
		l = multi("data-record-empty")
		l.Cuts = []int{0}
		g.bad("data-record-empty", cTar, "", "", "a data record with an empty body", l.build())
		l = multi("data-record-oversize")
		l.Cuts = []int{format.MinRecordSize + block}
		g.bad("data-record-oversize", cTar, "", "", "a data record of the record size plus 512 bytes", l.build())
	}
}

// crossedHeader is an archive whose summary crosses from data record 1
// into data record 2, with record 2's ustar header changed (checksum
// correct): random access reads the summary as logical bytes and does
// not check the record headers inside the range it reads (spec 8.2).
func (g *gen) crossedHeader() {
	const name = "summary-crosses-record-header"
	R := format.MinRecordSize
	for x := R - 8000; ; x += 500 {
		data := g.write(name, small, []mem{fileMem("big.bin", randBytes(name, x))})
		l, err := parse(data, g.keyA)
		if err != nil {
			panic(err)
		}
		off := 0
		for _, f := range l.Frames[:l.summary()] {
			off += l.frameLen(f)
		}
		if off < R-3000 || off > R-1000 {
			continue
		}
		h := 2*block + R + block // record 2's ustar header
		copy(data[h+136:], "00000000000")
		setChecksum(data[h : h+block])
		g.bad(name, cTar, "", success, "the summary starts in data record 1 and ends in record 2, whose ustar header has another mtime (checksum correct): random access does not check headers inside the range it reads", data)
		return
	}
}

func (g *gen) invalidFrames() {
	cs := format.MinChunkSize
	fr := func(name, expect, keyless, ra, desc string, f func(l *layout)) {
		l := g.base(name, false)
		f(l)
		g.bad(name, expect, keyless, ra, desc, l.build())
	}
	c1 := func(l *layout) *frame { i, _ := l.member(0); return l.Frames[i+2] }
	fr("frame-crc", cFrame, "", "", "a content frame's CRC does not match", func(l *layout) { c1(l).BadCRC = true })
	fr("frame-kind-unknown", cFrame, "", "", "a content frame's kind is 'x' (CRC correct)", func(l *layout) {
		f := c1(l)
		f.Payload = l.seal(f, f.Plain)
		f.Kind = 'x'
	})
	fr("frame-reserved", cFrame, "", "", "a content frame's reserved bytes are 00 01 (CRC correct)", func(l *layout) { c1(l).Reserved = [2]byte{0, 1} })
	fr("frame-flags-unknown", cFrame, "", "", "a content frame has flag bit 2 set (CRC correct)", func(l *layout) { c1(l).Flags |= 4 })
	insert := func(l *layout, at int, f *frame) {
		l.Frames = append(l.Frames[:at], append([]*frame{f}, l.Frames[at:]...)...)
	}
	fr("frame-header-in-stream", cFrame, "", "", "an 'H' frame between two members", func(l *layout) {
		_, j := l.member(0)
		insert(l, j, &frame{Kind: format.KindHeader, Flags: format.FlagFinal, Payload: l.Hdr.Encode()})
	})
	fr("frame-footer-in-stream", cFrame, "", "", "an 'F' frame between two members", func(l *layout) {
		_, j := l.member(0)
		insert(l, j, &frame{Kind: format.KindFooter, Flags: format.FlagFinal, Payload: make([]byte, format.FooterSize)})
	})
	m := func(l *layout, n uint32) *frame { i, _ := l.member(n); return l.Frames[i] }
	fr("frame-meta-length", cFrame, "", "", "a metadata frame of 1016 bytes, not 16 + 1024k", func(l *layout) { f := m(l, 1); f.Plain = f.Plain[:1000] })
	fr("frame-meta-not-final", cFrame, "", "", "a metadata frame without the final flag", func(l *layout) { m(l, 1).Flags = 0 })
	fr("frame-meta-over-cap", cFrame, "", "", "a metadata frame whose length field says 16 + 1024*8194, over the cap", func(l *layout) {
		m(l, 1).DeclLen = 16 + 1024*8194
	})
	fr("frame-content-stored-short", cFrame, "", "", "a stored content frame that is not the last holds 4095 bytes", func(l *layout) {
		f := c1(l)
		f.Plain = f.Plain[:cs-1]
	})
	fr("frame-content-stored-over", cFrame, "", "", "a stored final content frame holds 4097 bytes", func(l *layout) {
		_, j := l.member(0)
		l.Frames[j-1].Plain = text("over", cs+1)
	})
	fr("frame-content-lz4-empty", cFrame, "", "", "a compressed content frame of length 16 (nothing compressed)", func(l *layout) {
		i, _ := l.member(2)
		l.Frames[i+1].Flags |= format.FlagLZ4
		l.Frames[i+1].Plain = nil
	})
	fr("frame-content-lz4-full", cFrame, "", "", "a compressed content frame of length chunk size + 16", func(l *layout) { c1(l).Flags |= format.FlagLZ4 })
	fr("frame-summary-length", cFrame, "", "", "a summary frame one byte short of chunk size + 20", func(l *layout) {
		f := l.Frames[l.summary()]
		f.Plain = f.Plain[:cs+3]
	})
	fr("frame-summary-unpadded", cFrame, "", "", "a summary frame as written before the summary was padded: plaintext only", func(l *layout) {
		f := l.Frames[l.summary()]
		n := binary.LittleEndian.Uint32(f.Plain)
		f.Plain = f.Plain[4 : 4+n]
	})
	fr("grammar-content-first", cFrame, "", "", "the first member's first content frame comes before its metadata frame", func(l *layout) {
		l.Frames[0], l.Frames[1] = l.Frames[1], l.Frames[0]
	})
	fr("grammar-missing-final", cFrame, "", "", "the first member's final content frame is missing", func(l *layout) {
		_, j := l.member(0)
		l.Frames = append(l.Frames[:j-1], l.Frames[j:]...)
	})
	fr("grammar-summary-in-member", cFrame, "", "", "the summary starts before the last member has a content frame", func(l *layout) {
		i, _ := l.member(2)
		l.Frames = append(l.Frames[:i+1], l.Frames[i+2:]...)
	})
	fr("grammar-no-summary", cFrame, "", "", "no summary frames: the stream ends after the last member", func(l *layout) {
		l.Frames = l.Frames[:l.summary()]
	})
	fr("frames-after-summary", cFrame, "", "", "a content frame after the final summary frame", func(l *layout) {
		i, _ := l.member(2)
		l.Frames = append(l.Frames, l.Frames[i+1].clone())
	})
}

func (g *gen) invalidMembers() {
	cs := format.MinChunkSize
	mb := func(name, desc string, f func(l *layout)) {
		l := g.base(name, false)
		f(l)
		g.bad(name, cMember, success, "", desc, l.build())
	}
	c := func(l *layout, n uint32, k int) *frame { i, _ := l.member(n); return l.Frames[i+1+k] }
	m := func(l *layout, n uint32) *frame { i, _ := l.member(n); return l.Frames[i] }
	mb("aead-content", "a bit of a content frame's ciphertext flipped, CRC recomputed: only the key finds it", func(l *layout) {
		f := c(l, 0, 1)
		f.Payload = l.seal(f, f.Plain)
		f.Payload[100] ^= 1
	})
	mb("aead-meta", "a bit of a metadata frame's ciphertext flipped, CRC recomputed", func(l *layout) {
		f := m(l, 1)
		f.Payload = l.seal(f, f.Plain)
		f.Payload[0] ^= 0x80
	})
	mb("swap-members", "the first two members swapped, their frames unchanged", func(l *layout) {
		i0, j0 := l.member(0)
		_, j1 := l.member(1)
		var fs []*frame
		fs = append(fs, l.Frames[j0:j1]...)
		fs = append(fs, l.Frames[i0:j0]...)
		copy(l.Frames[i0:j1], fs)
	})
	mb("swap-chunks", "the first two content frames of a member swapped", func(l *layout) {
		i, _ := l.member(0)
		l.Frames[i+1], l.Frames[i+2] = l.Frames[i+2], l.Frames[i+1]
	})
	mb("splice-member", "the last member replaced by the same member of another archive under the same key", func(l *layout) {
		o := g.base("splice-member other", false)
		i, j := o.member(2)
		k, _ := l.member(2)
		for n := i; n < j; n++ {
			f := o.Frames[n].clone()
			f.Payload = o.seal(f, f.Plain)
			l.Frames[k+n-i] = f
		}
	})
	mb("lz4-bomb", "a compressed final content chunk that decompresses to 8192 bytes, over the chunk size", func(l *layout) {
		f := c(l, 2, 0)
		f.Flags |= format.FlagLZ4
		f.Plain = lz4Block(make([]byte, 2*cs))
	})
	mb("lz4-not-smaller", "a compressed content chunk whose LZ4 block is longer than what it decompresses to", func(l *layout) {
		f := c(l, 2, 0)
		f.Flags |= format.FlagLZ4
		f.Plain = literalBlock(f.Plain)
	})
	mb("lz4-malformed", "a compressed content chunk that is not a valid LZ4 block", func(l *layout) {
		f := c(l, 2, 0)
		f.Flags |= format.FlagLZ4
		f.Plain = []byte{0xff, 0xff, 0xff, 0xff, 0x10}
	})
	// The end-of-block rules of the LZ4 block format (spec 5.5): blocks
	// that decode, but that a reader MUST refuse.
	lz4End := func(name, desc string, blk []byte) {
		mb(name, desc, func(l *layout) {
			f := c(l, 2, 0)
			f.Flags |= format.FlagLZ4
			f.Plain = blk
		})
	}
	lz4End("lz4-ends-in-match", "a compressed content chunk whose LZ4 block ends in a match (abcd, then 16 bytes copied from offset 4): its last sequence is not literals only", []byte{0x4c, 'a', 'b', 'c', 'd', 4, 0})
	lz4End("lz4-last-literals", "a compressed content chunk whose LZ4 block ends in one literal after a match: its last 5 bytes are not all literals", []byte{0x4c, 'a', 'b', 'c', 'd', 4, 0, 0x10, 'x'})
	lz4End("lz4-match-late", "a compressed content chunk whose LZ4 block has a match starting 9 bytes before the end of its 23 bytes, less than 12", []byte{0x46, 'a', 'b', 'c', 'd', 4, 0, 0x00, 4, 0, 0x50, 'v', 'w', 'x', 'y', 'z'})
	mb("lz4-nonfinal-short", "a compressed content chunk that is not the last decompresses to 4095 bytes", func(l *layout) {
		f := c(l, 0, 0)
		f.Flags |= format.FlagLZ4
		f.Plain = lz4Block(f.Plain[:cs-1])
	})
	mb("empty-final-after-others", "a member's content ends with an empty final chunk after a full one", func(l *layout) {
		i, _ := l.member(2)
		r := reg("b", cs).Encode(nil)
		l.Frames[i].Plain = padMeta(r, len(r))
		full := &frame{Kind: format.KindContent, Stream: 2, Index: 0, Plain: text("full", cs)}
		empty := &frame{Kind: format.KindContent, Flags: format.FlagFinal, Stream: 2, Index: 1}
		l.Frames = append(l.Frames[:i+1], append([]*frame{full, empty}, l.Frames[i+2:]...)...)
	})

	// Metadata records of member 2 (a regular file "b"), each breaking one
	// rule of spec 5.6 or 7.
	rec := func(parts ...string) []byte {
		var b []byte
		for _, p := range parts {
			h, err := hexBytes(p)
			if err != nil {
				panic(p)
			}
			b = append(b, h...)
		}
		return b
	}
	const (
		tType = "010101"
		tPath = "020162"
		tMode = "0402a403"
		tTime = "090680c49fd50c00"
		tSize = "0e0103"
	)
	meta := func(name, desc string, plain func() []byte, lz bool) {
		mb(name, desc, func(l *layout) {
			f := m(l, 2)
			f.Plain = plain()
			if lz {
				f.Flags |= format.FlagLZ4
			}
		})
	}
	tlv := func(name, desc string, r []byte) {
		meta(name, desc, func() []byte { return padMeta(r, len(r)) }, false)
	}
	tlv("meta-varint-overlong", "metadata record: the type's uvarint is 81 00, not minimal", rec("01028100", tPath, tMode, tTime, tSize))
	tlv("meta-length-overlong", "metadata record: a field length uvarint is 81 00", rec(tType, "02810062", tMode, tTime, tSize))
	tlv("meta-varint-11-bytes", "metadata record: the size is an 11-byte uvarint", rec(tType, tPath, tMode, tTime, "0e0bffffffffffffffffffff01"))
	tlv("meta-tags-out-of-order", "metadata record: path before type", rec(tPath, tType, tMode, tTime, tSize))
	tlv("meta-tag-repeated", "metadata record: the mode field twice", rec(tType, tPath, tMode, tMode, tTime, tSize))
	tlv("meta-zero-field", "metadata record: uid present with the zero value", rec(tType, tPath, tMode, "050100", tTime, tSize))
	tlv("meta-critical-unknown", "metadata record: unknown critical tag 30", rec(tType, tPath, tMode, tTime, tSize, "1e0100"))
	tlv("meta-tag-19", "metadata record: reserved tag 19", rec(tType, tPath, tMode, tTime, tSize, "130100"))
	tlv("meta-typeflag-regular", "metadata record: a typeflag (tag 20) on a regular file", rec(tType, tPath, tMode, tTime, tSize, "140156"))
	tlv("meta-no-path", "metadata record without a path", rec(tType, tMode, tTime, tSize))
	tlv("meta-type-12", "metadata record: member type 12", rec("01010c", tPath))
	tlv("meta-nanoseconds", "metadata record: mtime nanoseconds 10^9", rec(tType, tPath, tMode, "090a80c49fd50c8094ebdc03", tSize))
	tlv("meta-tombstone-no-path", "metadata record: a tombstone with an empty path", rec("010108", "0200"))
	tlv("meta-sparse-overlap", "metadata record: sparse extents (0,50) and (40,10) overlap", rec(tType, tPath, "0e0164", "1005020032280a"))
	tlv("meta-sparse-count", "metadata record: sparse extent count 2^40 in a 6-byte field", rec(tType, tPath, "0e0164", "1006808080808020"))
	tlv("meta-xattrs-unsorted", "metadata record: xattr names b then a", rec(tType, tPath, "110902016201780161017a"))
	tlv("meta-field-trailing", "metadata record: the mode field holds a uvarint and one more byte", rec(tType, tPath, "0403a40300", tTime, tSize))
	// Field rules of spec 7.2 and 7.3.
	tlv("meta-tarheader-empty", "metadata record: tag 18 (tar header bytes) present with an empty value", rec(tType, tPath, tMode, tTime, tSize, "1200"))
	tlv("meta-type10-no-typeflag", "metadata record: a tar-other member (type 10) with tar header bytes but no typeflag (tag 20)", rec("01010a", tPath, "120100"))
	tlv("meta-type9-no-tarheader", "metadata record: a tar-global member (type 9) without tar header bytes (tag 18): it exists only imported", rec("010109", tPath))
	tlv("meta-type10-no-tarheader", "metadata record: a tar-other member (type 10, typeflag N) without tar header bytes (tag 18)", rec("01010a", tPath, "14014e"))
	tlv("meta-xattr-name-empty", "metadata record: an xattr whose name is empty", rec(tType, tPath, tMode, tTime, tSize, "110401000178"))
	valid := rec(tType, tPath, tMode, tTime, tSize)
	meta("meta-padding", "metadata frame: a non-zero padding byte", func() []byte {
		p := padMeta(valid, len(valid))
		p[len(p)-1] = 1
		return p
	}, false)
	meta("meta-raw-differs", "metadata frame: stored and raw lengths differ without LZ4", func() []byte { return padMeta(valid, len(valid)+1) }, false)
	meta("meta-padded-long", "metadata frame: padded to 2048 bytes where 1024 suffice", func() []byte {
		return append(padMeta(valid, len(valid)), make([]byte, metaPad)...)
	}, false)
	meta("meta-raw-over-cap", "metadata frame: raw length 72 MiB + 1, over MaxMetaSize", func() []byte {
		return padMeta(lz4Block(append(bytes.Clone(valid), make([]byte, 100)...)), format.MaxMetaSize+1)
	}, true)
	meta("meta-lz4-not-smaller", "metadata frame: an LZ4 body longer than the record", func() []byte { return padMeta(literalBlock(valid), len(valid)) }, true)
	meta("meta-lz4-longer", "metadata frame: an LZ4 body that decompresses past the raw length", func() []byte {
		return padMeta(lz4Block(append(bytes.Clone(valid), make([]byte, 200)...)), len(valid))
	}, true)
}

// invalidSequence breaks the rules on the members of an archive taken
// together (spec 7.3 content, 7.5 order) while every frame, the summary
// and the footer stay consistent: only a reader that reads every member's
// full record with the key finds it, and random access, which reads one
// member at a time, finds only the content rule.
func (g *gen) invalidSequence() {
	same := func(_ uint32, r []byte) []byte { return summaryForm(r) }
	seq := func(name, ra, desc string, l *layout, f func(l *layout)) {
		f(l)
		l.setSummary(l.summaryPlain(same))
		g.bad(name, cMember, success, ra, desc, l.build())
	}
	imported := func(name string) *layout {
		l, err := parse(g.importTar(name, small, ustarTar()), g.keyA)
		if err != nil {
			panic(err)
		}
		return l
	}
	seq("seq-member-after-trailer", success, "an imported archive with a directory member after its trailer", imported("seq-member-after-trailer"), func(l *layout) {
		addMember(l, &format.Meta{Type: format.TypeDir, Path: []byte("late"), Mode: 0o755})
	})
	seq("seq-two-trailers", success, "an imported archive with a second trailer after its trailer", imported("seq-two-trailers"), func(l *layout) {
		addMember(l, &format.Meta{Type: format.TypeTrailer})
	})
	seq("seq-imported-no-trailer", success, "an imported archive whose trailer member was removed", imported("seq-imported-no-trailer"), func(l *layout) {
		var n uint32
		for _, f := range l.Frames {
			if f.Kind == format.KindMeta {
				n = f.Stream
			}
		}
		i, j := l.member(n)
		l.Frames = append(l.Frames[:i], l.Frames[j:]...)
	})
	seq("seq-mixed", success, "a packed archive (members not imported) followed by an imported directory and a trailer", g.base("seq-mixed", false), func(l *layout) {
		addMember(l, &format.Meta{Type: format.TypeDir, Path: []byte("imported/"), TarHeader: hdrBlock("imported/", 0, '5', false)})
		addMember(l, &format.Meta{Type: format.TypeTrailer})
	})
	seq("content-on-dir", "", "a directory member with one byte of content", g.base("content-on-dir", false), func(l *layout) {
		i, _ := l.member(1)
		l.Frames[i+1].Plain = []byte("x")
	})
}

func (g *gen) invalidSummary() {
	cs := format.MinChunkSize
	sm := func(name, desc string, l *layout, f func(l *layout)) {
		f(l)
		g.bad(name, cSum, success, "", desc, l.build())
	}
	plainWith := func(l *layout, rec func(n uint32, r []byte) []byte) []byte { return l.summaryPlain(rec) }
	same := func(_ uint32, r []byte) []byte { return summaryForm(r) }
	sm("summary-meta-mismatch", "the summary gives the directory mode 0700, its metadata record 0755", g.base("summary-meta-mismatch", false), func(l *layout) {
		l.setSummary(plainWith(l, func(n uint32, r []byte) []byte {
			r = summaryForm(r)
			if n == 1 {
				m, _ := format.DecodeMeta(r)
				m.Mode = 0o700
				r = m.Encode(nil)
			}
			return r
		}))
	})
	sm("summary-swapped", "the summary frame of another archive under the same key, same members", g.base("summary-swapped", false), func(l *layout) {
		o := g.base("summary-swapped other", false)
		s := o.Frames[o.summary()].clone()
		s.Payload = o.seal(s, s.Plain)
		l.Frames[l.summary()] = s
	})
	sm("summary-padding", "a non-zero byte in a summary chunk's padding", g.base("summary-padding", false), func(l *layout) {
		f := l.Frames[l.summary()]
		f.Plain[len(f.Plain)-1] = 1
	})
	sm("summary-stored-over", "a summary chunk's stored length is 4097, over the chunk size", g.base("summary-stored-over", false), func(l *layout) {
		binary.LittleEndian.PutUint32(l.Frames[l.summary()].Plain, uint32(cs+1))
	})
	edit := func(name, desc string, f func(p []byte, l *layout) []byte) {
		sm(name, desc, g.base(name, false), func(l *layout) { l.setSummary(f(plainWith(l, same), l)) })
	}
	// Entries of the base summary: (offset, length, len, record) each.
	entries := func(p []byte) [][4][]byte {
		var out [][4][]byte
		for len(p) > 0 {
			var e [4][]byte
			for i := range 3 {
				_, n := binary.Uvarint(p)
				e[i], p = p[:n], p[n:]
			}
			k, _ := binary.Uvarint(e[2])
			e[3], p = p[:k], p[k:]
			out = append(out, e)
		}
		return out
	}
	join := func(es [][4][]byte) []byte {
		var b []byte
		for _, e := range es {
			for _, x := range e {
				b = append(b, x...)
			}
		}
		return b
	}
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	val := func(b []byte) uint64 { v, _ := binary.Uvarint(b); return v }
	edit("summary-entries-short", "the last summary entry's length is one short of the summary offset", func(p []byte, _ *layout) []byte {
		es := entries(p)
		e := &es[len(es)-1]
		e[1] = uv(val(e[1]) - 1)
		return join(es)
	})
	edit("summary-overlap", "the second summary entry starts one byte inside the first", func(p []byte, _ *layout) []byte {
		es := entries(p)
		es[1][0] = uv(val(es[1][0]) - 1)
		es[1][1] = uv(val(es[1][1]) + 1)
		return join(es)
	})
	edit("summary-varint-overlong", "the first summary entry's offset is 80 00, not minimal", func(p []byte, _ *layout) []byte {
		es := entries(p)
		es[0][0] = []byte{0x80, 0x00}
		return join(es)
	})
	edit("summary-varint-11-bytes", "the first summary entry's length is an 11-byte uvarint", func(p []byte, _ *layout) []byte {
		es := entries(p)
		es[0][1] = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}
		return join(es)
	})
	edit("summary-extra-entry", "one summary entry more than the members", func(p []byte, l *layout) []byte {
		es := entries(p)
		last := es[len(es)-1]
		e := last
		e[0] = uv(val(last[0]) + val(last[1]))
		return join(append(es, e))
	})
	edit("summary-missing-entry", "the summary lists one member fewer than the archive holds", func(p []byte, _ *layout) []byte {
		es := entries(p)
		return join(es[:len(es)-1])
	})
	edit("summary-meta-noncanonical", "a summary entry's record has a zero-valued uid field", func(p []byte, _ *layout) []byte {
		es := entries(p)
		r := append(append(bytes.Clone(es[2][3][:10]), 5, 1, 0), es[2][3][10:]...)
		es[2][3], es[2][2] = r, uv(uint64(len(r)))
		return join(es)
	})
	{
		// Without the key the missing frame after it is what shows.
		l := g.base("summary-not-final", false)
		l.Frames[l.summary()].Flags = 0
		g.bad("summary-not-final", cSum, "", "", "the only summary frame lacks the final flag: as a non-final chunk it is short, found before the missing frame after it", l.build())
	}
	sm("summary-nonfinal-short", "a summary chunk that is not the last holds fewer than 4096 bytes", g.base("summary-nonfinal-short", false), func(l *layout) {
		s := l.summary()
		l.Frames[s].Flags = 0
		l.Frames = append(l.Frames, &frame{Kind: format.KindSummary, Flags: format.FlagFinal, Index: 1, Plain: padSum(nil, cs)})
	})
	{
		ms := summaryOfSize(cs)
		l, err := parse(g.write("summary-empty-final-after-others", small, ms), g.keyA)
		if err != nil {
			panic(err)
		}
		sm("summary-empty-final-after-others", "a summary of exactly one chunk followed by an empty final chunk", l, func(l *layout) {
			s := l.summary()
			l.Frames[s].Flags = 0
			l.Frames = append(l.Frames, &frame{Kind: format.KindSummary, Flags: format.FlagFinal, Index: 1, Plain: padSum(nil, cs)})
		})
	}
	sm("summary-lz4-bomb", "a compressed summary chunk that decompresses past the chunk size", g.base("summary-lz4-bomb", false), func(l *layout) {
		f := l.Frames[l.summary()]
		f.Flags |= format.FlagLZ4
		f.Plain = padSum(lz4Block(make([]byte, 2*cs)), cs)
	})
	sm("summary-lz4-not-smaller", "a compressed summary chunk whose LZ4 block is longer than the chunk", g.base("summary-lz4-not-smaller", false), func(l *layout) {
		f := l.Frames[l.summary()]
		n := binary.LittleEndian.Uint32(f.Plain)
		f.Flags |= format.FlagLZ4
		f.Plain = padSum(literalBlock(f.Plain[4:4+n]), cs)
	})
}

func (g *gen) invalidFooter() {
	ft := func(name, keyless, ra, desc string, pre func(f *format.Footer), post func(p []byte) []byte) {
		l := g.base(name, false)
		l.FooterPre, l.FooterPost = pre, post
		g.bad(name, cFooter, keyless, ra, desc, l.build())
	}
	ft("footer-digest", "", success, "the footer's digest is wrong, its MAC right: only a full read finds it", func(f *format.Footer) { f.Digest[0] ^= 1 }, nil)
	ft("footer-mac", success, "", "the footer's MAC is wrong (CRC correct)", nil, func(p []byte) []byte { p[macFoot] ^= 1; return p })
	ft("footer-offset", "", "", "the footer says it is 512 bytes further on", func(f *format.Footer) { f.FooterOffset += block }, nil)
	ft("footer-id", "", "", "the footer names another archive id", func(f *format.Footer) { f.ID[0] ^= 1 }, nil)
	ft("footer-minor", "", "", "the footer's minor version 1 differs from the header's 0", func(f *format.Footer) { f.Minor = 1 }, nil)
	ft("footer-members-more", "", "", "the footer counts one member more than the archive holds", func(f *format.Footer) { f.Members++ }, nil)
	ft("footer-members-huge", "", "", "the footer counts 2^32 - 1 members, far more than the bytes present", func(f *format.Footer) { f.Members = 1<<32 - 1 }, nil)
	ft("footer-members-over-cap", "", "", "the footer counts 2^32 members, over the cap", func(f *format.Footer) { f.Members = 1 << 32 }, nil)
	ft("footer-summary-offset", "", "", "the footer puts the summary one byte early", func(f *format.Footer) { f.SummaryOffset--; f.SummaryLength++ }, nil)
	ft("footer-summary-out-of-range", "", "", "the footer's summary offset is past the stream length", func(f *format.Footer) { f.SummaryOffset = f.StreamLength + 1 }, nil)
	ft("footer-summary-length-zero", "", "", "the footer's summary length is 0", func(f *format.Footer) { f.SummaryOffset = f.StreamLength; f.SummaryLength = 0 }, nil)
	ft("footer-stream-length", "", "", "the footer's stream length is one byte more than the stream", func(f *format.Footer) { f.StreamLength++; f.SummaryLength++ }, nil)
	ft("footer-magic", "", "", "the footer's magic is XBFSFOOT (CRC correct)", nil, func(p []byte) []byte { p[0] = 'X'; return p })
	ft("footer-reserved", "", "", "footer reserved byte 10 is 1 (CRC correct)", nil, func(p []byte) []byte { p[10] = 1; return p })
	ft("footer-record-long", "", "", fmt.Sprintf("a footer record of %d bytes", footBody+1), nil, func(p []byte) []byte { return append(p, 0) })
	// The footer's copy of the header (spec 6.2 check 4 and 7, 8.3 step 11).
	cp := func(name, keyless, ra, desc string, remac bool, post func(p []byte)) {
		l := g.base(name, false)
		l.CopyPost = func(p []byte) []byte {
			post(p)
			if remac {
				mac := l.Keys.MAC(p[:macStart])
				copy(p[macStart:], mac[:])
			}
			return p
		}
		g.bad(name, cFooter, keyless, ra, desc, l.build())
	}
	cp("footer-copy-differs", "", success, "the footer's copy of the header has another sequence number, its MAC and the footer's right: only a full read, which compares it with record 0, finds it", true, func(p []byte) { p[36] ^= 1 })
	cp("footer-copy-mac", "", "", "the footer's copy of the header has another sequence number and the header MAC of the original; the footer MAC right", false, func(p []byte) { p[36] ^= 1 })
	cp("footer-copy-magic", "", "", "the footer's copy of the header has the magic XBFSARCH", false, func(p []byte) { p[0] = 'X' })
	cp("footer-copy-major", "", "", "the footer's copy of the header says major version 2 (the footer 1): damage, not a version", false, func(p []byte) { p[8] = 2 })
	cp("footer-copy-id", "", "", "the footer's copy of the header names another archive id, its MAC right", true, func(p []byte) { p[20] ^= 1 })
	cp("footer-copy-check", "", "", "the footer's copy of the header has another key check value, its MAC right: a random-access reader reports a wrong key, a full read the copy differing from record 0", true, func(p []byte) { p[44] ^= 1 })
	cp("footer-copy-chunk", "", "", "the footer's copy of the header has chunk size 2048, below 4096", true, func(p []byte) { binary.LittleEndian.PutUint32(p[12:], 2048) })
	b := g.write("footer-crc", small, g.baseMembers())
	b[footerAt(b)+block+hdrSize+30] ^= 1
	g.bad("footer-crc", cFooter, "", "", "a bit of the footer's member count flipped, CRC not updated", b)
}

// addMember appends a member, with an empty final content frame, as the
// last before the summary.
func addMember(l *layout, m *format.Meta) {
	n := uint32(0)
	for _, f := range l.Frames {
		if f.Kind == format.KindMeta {
			n++
		}
	}
	r := m.Encode(nil)
	fs := []*frame{{Kind: format.KindMeta, Flags: format.FlagFinal, Stream: n, Plain: padMeta(r, len(r))},
		{Kind: format.KindContent, Flags: format.FlagFinal, Stream: n}}
	s := l.summary()
	l.Frames = append(l.Frames[:s], append(fs, l.Frames[s:]...)...)
}
