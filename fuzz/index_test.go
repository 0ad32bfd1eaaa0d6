package fuzz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
)

// A master index is blocked and sealed (spec/cbfs-index-v1.md): a clear
// 32-byte header (magic, version, suite, block size, key check value),
// record blocks of kind 'i', the block directory of kind 'd' (the
// archives table, then per block its first path, record count, frame
// length and synthetic IV), and a 32-byte trailer that finds the
// directory. As with archives, byte mutations rarely get past the seal,
// so FuzzIndex also takes a table and a block's plaintext and seals them
// itself (sealIndex, written from the spec, with its own copy of the
// pinned LZ4 compressor), so that the decoder faces authenticated hostile
// input.

// pinLZ4 is the index spec's pinned compressor (section 4.5), written
// here from the spec: greedy, one table of 2^14 positions, no skipping,
// forward extension only.
func pinLZ4(src []byte) []byte {
	var out []byte
	seq := func(lit []byte, off, m int) {
		tok := byte(min(len(lit), 15)) << 4
		if m > 0 {
			tok |= byte(min(m-4, 15))
		}
		out = append(out, tok)
		ext := func(v int) {
			for ; v >= 255; v -= 255 {
				out = append(out, 255)
			}
			out = append(out, byte(v))
		}
		if len(lit) >= 15 {
			ext(len(lit) - 15)
		}
		out = append(out, lit...)
		if m > 0 {
			out = binary.LittleEndian.AppendUint16(out, uint16(off))
			if m-4 >= 15 {
				ext(m - 4 - 15)
			}
		}
	}
	table := make([]int, 1<<14)
	for i := range table {
		table[i] = -1
	}
	n, anchor := len(src), 0
	for i := 0; i+12 <= n; {
		v := binary.LittleEndian.Uint32(src[i:])
		h := (v * 2654435761) >> 18
		c := table[h]
		table[h] = i
		if c < 0 || i-c > 65535 || binary.LittleEndian.Uint32(src[c:]) != v {
			i++
			continue
		}
		m := 4
		for i+m < n-5 && src[c+m] == src[i+m] {
			m++
		}
		seq(src[anchor:i], i-c, m)
		i += m
		anchor = i
	}
	seq(src[anchor:], 0, 0)
	return out
}

// sealFrame seals plain as the spec says: the sealed bytes are the
// plaintext length and its pinned LZ4 block; the synthetic IV is the MAC
// of the header prefix, the kind, (for the directory) its offset, and
// the sealed bytes; the AEAD key comes from the IV; the nonce is the
// frame's kind and final flag with stream and index 0.
func sealFrame(key *crypt.Key, prefix []byte, kind byte, dirOff int64, plain []byte) ([]byte, [crypt.SIVSize]byte) {
	sealed := append(binary.AppendUvarint(nil, uint64(len(plain))), pinLZ4(plain)...)
	mac := crypt.IndexMAC(key)
	mac.Write(prefix)
	mac.Write([]byte{kind})
	var flags byte
	if kind == index.DirKind {
		mac.Write(binary.LittleEndian.AppendUint64(nil, uint64(dirOff)))
		flags = format.FlagFinal
	}
	mac.Write(sealed)
	var siv [crypt.SIVSize]byte
	copy(siv[:], mac.Sum(nil))
	ik := crypt.DeriveIndexKeys(key, kind == index.DirKind, siv)
	var ad [8]byte
	ad[0], ad[1] = kind, flags
	binary.LittleEndian.PutUint32(ad[4:], uint32(len(sealed)+crypt.TagSize))
	return mkFrame(kind, flags, ik.Seal(nil, crypt.Nonce(kind, flags != 0, 0, 0), sealed, ad[:])), siv
}

// fuzzBlock is one block as sealIndex takes it.
type fuzzBlock struct {
	first []byte
	n     uint64
	plain []byte
}

// sealIndex seals an index of the directory table part (high-seq and
// the archives table, as bytes) and blocks, under key, with block size
// bs in the header.
func sealIndex(key *crypt.Key, table []byte, blocks []fuzzBlock, bs uint32) []byte {
	prefix := append([]byte("CBFSINDX"), index.Major, index.Minor, format.SuiteAES256GCM, 0)
	prefix = binary.LittleEndian.AppendUint32(prefix, bs)
	check := crypt.IndexCheck(key)
	out := append(bytes.Clone(prefix), check[:]...)
	dir := append([]byte(nil), table...)
	dir = binary.AppendUvarint(dir, uint64(len(blocks)))
	for _, b := range blocks {
		f, siv := sealFrame(key, prefix, index.BlockKind, 0, b.plain)
		out = append(out, f...)
		dir = binary.AppendUvarint(dir, uint64(len(b.first)))
		dir = append(dir, b.first...)
		dir = binary.AppendUvarint(dir, b.n)
		dir = binary.AppendUvarint(dir, uint64(len(f)-format.FrameHeaderSize))
		dir = append(dir, siv[:]...)
	}
	dirOff := int64(len(out))
	f, siv := sealFrame(key, prefix, index.DirKind, dirOff, dir)
	out = append(out, f...)
	out = binary.LittleEndian.AppendUint64(out, uint64(dirOff))
	out = append(out, siv[:]...)
	return append(out, "CBFSIEND"...)
}

// hostile splits a fuzz body into what sealIndex takes: uvarint record
// count, uvarint table length, the table, then one block's plaintext,
// whose first path is what its first record says (or "p").
func hostile(body []byte) ([]byte, []fuzzBlock) {
	n, k := binary.Uvarint(body)
	if k <= 0 {
		return body, nil
	}
	body = body[k:]
	l, k := binary.Uvarint(body)
	if k <= 0 || l > uint64(len(body)-k) {
		return body, nil
	}
	table, plain := body[k:k+int(l)], body[k+int(l):]
	if len(plain) == 0 {
		return table, nil
	}
	first := []byte("p")
	if _, k1 := binary.Uvarint(plain); k1 > 0 {
		if sl, k2 := binary.Uvarint(plain[k1:]); k2 > 0 && sl <= uint64(len(plain)-k1-k2) {
			first = plain[k1+k2 : k1+k2+int(sl)]
		}
	}
	return table, []fuzzBlock{{first: first, n: n, plain: plain}}
}

func hostileBody(n uint64, table, plain []byte) []byte {
	b := binary.AppendUvarint(nil, n)
	b = binary.AppendUvarint(b, uint64(len(table)))
	return append(append(b, table...), plain...)
}

func encodeIndex(tb testing.TB, x *index.Index) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := x.Encode(&buf, fuzzKey); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// oneArchiveIndex indexes n members of one archive, paths dir/NNNN.
func oneArchiveIndex(tb testing.TB, name string, id byte, seq uint64, n int) *index.Index {
	tb.Helper()
	a := index.Archive{Name: name, Seq: seq, Members: uint64(n)}
	a.ID[0] = id
	b, err := index.NewBuilder(a, n, 0)
	if err != nil {
		tb.Fatal(err)
	}
	types := []format.Type{format.TypeRegular, format.TypeDir, format.TypeSymlink, format.TypeTombstone, format.TypeHardlink}
	for i := range n {
		e := index.Entry{Member: uint32(i), Type: types[i%len(types)], Offset: int64(1536 + 2048*i), Span: 1100, Size: int64(i), Inode: uint64(i) * 7}
		if err := b.Add(fmt.Appendf(nil, "dir/%04d", i*3%n), e); err != nil {
			tb.Fatal(err)
		}
	}
	return b.Index()
}

// indexSeeds are valid sealed indexes: empty, one archive, a merge of
// archives with equal sequence numbers (a conflict) and with different
// ones, and one of several blocks.
func indexSeeds(tb testing.TB) [][]byte {
	a := oneArchiveIndex(tb, "a.cbfs", 1, 5, 6)
	b := oneArchiveIndex(tb, "b.cbfs", 2, 5, 4)
	c := oneArchiveIndex(tb, "c.cbfs", 3, 9, 3)
	ab, _, err := index.Merge(a, b)
	if err != nil {
		tb.Fatal(err)
	}
	abc, _, err := index.Merge(ab, c)
	if err != nil {
		tb.Fatal(err)
	}
	return [][]byte{
		encodeIndex(tb, &index.Index{}),
		encodeIndex(tb, a),
		encodeIndex(tb, ab),
		encodeIndex(tb, abc),
		encodeIndex(tb, oneArchiveIndex(tb, "big.cbfs", 4, 1, 9000)),
	}
}

// hostileSeeds are table and block plaintexts in the spec's grammar.
func hostileSeeds() [][]byte {
	row := func(name string, id byte, seq, members uint64) []byte {
		b := binary.AppendUvarint(nil, uint64(len(name)))
		b = append(b, name...)
		b = append(b, bytes.Repeat([]byte{id}, crypt.IDSize)...)
		b = binary.AppendUvarint(b, seq)
		return binary.AppendUvarint(b, members)
	}
	table := append([]byte{5, 2}, append(row("a.cbfs", 1, 5, 9), row("b.cbfs", 2, 5, 9)...)...)
	cand := func(arch, member uint64) []byte {
		b := binary.AppendUvarint(nil, arch)
		b = append(b, byte(format.TypeRegular))
		for _, v := range []uint64{member, 1536, 1100, 7, 3} {
			b = binary.AppendUvarint(b, v)
		}
		return b
	}
	rec := func(shared int, suffix string, cs ...[]byte) []byte {
		b := binary.AppendUvarint(nil, uint64(shared))
		b = binary.AppendUvarint(b, uint64(len(suffix)))
		b = append(b, suffix...)
		b = binary.AppendUvarint(b, uint64(len(cs)))
		for _, c := range cs {
			b = append(b, c...)
		}
		return b
	}
	blk := bytes.Join([][]byte{rec(0, "dir/a", cand(0, 1)), rec(4, "b", cand(0, 2), cand(1, 3)), rec(5, "/c", cand(1, 4))}, nil)
	return [][]byte{
		hostileBody(3, table, blk),
		hostileBody(1, table, rec(0, "x", cand(1, 8))),
		hostileBody(0, table, nil),
		hostileBody(0, []byte{0, 0}, nil),
		hostileBody(1, []byte{0, 0xff, 0xff, 0x03}, nil), // a huge archive count
		hostileBody(1<<40, table, rec(0, "x", cand(0, 0))),
	}
}

// indexAllocBound bounds what reading an index with n bytes of table and
// block plaintext may allocate: the fixed buffers (the compressor's
// table, a few frames' worth) and a constant multiple of the plaintext.
func indexAllocBound(n int) uint64 {
	return 64*uint64(n) + allocSlack + 512<<10
}

// FuzzIndex: the first input byte chooses how the rest is used. Bit 0
// clear: as a sealed index. Bit 0 set: as a record count, a table and a
// block's plaintext, sealed here (bit 1 picks the 4 KiB block size in the
// header instead of the 64 KiB one v1 writes). Properties: no panic;
// refusals are typed (ErrNotIndex, ErrWrongKey, *index.VersionError, or
// an *index.Error); reading allocates no more than the plaintext
// justifies; an accepted index re-encodes to the same bytes (with v1's
// block size), every record is found by Lookup, and it opens under no
// other key.
func FuzzIndex(f *testing.F) {
	for _, s := range indexSeeds(f) {
		f.Add(append([]byte{0}, s...))
	}
	for _, s := range hostileSeeds() {
		f.Add(append([]byte{1}, s...))
		f.Add(append([]byte{3}, s...))
	}
	for _, v := range vectorSeeds(f, "index") {
		f.Add(append([]byte{0}, v...))
	}
	s := indexSeeds(f)[3]
	f.Add(append([]byte{0}, s[:len(s)-1]...))
	f.Add(append([]byte{0}, flip(s, 12, 0x80)...)) // block size
	f.Add(append([]byte{0}, flip(s, 20, 1)...))    // key check value
	f.Add(append([]byte{0}, flip(s, len(s)-20, 1)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		mode, body := in[0], in[1:]
		sealed, bs := body, uint32(index.BlockSize)
		if mode&1 != 0 {
			if mode&2 != 0 {
				bs = format.MinChunkSize
			}
			table, blocks := hostile(body)
			sealed = sealIndex(fuzzKey, table, blocks, bs)
		}
		var x *index.Index
		var err error
		read := func() { x, err = index.Read(bytes.NewReader(sealed), fuzzKey) }
		if mode&1 != 0 && allocCheckable() {
			before := heapAllocs()
			read()
			if got, bound := heapAllocs()-before, indexAllocBound(len(body)); got > bound {
				t.Fatalf("reading an index of %d plaintext bytes allocated %d bytes, over the bound %d", len(body), got, bound)
			}
		} else {
			read()
		}
		if err != nil {
			var ie *index.Error
			var ve *index.VersionError
			if !errors.Is(err, index.ErrNotIndex) && !errors.Is(err, format.ErrWrongKey) && !errors.As(err, &ve) && !errors.As(err, &ie) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		enc := encodeIndex(t, x)
		if bs == index.BlockSize && !bytes.Equal(enc, sealed) {
			t.Fatalf("accepted index re-encodes differently (%d bytes, read %d)", len(enc), len(sealed))
		}
		r, err := index.Open(bytes.NewReader(sealed), int64(len(sealed)), fuzzKey)
		if err != nil {
			t.Fatalf("Read accepts what Open refuses: %v", err)
		}
		for i := range x.Len() {
			rec, ok, err := r.Lookup(x.Path(i))
			if err != nil || !ok || len(rec.Entries) != len(x.Entries(i)) {
				t.Fatalf("record %q: lookup %v %v", x.Path(i), ok, err)
			}
		}
		if _, err := index.Read(bytes.NewReader(sealed), otherKey); !errors.Is(err, format.ErrWrongKey) {
			t.Fatalf("index opened under another key: %v", err)
		}
	})
}

// TestIndexSealer checks the sealer here, written from the spec, against
// the encoder: an index of one block, sealed here from the encoder's own
// table and records, gives the encoder's bytes; and the pinned compressor
// here gives the package's bytes for every seed.
func TestIndexSealer(t *testing.T) {
	// 1,500 records fit one block, with LZ4 matches aplenty.
	x := oneArchiveIndex(t, "a.cbfs", 1, 5, 1500)
	row := binary.AppendUvarint(nil, 6)
	row = append(row, "a.cbfs"...)
	row = append(row, 1)
	row = append(row, make([]byte, crypt.IDSize-1)...)
	row = append(row, 5)
	row = binary.AppendUvarint(row, 1500)
	row = append(row, 0) // replaces nothing
	table := append([]byte{5, 1}, row...)
	var blk []byte
	var prev []byte
	for i := range x.Len() {
		p := x.Path(i)
		shared := 0
		for shared < min(len(p), len(prev)) && p[shared] == prev[shared] {
			shared++
		}
		blk = binary.AppendUvarint(blk, uint64(shared))
		blk = binary.AppendUvarint(blk, uint64(len(p)-shared))
		blk = append(blk, p[shared:]...)
		es := x.Entries(i)
		blk = binary.AppendUvarint(blk, uint64(len(es)))
		for _, e := range es {
			blk = binary.AppendUvarint(blk, uint64(e.Archive))
			blk = append(blk, byte(e.Type))
			for _, v := range []uint64{uint64(e.Member), uint64(e.Offset), uint64(e.Span), uint64(e.Size), e.Inode} {
				blk = binary.AppendUvarint(blk, v)
			}
		}
		prev = p
	}
	got := sealIndex(fuzzKey, table, []fuzzBlock{{first: x.Path(0), n: uint64(x.Len()), plain: blk}}, index.BlockSize)
	if want := encodeIndex(t, x); !bytes.Equal(got, want) {
		t.Errorf("sealed here %d bytes, encoder %d", len(got), len(want))
	}
	for i, s := range indexSeeds(t) {
		if _, err := index.Read(bytes.NewReader(s), fuzzKey); err != nil {
			t.Errorf("seed %d: %v", i, err)
		}
	}
}
