package repo

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/internal/testutil"
	"github.com/cbfs/cbfs/store"
	"github.com/cbfs/cbfs/tarconv"
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
	if mb := mergedBytes(t, parts, key); !bytes.Equal(mb, want) {
		t.Errorf("in-memory merge: %d bytes, bounded rebuild %d: differ", len(mb), len(want))
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

// writeLargeSummary writes one archive of n members whose summary spans
// several read windows and records (small chunks, no compression, long
// paths), out of path order, with a path twice and tombstones.
func writeLargeSummary(t *testing.T, dir, name string, key *crypt.Key, seq uint64, n int) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := format.NewWriter(f, key, format.WriterOptions{Sequence: seq, ChunkSize: format.MinChunkSize, RecordSize: format.MinRecordSize})
	if err != nil {
		t.Fatal(err)
	}
	deep := strings.Repeat("deep/", 30)
	for i := range n {
		m := &format.Meta{Type: format.TypeDir, Path: fmt.Appendf(nil, "big/%s%06d", deep, (i*7919)%n), Mode: 0o755, Inode: uint64(i)}
		switch {
		case i%101 == 5:
			m.Type = format.TypeTombstone
		case i == n-1:
			m.Path = fmt.Appendf(nil, "big/%s%06d", deep, 0) // again: the later member wins
		}
		if _, err := w.Add(m, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// failingObject fails every read of [from, to): a store that breaks off
// half-way through the summary (its end, read with the footer when the
// archive is opened, still reads).
type failingObject struct {
	store.Object
	from, to int64
}

func (o failingObject) ReadAt(p []byte, off int64) (int, error) {
	if off < o.to && off+int64(len(p)) > o.from {
		return 0, errors.New("connection reset")
	}
	return o.Object.ReadAt(p, off)
}

// One archive of many members rebuilds in bounded memory: its summary is
// walked chunk by chunk into sorted runs that spill, and the index is the
// same bytes whatever the budget. A summary found damaged, or unreadable,
// late in the walk leaves nothing of the walk in the index: the archive
// is scanned instead (the same index), or left out, and no spill file
// stays behind.
func TestRebuildOneLargeArchive(t *testing.T) {
	key := testutil.Key(t, 3)
	dir, other, tmp := t.TempDir(), t.TempDir(), t.TempDir()
	big := writeLargeSummary(t, dir, "fs-big.cbfs", key, 4, 12000)
	writeIndexed(t, other, "fs-small.cbfs", key, 5, []im{{format.TypeRegular, "small/a"}, {format.TypeRegular, "big/x"}})
	obj, err := store.File(big).Open()
	if err != nil {
		t.Fatal(err)
	}
	a, err := format.OpenArchive(obj, key)
	if err != nil {
		t.Fatal(err)
	}
	es, err := a.Entries()
	obj.Close()
	if err != nil {
		t.Fatal(err)
	}
	x, err := ArchiveIndex("fs-big.cbfs", a.Header, es)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := x.Encode(&want, key); err != nil {
		t.Fatal(err)
	}
	R := int64(a.Header.RecordSize)
	sumStart := a.PhysOffset(int64(a.Footer.SummaryOffset))
	if sumLen := int64(a.Footer.FooterOffset) - sumStart; sumLen < 2<<20 {
		t.Fatalf("summary of %d bytes: want over two read windows", sumLen)
	}
	rebuild := func(mem int, srcs ...store.Source) (*RebuildResult, []byte) {
		t.Helper()
		var buf bytes.Buffer
		res, err := RebuildTo(context.Background(), srcs, key, Shard{}, RebuildOptions{Memory: mem, TempDir: tmp}, &buf)
		if err != nil {
			t.Fatal(err)
		}
		if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
			t.Fatalf("spill files left: %v", ents)
		}
		return res, buf.Bytes()
	}
	for _, mem := range []int{DefaultMemory, 64 << 10, 4096} {
		res, got := rebuild(mem, store.File(big))
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("budget %d: %d bytes, differ from the one-archive index's %d", mem, len(got), want.Len())
		}
		if mem < DefaultMemory && res.Spills < 2 {
			t.Errorf("budget %d: %d spills; the archive's runs must spill", mem, res.Spills)
		}
	}

	// Damaged in its last summary frame: found after most entries went
	// into runs. The scan that replaces the summary finds every member.
	last := int64(a.Footer.StreamLength) - format.FrameHeaderSize - int64(a.Header.ChunkSize) - 20
	b, err := os.ReadFile(big)
	if err != nil {
		t.Fatal(err)
	}
	b[a.Header.PhysOffset(last)+format.FrameHeaderSize+7] ^= 1
	damaged := filepath.Join(t.TempDir(), "fs-big.cbfs")
	if err := os.WriteFile(damaged, b, 0o644); err != nil {
		t.Fatal(err)
	}
	res, got := rebuild(4096, store.File(damaged))
	if len(res.Scanned) != 1 || len(res.Copies) != 0 || len(res.Combined.Archives) != 1 || !bytes.Equal(got, want.Bytes()) {
		t.Errorf("damaged summary: %d scanned, %d copies, %d archives, index equal: %v", len(res.Scanned), len(res.Copies), len(res.Combined.Archives), bytes.Equal(got, want.Bytes()))
	}

	// Unreadable half-way through the summary: left out whole, the other
	// archive's index as if it were alone.
	_, alone := rebuild(4096, store.File(filepath.Join(other, "fs-small.cbfs")))
	broken := store.Source{Name: "fs-big.cbfs", Where: big, Open: func() (store.Object, error) {
		o, err := store.File(big).Open()
		return failingObject{o, sumStart + 3<<19 + R, int64(a.Footer.FooterOffset) - 64<<10}, err
	}}
	res, got = rebuild(4096, broken, store.File(filepath.Join(other, "fs-small.cbfs")))
	if len(res.Unreadable) != 1 || res.Archives != 1 || len(res.Copies) != 0 || !bytes.Equal(got, alone) {
		t.Errorf("summary unreadable half-way: %d unreadable, %d archives, %d copies, index as if alone: %v", len(res.Unreadable), res.Archives, len(res.Copies), bytes.Equal(got, alone))
	}
}

// An archive whose footer is lost is scanned, its runs built as the scan
// goes; its member count is one more than the last member found, even
// when that member is of a type the index does not take (an imported
// tar's trailer): the index is the one kept while writing.
func TestRebuildScanCountsEveryMember(t *testing.T) {
	key := testutil.Key(t, 3)
	dir := t.TempDir()
	p := filepath.Join(dir, "fs-1.cbfs")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	var in bytes.Buffer
	tw := tar.NewWriter(&in)
	for _, name := range []string{"d/f", "d/g"} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
		tw.Write([]byte("x"))
	}
	tw.Close()
	if _, err := tarconv.ImportTar(context.Background(), f, bytes.NewReader(in.Bytes()), key, format.WriterOptions{Sequence: 1}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rebuild := func() (*RebuildResult, []byte) {
		var buf bytes.Buffer
		res, err := RebuildTo(context.Background(), []store.Source{store.File(p)}, key, Shard{}, RebuildOptions{TempDir: t.TempDir()}, &buf)
		if err != nil {
			t.Fatal(err)
		}
		return res, buf.Bytes()
	}
	_, want := rebuild()
	a := openFooter(t, p, key)
	es, err := a.Entries()
	if err != nil || es[len(es)-1].Meta.Type != format.TypeTrailer {
		t.Fatalf("the last member is not a trailer: %v", err)
	}
	damage(t, p, int64(a.Footer.FooterOffset)+512+30)
	res, got := rebuild()
	if len(res.Scanned) != 1 || res.Combined.Archives[0].Members != a.Footer.Members || !bytes.Equal(got, want) {
		t.Errorf("%d scanned, members %d (want %d), index as before the damage: %v", len(res.Scanned), res.Combined.Archives[0].Members, a.Footer.Members, bytes.Equal(got, want))
	}
}

// mergedBytes merges parts in memory and encodes the result.
func mergedBytes(t *testing.T, parts []*index.Index, key *crypt.Key) []byte {
	t.Helper()
	x, _, err := MergeAll(parts)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := x.Encode(&b, key); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
