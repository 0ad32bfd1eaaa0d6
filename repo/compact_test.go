package repo

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/internal/testutil"
	"github.com/cbfs/cbfs/store"
)

// treeBytes is what the index serves: the plain tar of the current tree
// (export --index), every member's metadata and content.
func treeBytes(t *testing.T, x *index.Index, dir string, key *crypt.Key) []byte {
	t.Helper()
	tr, err := OpenTree(context.Background(), x, func(a index.Archive) store.Source { return store.File(filepath.Join(dir, a.Name)) }, TreeOptions{Keys: []*crypt.Key{key}})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, _, err := WriteTree(context.Background(), tr, &b, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func readIdx(t *testing.T, path string, key *crypt.Key) *index.Index {
	t.Helper()
	x, err := ReadIndexFile(path, key)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// rebuildNoConflict rebuilds from dir and fails on any conflict.
func rebuildNoConflict(t *testing.T, key *crypt.Key, dir string) []byte {
	t.Helper()
	b, res := rebuildBytes(t, key, Shard{}, dir)
	if c := Conflicts(res.Index); len(c) != 0 {
		t.Fatalf("rebuild of %s: %d conflicts, want none: %v", dir, len(c), c)
	}
	return b
}

func compact(t *testing.T, idx string, key *crypt.Key, opt CompactOptions, args ...string) *CompactResult {
	t.Helper()
	u, err := OpenIndexUpdate(idx, key, IndexOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	opt.Keys = []*crypt.Key{key}
	res, err := Compact(context.Background(), u, args, opt)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// copyArchives copies dir's archives except those named in skip.
func copyArchives(t *testing.T, dir string, skip []string) string {
	t.Helper()
	out := t.TempDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || slices.Contains(skip, e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func baseNames(ps []string) []string {
	var out []string
	for _, p := range ps {
		out = append(out, filepath.Base(p))
	}
	return out
}

// TestCompactInvariants checks the invariants of index spec 2.8 on a
// history of updates, deletions and a tombstone that hides nothing, over
// two rounds of compaction.
func TestCompactInvariants(t *testing.T) {
	key := testutil.Key(t, 1)
	dir, meta := t.TempDir(), t.TempDir()
	kept := filepath.Join(meta, "kept.idx")
	writeHistory(t, dir, kept, key, []int{0, 1, 2, 3, 4})
	// A later archive supersedes other/a of fs-0004 (sequence 2, as
	// fs-0002).
	h, es := writeIndexed(t, dir, "fs-0006.cbfs", key, 8, []im{{format.TypeRegular, "other/a"}})
	if _, err := AddToIndex(kept, key, "fs-0006.cbfs", h, es); err != nil {
		t.Fatal(err)
	}
	before := treeBytes(t, readIdx(t, kept, key), dir, key)

	res := compact(t, kept, key, CompactOptions{MinDead: 0}, dir)
	// Every archive with dead members is compacted (fs-0003 and fs-0006
	// have none); the two of sequence 2 share a new archive.
	if len(res.Picked) != 3 || len(res.Outputs) != 2 || len(res.Retired) != 3 {
		t.Fatalf("picked %d, outputs %d, retired %d: %+v", len(res.Picked), len(res.Outputs), len(res.Retired), res)
	}
	keptBytes := readFile(t, kept)
	x := readIdx(t, kept, key)
	// 1. The index serves the same content and metadata.
	if got := treeBytes(t, x, dir, key); !bytes.Equal(got, before) {
		t.Fatal("the tree the index serves changed")
	}
	for _, a := range x.Archives {
		if slices.Contains(baseNames(res.Retired), a.Name) {
			t.Errorf("retired archive %s is still in the table", a.Name)
		}
	}
	// 2. A rebuild with the replaced archives and one without both give
	// the maintained index, without conflict.
	if got := rebuildNoConflict(t, key, dir); !bytes.Equal(got, keptBytes) {
		t.Fatal("rebuild with the replaced archives differs from the maintained index")
	}
	without := copyArchives(t, dir, baseNames(res.Retired))
	if got := rebuildNoConflict(t, key, without); !bytes.Equal(got, keptBytes) {
		t.Fatal("rebuild without the replaced archives differs from the maintained index")
	}
	// Shards in any split merge to it too.
	var parts []*index.Index
	for i := range 3 {
		_, r := rebuildBytes(t, key, Shard{I: i, N: 3}, dir)
		parts = append(parts, r.Index)
	}
	if !bytes.Equal(mergedBytes(t, parts, key), keptBytes) {
		t.Fatal("merged shards differ from the maintained index")
	}

	// 3. An archive written later wins over the copies, at the next
	// sequence number and at one further on.
	next := readIdx(t, kept, key).HighSeq + 1
	for i, seq := range []uint64{next, next + 5} {
		name := []string{"later-1.cbfs", "later-2.cbfs"}[i]
		h, es := writeIndexed(t, dir, name, key, seq, []im{{format.TypeRegular, "home/d"}})
		if _, err := AddToIndex(kept, key, name, h, es); err != nil {
			t.Fatal(err)
		}
		x := readIdx(t, kept, key)
		j, ok := x.Find([]byte("home/d"))
		if !ok || x.Archives[x.Entries(j)[0].Archive].Name != name {
			t.Fatalf("home/d is not served from %s after compaction", name)
		}
	}

	// A second round compacts compacted archives: the lists carry on, so
	// that the first round's sources stay left out.
	before = treeBytes(t, readIdx(t, kept, key), dir, key)
	res2 := compact(t, kept, key, CompactOptions{MinDead: 0}, dir)
	if len(res2.Outputs) == 0 {
		t.Fatal("second round compacted nothing")
	}
	keptBytes = readFile(t, kept)
	if got := treeBytes(t, readIdx(t, kept, key), dir, key); !bytes.Equal(got, before) {
		t.Fatal("second round: the tree the index serves changed")
	}
	if got := rebuildNoConflict(t, key, dir); !bytes.Equal(got, keptBytes) {
		t.Fatal("second round: rebuild with every archive ever written differs")
	}
	// The first round's outputs that the second retired gone, their
	// sources (retired by the first round) still there: the lists
	// carried on keep those sources out.
	var gone []string
	for _, o := range res.Outputs {
		if slices.Contains(baseNames(res2.Retired), filepath.Base(o.Archive)) {
			gone = append(gone, filepath.Base(o.Archive))
		}
	}
	if len(gone) == 0 {
		t.Fatal("the second round retired none of the first round's outputs")
	}
	onlyOld := copyArchives(t, dir, gone)
	if got := rebuildNoConflict(t, key, onlyOld); !bytes.Equal(got, keptBytes) {
		t.Fatal("second round: rebuild with the first round's outputs gone differs")
	}

	// --remove deletes exactly the retired archives, after the update.
	res3 := compact(t, kept, key, CompactOptions{MinDead: 0.99, Remove: true}, dir)
	if len(res3.Removed) == 0 || len(res3.Removed) != len(res3.Retired) {
		t.Fatalf("removed %v, retired %v", res3.Removed, res3.Retired)
	}
	for _, r := range res3.Removed {
		if _, err := os.Stat(r); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there", r)
		}
	}
	if got := rebuildNoConflict(t, key, dir); !bytes.Equal(got, readFile(t, kept)) {
		t.Fatal("after --remove: rebuild differs from the maintained index")
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCompactHoldsLock: another writer cannot take the index's lock
// while a compaction runs.
func TestCompactHoldsLock(t *testing.T) {
	key := testutil.Key(t, 1)
	dir, meta := t.TempDir(), t.TempDir()
	kept := filepath.Join(meta, "kept.idx")
	writeHistory(t, dir, kept, key, []int{0, 1, 2, 3, 4})
	var busy error
	defer func(h func(string)) { compactHook = h }(compactHook)
	compactHook = func(p string) {
		if p == "output-written" && busy == nil {
			_, busy = OpenIndexUpdate(kept, key, IndexOptions{LockTimeout: 0})
		}
	}
	compact(t, kept, key, CompactOptions{MinDead: 0}, dir)
	var be *LockBusyError
	if !errors.As(busy, &be) {
		t.Fatalf("opening the index for an update during compaction: %v, want a busy lock", busy)
	}
}

// TestCompactKilled kills a compaction (SIGKILL) at each point of its
// run, checks that the index and a rebuild still serve the same tree
// without conflict, and that running it again finishes the job.
func TestCompactKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	for _, point := range []string{"picked", "output-written", "index-updated", "removed"} {
		t.Run(point, func(t *testing.T) {
			key := testutil.Key(t, 1)
			dir, meta := t.TempDir(), t.TempDir()
			kept := filepath.Join(meta, "kept.idx")
			writeHistory(t, dir, kept, key, []int{0, 1, 2, 3, 4})
			before := treeBytes(t, readIdx(t, kept, key), dir, key)

			cmd := exec.Command(os.Args[0], "-test.run=^TestCompactKillChild$")
			cmd.Env = append(os.Environ(), "CBFS_COMPACT_CHILD="+point, "CBFS_COMPACT_DIR="+dir, "CBFS_COMPACT_INDEX="+kept)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child: %v, want killed at %s\n%s", err, point, out)
			}
			if got := treeBytes(t, readIdx(t, kept, key), dir, key); !bytes.Equal(got, before) {
				t.Fatal("after the kill the index serves another tree")
			}
			rb := filepath.Join(meta, "rebuilt.idx")
			if err := os.WriteFile(rb, rebuildNoConflict(t, key, dir), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := treeBytes(t, readIdx(t, rb, key), dir, key); !bytes.Equal(got, before) {
				t.Fatal("after the kill a rebuild serves another tree")
			}
			// Again, to the end: nothing retired is left, and the
			// maintained index is what a rebuild gives.
			// The sources named one by one: a new archive the killed
			// run left beside them is found all the same.
			var files []string
			for _, a := range history() {
				if _, err := os.Stat(filepath.Join(dir, a.name)); err == nil {
					files = append(files, filepath.Join(dir, a.name))
				}
			}
			compact(t, kept, key, CompactOptions{MinDead: 0, Remove: true}, files...)
			if got := rebuildNoConflict(t, key, dir); !bytes.Equal(got, readFile(t, kept)) {
				t.Fatal("after the second run a rebuild differs from the maintained index")
			}
			// --remove removes a retired archive only while what replaces
			// it is given too: with the directory, all of them.
			res := compact(t, kept, key, CompactOptions{MinDead: 0.99, Remove: true}, dir)
			if len(res.Removed) != len(res.Retired) || len(res.Kept) != 0 {
				t.Fatalf("third run: removed %v of retired %v, kept %v", res.Removed, res.Retired, res.Kept)
			}
			if got := treeBytes(t, readIdx(t, kept, key), dir, key); !bytes.Equal(got, before) {
				t.Fatal("after the second run the index serves another tree")
			}
			for _, a := range history()[:2] {
				if _, err := os.Stat(filepath.Join(dir, a.name)); err == nil {
					t.Errorf("%s is still there after the second run", a.name)
				}
			}
		})
	}
}

// TestCompactKillChild is the child of TestCompactKilled.
func TestCompactKillChild(t *testing.T) {
	point := os.Getenv("CBFS_COMPACT_CHILD")
	if point == "" {
		t.Skip("child process of TestCompactKilled")
	}
	compactHook = func(p string) {
		if p == point {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
	compact(t, os.Getenv("CBFS_COMPACT_INDEX"), testutil.Key(t, 1), CompactOptions{MinDead: 0, Remove: true}, os.Getenv("CBFS_COMPACT_DIR"))
	t.Fatal("not killed")
}

// writeMembers writes an archive of the given members (content by path)
// and adds it to the index.
func writeMembers(t *testing.T, dir, idx, name string, key *crypt.Key, seq uint64, ms []*format.Meta, content map[string][]byte) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	w, err := format.NewWriter(f, key, format.WriterOptions{Sequence: seq, Compress: true, RecordSize: format.MinRecordSize})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		var r *bytes.Reader
		if c, ok := content[string(m.Path)]; ok && m.Type == format.TypeRegular {
			m.Size = int64(len(c))
			r = bytes.NewReader(c)
		}
		if r != nil {
			_, err = w.Add(m, r)
		} else {
			_, err = w.Add(m, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	h := w.Header()
	if _, err := AddToIndex(idx, key, name, &h, w.Entries()); err != nil {
		t.Fatal(err)
	}
}

// TestCompactHardLinkToDeadTarget: a live hard link whose target was
// superseded exports as the file it pointed at; compaction copies that
// dead member along, so the tree served is the same.
func TestCompactHardLinkToDeadTarget(t *testing.T) {
	key := testutil.Key(t, 1)
	dir, meta := t.TempDir(), t.TempDir()
	idx := filepath.Join(meta, "x.idx")
	R := format.TypeRegular
	big := bytes.Repeat([]byte{1, 2, 3, 5, 8, 13, 21}, 20000)
	writeMembers(t, dir, idx, "a.cbfs", key, 1, []*format.Meta{
		{Type: R, Path: []byte("data/f1"), Mode: 0o644},
		{Type: format.TypeHardlink, Path: []byte("data/hl1"), Link: []byte("data/f1"), Mode: 0o644},
		{Type: R, Path: []byte("data/big"), Mode: 0o644},
	}, map[string][]byte{"data/f1": []byte("original\n"), "data/big": big})
	writeMembers(t, dir, idx, "b.cbfs", key, 2, []*format.Meta{
		{Type: R, Path: []byte("data/f1"), Mode: 0o644},
		{Type: format.TypeTombstone, Path: []byte("data/big")},
	}, map[string][]byte{"data/f1": []byte("new\n")})
	before := treeBytes(t, readIdx(t, idx, key), dir, key)
	if !bytes.Contains(before, []byte("original\n")) {
		t.Fatal("the link's content is not in the tree before compaction")
	}
	res := compact(t, idx, key, CompactOptions{MinDead: 0.01, Remove: true}, dir)
	if len(res.Removed) != 1 {
		t.Fatalf("removed %v: %+v", res.Removed, res)
	}
	if got := treeBytes(t, readIdx(t, idx, key), dir, key); !bytes.Equal(got, before) {
		t.Fatal("the tree changed: the hard link lost the file it pointed at")
	}
}

// TestCompactRemoveNeedsReplacement: --remove keeps a retired archive
// when what replaces it is missing or damaged; a damaged or unreadable
// archive is named and the others are compacted.
func TestCompactRemoveNeedsReplacement(t *testing.T) {
	key := testutil.Key(t, 1)
	dir, meta := t.TempDir(), t.TempDir()
	kept := filepath.Join(meta, "kept.idx")
	writeHistory(t, dir, kept, key, []int{0, 1, 2, 3, 4})
	res := compact(t, kept, key, CompactOptions{MinDead: 0}, dir)
	if len(res.Outputs) != 2 {
		t.Fatalf("outputs %+v", res.Outputs)
	}
	// One replacement damaged, the other gone.
	damage(t, res.Outputs[0].Archive, 3000)
	if err := os.Remove(res.Outputs[1].Archive); err != nil {
		t.Fatal(err)
	}
	res = compact(t, kept, key, CompactOptions{MinDead: 0.99, Remove: true}, dir)
	if len(res.Removed) != 0 || len(res.Kept) != 2 {
		t.Fatalf("removed %v, kept %+v: want both sources kept", res.Removed, res.Kept)
	}
	for _, k := range res.Kept {
		if !strings.Contains(k.Skipped, "does not verify") && !strings.Contains(k.Skipped, "not among the archives given") {
			t.Errorf("kept %s: %s", k.Archive, k.Skipped)
		}
	}

	// A damaged archive does not stop the others.
	dir2, meta2 := t.TempDir(), t.TempDir()
	kept2 := filepath.Join(meta2, "kept.idx")
	writeHistory(t, dir2, kept2, key, []int{0, 1, 2, 3, 4})
	a2 := openFooter(t, filepath.Join(dir2, "fs-0002.cbfs"), key)
	damage(t, filepath.Join(dir2, "fs-0002.cbfs"), a2.PhysOffset(int64(a2.Footer.SummaryOffset))+40)
	res = compact(t, kept2, key, CompactOptions{MinDead: 0}, dir2)
	if len(res.Failed) == 0 || !strings.Contains(res.Failed[0].Archive, "fs-0002.cbfs") {
		t.Fatalf("failed %+v: want fs-0002.cbfs named: %+v", res.Failed, res)
	}
	if len(res.Outputs) != 1 || !slices.Contains(baseNames(res.Retired), "fs-0001.cbfs") {
		t.Fatalf("outputs %+v, retired %v: want fs-0001.cbfs compacted all the same", res.Outputs, res.Retired)
	}
	// And a second run with nothing dead left changes nothing.
	before := readFile(t, kept)
	res = compact(t, kept, key, CompactOptions{MinDead: 0}, dir)
	if len(res.Outputs) != 0 || !bytes.Equal(readFile(t, kept), before) {
		t.Fatalf("a run with nothing dead wrote %+v", res.Outputs)
	}
}
