package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIndexThroughSymlink: an --index named through a symlink updates
// the file it points to (and locks beside it); the link stays a link.
func TestIndexThroughSymlink(t *testing.T) {
	t.Parallel()
	im := importSource(t)
	dir := im.dir
	os.MkdirAll(filepath.Join(dir, "real"), 0o755)
	mustRun(t, dir, "index", "rebuild", "-k", im.key, "-o", "real/fs.idx", "a.cbfs")
	if err := os.Symlink("real/fs.idx", filepath.Join(dir, "link.idx")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "in.tar"), im.tarBytes, 0o644)
	mustRun(t, dir, "import", "-k", im.key, "--index", "link.idx", "-o", "b.cbfs", "in.tar")
	if fi, err := os.Lstat(filepath.Join(dir, "link.idx")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("link.idx is no longer a symlink: %v", err)
	}
	ls := mustRun(t, dir, "index", "ls", "-k", im.key, "--json", "real/fs.idx").stdout
	if !bytes.Contains(ls, []byte("b.cbfs")) {
		t.Error("the index the link points to does not hold the new archive")
	}
	if _, err := os.Stat(filepath.Join(dir, "real", ".fs.idx.lock")); err != nil {
		t.Errorf("no lock beside the real index: %v", err)
	}
	mustRun(t, dir, "index", "rebuild", "-k", im.key, "--force", "-o", "link.idx", "a.cbfs", "b.cbfs")
	if fi, _ := os.Lstat(filepath.Join(dir, "link.idx")); fi.Mode()&os.ModeSymlink == 0 {
		t.Error("rebuild -o through a symlink replaced the link")
	}
}

// TestEmptyShard: a shard with no archive (more shards than archives)
// writes an empty part, and the parts merge into the full rebuild.
func TestEmptyShard(t *testing.T) {
	t.Parallel()
	im := importSource(t)
	dir := im.dir
	var parts []string
	for i, n := range []string{"0/3", "1/3", "2/3"} {
		p := filepath.Join(dir, "p"+string(rune('0'+i))+".idx")
		mustRun(t, dir, "index", "rebuild", "-k", im.key, "--shard", n, "-o", p, "a.cbfs")
		parts = append(parts, p)
	}
	mustRun(t, dir, append([]string{"index", "merge", "-k", im.key, "-o", "all.idx"}, parts...)...)
	mustRun(t, dir, "index", "rebuild", "-k", im.key, "-o", "full.idx", "a.cbfs")
	if !bytes.Equal(readFile(t, filepath.Join(dir, "all.idx")), readFile(t, filepath.Join(dir, "full.idx"))) {
		t.Error("merged parts differ from the full rebuild")
	}
}

// TestIndexAddStatuses: index add says which archive was not added and
// why, with the status of the archive's fault; --index refuses an -o
// that is not a file before writing anything.
func TestIndexAddStatuses(t *testing.T) {
	t.Parallel()
	im := importSource(t)
	dir := im.dir
	mustRun(t, dir, "index", "rebuild", "-k", im.key, "-o", "fs.idx", "a.cbfs")
	other := newKey(t)
	writeFile(t, filepath.Join(dir, "in.tar"), im.tarBytes, 0o644)
	mustRun(t, dir, "import", "-k", other, "-o", "other.cbfs", "in.tar")
	for _, c := range []struct {
		archive string
		code    int
	}{{"nosuch.cbfs", exitFailure}, {"other.cbfs", exitWrongKey}, {"in.tar", exitBadInput}} {
		r := cbfs(t, dir, "index", "add", "-k", im.key, "fs.idx", c.archive)
		if r.code != c.code || !strings.Contains(string(r.stderr), "not added to the index fs.idx (unchanged): "+c.archive+": ") {
			t.Errorf("index add %s: %s", c.archive, r)
		}
	}
	r := cbfs(t, dir, "import", "-k", im.key, "--index", "fs.idx", "-o", "/dev/null", "in.tar")
	if r.code != exitUsage || !strings.Contains(string(r.stderr), "/dev/null is not one") {
		t.Errorf("--index with -o /dev/null: %s", r)
	}
}
