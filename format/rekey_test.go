package format

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/internal/frame"
	"github.com/cbfs/cbfs/internal/testutil"
)

// readAll reads every member of an archive with the streaming reader:
// its metadata (as encoded) and content.
func readMembers(t *testing.T, data []byte, keys ...*crypt.Key) []string {
	t.Helper()
	rd, err := NewReader(bytes.NewReader(data), nil, ReaderOptions{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		m, err := rd.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		c, err := io.ReadAll(rd)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d %d %x %x", m.Number, m.Offset, m.Meta.Encode(nil), c))
	}
}

// TestRekey: the rekeyed archive holds the same members at the same
// offsets, opens with the new key only, has a new id and the same
// sequence number, and every sealed frame is the same length: nothing was
// compressed again.
func TestRekey(t *testing.T) {
	oldKey, newKey, other := testutil.Key(t, 1), testutil.Key(t, 2), testutil.Key(t, 3)
	for _, opt := range []WriterOptions{{Compress: true, Sequence: 42}, {Sequence: 7, ChunkSize: 4096, RecordSize: 64 << 10}} {
		src, entries := writeArchive(t, oldKey, sampleMembers(), opt)
		var dst bytes.Buffer
		res, err := Rekey(&dst, bytes.NewReader(src), []*crypt.Key{other, oldKey}, newKey, RekeyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out := dst.Bytes()
		if len(out) != len(src) || res.Size != int64(len(out)) {
			t.Fatalf("size %d, source %d, result says %d", len(out), len(src), res.Size)
		}
		if res.New.ID == res.Old.ID || res.New.Sequence != opt.Sequence || res.Old.Sequence != opt.Sequence || res.OldKey != oldKey {
			t.Fatalf("headers: %+v", res)
		}
		if got, want := readMembers(t, out, newKey), readMembers(t, src, oldKey); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatal("members differ")
		}
		a, err := OpenArchive(NewSource(bytes.NewReader(out), int64(len(out))), newKey)
		if err != nil {
			t.Fatal(err)
		}
		es, err := a.Entries()
		if err != nil || len(es) != len(entries) {
			t.Fatal(err)
		}
		for i := range es {
			if es[i].Offset != entries[i].Offset || es[i].Length != entries[i].Length {
				t.Fatalf("entry %d moved", i)
			}
		}
		if _, err := OpenArchive(NewSource(bytes.NewReader(out), int64(len(out))), oldKey); !errors.Is(err, ErrWrongKey) {
			t.Fatalf("old key opened the rekeyed archive: %v", err)
		}
		// Both keys at once read both archives.
		readMembers(t, out, oldKey, newKey)
		readMembers(t, src, oldKey, newKey)
		rep, err := ScanArchive(NewSource(bytes.NewReader(out), int64(len(out))), ScanOptions{Key: newKey, Content: true, Digest: true}, nil)
		if err != nil || len(rep.Problems) != 0 {
			t.Fatalf("verify: %v %v", err, rep.Problems)
		}
		// No bytes of the source's sealed frames survive, and its id
		// appears nowhere.
		if bytes.Contains(out, fmt.Appendf(nil, "%x", res.Old.ID)) || bytes.Contains(out, res.Old.ID[:]) {
			t.Fatal("the old archive id is in the new archive")
		}
		// Rekeying back gives an archive that reads as the source.
		var back bytes.Buffer
		if _, err := Rekey(&back, bytes.NewReader(out), []*crypt.Key{newKey}, oldKey, RekeyOptions{}); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(readMembers(t, back.Bytes(), oldKey)) != fmt.Sprint(readMembers(t, src, oldKey)) {
			t.Fatal("rekeyed back: members differ")
		}
	}
}

// TestRekeyRefuses: wrong key, the same key, and damage anywhere in the
// source (one byte flipped at many offsets, a cut) are refused.
func TestRekeyRefuses(t *testing.T) {
	oldKey, newKey := testutil.Key(t, 1), testutil.Key(t, 2)
	src, _ := writeArchive(t, oldKey, sampleMembers(), WriterOptions{Compress: true})
	rekey := func(b []byte, keys ...*crypt.Key) error {
		_, err := Rekey(io.Discard, bytes.NewReader(b), keys, newKey, RekeyOptions{})
		return err
	}
	if err := rekey(src, testutil.Key(t, 9)); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := Rekey(io.Discard, bytes.NewReader(src), []*crypt.Key{oldKey}, oldKey, RekeyOptions{}); !errors.Is(err, ErrSameKey) {
		t.Fatalf("same key: %v", err)
	}
	if err := rekey(src[:len(src)/2], oldKey); err == nil {
		t.Fatal("a cut archive was rekeyed")
	}
	step := len(src) / 300
	for off := 0; off < len(src)-2*BlockSize; off += step {
		b := bytes.Clone(src)
		b[off] ^= 0x40
		if err := rekey(b, oldKey); err == nil {
			t.Fatalf("a byte changed at %d: rekeyed", off)
		}
	}
}

// plainSumOf reads an archive with a PlainSum reader: every seal opened,
// nothing decoded.
func plainSumOf(data []byte, key *crypt.Key) (PlainSum, error) {
	rd, err := NewReader(bytes.NewReader(data), key, ReaderOptions{PlainSum: true})
	if err != nil {
		return PlainSum{}, err
	}
	defer rd.Close()
	for {
		if _, err := rd.Next(); err == io.EOF {
			return rd.PlainSum(), nil
		} else if err != nil {
			return PlainSum{}, err
		}
	}
}

// TestRekeyPlainSum: the sum of the plaintext Rekey seals is what a
// PlainSum reader finds in the source (old key) and in the new archive
// (new key); an archive of the same layout with one content byte changed
// sums differently; a PlainSum reader still opens every seal and checks
// the digest.
func TestRekeyPlainSum(t *testing.T) {
	oldKey, newKey := testutil.Key(t, 1), testutil.Key(t, 2)
	ms := sampleMembers()
	src, entries := writeArchive(t, oldKey, ms, WriterOptions{Compress: true, Sequence: 3})
	var dst bytes.Buffer
	res, err := Rekey(&dst, bytes.NewReader(src), []*crypt.Key{oldKey}, newKey, RekeyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := dst.Bytes()
	// Frames: a metadata frame per member, its content frames (at
	// least one), the summary's.
	if res.Plain.Frames < 2*uint64(len(ms))+1 {
		t.Fatalf("%d frames summed for %d members", res.Plain.Frames, len(ms))
	}
	for _, c := range []struct {
		name string
		data []byte
		key  *crypt.Key
	}{{"source", src, oldKey}, {"rekeyed", out, newKey}} {
		got, err := plainSumOf(c.data, c.key)
		if err != nil || got != res.Plain {
			t.Fatalf("%s: plain sum %+v (%v), Rekey sealed %+v", c.name, got, err, res.Plain)
		}
	}
	if _, err := plainSumOf(out, oldKey); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("old key over the rekeyed archive: %v", err)
	}
	// One byte of the random (stored) file changed: the same frames and
	// lengths, another plaintext, another sum.
	ms2 := sampleMembers()
	ms2[3].content = bytes.Clone(ms2[3].content)
	ms2[3].content[70_000] ^= 1
	src2, _ := writeArchive(t, oldKey, ms2, WriterOptions{Compress: true, Sequence: 3})
	if len(src2) != len(src) {
		t.Fatalf("sizes %d and %d", len(src2), len(src))
	}
	if s2, err := plainSumOf(src2, oldKey); err != nil || s2 == res.Plain || s2.Frames != res.Plain.Frames {
		t.Fatalf("one byte changed: sum %+v (%v), before %+v", s2, err, res.Plain)
	}
	// A sealed byte changed and its frame's CRC made right again: the
	// seal fails, named by member.
	phys := physOf(entries[3].Offset, int64(DefaultRecordSize))
	mlen := int(binary.LittleEndian.Uint32(out[phys+4:]))
	c := phys + FrameHeaderSize + int64(mlen) // the member's first content frame
	bad := bytes.Clone(out)
	bad[c+FrameHeaderSize+100] ^= 1
	clen := int64(binary.LittleEndian.Uint32(bad[c+4:]))
	binary.LittleEndian.PutUint32(bad[c+8:], frame.CRC(bad[c:c+8], bad[c+FrameHeaderSize:c+FrameHeaderSize+clen]))
	var fe *Error
	if _, err := plainSumOf(bad, newKey); !errors.As(err, &fe) || fe.Member != 3 || !strings.Contains(err.Error(), "failed authentication") {
		t.Fatalf("a sealed byte changed: %v", err)
	}
	// Any other byte changed: refused too (framing, CRC, digest, MAC).
	for off := 0; off < len(out)-2*BlockSize; off += len(out) / 97 {
		b := bytes.Clone(out)
		b[off] ^= 0x10
		if _, err := plainSumOf(b, newKey); err == nil {
			t.Fatalf("a byte changed at %d: read as intact", off)
		}
	}
}
