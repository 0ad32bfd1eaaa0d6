package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/internal/testutil"
	"github.com/google/go-cmp/cmp"
)

type im struct {
	typ  format.Type
	path string
}

// writeIndexed writes an archive of members to dir/name and returns what
// a writer hands to AddToIndex.
func writeIndexed(t testing.TB, dir, name string, key *crypt.Key, seq uint64, ms []im) (*format.Header, []format.Entry) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Small records so that members cross record boundaries.
	w, err := format.NewWriter(f, key, format.WriterOptions{Sequence: seq, Compress: true, RecordSize: format.MinRecordSize})
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		content := bytes.Repeat([]byte(m.path), 1+i*97%3000)
		meta := &format.Meta{Type: m.typ, Path: []byte(m.path), Mode: 0o644, Inode: uint64(1000 + i)}
		var r *bytes.Reader
		if m.typ == format.TypeRegular {
			meta.Size = int64(len(content))
			r = bytes.NewReader(content)
		}
		if r == nil {
			_, err = w.Add(meta, nil)
		} else {
			_, err = w.Add(meta, r)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	h := w.Header()
	return &h, w.Entries()
}

type archiveSpec struct {
	name string
	seq  uint64
	ms   []im
}

// history: a file system over five archives. x is made, deleted and made
// again; y is replaced; z is deleted; d is written twice in one archive;
// a tombstone for a path never seen is kept too.
func history() []archiveSpec {
	R, D, S, T := format.TypeRegular, format.TypeDir, format.TypeSymlink, format.TypeTombstone
	return []archiveSpec{
		{"fs-0001.cbfs", 1, []im{{D, "home"}, {R, "home/x"}, {R, "home/y"}, {R, "home/z"}, {R, "home/d"}, {S, "home/l"}, {R, "home/d"}}},
		{"fs-0002.cbfs", 2, []im{{T, "home/x"}, {R, "home/y"}, {R, "home/w"}, {T, "never/was"}}},
		{"fs-0003.cbfs", 3, []im{{R, "home/x"}, {T, "home/z"}}},
		{"fs-0004.cbfs", 2, []im{{R, "other/a"}, {R, "other/b"}}},
		{"fs-0005.cbfs", 7, nil},
	}
}

// writeHistory writes the archives to dir and keeps an index while
// writing, adding archives in the given order.
func writeHistory(t *testing.T, dir, index string, key *crypt.Key, order []int) {
	t.Helper()
	specs := history()
	for _, i := range order {
		s := specs[i]
		h, es := writeIndexed(t, dir, s.name, key, s.seq, s.ms)
		res, err := AddToIndex(index, key, s.name, h, es)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Conflicts) != 0 {
			t.Fatalf("%s: unexpected conflicts %v", s.name, res.Conflicts)
		}
	}
}

func rebuildBytes(t *testing.T, key *crypt.Key, shard Shard, args ...string) ([]byte, *RebuildResult) {
	t.Helper()
	srcs, _, err := ArchiveSources(args)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Rebuild(context.Background(), srcs, key, shard)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := res.Index.Encode(&buf, key); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), res
}

func lsLines(x *index.Index) []string {
	var out []string
	for i := 0; i < x.Len(); i++ {
		for _, l := range Locate(x, i) {
			out = append(out, fmt.Sprintf("%s %s %s #%d", x.Path(i), l.Archive.Name, l.Type, l.Member))
		}
	}
	return out
}

func TestRebuildEqualsKeptIndex(t *testing.T) {
	key := testutil.Key(t, 1)
	dir, meta := t.TempDir(), t.TempDir()
	kept := filepath.Join(meta, "kept.idx")
	writeHistory(t, dir, kept, key, []int{0, 1, 2, 3, 4})
	want, err := os.ReadFile(kept)
	if err != nil {
		t.Fatal(err)
	}
	got, res := rebuildBytes(t, key, Shard{}, dir)
	if !bytes.Equal(got, want) {
		t.Fatalf("rebuilt index differs from the index kept while writing")
	}
	if res.Archives != 5 || len(res.Scanned)+len(res.Unreadable)+len(res.Copies) != 0 {
		t.Errorf("result %+v", res)
	}
	wantLines := []string{
		"home dir fs-0001.cbfs dir #0",
		"home/d fs-0001.cbfs file #6",
		"home/l fs-0001.cbfs symlink #5",
		"home/w fs-0002.cbfs file #2",
		"home/x fs-0003.cbfs file #0",
		"home/y fs-0002.cbfs file #1",
		"home/z fs-0003.cbfs tombstone #1",
		"never/was fs-0002.cbfs tombstone #3",
		"other/a fs-0004.cbfs file #0",
		"other/b fs-0004.cbfs file #1",
	}
	wantLines[0] = "home fs-0001.cbfs dir #0"
	if diff := cmp.Diff(wantLines, lsLines(res.Index)); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	// The offsets point at the members: read one back through them.
	i, _ := res.Index.Find([]byte("home/y"))
	loc := Locate(res.Index, i)[0]
	data, _ := os.ReadFile(filepath.Join(dir, loc.Archive.Name))
	a, err := format.OpenArchive(format.NewSource(bytes.NewReader(data), int64(len(data))), key)
	if err != nil {
		t.Fatal(err)
	}
	es, _ := a.Entries()
	e := es[loc.Member]
	if a.PhysOffset(e.Offset) != loc.Offset || string(e.Meta.Path) != "home/y" || e.Meta.Size != loc.Size {
		t.Errorf("location %+v does not match member %+v", loc, e)
	}
	if end := a.PhysOffset(e.Offset+e.Length-1) + 1; end != loc.Offset+loc.Span {
		t.Errorf("span ends at %d, member at %d", loc.Offset+loc.Span, end)
	}

	// Adding the archives in another order gives the same bytes.
	kept2 := filepath.Join(meta, "kept2.idx")
	dir2 := t.TempDir()
	writeHistory(t, dir2, kept2, key, []int{4, 2, 0, 3, 1})
	got2, _ := rebuildBytes(t, key, Shard{}, dir2)
	k2, _ := os.ReadFile(kept2)
	if !bytes.Equal(got2, k2) {
		t.Fatal("rebuild differs from the index kept in another order")
	}
	// (Not equal to the first: the archive ids are random.)
	// Each index keeps its lock file (never removed, see indexlock.go).
	if entries, _ := os.ReadDir(meta); len(entries) != 4 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestShardsMergeToFullRebuild(t *testing.T) {
	key := testutil.Key(t, 2)
	dir, out := t.TempDir(), t.TempDir()
	writeHistory(t, dir, filepath.Join(out, "kept.idx"), key, []int{0, 1, 2, 3, 4})
	for i := range 4 {
		writeIndexed(t, dir, fmt.Sprintf("extra-%d.cbfs", i), key, uint64(10+i), []im{{format.TypeRegular, "home/y"}, {format.TypeRegular, fmt.Sprintf("e/%d", i)}})
	}
	full, _ := rebuildBytes(t, key, Shard{}, dir)
	var parts []string
	for i := range 3 {
		b, res := rebuildBytes(t, key, Shard{i, 3}, dir)
		if res.Archives != []int{3, 3, 3}[i] {
			t.Errorf("shard %d/3 read %d archives", i, res.Archives)
		}
		p := filepath.Join(out, fmt.Sprintf("part%d", i))
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	for _, order := range [][]int{{0, 1, 2}, {2, 0, 1}} {
		var ps []string
		for _, o := range order {
			ps = append(ps, parts[o])
		}
		x, copies, err := MergeIndexFiles(context.Background(), ps, key)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := x.Encode(&buf, key); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), full) {
			t.Fatalf("merge of 3 shards in order %v differs from the full rebuild", order)
		}
		if len(copies) != 0 {
			t.Errorf("copies %v", copies)
		}
	}
	// Merging a part twice changes nothing but says so.
	x, copies, err := MergeIndexFiles(context.Background(), append(parts, parts[1]), key)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	x.Encode(&buf, key)
	if !bytes.Equal(buf.Bytes(), full) || len(copies) != 3 {
		t.Errorf("part given twice: equal %v, %d copies", bytes.Equal(buf.Bytes(), full), len(copies))
	}
}

func TestRebuildConflict(t *testing.T) {
	key := testutil.Key(t, 3)
	dir := t.TempDir()
	kept := filepath.Join(t.TempDir(), "kept.idx")
	R := format.TypeRegular
	for _, s := range []archiveSpec{
		{"a.cbfs", 5, []im{{R, "p"}, {R, "q"}}},
		{"b.cbfs", 5, []im{{format.TypeTombstone, "p"}}},
		{"c.cbfs", 4, []im{{R, "p"}, {R, "q"}}},
		{"d.cbfs", 6, []im{{R, "q"}}},
	} {
		h, es := writeIndexed(t, dir, s.name, key, s.seq, s.ms)
		res, err := AddToIndex(kept, key, s.name, h, es)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]int{"b.cbfs": 1}[s.name]; len(res.Conflicts) != want {
			t.Errorf("adding %s: %d conflicts, want %d", s.name, len(res.Conflicts), want)
		}
	}
	got, res := rebuildBytes(t, key, Shard{}, dir)
	if want, _ := os.ReadFile(kept); !bytes.Equal(got, want) {
		t.Error("rebuild with a conflict differs from the kept index")
	}
	cs := Conflicts(res.Index)
	if len(cs) != 1 || string(cs[0].Path) != "p" || len(cs[0].Candidates) != 2 ||
		cs[0].Candidates[0].Archive.Name != "a.cbfs" || cs[0].Candidates[1].Archive.Name != "b.cbfs" ||
		cs[0].Candidates[1].Type != format.TypeTombstone {
		t.Fatalf("conflicts %+v", cs)
	}
	// A higher sequence settles it.
	h, es := writeIndexed(t, dir, "e.cbfs", key, 9, []im{{R, "p"}})
	if res, err := AddToIndex(kept, key, "e.cbfs", h, es); err != nil || len(res.Conflicts) != 0 {
		t.Fatalf("AddToIndex: %v %+v", err, res)
	}
	x, err := ReadIndexFile(kept, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(Conflicts(x)) != 0 {
		t.Errorf("conflict not settled by a higher sequence")
	}
}

// damage flips one byte of a file.
func damage(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func openFooter(t *testing.T, path string, key *crypt.Key) *format.Archive {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := format.OpenArchive(format.NewSource(bytes.NewReader(data), int64(len(data))), key)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestRebuildScansDamagedSummary(t *testing.T) {
	key := testutil.Key(t, 4)
	dir := t.TempDir()
	kept := filepath.Join(t.TempDir(), "kept.idx")
	writeHistory(t, dir, kept, key, []int{0, 1, 2, 3, 4})
	want, _ := os.ReadFile(kept)

	// Summary damaged in fs-0002, footer damaged in fs-0003: both are
	// scanned, every member is still there, the index is the same.
	a := openFooter(t, filepath.Join(dir, "fs-0002.cbfs"), key)
	damage(t, filepath.Join(dir, "fs-0002.cbfs"), a.PhysOffset(int64(a.Footer.SummaryOffset))+20)
	b := openFooter(t, filepath.Join(dir, "fs-0003.cbfs"), key)
	damage(t, filepath.Join(dir, "fs-0003.cbfs"), int64(b.Footer.FooterOffset)+512+30)

	got, res := rebuildBytes(t, key, Shard{}, dir)
	if !bytes.Equal(got, want) {
		t.Error("index rebuilt by scanning differs from the kept index")
	}
	var names []string
	for _, s := range res.Scanned {
		names = append(names, s.Name)
		if s.Err == nil || len(s.Problems) == 0 {
			t.Errorf("%s: scanned without a reason or a problem: %+v", s.Name, s)
		}
	}
	if diff := cmp.Diff([]string{"fs-0002.cbfs", "fs-0003.cbfs"}, names); diff != "" {
		t.Errorf("scanned (-want +got):\n%s", diff)
	}
	if res.Scanned[0].Members != 4 || res.Scanned[1].Members != 2 {
		t.Errorf("scanned members %d and %d, want 4 and 2", res.Scanned[0].Members, res.Scanned[1].Members)
	}

	// A damaged member: the rest of the archive still counts.
	c := openFooter(t, filepath.Join(dir, "fs-0001.cbfs"), key)
	es, _ := c.Entries()
	damage(t, filepath.Join(dir, "fs-0001.cbfs"), c.PhysOffset(es[2].Offset)+100) // home/y's metadata
	damage(t, filepath.Join(dir, "fs-0001.cbfs"), c.PhysOffset(int64(c.Footer.SummaryOffset))+20)
	_, res = rebuildBytes(t, key, Shard{}, dir)
	if len(res.Scanned) != 3 {
		t.Fatalf("%d archives scanned, want 3", len(res.Scanned))
	}
	i, ok := res.Index.Find([]byte("home/z"))
	if !ok || Locate(res.Index, i)[0].Archive.Name != "fs-0003.cbfs" {
		t.Error("home/z lost")
	}
	if i, ok := res.Index.Find([]byte("home/l")); !ok || Locate(res.Index, i)[0].Member != 5 {
		t.Error("members after the damaged one are not counted")
	}
}

func TestRebuildListsUnreadable(t *testing.T) {
	key := testutil.Key(t, 5)
	dir := t.TempDir()
	writeIndexed(t, dir, "good.cbfs", key, 1, []im{{format.TypeRegular, "f"}})
	writeIndexed(t, dir, "other-key.cbfs", testutil.Key(t, 6), 1, []im{{format.TypeRegular, "g"}})
	os.WriteFile(filepath.Join(dir, "garbage.cbfs"), bytes.Repeat([]byte("junk"), 1000), 0o600)
	os.WriteFile(filepath.Join(dir, "empty.cbfs"), nil, 0o600)
	os.WriteFile(filepath.Join(dir, ".hidden"), nil, 0o600)
	h, _ := writeIndexed(t, dir, "hdr.cbfs", key, 1, []im{{format.TypeRegular, "h"}})
	_ = h
	// Inside the header's fields, in record 0 and in the footer's copy
	// (which random access reads instead of record 0).
	damage(t, filepath.Join(dir, "hdr.cbfs"), 512+12+30)
	if fi, err := os.Stat(filepath.Join(dir, "hdr.cbfs")); err == nil {
		damage(t, filepath.Join(dir, "hdr.cbfs"), fi.Size()-3*512+12+100+30)
	}
	_, res := rebuildBytes(t, key, Shard{}, dir)
	var names []string
	for _, u := range res.Unreadable {
		names = append(names, u.Name)
		if u.Err == nil {
			t.Errorf("%s: no reason", u.Name)
		}
	}
	want := []string{"empty.cbfs", "garbage.cbfs", "hdr.cbfs", "other-key.cbfs"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("unreadable (-want +got):\n%s", diff)
	}
	if !errors.Is(res.Unreadable[3].Err, format.ErrWrongKey) {
		t.Errorf("other-key: %v", res.Unreadable[3].Err)
	}
	if res.Archives != 1 || res.Index.Len() != 1 {
		t.Errorf("read %d archives, %d records", res.Archives, res.Index.Len())
	}
}

func TestRebuildCopies(t *testing.T) {
	key := testutil.Key(t, 7)
	dir := t.TempDir()
	writeIndexed(t, dir, "a.cbfs", key, 1, []im{{format.TypeRegular, "f"}})
	writeIndexed(t, dir, "b.cbfs", key, 2, []im{{format.TypeRegular, "g"}})
	want, _ := rebuildBytes(t, key, Shard{}, dir)
	data, _ := os.ReadFile(filepath.Join(dir, "b.cbfs"))
	os.WriteFile(filepath.Join(dir, "c-copy.cbfs"), data, 0o600)
	got, res := rebuildBytes(t, key, Shard{}, dir)
	if !bytes.Equal(got, want) {
		t.Error("a copy changed the index")
	}
	if len(res.Copies) != 1 || res.Copies[0].Names != [2]string{"b.cbfs", "c-copy.cbfs"} {
		t.Errorf("copies %+v", res.Copies)
	}
	// The same for shards: the copy lands in another part.
	var ps []string
	for i := range 2 {
		b, _ := rebuildBytes(t, key, Shard{i, 2}, dir)
		p := filepath.Join(t.TempDir(), "part")
		os.WriteFile(p, b, 0o600)
		ps = append(ps, p)
	}
	x, copies, err := MergeIndexFiles(context.Background(), ps, key)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	x.Encode(&buf, key)
	if !bytes.Equal(buf.Bytes(), want) || len(copies) != 1 {
		t.Errorf("merged shards with a copy: equal %v, copies %v", bytes.Equal(buf.Bytes(), want), copies)
	}
}

func TestAddToIndexAtomic(t *testing.T) {
	key := testutil.Key(t, 8)
	dir, meta := t.TempDir(), t.TempDir()
	kept := filepath.Join(meta, "kept.idx")
	writeHistory(t, dir, kept, key, []int{0, 1})
	old, _ := os.ReadFile(kept)
	h, es := writeIndexed(t, dir, "new.cbfs", key, 3, []im{{format.TypeRegular, "n"}})
	unchanged := func(what string, err error) {
		t.Helper()
		t.Logf("%s: %v", what, err)
		if err == nil {
			t.Errorf("%s: no error", what)
		}
		now, _ := os.ReadFile(kept)
		if !bytes.Equal(now, old) {
			t.Errorf("%s: the old index was changed", what)
		}
		if ents, _ := os.ReadDir(meta); len(ents) != 2 { // the index and its lock file
			t.Errorf("%s: files left behind: %v", what, ents)
		}
	}
	_, err := AddToIndex(kept, testutil.Key(t, 9), "new.cbfs", h, es)
	unchanged("wrong key", err)
	if !errors.Is(err, format.ErrWrongKey) {
		t.Errorf("wrong key: %v", err)
	}
	_, err = AddToIndex(kept, key, "dir/new.cbfs", h, es)
	unchanged("bad archive name", err)
	forged := *h
	x, _ := ReadIndexFile(kept, key)
	forged.ID = x.Archives[0].ID
	_, err = AddToIndex(kept, key, "new.cbfs", &forged, es)
	unchanged("archive id with another sequence", err)

	// A write that fails half way (the file size limit): the old index
	// stays, the temporary file goes.
	var big []im
	for i := range 3000 {
		big = append(big, im{format.TypeRegular, fmt.Sprintf("big/%d-%x", i, i*2654435761)})
	}
	hb, eb := writeIndexed(t, dir, "big.cbfs", key, 4, big)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	small := lim
	small.Cur = uint64(len(old) + 4096)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &small); err != nil {
		t.Skipf("cannot set a file size limit: %v", err)
	}
	_, err = AddToIndex(kept, key, "big.cbfs", hb, eb)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	unchanged("file size limit", err)

	// Corrupt index: refused, left as it is for the operator.
	damage(t, kept, int64(len(old)-5))
	old, _ = os.ReadFile(kept)
	_, err = AddToIndex(kept, key, "new.cbfs", h, es)
	unchanged("damaged index", err)
}

func TestNextSeq(t *testing.T) {
	key := testutil.Key(t, 10)
	dir := t.TempDir()
	idx := filepath.Join(dir, "i")
	if n, err := NextSeq(idx, key); err != nil || n != 1 {
		t.Errorf("missing index: %d %v", n, err)
	}
	writeHistory(t, dir, idx, key, []int{0, 1, 2, 3, 4})
	if n, err := NextSeq(idx, key); err != nil || n != 8 {
		t.Errorf("NextSeq %d %v, want 8", n, err)
	}
}

func TestDiffIndex(t *testing.T) {
	key := testutil.Key(t, 11)
	dir := t.TempDir()
	writeHistory(t, dir, filepath.Join(dir, ".kept"), key, []int{0, 1, 2, 3, 4})
	full, _ := rebuildBytes(t, key, Shard{}, dir)
	again, _ := rebuildBytes(t, key, Shard{}, dir)
	diff := func(a, b []byte) []IndexDiff {
		t.Helper()
		ra, err := index.Open(bytes.NewReader(a), int64(len(a)), key)
		if err != nil {
			t.Fatal(err)
		}
		rb, err := index.Open(bytes.NewReader(b), int64(len(b)), key)
		if err != nil {
			t.Fatal(err)
		}
		var d []IndexDiff
		if err := DiffReaders(ra, rb, func(e IndexDiff) error { d = append(d, e); return nil }); err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := diff(full, again); len(d) != 0 {
		t.Fatalf("equal indexes differ: %+v", d)
	}
	os.Remove(filepath.Join(dir, "fs-0003.cbfs"))
	less, _ := rebuildBytes(t, key, Shard{}, dir)
	d := diff(full, less)
	var got []string
	for _, e := range d {
		switch {
		case !e.IsRecord:
			got = append(got, fmt.Sprintf("archive %v %v", e.ArchA != nil, e.ArchB != nil))
		default:
			got = append(got, fmt.Sprintf("%s %d %d", e.Path, len(e.A), len(e.B)))
		}
	}
	want := []string{"archive true false", "home/x 1 1", "home/z 1 1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("diff (-want +got):\n%s", diff)
	}
}

func TestArchiveSources(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"b", "a", ".tmp", "c"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o600)
	}
	os.Mkdir(filepath.Join(dir, "sub"), 0o700)
	os.WriteFile(filepath.Join(dir, "sub", "deep"), nil, 0o600)
	srcs, _, err := ArchiveSources([]string{dir, filepath.Join(dir, "a"), filepath.Join(dir, "sub", "deep")})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range srcs {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"a", "b", "c", "deep"}) {
		t.Errorf("sources %v", names)
	}
	for _, bad := range []string{"1/0", "3/3", "-1/2", "x", "1/", "0/2/3"} {
		if _, err := ParseShard(bad); err == nil || !strings.Contains(err.Error(), "shard") {
			t.Errorf("ParseShard(%q): %v", bad, err)
		}
	}
	if s, err := ParseShard("2/5"); err != nil || s != (Shard{2, 5}) {
		t.Errorf("ParseShard(2/5) = %v, %v", s, err)
	}
	for _, v := range shardEnv {
		t.Setenv(v, "")
	}
	t.Setenv("SLURM_ARRAY_TASK_ID", "2")
	if _, err := ParseShard("env/2"); err == nil || !strings.Contains(err.Error(), "SLURM_ARRAY_TASK_ID=2") {
		t.Errorf("env/2 with SLURM_ARRAY_TASK_ID=2: %v, want the variable named", err)
	}
	if s, err := ParseShard("env/3"); err != nil || s != (Shard{2, 3}) {
		t.Errorf("env/3 with SLURM_ARRAY_TASK_ID=2: %v, %v", s, err)
	}
}

// Adding an archive file reads it as a rebuild does: same bytes as the
// index kept from the writer's entries.
func TestAddArchiveFile(t *testing.T) {
	key := testutil.Key(t, 12)
	dir, meta := t.TempDir(), t.TempDir()
	kept := filepath.Join(meta, "kept.idx")
	writeHistory(t, dir, kept, key, []int{0, 1, 2, 3, 4})
	other := filepath.Join(meta, "other.idx")
	for _, s := range []string{"fs-0003.cbfs", "fs-0001.cbfs", "fs-0005.cbfs", "fs-0002.cbfs", "fs-0004.cbfs"} {
		res, err := AddArchiveFile(other, key, filepath.Join(dir, s))
		if err != nil {
			t.Fatal(err)
		}
		if res.Created != (s == "fs-0003.cbfs") {
			t.Errorf("%s: created %v", s, res.Created)
		}
	}
	a, _ := os.ReadFile(kept)
	b, _ := os.ReadFile(other)
	if !bytes.Equal(a, b) {
		t.Error("index from archive files differs from the index from writer entries")
	}
	// Adding one that is there already leaves the file as it was.
	st0, _ := os.Stat(other)
	if res, err := AddArchiveFile(other, key, filepath.Join(dir, "fs-0002.cbfs")); err != nil || !res.Already {
		t.Errorf("adding an archive the index holds: %+v, %v", res, err)
	}
	if st1, _ := os.Stat(other); !os.SameFile(st0, st1) || !st1.ModTime().Equal(st0.ModTime()) {
		t.Error("adding an archive the index holds wrote the index again")
	}
	if _, err := AddArchiveFile(other, testutil.Key(t, 13), filepath.Join(dir, "fs-0001.cbfs")); !errors.Is(err, format.ErrWrongKey) {
		t.Errorf("wrong key: %v", err)
	}
}

// An index replaced while an update holds its lock (by something that
// does not take the lock) is not overwritten: the update fails.
func TestIndexUpdateReplacedUnderneath(t *testing.T) {
	key := testutil.Key(t, 21)
	dir, meta := t.TempDir(), t.TempDir()
	kept := filepath.Join(meta, "kept.idx")
	writeHistory(t, dir, kept, key, []int{0})
	u, err := OpenIndexUpdate(kept, key, IndexOptions{LockTimeout: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	// A second writer cannot take the lock meanwhile.
	var be *LockBusyError
	if _, err := OpenIndexUpdate(kept, key, IndexOptions{LockTimeout: 100 * time.Millisecond}); !errors.As(err, &be) {
		t.Fatalf("second writer: %v, want a LockBusyError", err)
	}
	other := filepath.Join(meta, "other.idx")
	if err := WriteIndexFile(other, &index.Index{}, key, false); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, kept); err != nil {
		t.Fatal(err)
	}
	h, es := writeIndexed(t, dir, "new.cbfs", key, 3, []im{{format.TypeRegular, "n"}})
	add, err := ArchiveIndex("new.cbfs", h, es)
	if err != nil {
		t.Fatal(err)
	}
	var re *IndexReplacedError
	if _, err := u.Add(add); !errors.As(err, &re) {
		t.Fatalf("update over a replaced index: %v, want an IndexReplacedError", err)
	}
	if x, err := ReadIndexFile(kept, key); err != nil || len(x.Archives) != 0 {
		t.Fatalf("the replacing index was overwritten: %v", err)
	}
	// A missing index is an error unless it may be created.
	var ne *NoIndexError
	if _, err := OpenIndexUpdate(filepath.Join(meta, "none.idx"), key, IndexOptions{}); !errors.As(err, &ne) {
		t.Fatalf("missing index: %v, want a NoIndexError", err)
	}
}

// TestHiddenInNamesWhatARebuildServes: the archive named as bringing a
// deleted path back is the one a rebuild would serve it from: the
// highest sequence below the tombstone.
func TestHiddenInNamesWhatARebuildServes(t *testing.T) {
	given := map[string]*GivenArchive{
		"0001.cbfs": {ID: [crypt.IDSize]byte{1}, Seq: 1, Paths: map[string]bool{"data/a": true}},
		"0002.cbfs": {ID: [crypt.IDSize]byte{2}, Seq: 2, Paths: map[string]bool{"data/a": true}},
		"0005.cbfs": {ID: [crypt.IDSize]byte{5}, Seq: 5, Paths: map[string]bool{"data/a": true}},
	}
	ts := index.Archive{Name: "0004.cbfs", ID: [crypt.IDSize]byte{4}, Seq: 4}
	if got := hiddenIn(given, ts, []byte("data/a")); got != "0002.cbfs" {
		t.Errorf("hiddenIn = %q, want 0002.cbfs", got)
	}
	if got := hiddenIn(given, ts, []byte("data/b")); got != "" {
		t.Errorf("hiddenIn of a path no archive holds = %q", got)
	}
}
