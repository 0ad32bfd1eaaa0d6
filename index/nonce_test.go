package index

import (
	"bytes"
	"crypto/hmac"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/internal/frame"
	"github.com/cbfs/cbfs/internal/testutil"
)

// frames opens every frame of an index and returns, per frame, its
// synthetic IV and the bytes it sealed (what AES-GCM took as plaintext).
func frames(t *testing.T, key *crypt.Key, enc []byte) (sivs [][crypt.SIVSize]byte, sealed [][]byte) {
	t.Helper()
	r, err := Open(bytes.NewReader(enc), int64(len(enc)), key)
	if err != nil {
		t.Fatal(err)
	}
	open := func(off int64, siv [crypt.SIVSize]byte, dir bool) {
		fh, _ := frame.ParseHeader(enc[off:])
		payload := bytes.Clone(enc[off+frame.HeaderSize : off+frame.HeaderSize+int64(fh.Len)])
		s, err := frame.Open(crypt.DeriveIndexKeys(key, dir, siv), fh, enc[off:off+frame.HeaderSize], payload, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		sivs, sealed = append(sivs, siv), append(sealed, bytes.Clone(s))
	}
	for _, b := range r.blocks {
		open(b.off, b.siv, false)
	}
	var dsiv [crypt.SIVSize]byte
	copy(dsiv[:], enc[len(enc)-24:len(enc)-8])
	open(r.dirOff, dsiv, true)
	return sivs, sealed
}

// TestNonceFromSealedBytes: every frame's key comes from a MAC of
// exactly the bytes it seals (recomputed here from the opened frame), so
// over many indexes, frames that seal different bytes never share a
// synthetic IV, hence never a key, hence never a (key, nonce) pair.
func TestNonceFromSealedBytes(t *testing.T) {
	key := testutil.Key(t, 9)
	bySIV := map[[crypt.SIVSize]byte][]byte{}
	prefix := headerPrefix(BlockSize)
	for v := range 12 {
		var ms []fakeMember
		for i := range 2500 + 300*v {
			ms = append(ms, fakeMember{fmt.Sprintf("dir%d/f%05d", i%(3+v), i*(v+1)), format.TypeRegular})
		}
		enc := encodeT(t, buildIndex(t, "a.cbfs", byte(v), uint64(v+1), ms), key)
		sivs, sealed := frames(t, key, enc)
		r, _ := Open(bytes.NewReader(enc), int64(len(enc)), key)
		for i := range sivs {
			kind, off := byte(BlockKind), int64(0)
			if i == len(sivs)-1 {
				kind, off = DirKind, r.dirOff
			}
			if got := sivOf(crypt.IndexMAC(key), prefix, kind, off, sealed[i]); !hmac.Equal(got[:], sivs[i][:]) {
				t.Fatalf("index %d frame %d: the IV is not the MAC of the sealed bytes", v, i)
			}
			if prev, ok := bySIV[sivs[i]]; ok && !bytes.Equal(prev, sealed[i]) {
				t.Fatalf("two frames sealing different bytes share a synthetic IV")
			}
			bySIV[sivs[i]] = sealed[i]
		}
	}
	if len(bySIV) < 30 {
		t.Fatalf("only %d distinct frames", len(bySIV))
	}
}

// TestUnpinnedLZ4Refused: a block sealed correctly (IV over its sealed
// bytes, right key) whose LZ4 block is valid and decodes to the right
// plaintext, but is not the pinned compressor's output, is refused: the
// bytes of an index are unique.
func TestUnpinnedLZ4Refused(t *testing.T) {
	key := testutil.Key(t, 10)
	var ms []fakeMember
	for i := range 40 {
		ms = append(ms, fakeMember{fmt.Sprintf("same/dir/f%03d", i), format.TypeRegular})
	}
	x := buildIndex(t, "a.cbfs", 1, 1, ms)
	enc := encodeT(t, x, key)
	r, err := Open(bytes.NewReader(enc), int64(len(enc)), key)
	if err != nil {
		t.Fatal(err)
	}
	var s scratch
	plain, err := r.block(0, &s)
	if err != nil {
		t.Fatal(err)
	}
	plain = bytes.Clone(plain)
	// The same plaintext as one sequence of literals: valid LZ4, not
	// the pinned compressor's (which finds matches here).
	lit := appendSeq(nil, plain, 0, 0)
	var c pinCompressor
	if bytes.Equal(lit, c.compress(nil, plain)) {
		t.Fatal("the test plaintext does not compress")
	}
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, key, x.HighSeq, x.Archives)
	sealedB := append(binary.AppendUvarint(nil, uint64(len(plain))), lit...)
	siv := sivOf(w.mac, w.prefix, BlockKind, 0, sealedB)
	fr := frame.Seal(nil, crypt.DeriveIndexKeys(key, false, siv), BlockKind, 0, 0, 0, sealedB)
	d := appendTable(nil, x.HighSeq, x.Archives)
	d = binary.AppendUvarint(d, 1)
	d = binary.AppendUvarint(d, uint64(len(r.blocks[0].first)))
	d = append(d, r.blocks[0].first...)
	d = binary.AppendUvarint(d, uint64(r.blocks[0].n))
	d = binary.AppendUvarint(d, uint64(len(fr)-frame.HeaderSize))
	d = append(d, siv[:]...)
	w.write(fr)
	dirOff := w.pos
	dsiv := w.seal(DirKind, d, dirOff)
	w.write(w.frame)
	w.write(append(append(binary.LittleEndian.AppendUint64(nil, uint64(dirOff)), dsiv[:]...), trailerMagic...))
	w.w.Flush()
	if _, err := Read(bytes.NewReader(buf.Bytes()), key); err == nil || !bytes.Contains([]byte(err.Error()), []byte("pinned")) {
		t.Fatalf("an unpinned LZ4 block: %v, want it refused", err)
	}
}
