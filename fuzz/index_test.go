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
	"github.com/pierrec/lz4/v4"
)

// A master index is sealed (spec/cbfs-index-v1.md): a clear 48-byte header
// (magic, version, suite, chunk size, synthetic IV, key check value), then
// frames of kind 'i' carrying the plaintext. As with archives, byte
// mutations rarely get past the seal, so FuzzIndex also takes plaintext
// and seals it itself (sealIndex, written from the spec), so that the
// plaintext decoder faces authenticated hostile input.

func indexPrefix(cs int) []byte {
	b := append([]byte("CBFSINDX"), index.Major, index.Minor, format.SuiteAES256GCM, 0)
	return binary.LittleEndian.AppendUint32(b, uint32(cs))
}

// sealIndex seals plain as an index under key with chunk size cs: the
// synthetic IV is the keyed MAC of the header's first 16 bytes and the
// plaintext; chunks of exactly cs bytes (the last shorter, empty only if
// it is the only one), each LZ4-compressed when that shrinks it.
func sealIndex(key *crypt.Key, plain []byte, cs int) []byte {
	prefix := indexPrefix(cs)
	mac := crypt.IndexMAC(key)
	mac.Write(prefix)
	mac.Write(plain)
	var siv [crypt.SIVSize]byte
	copy(siv[:], mac.Sum(nil))
	ik := crypt.DeriveIndexKeys(key, siv)
	check := ik.Check()
	out := append(append(prefix, siv[:]...), check[:]...)
	for i := uint64(0); ; i++ {
		n := min(cs, len(plain))
		final := n == len(plain)
		p, flags := plain[:n], byte(0)
		if final {
			flags |= format.FlagFinal
		}
		if c, ok := lz4Block(p); ok {
			p, flags = c, flags|format.FlagLZ4
		}
		var ad [8]byte
		ad[0], ad[1] = index.FrameKind, flags
		binary.LittleEndian.PutUint32(ad[4:], uint32(len(p)+crypt.TagSize))
		out = append(out, mkFrame(index.FrameKind, flags, ik.Seal(nil, crypt.Nonce(index.FrameKind, final, 0, i), p, ad[:]))...)
		plain = plain[n:]
		if final {
			return out
		}
	}
}

// openIndex recovers the plaintext of an index sealed under key (seeds
// only: it trusts its input).
func openIndex(key *crypt.Key, sealed []byte) []byte {
	var siv [crypt.SIVSize]byte
	copy(siv[:], sealed[16:32])
	ik := crypt.DeriveIndexKeys(key, siv)
	var plain []byte
	cs := int(binary.LittleEndian.Uint32(sealed[12:16]))
	for p, i := sealed[index.HeaderSize:], uint64(0); len(p) > 0; i++ {
		flags, n := p[1], int(binary.LittleEndian.Uint32(p[4:8]))
		b, err := ik.Open(nil, crypt.Nonce(index.FrameKind, flags&format.FlagFinal != 0, 0, i), p[12:12+n], p[:8])
		if err != nil {
			panic(err)
		}
		if flags&format.FlagLZ4 != 0 {
			out := make([]byte, cs)
			k, err := lz4.UncompressBlock(b, out)
			if err != nil {
				panic(err)
			}
			b = out[:k]
		}
		plain = append(plain, b...)
		p = p[12+n:]
	}
	return plain
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
// ones, and one whose plaintext spans two chunks.
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
		encodeIndex(tb, oneArchiveIndex(tb, "big.cbfs", 4, 1, 6000)),
	}
}

// indexAllocBound bounds what reading an index with an n-byte plaintext
// and chunk size cs may allocate: the fixed buffers (a 256 KiB read
// buffer, one frame payload and one decompressed chunk of cs bytes each,
// the first 64 KiB path block), and, for the table and the records, a
// constant multiple of the plaintext that describes them: an archive row
// takes at least 20 plaintext bytes for a 48-byte struct and a map slot, a
// record at least 11 for a 56-byte irec and its path (path blocks grow by
// doubling). 64 per plaintext byte covers that with append's growth; what
// it excludes is memory sized by a count field alone.
func indexAllocBound(n, cs int) uint64 {
	return 64*uint64(n) + allocSlack + 256<<10 + 2*uint64(cs+crypt.TagSize) + 64<<10
}

// FuzzIndex: the first input byte chooses how the rest is used. Bit 0
// clear: as a sealed index. Bit 0 set: as plaintext, sealed here (bit 1
// picks the 4 KiB chunk size instead of the 64 KiB one v1 writes).
// Properties: no panic; refusals are typed (ErrNotIndex, ErrWrongKey,
// *index.VersionError, or an *index.Error); reading allocates no
// more than the plaintext justifies; an accepted index re-encodes to the
// same bytes (with v1's chunk size) and opens under no other key.
func FuzzIndex(f *testing.F) {
	for _, s := range indexSeeds(f) {
		f.Add(append([]byte{0}, s...))
		f.Add(append([]byte{1}, openIndex(fuzzKey, s)...))
		f.Add(append([]byte{3}, openIndex(fuzzKey, s)...))
	}
	for _, v := range vectorSeeds(f, "index") {
		f.Add(append([]byte{0}, v...))
	}
	s := indexSeeds(f)[3]
	f.Add(append([]byte{0}, s[:len(s)-1]...))
	f.Add(append([]byte{0}, flip(s, 12, 0x80)...)) // chunk size
	f.Add(append([]byte{0}, flip(s, 20, 1)...))    // synthetic IV
	f.Add(append([]byte{0}, flip(s, 40, 1)...))    // key check value
	f.Add([]byte{1, 0, 0xff, 0xff, 0xff, 0x0f})    // no archives, a huge record count
	f.Add([]byte{1, 0xff, 0xff, 0x03, 0})          // a huge archive count
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		mode, body := in[0], in[1:]
		sealed, cs := body, index.ChunkSize
		if mode&1 != 0 {
			if mode&2 != 0 {
				cs = format.MinChunkSize
			}
			sealed = sealIndex(fuzzKey, body, cs)
		}
		var x *index.Index
		var err error
		read := func() { x, err = index.Read(bytes.NewReader(sealed), fuzzKey) }
		if mode&1 != 0 && allocCheckable() {
			before := heapAllocs()
			read()
			if got, bound := heapAllocs()-before, indexAllocBound(len(body), cs); got > bound {
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
		if cs == index.ChunkSize && !bytes.Equal(enc, sealed) {
			t.Fatalf("accepted index re-encodes differently (%d bytes, read %d)", len(enc), len(sealed))
		}
		if mode&1 != 0 && !bytes.Equal(openIndex(fuzzKey, enc), body) {
			t.Fatalf("accepted plaintext re-encodes differently")
		}
		if _, err := index.Read(bytes.NewReader(sealed), otherKey); !errors.Is(err, format.ErrWrongKey) {
			t.Fatalf("index opened under another key: %v", err)
		}
	})
}

// TestIndexSealer checks the sealer here against format's encoder: the
// plaintext of each seed, sealed here, gives the encoder's bytes.
func TestIndexSealer(t *testing.T) {
	for i, s := range indexSeeds(t) {
		if got := sealIndex(fuzzKey, openIndex(fuzzKey, s), index.ChunkSize); !bytes.Equal(got, s) {
			t.Errorf("seed %d: sealed here %d bytes, encoder %d", i, len(got), len(s))
		}
	}
}
