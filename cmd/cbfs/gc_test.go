package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// gcFixture packs a tree as archive 1, then writes archive 2 with a new
// version of one file and a deletion of another, keeping an index.
func gcFixture(t *testing.T) (dir, key, index, archives string) {
	t.Helper()
	dir = t.TempDir()
	key = newKey(t)
	src := filepath.Join(dir, "tree")
	for name, body := range map[string]string{"a.txt": "version one of a\n", "b.txt": strings.Repeat("b", 5000), "c.txt": "c\n"} {
		writeFile(t, filepath.Join(src, name), []byte(body), 0o644)
	}
	archives = filepath.Join(dir, "archives")
	if err := os.Mkdir(archives, 0o755); err != nil {
		t.Fatal(err)
	}
	index = filepath.Join(dir, "fs.index")
	mustRun(t, dir, "pack", "-k", key, "--seq", "1", "--new-index", "--index", index, "-o", filepath.Join(archives, "1.cbfs"), "tree")
	upd := filepath.Join(dir, "upd", "tree")
	writeFile(t, filepath.Join(upd, "a.txt"), []byte("version two of a\n"), 0o644)
	tarPath := filepath.Join(dir, "upd.tar")
	runTar(t, filepath.Join(dir, "upd"), "cf", tarPath, "tree/a.txt")
	mustRun(t, dir, "import", "-k", key, "--seq", "2", "--delete", "tree/b.txt", "--index", index, "-o", filepath.Join(archives, "2.cbfs"), tarPath)
	return dir, key, index, archives
}

func TestPackIndexEqualsRebuild(t *testing.T) {
	t.Parallel()
	dir, key, index, archives := gcFixture(t)
	rebuilt := filepath.Join(dir, "rebuilt.index")
	mustRun(t, dir, "index", "rebuild", "-k", key, "-o", rebuilt, archives)
	if !bytes.Equal(readFile(t, index), readFile(t, rebuilt)) {
		t.Fatal("the index kept by pack and import differs from the rebuilt one")
	}
	ls := string(mustRun(t, dir, "index", "ls", "-k", key, index).stdout)
	if strings.Contains(ls, "tree/b.txt") {
		t.Errorf("deleted path still listed:\n%s", ls)
	}
	if !strings.Contains(ls, "tree/a.txt\t2.cbfs\t") || !strings.Contains(ls, "tree/c.txt\t1.cbfs\t") {
		t.Errorf("index ls does not place a.txt in archive 2 and c.txt in archive 1:\n%s", ls)
	}
}

func TestGC(t *testing.T) {
	t.Parallel()
	dir, key, index, archives := gcFixture(t)
	r := mustRun(t, dir, "gc", "-k", key, "--index", index, "--json", archives)
	var got []struct {
		Archive     string `json:"archive"`
		Members     int    `json:"members"`
		LiveMembers int    `json:"live_members"`
		LiveBytes   int64  `json:"live_bytes"`
		DeadBytes   int64  `json:"dead_bytes"`
	}
	if err := json.Unmarshal(r.stdout, &got); err != nil {
		t.Fatalf("gc --json: %v\n%s", err, r.stdout)
	}
	if len(got) != 2 {
		t.Fatalf("%d archives reported, want 2", len(got))
	}
	a1, a2 := got[0], got[1]
	// Archive 1: dir tree, a.txt, b.txt, c.txt; a.txt superseded by
	// archive 2 and b.txt deleted by it.
	if a1.Members != 4 || a1.LiveMembers != 2 || a1.DeadBytes <= 0 || a1.LiveBytes <= 0 {
		t.Errorf("archive 1: %+v, want 4 members, 2 live, some dead bytes", a1)
	}
	// Archive 2: tombstone, a.txt, trailer: all live.
	if a2.Members != 3 || a2.LiveMembers != 3 || a2.DeadBytes != 0 {
		t.Errorf("archive 2: %+v, want 3 members, all live", a2)
	}
	// b.txt (5000 bytes, stored in one chunk) must be among the dead bytes.
	if a1.DeadBytes < 1024 {
		t.Errorf("archive 1 dead bytes %d: less than b.txt's metadata frame alone", a1.DeadBytes)
	}
	if r := cbfs(t, dir, "gc", "-k", key, archives); r.code != exitUsage {
		t.Errorf("gc without --index: %s, want exit %d", r, exitUsage)
	}

	// An archive renamed after indexing is not in the index under its new
	// name: it may hold the only copy of a path, so nothing in it is dead.
	renamed := filepath.Join(dir, "renamed")
	if err := os.Mkdir(renamed, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(renamed, "1-moved.cbfs"), readFile(t, filepath.Join(archives, "1.cbfs")), 0o644)
	r = mustRun(t, dir, "gc", "-k", key, "--index", index, "--json", renamed)
	if err := json.Unmarshal(r.stdout, &got); err != nil || len(got) != 1 {
		t.Fatalf("gc of a renamed archive: %v\n%s", err, r.stdout)
	}
	if got[0].DeadBytes != 0 || got[0].LiveMembers != got[0].Members || !strings.Contains(string(r.stderr), "1-moved.cbfs: not in the index") {
		t.Errorf("renamed archive: %+v, stderr %q; want all live and a warning", got[0], r.stderr)
	}

	// An archive that cannot be read is named, the others are still
	// reported, and the status is the unreadable one's.
	junk := filepath.Join(dir, "junk.cbfs")
	writeFile(t, junk, bytes.Repeat([]byte("not an archive "), 100), 0o644)
	r = cbfs(t, dir, "gc", "-k", key, "--index", index, "--json", filepath.Join(archives, "1.cbfs"), junk, filepath.Join(archives, "2.cbfs"))
	// --json lists it too, with its error, as verify --json does.
	var some []struct {
		Archive string `json:"archive"`
		Error   string `json:"error"`
	}
	if err := json.Unmarshal(r.stdout, &some); err != nil || len(some) != 3 || some[1].Error != "not a CBFS archive" || !strings.HasSuffix(some[1].Archive, "junk.cbfs") || some[0].Error != "" {
		t.Fatalf("gc with an unreadable archive: %v, %+v; %s", err, some, r)
	}
	if r.code != exitBadInput || !strings.Contains(string(r.stderr), "junk.cbfs") || !strings.Contains(string(r.stderr), "gc: 1 archive not read") {
		t.Errorf("gc with an unreadable archive: %s", r)
	}
}

// TestArchiveArgs: a directory with no archive files is an error, not an
// empty success; "-" is standard input when that is a file, and refused
// with a hint when it is a pipe.
func TestArchiveArgs(t *testing.T) {
	t.Parallel()
	dir, key, index, archives := gcFixture(t)
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(empty, ".hidden"), []byte("x"), 0o644)
	for _, args := range [][]string{
		{"verify", empty},
		{"gc", "-k", key, "--index", index, empty},
		{"index", "rebuild", "-k", key, "-o", filepath.Join(dir, "x.index"), empty},
	} {
		r := cbfs(t, dir, args...)
		if r.code != exitFailure || !strings.Contains(string(r.stderr), "empty: no archive files in this directory") {
			t.Errorf("cbfs %q: %s", args, r)
		}
	}
	arch := filepath.Join(archives, "1.cbfs")
	f, err := os.Open(arch)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, args := range [][]string{{"verify", "-"}, {"ls", "-k", key, "-"}, {"cat", "-k", key, "-", "tree/c.txt"}} {
		f.Seek(0, 0)
		r := invocation{stdin: f}.run(t, args...)
		if r.code != 0 {
			t.Errorf("cbfs %q < file: %s", args, r)
		}
	}
	// Statuses of several archives: wrong key before an unreadable file.
	if r := cbfs(t, dir, "verify", "-k", newKey(t), arch, filepath.Join(dir, "missing.cbfs")); r.code != exitWrongKey {
		t.Errorf("verify with the wrong key and a missing file: %s, want %d", r, exitWrongKey)
	}
	r := invocation{stdin: bytes.NewReader(readFile(t, arch))}.run(t, "ls", "-k", key, "-")
	if r.code != exitUsage || !strings.Contains(string(r.stderr), "standard input: not a regular file") || !strings.Contains(string(r.stderr), "hint: ") {
		t.Errorf("ls from a pipe: %s", r)
	}
}

func TestVerifyIndex(t *testing.T) {
	t.Parallel()
	dir, key, index, archives := gcFixture(t)
	mustRun(t, dir, "verify", "-k", key, "--index", index, archives)

	// Scenario 4: without archive 2, which holds the deletion of
	// tree/b.txt, a rebuild from archive 1 would bring tree/b.txt back:
	// the deletion is reported by path, exit 3. tree/a.txt, which lives
	// in archive 2, is not checked, not damaged.
	r := cbfs(t, dir, "verify", "-k", key, "--index", index, "--json", filepath.Join(archives, "1.cbfs"))
	if r.code != exitDamaged {
		t.Fatalf("verify --index with the deletion's archive missing: %s, want exit %d", r, exitDamaged)
	}
	var doc struct {
		Index struct {
			Problems []struct {
				Path    string `json:"path"`
				Archive string `json:"archive"`
				What    string `json:"what"`
			} `json:"problems"`
			NotChecked int `json:"not_checked"`
		} `json:"index"`
	}
	if err := json.Unmarshal(r.stdout, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Index.Problems) != 1 || doc.Index.Problems[0].Path != "tree/b.txt" || doc.Index.Problems[0].Archive != "2.cbfs" ||
		!strings.Contains(doc.Index.Problems[0].What, "bring the path back from 1.cbfs") || doc.Index.NotChecked != 1 {
		t.Fatalf("index check %+v, want the deletion of tree/b.txt in 2.cbfs and 1 entry not checked", doc.Index)
	}

	// A damaged member the index points at is reported too.
	bad := filepath.Join(dir, "bad")
	if err := os.Mkdir(bad, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"1.cbfs", "2.cbfs"} {
		writeFile(t, filepath.Join(bad, n), readFile(t, filepath.Join(archives, n)), 0o644)
	}
	b := readFile(t, filepath.Join(bad, "2.cbfs"))
	// Flip a byte inside the member the index holds for tree/a.txt.
	fields := strings.Fields(string(mustRun(t, dir, "index", "lookup", "-k", key, index, "tree/a.txt").stdout))
	if len(fields) < 3 || fields[0] != "2.cbfs" {
		t.Fatalf("index lookup: %q", fields)
	}
	off, err := strconv.Atoi(fields[2])
	if err != nil {
		t.Fatal(err)
	}
	b[off+100] ^= 1
	writeFile(t, filepath.Join(bad, "2.cbfs"), b, 0o644)
	r = cbfs(t, dir, "verify", "-k", key, "--index", index, bad)
	if r.code != exitDamaged || !strings.Contains(string(r.stdout), `"tree/a.txt" -> 2.cbfs member 1: points at a member that is missing or damaged`) {
		t.Fatalf("damaged member behind the index: %s\n%s", r, r.stdout)
	}

	// An archive that cannot be read at all is said to be that, not to
	// have another id.
	writeFile(t, filepath.Join(bad, "2.cbfs"), nil, 0o644)
	r = cbfs(t, dir, "verify", "-k", key, "--index", index, bad)
	if !strings.Contains(string(r.stdout), `"tree/a.txt" -> 2.cbfs member 1: its archive could not be read`) || strings.Contains(string(r.stdout), "has id") {
		t.Fatalf("unreadable archive behind the index: %s\n%s", r, r.stdout)
	}
}

// TestFIFOArgument: a FIFO where an archive or an index is expected is
// refused at once. Opening one blocks until a writer comes, and every
// command that reads archives used to wait forever.
func TestFIFOArgument(t *testing.T) {
	t.Parallel()
	dir, key, index, archives := gcFixture(t)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	for _, args := range [][]string{
		{"verify", fifo},
		{"ls", "-k", key, fifo},
		{"cat", "-k", key, fifo, "x"},
		{"extract", "-k", key, "-C", t.TempDir(), fifo},
		{"gc", "-k", key, "--index", index, fifo},
		{"gc", "-k", key, "--index", fifo, archives},
		{"index", "ls", "-k", key, fifo},
		{"index", "rebuild", "-k", key, "-o", filepath.Join(t.TempDir(), "x.index"), fifo},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, cbfsBin, args...)
		out, err := cmd.CombinedOutput()
		timedOut := ctx.Err() == context.DeadlineExceeded
		cancel()
		if timedOut {
			t.Fatalf("cbfs %q: still waiting on the FIFO after 20 s", args)
		}
		if err == nil || !strings.Contains(string(out), "not a regular file") {
			t.Errorf("cbfs %q: %v\n%s", args, err, out)
		}
	}
}
