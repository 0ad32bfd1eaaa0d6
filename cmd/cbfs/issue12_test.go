package main

// Tests of issue 12: the master index is never wrong. One test per
// scenario of the issue, and eight concurrent writers.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tarOf makes a tar of directories (names ending in '/') and regular
// files, name -> content, with the names exactly as given.
func tarOf(t *testing.T, entries ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i < len(entries); i += 2 {
		h := &tar.Header{Name: entries[i], Mode: 0o644, Size: int64(len(entries[i+1])), Typeflag: tar.TypeReg}
		if strings.HasSuffix(entries[i], "/") {
			h = &tar.Header{Name: entries[i], Mode: 0o755, Typeflag: tar.TypeDir}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(entries[i+1]))
	}
	tw.Close()
	return buf.Bytes()
}

// lookupArchive is the archive index lookup names for path.
func lookupArchive(t *testing.T, dir, key, index, path string) string {
	t.Helper()
	r := mustRun(t, dir, "index", "lookup", "-k", key, index, path)
	return strings.Split(string(r.stdout), "\t")[0]
}

func sameFiles(t *testing.T, a, b string) {
	t.Helper()
	if !bytes.Equal(readFile(t, a), readFile(t, b)) {
		t.Fatalf("%s and %s differ", a, b)
	}
}

// Scenario 1: "data/f1", "./data/f1", "/data/f1", "data/" and "data" are
// one path each; deletions match in canonical form; a deletion of a path
// the index does not hold is said.
func TestIssue12PathAliases(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "src", "data", "f1"), []byte("one"), 0o644)
	writeFile(t, filepath.Join(dir, "src", "data", "f2"), []byte("two"), 0o644)
	writeFile(t, filepath.Join(dir, "src", "data", "sub", "f3"), []byte("three"), 0o644)
	os.Mkdir(filepath.Join(dir, "a"), 0o755)
	mustRun(t, dir, "pack", "-k", key, "--new-index", "--index", "i.idx", "-o", "a/0001.cbfs", "src/data")
	writeFile(t, filepath.Join(dir, "dot.tar"), tarOf(t, "./data/", "", "./data/f1", "ONE"), 0o644)
	mustRun(t, dir, "import", "-k", key, "--index", "i.idx", "-o", "a/0002.cbfs", "dot.tar")
	for _, p := range []string{"data/f1", "./data/f1", "/data/f1", "data//f1/"} {
		if got := lookupArchive(t, dir, key, "i.idx", p); got != "0002.cbfs" {
			t.Errorf("lookup %s: %s, want 0002.cbfs", p, got)
		}
	}
	if got := lookupArchive(t, dir, key, "i.idx", "data/"); got != "0002.cbfs" {
		t.Errorf("lookup data/: %s, want 0002.cbfs (./data/ of the tar)", got)
	}
	ls := string(mustRun(t, dir, "index", "ls", "-k", key, "i.idx").stdout)
	if strings.Count(ls, "data/f1\t") != 1 || strings.Contains(ls, "./data") || strings.Count(ls, "\n") != 5 {
		t.Errorf("index ls lists an alias or misses a path:\n%s", ls)
	}
	// The member keeps the name it came with: export is lossless.
	if !bytes.Equal(mustRun(t, dir, "export", "-k", key, "a/0002.cbfs").stdout, readFile(t, filepath.Join(dir, "dot.tar"))) {
		t.Error("export of the imported ./data/f1 is not the tar")
	}
	// gc counts the old copy of data/f1 (and data) in archive 1 as dead.
	var gc []struct {
		Archive     string `json:"archive"`
		LiveMembers int    `json:"live_members"`
	}
	if err := json.Unmarshal(mustRun(t, dir, "gc", "-k", key, "--index", "i.idx", "--json", "a").stdout, &gc); err != nil {
		t.Fatal(err)
	}
	if len(gc) != 2 || gc[0].LiveMembers != 3 {
		t.Errorf("gc: %+v, want archive 1 with 3 live members (f2, sub, sub/f3)", gc)
	}
	// Deletions in any form match; one the index does not hold is said.
	writeFile(t, filepath.Join(dir, "empty.tar"), tarOf(t), 0o644)
	r := mustRun(t, dir, "import", "-k", key, "--index", "i.idx", "--delete", "./data/f2", "--delete", "/data/nothere", "-o", "a/0003.cbfs", "empty.tar")
	if !strings.Contains(string(r.stderr), "--delete data/nothere: not in the index") || strings.Contains(string(r.stderr), "data/f2:") {
		t.Errorf("--delete report: %s", r.stderr)
	}
	if r := run(t, dir, 1, "index", "lookup", "-k", key, "i.idx", "data/f2"); !strings.HasPrefix(string(r.stdout), "deleted in 0003.cbfs") {
		t.Errorf("data/f2 after --delete ./data/f2: %s", r.stdout)
	}
	run(t, dir, exitUsage, "import", "-k", key, "--index", "i.idx", "--delete", "data/../etc", "-o", "a/x.cbfs", "empty.tar")
	// --delete-tree deletes a directory and every live path below it.
	run(t, dir, exitUsage, "import", "-k", key, "--delete-tree", "data", "-o", "a/x.cbfs", "empty.tar")
	mustRun(t, dir, "import", "-k", key, "--index", "i.idx", "--delete-tree", "./data/", "-o", "a/0004.cbfs", "empty.tar")
	if ls := mustRun(t, dir, "index", "ls", "-k", key, "i.idx").stdout; len(ls) != 0 {
		t.Errorf("live after --delete-tree data:\n%s", ls)
	}
	// A '..' member is kept out of the index and reported.
	writeFile(t, filepath.Join(dir, "dotdot.tar"), tarOf(t, "data/../../evil", "x", "ok", "y"), 0o644)
	r = mustRun(t, dir, "import", "-k", key, "--index", "i.idx", "-o", "a/0005.cbfs", "dotdot.tar")
	if !strings.Contains(string(r.stderr), `data/../../evil has a '..' component: kept out of the index`) {
		t.Errorf("'..' member not reported: %s", r.stderr)
	}
	mustRun(t, dir, "index", "rebuild", "-k", key, "-o", "re.idx", "a")
	sameFiles(t, filepath.Join(dir, "i.idx"), filepath.Join(dir, "re.idx"))
}

// Scenario 2: eight writers at once, each waiting for the others; none
// loses an update, and the index equals a rebuild byte for byte.
func TestIssue12ConcurrentWriters(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "arch"), 0o755)
	const n = 8
	for i := range n {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("t%d", i), fmt.Sprintf("d%d", i), "f"), []byte(fmt.Sprint(i)), 0o644)
	}
	var wg sync.WaitGroup
	errs := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Scripts may always pass --new-index: only the first creates.
			cmd := exec.Command(cbfsBin, "pack", "-k", key, "--new-index", "--index", "fs.index",
				"-o", fmt.Sprintf("arch/%04d.cbfs", i), fmt.Sprintf("t%d/d%d", i, i))
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Sprintf("writer %d: %v\n%s", i, err, out)
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			t.Fatal(e)
		}
	}
	ls := string(mustRun(t, dir, "index", "ls", "-k", key, "fs.index").stdout)
	seqs := map[string]bool{}
	for i := range n {
		m := regexp.MustCompile(fmt.Sprintf(`(?m)^d%d/f\t%04d\.cbfs\t\d+\t\d+\t(\d+)$`, i, i)).FindStringSubmatch(ls)
		if m == nil {
			t.Fatalf("writer %d's update is lost:\n%s", i, ls)
		}
		seqs[m[1]] = true
	}
	if len(seqs) != n {
		t.Errorf("sequence numbers taken twice:\n%s", ls)
	}
	mustRun(t, dir, "index", "rebuild", "-k", key, "-o", "rebuilt.index", "arch")
	sameFiles(t, filepath.Join(dir, "fs.index"), filepath.Join(dir, "rebuilt.index"))
}

// A writer waits for the lock and says so after a second; with
// --lock-timeout 0 it fails at once, before writing anything.
func TestIssue12LockWait(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "t.tar"), plainTar(t, "f", "x"), 0o644)
	mustRun(t, dir, "import", "-k", key, "--new-index", "--index", "fs.index", "-o", "1.cbfs", "t.tar")
	lock, err := os.OpenFile(filepath.Join(dir, ".fs.index.lock"), os.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("lock file beside the index: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	r := run(t, dir, 1, "import", "-k", key, "--index", "fs.index", "--lock-timeout", "0", "-o", "2.cbfs", "t.tar")
	if !strings.Contains(string(r.stderr), "another cbfs is updating it") {
		t.Errorf("busy lock: %s", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "2.cbfs")); err == nil {
		t.Error("archive written without the index's lock")
	}
	// The lock is let go once the command says it waits (however slow
	// the machine is to start it), or after a minute if it never does.
	cmd := exec.Command(cbfsBin, "import", "-k", key, "--index", "fs.index", "-o", "2.cbfs", "t.tar")
	cmd.Dir = dir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var said bytes.Buffer
	waited := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		told := false
		for sc.Scan() {
			said.WriteString(sc.Text() + "\n")
			if !told && strings.Contains(sc.Text(), "waiting for another cbfs updating fs.index") {
				told = true
				waited <- true
			}
		}
		close(waited)
	}()
	select {
	case ok := <-waited:
		if !ok {
			t.Error("the command ended without saying it waits for the lock")
		}
	case <-time.After(time.Minute):
		t.Error("no waiting message within a minute")
	}
	syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	for range waited {
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("import after the lock was let go: %v\n%s", err, said.String())
	}
}

// Scenario 3: a rebuild writes only a whole index.
func TestIssue12RebuildWholeOnly(t *testing.T) {
	t.Parallel()
	key, other := newKey(t), newKey(t)
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "arch"), 0o755)
	writeFile(t, filepath.Join(dir, "t.tar"), plainTar(t, "f", "x"), 0o644)
	mustRun(t, dir, "import", "-k", key, "--new-index", "--index", "fs.index", "-o", "arch/1.cbfs", "t.tar")
	good := readFile(t, filepath.Join(dir, "fs.index"))
	// Under the wrong key: status 4, nothing written, even with --force.
	r := run(t, dir, 4, "index", "rebuild", "-k", other, "--force", "-o", "fs.index", "arch")
	if !strings.Contains(string(r.stderr), "no archive opens with this key") {
		t.Errorf("wrong key: %s", r.stderr)
	}
	run(t, dir, 4, "index", "rebuild", "-k", other, "--force", "--partial", "-o", "fs.index", "arch")
	if !bytes.Equal(readFile(t, filepath.Join(dir, "fs.index")), good) {
		t.Fatal("a rebuild under the wrong key replaced the index")
	}
	// An archive under another key among the right ones: named, nothing
	// written, status 4; --partial writes the rest, status 4 still.
	mustRun(t, dir, "import", "-k", other, "-o", "arch/2.cbfs", "t.tar")
	r = run(t, dir, 4, "index", "rebuild", "-k", key, "-o", "new.index", "arch")
	if !strings.Contains(string(r.stderr), "arch/2.cbfs: cannot be read, not indexed: wrong key") {
		t.Errorf("archive under another key not named: %s", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "new.index")); err == nil {
		t.Fatal("an index without the archive under another key was written")
	}
	run(t, dir, 4, "index", "rebuild", "-k", key, "--partial", "-o", "new.index", "arch")
	sameFiles(t, filepath.Join(dir, "fs.index"), filepath.Join(dir, "new.index"))
}

// Scenario 5: verify --index over a subset of the archives: the entries
// of the others are not checked, not damaged.
func TestIssue12VerifySubset(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "arch"), 0o755)
	writeFile(t, filepath.Join(dir, "t1.tar"), plainTar(t, "a", "1", "b", "2"), 0o644)
	writeFile(t, filepath.Join(dir, "t2.tar"), plainTar(t, "c", "3"), 0o644)
	mustRun(t, dir, "import", "-k", key, "--new-index", "--index", "fs.index", "-o", "arch/1.cbfs", "t1.tar")
	mustRun(t, dir, "import", "-k", key, "--index", "fs.index", "-o", "arch/2.cbfs", "t2.tar")
	r := mustRun(t, dir, "verify", "-k", key, "--index", "fs.index", "arch/1.cbfs")
	if !strings.Contains(string(r.stdout), "ok       fs.index: every entry checked points at an intact member (1 not checked") {
		t.Errorf("verify of a subset:\n%s", r.stdout)
	}
}

// Scenario 6: an index kept beside the archives is recognised and
// skipped; verify INDEX checks it and says it is an index.
func TestIssue12IndexBesideArchives(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "arch"), 0o755)
	writeFile(t, filepath.Join(dir, "t.tar"), plainTar(t, "f", "x"), 0o644)
	mustRun(t, dir, "import", "-k", key, "--new-index", "--index", "arch/fs.index", "-o", "arch/1.cbfs", "t.tar")
	note := "arch/fs.index is a master index, not an archive: skipped"
	for _, args := range [][]string{
		{"index", "rebuild", "-k", key, "-o", "re.index", "arch"},
		{"verify", "arch"},
		{"verify", "-k", key, "--index", "arch/fs.index", "arch"},
		{"gc", "-k", key, "--index", "arch/fs.index", "arch"},
	} {
		if r := mustRun(t, dir, args...); !strings.Contains(string(r.stderr), note) {
			t.Errorf("%q: no note: %s", args, r.stderr)
		}
	}
	sameFiles(t, filepath.Join(dir, "arch", "fs.index"), filepath.Join(dir, "re.index"))
	r := mustRun(t, dir, "verify", "-k", key, "arch/fs.index")
	if !strings.Contains(string(r.stdout), "ok       arch/fs.index: a master index, not an archive: 1 archive, 1 live path, 0 tombstones, 0 conflicts, highest sequence 1 (keyed)") {
		t.Errorf("verify INDEX: %s", r.stdout)
	}
	r = mustRun(t, dir, "verify", "arch/fs.index")
	if !strings.Contains(string(r.stdout), "a master index, not an archive: 2 frames intact") {
		t.Errorf("verify INDEX without the key: %s", r.stdout)
	}
	b := readFile(t, filepath.Join(dir, "arch", "fs.index"))
	b[len(b)-1] ^= 1
	writeFile(t, filepath.Join(dir, "bad.index"), b, 0o644)
	for _, k := range [][]string{nil, {"-k", key}} {
		args := append(append([]string{"verify"}, k...), "bad.index")
		if r := run(t, dir, exitDamaged, args...); !strings.Contains(string(r.stdout), "DAMAGED  bad.index: a master index") {
			t.Errorf("%q: %s", args, r.stdout)
		}
	}
	run(t, dir, exitWrongKey, "verify", "-k", newKey(t), "arch/fs.index")
}

// Scenario 7: a lost index is rebuilt, never restarted; an older copy is
// noticed by verify --index; an archive name is bound to its id.
func TestIssue12LostIndex(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "arch"), 0o755)
	writeFile(t, filepath.Join(dir, "t1.tar"), plainTar(t, "f", "old"), 0o644)
	writeFile(t, filepath.Join(dir, "t2.tar"), plainTar(t, "f", "new"), 0o644)
	mustRun(t, dir, "import", "-k", key, "--new-index", "--index", "fs.index", "-o", "arch/a1.cbfs", "t1.tar")
	old := readFile(t, filepath.Join(dir, "fs.index"))
	mustRun(t, dir, "import", "-k", key, "--index", "fs.index", "-o", "arch/a2.cbfs", "t2.tar")

	// A lost index: the next writer refuses, with the rebuild as hint.
	kept := readFile(t, filepath.Join(dir, "fs.index"))
	os.Remove(filepath.Join(dir, "fs.index"))
	r := run(t, dir, 1, "import", "-k", key, "--index", "fs.index", "-o", "arch/a3.cbfs", "t1.tar")
	if !strings.Contains(string(r.stderr), "fs.index does not exist") || !strings.Contains(string(r.stderr), "hint: rebuild a lost index from the archives with 'cbfs index rebuild") {
		t.Errorf("lost index: %s", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "arch", "a3.cbfs")); err == nil {
		t.Fatal("archive written against a lost index")
	}
	mustRun(t, dir, "index", "rebuild", "-k", key, "-o", "fs.index", "arch")
	if !bytes.Equal(readFile(t, filepath.Join(dir, "fs.index")), kept) {
		t.Fatal("the rebuilt index differs from the lost one")
	}
	// A sequence number below the highest seen is refused.
	r = run(t, dir, exitUsage, "import", "-k", key, "--index", "fs.index", "--seq", "1", "-o", "arch/a3.cbfs", "t1.tar")
	if !strings.Contains(string(r.stderr), "has seen sequence 2") {
		t.Errorf("--seq below the highest: %s", r.stderr)
	}
	// An older copy put back: verify --index lists the archive it does
	// not know.
	writeFile(t, filepath.Join(dir, "old.index"), old, 0o644)
	r = mustRun(t, dir, "verify", "-k", key, "--index", "old.index", "arch")
	if !strings.Contains(string(r.stdout), "a2.cbfs: not in the index: stale or rolled-back index?") {
		t.Errorf("rolled-back index: %s", r.stdout)
	}
	// cp a1.cbfs a2.cbfs: lookup prints the id the index holds, which is
	// not the id of the file now named a2.cbfs; verify --index says so.
	idOf := func(name string) string {
		r := mustRun(t, dir, "index", "lookup", "-k", key, "--json", "fs.index", "f")
		var js []struct {
			Archive   string `json:"archive"`
			ArchiveID string `json:"archive_id"`
		}
		if err := json.Unmarshal(r.stdout, &js); err != nil || len(js) != 1 || js[0].Archive != name {
			t.Fatalf("lookup --json: %v %s", err, r.stdout)
		}
		return js[0].ArchiveID
	}
	id2 := idOf("a2.cbfs")
	if !strings.Contains(string(mustRun(t, dir, "index", "lookup", "-k", key, "fs.index", "f").stdout), "a2.cbfs\t"+id2+"\t") {
		t.Error("lookup text does not print the archive id")
	}
	writeFile(t, filepath.Join(dir, "arch", "a2.cbfs"), readFile(t, filepath.Join(dir, "arch", "a1.cbfs")), 0o644)
	r = run(t, dir, exitDamaged, "verify", "-k", key, "--index", "fs.index", "arch")
	if !strings.Contains(string(r.stdout), `"f" -> a2.cbfs member 0: the archive of that name has id`) {
		t.Errorf("a copy under another archive's name: %s", r.stdout)
	}
}

// An archive written whose index update fails says so, with the exact
// command that adds it once the cause is fixed.
func TestIssue12RepairCommand(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "x"), 0o755)
	os.Mkdir(filepath.Join(dir, "y"), 0o755)
	writeFile(t, filepath.Join(dir, "t.tar"), plainTar(t, "f", "x"), 0o644)
	mustRun(t, dir, "import", "-k", key, "--new-index", "--index", "fs.index", "-o", "x/a.cbfs", "t.tar")
	before := readFile(t, filepath.Join(dir, "fs.index"))
	// Another archive of the same file name: the index refuses it, after
	// the archive is complete.
	r := run(t, dir, 1, "import", "-k", key, "--index", "fs.index", "-o", "y/a.cbfs", "t.tar")
	if !strings.Contains(string(r.stderr), "the archive y/a.cbfs is complete, but the index fs.index was not updated") ||
		!strings.Contains(string(r.stderr), "add the archive to it with: cbfs index add -k "+key+" fs.index y/a.cbfs\n") {
		t.Errorf("no repair command: %s", r.stderr)
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, "fs.index")), before) {
		t.Error("the index changed")
	}
	// The repair works once the cause is fixed.
	os.Rename(filepath.Join(dir, "y", "a.cbfs"), filepath.Join(dir, "y", "b.cbfs"))
	mustRun(t, dir, "index", "add", "-k", key, "fs.index", "y/b.cbfs")
	os.Rename(filepath.Join(dir, "x", "a.cbfs"), filepath.Join(dir, "y", "a.cbfs"))
	mustRun(t, dir, "index", "rebuild", "-k", key, "-o", "re.index", "y")
	sameFiles(t, filepath.Join(dir, "fs.index"), filepath.Join(dir, "re.index"))
}
