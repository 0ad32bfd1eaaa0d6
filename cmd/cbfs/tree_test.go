package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cbfs/cbfs/internal/testutil"
	"golang.org/x/sys/unix"
)

// treeListing describes a tree as the tests of export/extract --index
// compare it: per path its type, mode, size, content hash, link target,
// mtime, user xattrs, whether it is sparse, and which paths share an
// inode.
func treeListing(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	inodes := map[uint64][]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		line := fmt.Sprintf("%s %o", rel, st.Mode)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, _ := os.ReadFile(p)
			line += fmt.Sprintf(" size=%d sha=%x mtime=%d", st.Size, sha256.Sum256(b), st.Mtim.Sec)
			if st.Blocks*512 < st.Size/2 {
				line += " sparse"
			}
			if st.Nlink > 1 {
				inodes[st.Ino] = append(inodes[st.Ino], rel)
			}
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			line += " -> " + l
		}
		if v, err := xattrValue(p, "user.note"); err == nil {
			line += " user.note=" + v
		}
		out = append(out, line)
		return nil
	})
	for _, names := range inodes {
		slices.Sort(names)
		out = append(out, "links "+strings.Join(names, " "))
	}
	slices.Sort(out)
	return out
}

func xattrValue(p, name string) (string, error) {
	b := make([]byte, 256)
	n, err := unix.Lgetxattr(p, name, b)
	if err != nil {
		return "", err
	}
	return string(b[:n]), nil
}

// treeHistory writes a file system's history as four archives in
// arch/, kept in fs.index, applying the same changes to src: the final
// src is the tree the index must give back.
func treeHistory(t *testing.T, dir, key string) {
	t.Helper()
	src := filepath.Join(dir, "src")
	for _, d := range []string{"src/sub/deep", "src/keep", "arch"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	w := func(p, s string) { writeFile(t, filepath.Join(dir, p), []byte(s), 0o644) }
	w("src/f1", "first\n")
	w("src/f2", "old f2\n")
	w("src/f3", "to be deleted\n")
	w("src/sub/a", "in sub\n")
	w("src/sub/deep/b", "deep\n")
	w("src/keep/k", "kept\n")
	os.Link(filepath.Join(src, "f1"), filepath.Join(src, "h1"))       // stays a link
	os.Link(filepath.Join(src, "f2"), filepath.Join(src, "keep/h2"))  // f2 is replaced later
	os.Link(filepath.Join(src, "keep/k"), filepath.Join(src, "a-hl")) // sorts before its target
	os.Symlink("f1", filepath.Join(src, "sym"))
	sp, _ := os.Create(filepath.Join(src, "sparse"))
	sp.WriteAt([]byte("data at 1 MiB"), 1<<20)
	sp.Truncate(4 << 20)
	sp.Close()
	if err := unix.Setxattr(filepath.Join(src, "f1"), "user.note", []byte("xattr kept"), 0); err != nil {
		t.Skipf("no user xattrs here: %v", err)
	}
	mustRun(t, dir, "pack", "-k", key, "--index", "fs.index", "--new-index", "-o", "arch/0001.cbfs", "src")
	// 2: f2 rewritten (a new file: h2 keeps the old one), f3 deleted, n added.
	w("src/f2.new", "new f2\n")
	os.Rename(filepath.Join(src, "f2.new"), filepath.Join(src, "f2"))
	os.Remove(filepath.Join(src, "f3"))
	w("src/n", "new file\n")
	runTar(t, dir, "--format=posix", "-cf", "2.tar", "src/f2", "src/n")
	mustRun(t, dir, "import", "-k", key, "--index", "fs.index", "--delete", "src/f3", "-o", "arch/0002.cbfs", "2.tar")
	// 3: the subtree deleted, a file added.
	os.RemoveAll(filepath.Join(src, "sub"))
	w("src/z", "zed\n")
	runTar(t, dir, "--format=gnu", "-cf", "3.tar", "src/z")
	mustRun(t, dir, "import", "-k", key, "--index", "fs.index", "--delete-tree", "src/sub", "-o", "arch/0003.cbfs", "3.tar")
	// 4: an unchanged directory's times touched by nothing; one more file.
	w("src/keep/late", "late\n")
	runTar(t, dir, "-cf", "4.tar", "src/keep/late")
	mustRun(t, dir, "import", "-k", key, "--index", "fs.index", "-o", "arch/0004.cbfs", "4.tar")
}

// TestExportExtractIndex: export --index writes the current tree as a
// plain tar GNU tar extracts to the tree the history left (updates,
// deletions, a deleted subtree, hard links kept or made files, symlinks,
// sparse files, xattrs); extract --index restores the same tree.
func TestExportExtractIndex(t *testing.T) {
	t.Parallel()
	testutil.Tool(t, "tar")
	dir := t.TempDir()
	key := newKey(t)
	treeHistory(t, dir, key)
	want := treeListing(t, filepath.Join(dir, "src"))

	r := mustRun(t, dir, "export", "-k", key, "--index", "fs.index", "-o", "cur.tar", "arch")
	if !strings.Contains(string(r.stderr), "from 4 archives") {
		t.Errorf("export: %s", r.stderr)
	}
	os.MkdirAll(filepath.Join(dir, "gnu"), 0o755)
	cmd := exec.Command(testutil.Tool(t, "tar"), "--xattrs", "--xattrs-include=user.*", "-xf", "../cur.tar")
	cmd.Dir = filepath.Join(dir, "gnu")
	if out, err := cmd.CombinedOutput(); err != nil || len(out) != 0 {
		t.Fatalf("GNU tar: %v\n%s", err, out)
	}
	if got := treeListing(t, filepath.Join(dir, "gnu", "src")); !slices.Equal(got, want) {
		t.Errorf("exported tree:\n got %q\nwant %q", got, want)
	}
	mustRun(t, dir, "extract", "-k", key, "--index", "fs.index", "-C", "ext", "arch")
	if got := treeListing(t, filepath.Join(dir, "ext", "src")); !slices.Equal(got, want) {
		t.Errorf("extracted tree:\n got %q\nwant %q", got, want)
	}
	// A subtree only.
	out := string(mustRun(t, dir, "export", "-k", key, "--index", "fs.index", "arch", "./src/keep/").stdout)
	if !strings.Contains(out, "src/keep/late") || strings.Contains(out, "src/f1") {
		t.Errorf("export of src/keep holds the wrong paths")
	}
}

// TestExportIndexRefusals: nothing is written when an archive the index
// needs is missing, under another key, or another archive under its
// name; a damaged member stops the output (status 3); a conflicted path
// is skipped with status 6, or 0 with --conflicts skip.
func TestExportIndexRefusals(t *testing.T) {
	t.Parallel()
	testutil.Tool(t, "tar")
	dir := t.TempDir()
	key := newKey(t)
	treeHistory(t, dir, key)
	arch := filepath.Join(dir, "arch")
	export := func(args ...string) result {
		os.Remove(filepath.Join(dir, "out.tar"))
		return cbfs(t, dir, append([]string{"export", "-k", key, "--index", "fs.index", "-o", "out.tar"}, args...)...)
	}
	noOutput := func(what string) {
		if _, err := os.Stat(filepath.Join(dir, "out.tar")); err == nil {
			t.Errorf("%s: an output was written", what)
		}
	}
	// Missing.
	os.Rename(filepath.Join(arch, "0002.cbfs"), filepath.Join(dir, "0002.cbfs"))
	r := export("arch")
	if r.code != exitFailure || !strings.Contains(string(r.stderr), "0002.cbfs: needed for 2 paths") {
		t.Errorf("missing archive: %s", r)
	}
	noOutput("missing archive")
	if r = export("--partial", "arch"); r.code != exitFailure {
		t.Errorf("--partial: %s", r)
	} else if _, err := os.Stat(filepath.Join(dir, "out.tar")); err != nil {
		t.Error("--partial wrote nothing")
	}
	// Under another key, with the name the index records.
	other := newKey(t)
	runTar(t, dir, "-cf", "x.tar", "src/n")
	mustRun(t, dir, "import", "-k", other, "-o", "arch/0002.cbfs", "x.tar")
	if r = export("arch"); r.code != exitWrongKey {
		t.Errorf("archive under another key: %s", r)
	}
	noOutput("another key")
	// Another archive of this key under that name.
	os.Remove(filepath.Join(arch, "0002.cbfs"))
	mustRun(t, dir, "import", "-k", key, "-o", "arch/0002.cbfs", "x.tar")
	if r = export("arch"); r.code != exitDamaged || !strings.Contains(string(r.stderr), "not the archive the index means") {
		t.Errorf("another archive under the name: %s", r)
	}
	noOutput("another archive")
	// Damaged: a byte of a member's content.
	os.Rename(filepath.Join(dir, "0002.cbfs"), filepath.Join(arch, "0002.cbfs"))
	b := readFile(t, filepath.Join(arch, "0001.cbfs"))
	b[1600] ^= 0x40 // inside the first members' frames
	writeFile(t, filepath.Join(arch, "0001.cbfs"), b, 0o644)
	if r = export("arch"); r.code != exitDamaged {
		t.Errorf("damaged member: %s", r)
	}
	noOutput("damaged member")
	// extract --index names the archive the damaged member is in.
	if r = cbfs(t, dir, "extract", "-k", key, "--index", "fs.index", "-C", "dmg", "arch"); r.code != exitDamaged ||
		!regexp.MustCompile(`: arch/0001\.cbfs: member \d+ at offset \d+: `).Match(r.stderr) {
		t.Errorf("extract --index of a damaged member: %s", r)
	}
	b[1600] ^= 0x40
	writeFile(t, filepath.Join(arch, "0001.cbfs"), b, 0o644)
	// A conflict: an archive of sequence 4 that also holds src/keep/late.
	writeFile(t, filepath.Join(dir, "src/keep/late"), []byte("rival\n"), 0o644)
	runTar(t, dir, "-cf", "5.tar", "src/keep/late")
	mustRun(t, dir, "import", "-k", key, "--seq", "4", "-o", "arch/0005.cbfs", "5.tar")
	cbfs(t, dir, "index", "add", "-k", key, "fs.index", "arch/0005.cbfs") // exit 6: the conflict
	if r = export("arch"); r.code != exitConflict || !strings.Contains(string(r.stderr), "src/keep/late: conflict: two archives of one sequence") {
		t.Errorf("conflict: %s", r)
	}
	if r = export("--conflicts", "skip", "arch"); r.code != 0 {
		t.Errorf("--conflicts skip: %s", r)
	}
}

// TestTreeHiddenAndUnmatched: paths below a directory later replaced by a
// symlink are not part of the current tree (a tar would write them
// through it); a PATH that matches nothing is named, status 1; verify of
// an archive on a pipe is status 1, not 0; an index that is not one is
// bad input (5).
func TestTreeHiddenAndUnmatched(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := newKey(t)
	for _, d := range []string{"ar", "v1/d/sub", "v1/d/other", "v2/d/other"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	writeFile(t, filepath.Join(dir, "v1/d/sub/f"), []byte("stale\n"), 0o644)
	writeFile(t, filepath.Join(dir, "v1/d/other/f"), []byte("live\n"), 0o644)
	writeFile(t, filepath.Join(dir, "v2/d/other/f"), []byte("live\n"), 0o644)
	os.Symlink("other", filepath.Join(dir, "v2/d/sub"))
	mustRun(t, dir, "pack", "-k", key, "--new-index", "--index", "i", "-o", "ar/1.cbfs", "v1/d")
	mustRun(t, dir, "pack", "-k", key, "--index", "i", "-o", "ar/2.cbfs", "v2/d")
	r := mustRun(t, dir, "export", "-k", key, "--index", "i", "-o", "cur.tar", "ar")
	if !strings.Contains(string(r.stderr), `d/sub/f: below "d/sub", which is now a symlink`) {
		t.Errorf("no note of the hidden path: %s", r.stderr)
	}
	if list := string(runTar(t, dir, "tf", "cur.tar")); strings.Contains(list, "d/sub/f") {
		t.Errorf("the tar writes a path below a symlink:\n%s", list)
	}
	r = cbfs(t, dir, "export", "-k", key, "--index", "i", "ar", "d/typo")
	if r.code != exitFailure || !strings.Contains(string(r.stderr), "d/typo: no live path of the index at or under it") {
		t.Errorf("unmatched PATH: %s", r)
	}
	f, _ := os.Open(filepath.Join(dir, "ar/2.cbfs"))
	defer f.Close()
	cmd := exec.Command(cbfsBin, "verify", "-")
	cmd.Dir = dir
	pr, pw, _ := os.Pipe()
	cmd.Stdin = pr
	go func() { io.Copy(pw, f); pw.Close() }()
	err := cmd.Run()
	pr.Close()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitFailure {
		t.Errorf("verify - of a pipe: %v, want exit 1", err)
	}
	writeFile(t, filepath.Join(dir, "notindex"), []byte("just some bytes, not an index"), 0o644)
	if r = cbfs(t, dir, "export", "-k", key, "--index", "notindex", "ar"); r.code != exitBadInput {
		t.Errorf("--index of a file that is not an index: %s", r)
	}
}
