package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// plainTar makes a tar of regular files, path -> content.
func plainTar(t *testing.T, files ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i < len(files); i += 2 {
		if err := tw.WriteHeader(&tar.Header{Name: files[i], Mode: 0o644, Size: int64(len(files[i+1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[i+1]))
	}
	tw.Close()
	return buf.Bytes()
}

func wantExit(t *testing.T, r result, code int, args ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("cbfs %s: exit %d, want %d; stderr:\n%s", strings.Join(args, " "), r.code, code, r.stderr)
	}
}

func run(t *testing.T, dir string, code int, args ...string) result {
	t.Helper()
	r := cbfs(t, dir, args...)
	wantExit(t, r, code, args...)
	return r
}

func TestIndexCommands(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	dir := t.TempDir()
	arch := filepath.Join(dir, "arch")
	os.Mkdir(arch, 0o755)
	writeFile(t, filepath.Join(dir, "t1.tar"), plainTar(t, "a/x", "one", "a/y", "two", "a/z", "three"), 0o644)
	writeFile(t, filepath.Join(dir, "t2.tar"), plainTar(t, "a/x", "ONE!"), 0o644)
	writeFile(t, filepath.Join(dir, "del"), []byte("a/y\n\na/never\n"), 0o644)

	// Kept while writing: sequence numbers 1 and 2 by default, deletions.
	r := run(t, dir, 0, "import", "-k", key, "--new-index", "--index", "kept.idx", "-o", "arch/0001.cbfs", "t1.tar")
	if !strings.Contains(string(r.stderr), "created kept.idx and added 0001.cbfs") {
		t.Errorf("stderr: %s", r.stderr)
	}
	run(t, dir, 0, "import", "-k", key, "--index", "kept.idx", "--delete-from", "del", "--delete", "a/z", "-o", "arch/0002.cbfs", "t2.tar")
	// The tombstones do not show in the exported tar.
	r = run(t, dir, 0, "export", "-k", key, "arch/0002.cbfs")
	if !bytes.Equal(r.stdout, readFile(t, filepath.Join(dir, "t2.tar"))) {
		t.Error("export of an archive with tombstones is not the input tar")
	}

	run(t, dir, 0, "index", "rebuild", "-k", key, "-o", "rebuilt.idx", "arch")
	if !bytes.Equal(readFile(t, filepath.Join(dir, "rebuilt.idx")), readFile(t, filepath.Join(dir, "kept.idx"))) {
		t.Fatal("rebuilt index differs from the index kept while writing")
	}
	run(t, dir, 0, "index", "diff", "-k", key, "kept.idx", "rebuilt.idx")
	r = run(t, dir, 1, "index", "rebuild", "-k", key, "-o", "rebuilt.idx", "arch")
	if !strings.Contains(string(r.stderr), "output file exists") {
		t.Errorf("overwrite without --force: %s", r.stderr)
	}

	// 1536 is member 0's metadata frame; three tombstones of 1080 bytes
	// each come before a/x.
	r = run(t, dir, 0, "index", "ls", "-k", key, "kept.idx")
	want := "a/x\t0002.cbfs\t4776\t4\t2\n"
	if string(r.stdout) != want {
		t.Errorf("ls:\n%s\nwant:\n%s", r.stdout, want)
	}
	var js []map[string]any
	r = run(t, dir, 0, "index", "ls", "-k", key, "--json", "kept.idx")
	if err := json.Unmarshal(r.stdout, &js); err != nil || len(js) != 1 || js[0]["path"] != "a/x" || js[0]["seq"] != 2.0 || js[0]["type"] != "file" {
		t.Errorf("ls --json: %v %s", err, r.stdout)
	}

	// The archive's id is printed with its name: the name alone does not
	// say which archive a file is.
	r = run(t, dir, 0, "index", "lookup", "-k", key, "kept.idx", "a/x")
	if !regexp.MustCompile("^0002.cbfs\t[0-9a-f]{32}\t4776\t4\t2\ta/x\n$").Match(r.stdout) {
		t.Errorf("lookup: %q", r.stdout)
	}
	r = run(t, dir, 1, "index", "lookup", "-k", key, "kept.idx", "a/x", "a/y", "nowhere")
	if !regexp.MustCompile("deleted in 0002.cbfs \\(id [0-9a-f]{32}\\) seq 2\ta/y\n").Match(r.stdout) || !strings.Contains(string(r.stderr), "nowhere: not in the index") {
		t.Errorf("lookup of a deleted and an absent path: %s / %s", r.stdout, r.stderr)
	}

	// Shards merge into the same bytes; a part alone differs.
	run(t, dir, 0, "index", "rebuild", "-k", key, "--shard", "0/2", "-o", "p0.idx", "arch")
	run(t, dir, 0, "index", "rebuild", "-k", key, "--shard", "1/2", "-o", "p1.idx", "arch")
	run(t, dir, 0, "index", "merge", "-k", key, "-o", "merged.idx", "p1.idx", "p0.idx")
	if !bytes.Equal(readFile(t, filepath.Join(dir, "merged.idx")), readFile(t, filepath.Join(dir, "kept.idx"))) {
		t.Fatal("merged shards differ from the full rebuild")
	}
	r = run(t, dir, 1, "index", "diff", "-k", key, "kept.idx", "p0.idx")
	if !strings.Contains(string(r.stdout), "archive - 0002.cbfs") || !strings.Contains(string(r.stdout), "- a/x\t0002.cbfs") {
		t.Errorf("diff:\n%s", r.stdout)
	}
	run(t, dir, 2, "index", "rebuild", "-k", key, "--shard", "2/2", "-o", "p2.idx", "arch")

	// A conflict: the archive and the index are written, exit 6.
	r = run(t, dir, 6, "import", "-k", key, "--index", "kept.idx", "--seq", "2", "-o", "arch/0003.cbfs", "t2.tar")
	if !strings.Contains(string(r.stderr), "conflict: a/x: sequence 2 in 0002.cbfs member 3 and 0003.cbfs member 0") {
		t.Errorf("conflict report: %s", r.stderr)
	}
	r = run(t, dir, 6, "index", "rebuild", "-k", key, "-o", "c.idx", "--json", "arch")
	var rep struct {
		Archives  int `json:"archives"`
		Conflicts []struct {
			Path       string `json:"path"`
			Candidates []struct {
				Archive string `json:"archive"`
			} `json:"candidates"`
		} `json:"conflicts"`
	}
	if err := json.Unmarshal(r.stdout, &rep); err != nil || rep.Archives != 3 || len(rep.Conflicts) != 1 || len(rep.Conflicts[0].Candidates) != 2 {
		t.Errorf("rebuild --json: %v %s", err, r.stdout)
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, "c.idx")), readFile(t, filepath.Join(dir, "kept.idx"))) {
		t.Error("rebuild with a conflict differs from the kept index")
	}
	r = run(t, dir, 0, "index", "ls", "-k", key, "c.idx")
	if n := strings.Count(string(r.stdout), "\tconflict\n"); n != 2 {
		t.Errorf("ls of a conflicted path:\n%s", r.stdout)
	}
	run(t, dir, 6, "index", "lookup", "-k", key, "c.idx", "a/x")

	// An unreadable archive is listed and nothing is written (exit 5:
	// not an archive); with --partial the rest is indexed, exit 5 still.
	writeFile(t, filepath.Join(arch, "junk.cbfs"), bytes.Repeat([]byte("junk"), 300), 0o644)
	r = run(t, dir, 5, "index", "rebuild", "-k", key, "-o", "j.idx", "arch")
	if !strings.Contains(string(r.stderr), "junk.cbfs: cannot be read, not indexed") || !strings.Contains(string(r.stderr), "j.idx was not written") {
		t.Errorf("unreadable archive not listed: %s", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "j.idx")); err == nil {
		t.Fatal("an index without an unreadable archive was written")
	}
	run(t, dir, 5, "index", "rebuild", "-k", key, "--partial", "-o", "j.idx", "arch")
	run(t, dir, 0, "index", "diff", "-k", key, "j.idx", "c.idx")

	// Reading errors have their statuses.
	run(t, dir, 4, "index", "ls", "-k", newKey(t), "kept.idx")
	run(t, dir, 5, "index", "ls", "-k", key, "t1.tar")
	idx := readFile(t, filepath.Join(dir, "kept.idx"))
	writeFile(t, filepath.Join(dir, "cut.idx"), idx[:len(idx)-3], 0o644)
	run(t, dir, 3, "index", "ls", "-k", key, "cut.idx")
	newer := bytes.Clone(idx)
	newer[8] = 2
	writeFile(t, filepath.Join(dir, "newer.idx"), newer, 0o644)
	r = run(t, dir, 5, "index", "ls", "-k", key, "newer.idx")
	if !strings.Contains(string(r.stderr), "newer cbfs") {
		t.Errorf("newer version: %s", r.stderr)
	}
	run(t, dir, 2, "import", "-k", key, "--index", "kept.idx", "t1.tar")
}

// A failed index update leaves the old index and the new archive.
func TestIndexUpdateFailure(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "t1.tar"), plainTar(t, "f", "x"), 0o644)
	run(t, dir, 0, "import", "-k", key, "--new-index", "--index", "i.idx", "-o", "a.cbfs", "t1.tar")
	old := readFile(t, filepath.Join(dir, "i.idx"))
	bad := bytes.Clone(old)
	bad[len(bad)-1] ^= 1
	writeFile(t, filepath.Join(dir, "i.idx"), bad, 0o644)
	// The index is read before anything is written, --seq given or not:
	// a damaged one is refused then (status 3), and no archive is left
	// without its index entry.
	for _, seq := range [][]string{nil, {"--seq", "5"}} {
		args := append(append([]string{"import", "-k", key, "--index", "i.idx"}, seq...), "-o", "b.cbfs", "t1.tar")
		run(t, dir, 3, args...)
		if _, err := os.Stat(filepath.Join(dir, "b.cbfs")); err == nil {
			t.Errorf("%q: archive written although its index is damaged", seq)
		}
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, "i.idx")), bad) {
		t.Error("the index was changed")
	}
	for _, n := range dirNames(t, dir) {
		if strings.HasPrefix(n, ".") && n != ".i.idx.lock" {
			t.Errorf("temporary file %s left", n)
		}
	}
}

// TestWriteOptionChecks: --delete-from reads LF or CRLF lines, from a
// file or standard input; an empty --delete path is a usage error; a bad
// --index is found before the archive is written, --seq given or not.
func TestWriteOptionChecks(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "t.tar"), plainTar(t, "a/x", "one"), 0o644)
	r := invocation{dir: dir, stdin: strings.NewReader("a/gone\r\n\r\nb/gone\r\n")}.run(t,
		"import", "-k", key, "--delete-from", "-", "-o", "d.cbfs", "t.tar")
	if r.code != 0 {
		t.Fatalf("--delete-from -: %s", r)
	}
	ls := string(run(t, dir, 0, "ls", "-k", key, "d.cbfs").stdout)
	if !strings.Contains(ls, " a/gone\n") || !strings.Contains(ls, " b/gone\n") || strings.Contains(ls, "\r") || strings.Count(ls, "\n") != 3 {
		t.Errorf("tombstones from CRLF lines:\n%q", ls)
	}
	run(t, dir, exitUsage, "import", "-k", key, "--delete", "", "-o", "e.cbfs", "t.tar")
	run(t, dir, exitUsage, "import", "-k", key, "--delete-from", "-", "-o", "e.cbfs")
	writeFile(t, filepath.Join(dir, "garbage.idx"), []byte("this is not an index at all, not even close to one"), 0o644)
	for _, args := range [][]string{
		{"--index", "garbage.idx"},
		{"--seq", "5", "--index", "garbage.idx"},
		{"--seq", "5", "--index", "nodir/x.idx"},
	} {
		r := cbfs(t, dir, append(append([]string{"import", "-k", key}, args...), "-o", "e.cbfs", "t.tar")...)
		if r.code == 0 {
			t.Errorf("import %q: succeeded", args)
		}
		if _, err := os.Stat(filepath.Join(dir, "e.cbfs")); err == nil {
			t.Fatalf("import %q: the archive was written before the index was found unusable; %s", args, r)
		}
	}
}

// TestIndexLsSubtreeAndLookupFrom: ls PATH lists PATH and what is below
// it (not a sibling that shares its prefix); lookup --from takes paths
// one a line, with the arguments, in their order; a tiny --memory gives
// the same index.
func TestIndexLsSubtreeAndLookupFrom(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "arch"), 0o755)
	writeFile(t, filepath.Join(dir, "t.tar"), plainTar(t, "d/x", "1", "d-e", "2", "d/y/z", "3", "e", "4"), 0o644)
	run(t, dir, 0, "import", "-k", key, "--new-index", "--index", "kept.idx", "-o", "arch/0001.cbfs", "t.tar")
	run(t, dir, 0, "index", "rebuild", "-k", key, "--memory", "4KiB", "-o", "small.idx", "arch")
	if !bytes.Equal(readFile(t, filepath.Join(dir, "small.idx")), readFile(t, filepath.Join(dir, "kept.idx"))) {
		t.Fatal("a rebuild with --memory 4KiB differs")
	}
	r := run(t, dir, 0, "index", "ls", "-k", key, "kept.idx", "./d/")
	var paths []string
	for _, l := range strings.Split(strings.TrimSpace(string(r.stdout)), "\n") {
		paths = append(paths, strings.SplitN(l, "\t", 2)[0])
	}
	if got := strings.Join(paths, " "); got != "d/x d/y/z" {
		t.Errorf("ls d: %q", got)
	}
	writeFile(t, filepath.Join(dir, "paths"), []byte("e\r\n/d/x\n\nnot/there\n"), 0o644)
	r = run(t, dir, 1, "index", "lookup", "-k", key, "kept.idx", "d-e", "--from", "paths")
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(r.stdout)), "\n") {
		f := strings.Split(l, "\t")
		got = append(got, f[len(f)-1])
	}
	if strings.Join(got, " ") != "d-e e d/x" || !strings.Contains(string(r.stderr), "not/there") {
		t.Errorf("lookup --from: %q, stderr %s", got, r.stderr)
	}
	run(t, dir, 2, "index", "rebuild", "-k", key, "--memory", "lots", "-o", "x.idx", "arch")
}
