package format

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/cbfs/cbfs/crypt"
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
