package format

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/internal/testutil"
)

func scanBytes(b []byte, key *crypt.Key) (*ScanReport, []Entry, error) {
	var got []Entry
	rep, err := ScanArchive(NewSource(bytes.NewReader(b), int64(len(b))), ScanOptions{Key: key, Content: true, Digest: true}, func(e Entry) error {
		got = append(got, e)
		return nil
	})
	return rep, got, err
}

func TestScanIntact(t *testing.T) {
	key := testutil.Key(t, 9)
	ms := sampleMembers()
	arc, entries := writeArchive(t, key, ms, WriterOptions{Compress: true, RecordSize: MinRecordSize, ChunkSize: MinChunkSize})
	for _, k := range []*crypt.Key{key, nil} {
		rep, got, err := scanBytes(arc, k)
		if err != nil || !rep.Intact() {
			t.Fatalf("key=%v: err %v, problems %v", k != nil, err, rep.Problems)
		}
		if rep.Members != len(ms) || len(got) != len(ms) {
			t.Fatalf("found %d members, want %d", rep.Members, len(ms))
		}
		for i := range got {
			if got[i].Offset != entries[i].Offset || got[i].Length != entries[i].Length {
				t.Errorf("member %d at %d+%d, writer said %d+%d", i, got[i].Offset, got[i].Length, entries[i].Offset, entries[i].Length)
			}
		}
		if k != nil && !rep.SummaryChecked {
			t.Error("summary not checked against the members")
		}
	}
	if _, _, err := scanBytes(arc, testutil.Key(t, 10)); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong key: got %v", err)
	}
}

// memberAt says which member's bytes hold physical offset off, or -1.
func memberAt(entries []Entry, R, off int64) int64 {
	for _, e := range entries {
		if off >= physOf(e.Offset, R) && off < physOf(e.Offset+e.Length-1, R)+1 {
			return int64(e.Number)
		}
	}
	return -1
}

// TestCorruptionMatrix flips every byte of a small archive and truncates
// it at every block boundary and at odd offsets: each change must be
// found with and without the key, never panic, and a change inside a
// member's frames must name that member.
func TestCorruptionMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("every offset: run without -short (make test runs it once, without the race detector)")
	}
	key := testutil.Key(t, 11)
	ms := []testMember{
		{Meta{Type: TypeDir, Path: []byte("dir")}, nil},
		{Meta{Type: TypeRegular, Path: []byte("dir/a"), Size: 10000}, bytes.Repeat([]byte("0123456789"), 1000)},
		{Meta{Type: TypeRegular, Path: []byte("dir/b"), Size: 3}, []byte("xyz")},
		{Meta{Type: TypeSymlink, Path: []byte("dir/c"), Link: []byte("b")}, nil},
	}
	arc, entries := writeArchive(t, key, ms, WriterOptions{Compress: true, ChunkSize: MinChunkSize, RecordSize: MinRecordSize})
	R := int64(MinRecordSize)
	var named atomic.Int64
	parallelFor(t, len(arc), func(i int) error {
		bad := bytes.Clone(arc)
		bad[i] ^= 0x55
		for _, k := range []*crypt.Key{key, nil} {
			rep, _, err := scanBytes(bad, k)
			if err == nil && rep.Intact() {
				return fmt.Errorf("flip at %d (key=%v) not detected", i, k != nil)
			}
			if m := memberAt(entries, R, int64(i)); m >= 0 && err == nil {
				found := false
				for _, p := range rep.Problems {
					if p.Member == m {
						found = true
						if k != nil && p.Path != string(ms[m].meta.Path) {
							return fmt.Errorf("flip at %d: member %d named %q, want %q", i, m, p.Path, ms[m].meta.Path)
						}
					}
				}
				if !found {
					return fmt.Errorf("flip at %d inside member %d (key=%v): problems %v", i, m, k != nil, rep.Problems)
				}
				named.Add(1)
			}
		}
		return nil
	})
	if named.Load() == 0 {
		t.Fatal("no flip landed inside a member")
	}
	var cuts []int
	for n := 0; n < len(arc); n += BlockSize {
		cuts = append(cuts, n)
	}
	for n := 1; n < len(arc); n += 331 {
		cuts = append(cuts, n)
	}
	for _, n := range cuts {
		for _, k := range []*crypt.Key{key, nil} {
			rep, _, err := scanBytes(arc[:n], k)
			if err == nil && rep.Intact() {
				t.Fatalf("truncation to %d bytes (key=%v) not detected", n, k != nil)
			}
		}
	}
}

// TestScanResyncs checks that damage to one member leaves the others
// readable: a scan must still deliver every other member.
func TestScanResyncs(t *testing.T) {
	key := testutil.Key(t, 12)
	var ms []testMember
	for i := range 20 {
		c := bytes.Repeat([]byte{byte(i)}, 5000+i)
		ms = append(ms, testMember{Meta{Type: TypeRegular, Path: []byte(fmt.Sprintf("f%02d", i)), Size: int64(len(c))}, c})
	}
	arc, entries := writeArchive(t, key, ms, WriterOptions{Compress: false, ChunkSize: MinChunkSize, RecordSize: MinRecordSize})
	R := int64(MinRecordSize)
	for _, victim := range []int{0, 7, 19} {
		e := entries[victim]
		for _, at := range []int64{e.Offset + 3, e.Offset + 200, e.Offset + e.Length - 5} {
			bad := bytes.Clone(arc)
			bad[physOf(at, R)] ^= 0xff
			rep, got, err := scanBytes(bad, key)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(ms)-1 {
				t.Fatalf("victim %d, byte %d: %d members delivered, want %d; problems %v", victim, at, len(got), len(ms)-1, rep.Problems)
			}
			for _, g := range got {
				if g.Number == uint32(victim) {
					t.Fatalf("damaged member %d delivered as good", victim)
				}
			}
		}
	}
}

// TestSalvage: an archive cut short keeps every member before the cut.
// Salvage finds them by scanning, and reads each one whole through the
// Archive it returns. OpenArchive refuses the same bytes.
func TestSalvage(t *testing.T) {
	key := testutil.Key(t, 13)
	var ms []testMember
	for i := range 12 {
		c := bytes.Repeat([]byte{byte(i), 'x'}, 3000+i)
		ms = append(ms, testMember{Meta{Type: TypeRegular, Path: []byte(fmt.Sprintf("f%02d", i)), Size: int64(len(c))}, c})
	}
	arc, entries := writeArchive(t, key, ms, WriterOptions{Compress: true, ChunkSize: MinChunkSize, RecordSize: MinRecordSize})
	R := int64(MinRecordSize)
	for _, c := range []struct {
		name string
		size int64
		want int // members salvaged
	}{
		{"end-blocks-missing", int64(len(arc)) - 2*BlockSize, len(ms)},
		{"one-end-block", int64(len(arc)) - BlockSize, len(ms)},
		// Cut inside member 7: members 0-6 are whole.
		{"cut-in-member-7", (physOf(entries[7].Offset+entries[7].Length/2, R) / BlockSize) * BlockSize, 7},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := arc[:c.size]
			src := NewSource(bytes.NewReader(b), c.size)
			if _, err := OpenArchive(src, key); err == nil {
				t.Fatal("OpenArchive accepted an archive cut short")
			}
			a, got, problems, err := Salvage(src, key)
			if err != nil {
				t.Fatal(err)
			}
			if len(problems) == 0 {
				t.Error("no problem reported")
			}
			if len(got) != c.want {
				t.Fatalf("salvaged %d members, want %d; problems %v", len(got), c.want, problems)
			}
			for i, e := range got {
				if e.Number != uint32(i) || e.Offset != entries[i].Offset || e.Length != entries[i].Length {
					t.Fatalf("member %d: %+v, writer said %+v", i, e, entries[i])
				}
				m, err := a.Meta(e)
				if err != nil || !bytes.Equal(m.Path, ms[i].meta.Path) {
					t.Fatalf("member %d: Meta %v, %v", i, m, err)
				}
				var buf bytes.Buffer
				if err := a.Content(e, &buf); err != nil || !bytes.Equal(buf.Bytes(), ms[i].content) {
					t.Fatalf("member %d: content differs (%v)", i, err)
				}
			}
			if _, err := a.Entries(); err == nil {
				t.Error("Entries of a salvaged archive: want an error")
			}
		})
	}
	if _, _, _, err := Salvage(NewSource(bytes.NewReader(arc), int64(len(arc))), testutil.Key(t, 14)); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong key: got %v", err)
	}
}

// TestEndDiagnosis: an archive that lost only its end blocks is told
// apart from one whose end is something else (appended to, damaged).
func TestEndDiagnosis(t *testing.T) {
	key := testutil.Key(t, 15)
	arc, _ := writeArchive(t, key, sampleMembers(), WriterOptions{RecordSize: MinRecordSize, ChunkSize: MinChunkSize})
	junk := bytes.Repeat([]byte{0x5a}, BlockSize)
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"end-blocks-cut", arc[:len(arc)-2*BlockSize], "end-of-archive blocks are missing (truncated?)"},
		{"appended", append(bytes.Clone(arc), junk...), "appended to, or damaged at the end"},
		{"cut-short", arc[:len(arc)/2/BlockSize*BlockSize], "cut short, appended to, or damaged at the end"},
	} {
		_, err := OpenArchive(NewSource(bytes.NewReader(c.b), int64(len(c.b))), key)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
