package repo

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/internal/testutil"
)

// boundedSet writes archives whose paths interleave, with conflicts,
// tombstones, repeats within an archive, a copy of an archive under
// another name, and one large archive written out of path order.
func boundedSet(t *testing.T, dir string, key *crypt.Key) {
	t.Helper()
	R, T := format.TypeRegular, format.TypeTombstone
	for a := range 6 {
		var ms []im
		for m := range 300 {
			typ := R
			if (a*7+m)%23 == 0 {
				typ = T
			}
			x := (m*4 + a*8) % 1200
			ms = append(ms, im{typ, fmt.Sprintf("data/d%02d/f%05d", x%17, x)})
		}
		ms = append(ms, ms[3]) // a path twice in one archive
		writeIndexed(t, dir, fmt.Sprintf("fs-%02d.cbfs", a), key, uint64(1+a/2), ms)
	}
	var big []im
	for m := range 5000 {
		big = append(big, im{format.TypeDir, fmt.Sprintf("big/%s/%06d", bytes.Repeat([]byte{'q'}, m%40), (m*7919)%5003)})
	}
	writeIndexed(t, dir, "fs-big.cbfs", key, 9, big)
	b, err := os.ReadFile(filepath.Join(dir, "fs-01.cbfs"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fs-01-copy.cbfs"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRebuildBoundedIdentical: the index is the same bytes whatever the
// memory budget (a tiny one spills every archive's runs, and the large
// archive's own runs), the same as the in-memory merge of one-archive
// indexes, and a merge of shards gives them too; no spill file is left.
func TestRebuildBoundedIdentical(t *testing.T) {
	key := testutil.Key(t, 3)
	dir := t.TempDir()
	boundedSet(t, dir, key)
	srcs, _, err := ArchiveSources([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	var want []byte
	for _, mem := range []int{DefaultMemory, 1 << 20, 4096} {
		var buf bytes.Buffer
		res, err := RebuildTo(context.Background(), srcs, key, Shard{}, RebuildOptions{Memory: mem, TempDir: tmp}, &buf)
		if err != nil {
			t.Fatal(err)
		}
		if mem == 4096 && res.Spills == 0 {
			t.Errorf("a budget of %d bytes did not spill", mem)
		}
		if want == nil {
			want = buf.Bytes()
			if len(res.Combined.Conflicts) == 0 || len(res.Copies) != 1 {
				t.Errorf("the set has %d conflicts, %d copies, %d tombstones", len(res.Combined.Conflicts), len(res.Copies), res.Combined.Stats.Tombstones)
			}
		} else if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("budget %d: %d bytes, differ from the default budget's %d", mem, buf.Len(), len(want))
		}
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("spill files left: %v", ents)
	}
	// The in-memory merge of one-archive indexes gives the same bytes.
	var parts []*index.Index
	for _, s := range srcs {
		obj, err := s.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer obj.Close()
		a, err := format.OpenArchive(obj, key)
		if err != nil {
			t.Fatal(err)
		}
		es, err := a.Entries()
		if err != nil {
			t.Fatal(err)
		}
		x, err := ArchiveIndex(s.Name, a.Header, es)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, x)
	}
	x, _, err := MergeAll(parts)
	if err != nil {
		t.Fatal(err)
	}
	var mb bytes.Buffer
	if err := x.Encode(&mb, key); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mb.Bytes(), want) {
		t.Errorf("in-memory merge: %d bytes, bounded rebuild %d: differ", mb.Len(), len(want))
	}
	// Shards merged, streaming, give the full rebuild.
	var ps []string
	for i := range 3 {
		var buf bytes.Buffer
		if _, err := RebuildTo(context.Background(), srcs, key, Shard{I: i, N: 3}, RebuildOptions{Memory: 8192, TempDir: tmp}, &buf); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(tmp, fmt.Sprintf("part%d", i))
		os.WriteFile(p, buf.Bytes(), 0o644)
		ps = append(ps, p)
	}
	var merged bytes.Buffer
	if _, err := MergeIndexFilesTo(context.Background(), ps, key, &merged); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(merged.Bytes(), want) {
		t.Errorf("merge of shards: %d bytes, full rebuild %d: differ", merged.Len(), len(want))
	}
	// Lookups through the reader agree with the whole index read, from
	// several goroutines at once; LookupMany reads what Lookup reads.
	full, err := index.Read(bytes.NewReader(want), key)
	if err != nil {
		t.Fatal(err)
	}
	r, err := index.Open(bytes.NewReader(want), int64(len(want)), key)
	if err != nil {
		t.Fatal(err)
	}
	if r.Blocks() < 2 || r.Len() != full.Len() {
		t.Fatalf("%d blocks, %d records; want several blocks, %d records", r.Blocks(), r.Len(), full.Len())
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < full.Len(); i += 7 {
				rec, ok, err := r.Lookup(full.Path(i))
				if err != nil || !ok || !bytes.Equal(rec.Path, full.Path(i)) || fmt.Sprint(rec.Entries) != fmt.Sprint(full.Entries(i)) {
					t.Errorf("lookup %q: %v %v %v", full.Path(i), rec, ok, err)
					return
				}
				if _, ok, _ := r.Lookup(append(bytes.Clone(full.Path(i)), 'x', 'x', 'x')); ok {
					t.Errorf("lookup of a path not there found one")
					return
				}
			}
		})
	}
	wg.Wait()
	var paths [][]byte
	for i := full.Len() - 1; i >= 0; i -= 3 {
		paths = append(paths, full.Path(i))
	}
	n := 0
	if err := r.LookupMany(paths, func(i int, rec *index.Record) error {
		n++
		if !bytes.Equal(rec.Path, paths[i]) {
			t.Errorf("LookupMany: %q for %q", rec.Path, paths[i])
		}
		return nil
	}); err != nil || n != len(paths) {
		t.Errorf("LookupMany found %d of %d: %v", n, len(paths), err)
	}
	// A listing of a subtree reads from its block on, and gives exactly
	// the records under it.
	it := r.Records([]byte("data/d03/"))
	got := 0
	for it.Next() && bytes.HasPrefix(it.Path(), []byte("data/d03/")) {
		got++
	}
	wantN := 0
	for i := range full.Len() {
		if bytes.HasPrefix(full.Path(i), []byte("data/d03/")) {
			wantN++
		}
	}
	if it.Err() != nil || got != wantN || got == 0 {
		t.Errorf("subtree: %d records, want %d (%v)", got, wantN, it.Err())
	}
}
