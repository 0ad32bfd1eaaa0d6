package main

// cbfs pack and cbfs extract as users run them: exit statuses, what
// standard error names, and what is left on disk.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/keys"
)

// packSource makes a small tree under a fresh directory; it returns the
// directory and the tree's root, "proj".
func packSource(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "proj")
	writeFile(t, filepath.Join(root, "a.txt"), []byte("alpha\n"), 0o644)
	writeFile(t, filepath.Join(root, "sub/b.bin"), randomBytes(150_000, 9), 0o600)
	writeFile(t, filepath.Join(root, "sub/skip.o"), []byte("object\n"), 0o644)
	if err := os.Symlink("a.txt", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	return dir, root
}

func treeFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.Walk(root, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, path)
		s := rel + " " + fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(path)
			s += " " + string(b[:min(len(b), 16)])
		}
		out = append(out, s)
		return nil
	})
	return out
}

func TestPackExtractCommands(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	dir, root := packSource(t)
	arch := filepath.Join(t.TempDir(), "proj.cbfs")

	r := mustRun(t, dir, "pack", "-k", key, "-o", arch, "--exclude", "*.o", "proj")
	if !strings.Contains(string(r.stderr), "packed 5 members") {
		t.Errorf("pack stderr: %s", r.stderr)
	}
	ls := mustRun(t, "", "ls", "-k", key, arch)
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(string(ls.stdout)), "\n") {
		f := strings.Fields(l)
		names = append(names, f[5])
	}
	if want := []string{"proj", "proj/a.txt", "proj/link", "proj/sub", "proj/sub/b.bin"}; !slices.Equal(names, want) {
		t.Errorf("members %q, want %q", names, want)
	}

	// The output is not replaced without --force; usage errors exit 2.
	if r := cbfs(t, dir, "pack", "-k", key, "-o", arch, "proj"); r.code != exitFailure {
		t.Errorf("pack over an existing output: %s", r)
	}
	mustRun(t, dir, "pack", "-k", key, "-o", arch, "--force", "--exclude", "*.o", "proj")
	for _, args := range [][]string{
		{"pack", "-k", key, "-o", arch + "2", "--exclude", "[", "proj"},
		{"pack", "-k", key, "-o", arch + "2", "proj", filepath.Join(root, "..", "proj")},
		{"pack", "-k", key, "-o", arch + "2", "--compress", "zstd", "proj"},
		{"pack", "-k", key, "-o", arch + "2"},
	} {
		if r := cbfs(t, dir, args...); r.code != exitUsage {
			t.Errorf("cbfs %q: %s, want exit 2", args, r)
		}
	}
	if r := cbfs(t, dir, "pack", "-k", key, "-o", arch+"2", "missing"); r.code != exitFailure || !strings.Contains(string(r.stderr), "missing") {
		t.Errorf("pack of a missing directory: %s", r)
	}
	if _, err := os.Stat(arch + "2"); err == nil {
		t.Error("a failed pack left an output file")
	}

	dest := filepath.Join(t.TempDir(), "new", "dest")
	mustRun(t, "", "extract", "-k", key, "-C", dest, arch)
	want := treeFiles(t, root)
	want = slices.DeleteFunc(want, func(s string) bool { return strings.HasPrefix(s, "sub/skip.o") })
	if got := treeFiles(t, filepath.Join(dest, "proj")); !slices.Equal(got, want) {
		t.Errorf("extracted\n got %q\nwant %q", got, want)
	}

	// Again into the same place: every file exists.
	r = cbfs(t, "", "extract", "-k", key, "-C", dest, arch)
	if r.code != exitFailure || strings.Count(string(r.stderr), "exists; not replaced") != 3 {
		t.Errorf("extract over existing files: %s", r)
	}
	mustRun(t, "", "extract", "-k", key, "-C", dest, "--overwrite", arch)

	// Selected paths only; a path not in the archive fails the run.
	sel := t.TempDir()
	mustRun(t, "", "extract", "-k", key, "-C", sel, arch, "proj/sub")
	if got := treeFiles(t, sel); len(got) != 4 || !strings.HasPrefix(got[3], "proj/sub/b.bin") {
		t.Errorf("extract proj/sub gave %q", got)
	}
	if r := cbfs(t, "", "extract", "-k", key, "-C", t.TempDir(), arch, "proj/nope"); r.code != exitFailure ||
		!strings.Contains(string(r.stderr), "proj/nope: not found in the archive") {
		t.Errorf("extract of a missing path: %s", r)
	}
	// extract seeks: a pipe is refused with a hint.
	r = invocation{stdin: bytes.NewReader(readFile(t, arch))}.run(t, "extract", "-k", key, "-C", t.TempDir(), "-")
	if r.code != exitUsage || !strings.Contains(string(r.stderr), "hint: for a pipe use") {
		t.Errorf("extract from standard input: %s", r)
	}
	if r := cbfs(t, "", "extract", "-k", newKey(t), "-C", t.TempDir(), arch); r.code != exitWrongKey {
		t.Errorf("extract with the wrong key: %s", r)
	}
}

// TestExtractSalvage: an archive cut short is refused with a hint at
// --salvage; with it, every member before the cut is extracted whole, and
// the status is 3 all the same.
func TestExtractSalvage(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "tree")
	for i := range 30 {
		writeFile(t, filepath.Join(root, fmt.Sprintf("f%02d", i)), randomBytes(20_000+i, uint64(i)), 0o644)
	}
	arch := filepath.Join(dir, "tree.cbfs")
	mustRun(t, dir, "pack", "-k", key, "-o", arch, "tree")
	full := readFile(t, arch)
	for _, c := range []struct {
		name      string
		size      int
		atLeast   int // regular files salvaged
		allIntact bool
	}{
		{"end-blocks-missing", len(full) - 1024, 30, true},
		{"cut-in-half", len(full) / 2 / 512 * 512, 10, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cut := filepath.Join(t.TempDir(), "cut.cbfs")
			writeFile(t, cut, full[:c.size], 0o644)
			r := cbfs(t, "", "extract", "-k", key, "-C", t.TempDir(), cut)
			if r.code != exitDamaged || !strings.Contains(string(r.stderr), "hint: 'cbfs extract --salvage'") {
				t.Fatalf("extract without --salvage: %s", r)
			}
			dest := t.TempDir()
			r = cbfs(t, "", "extract", "-k", key, "--salvage", "-C", dest, cut)
			if r.code != exitDamaged || !strings.Contains(string(r.stderr), "found intact by a scan") {
				t.Fatalf("extract --salvage: %s", r)
			}
			n := 0
			for i := range 30 {
				name := fmt.Sprintf("f%02d", i)
				b, err := os.ReadFile(filepath.Join(dest, "tree", name))
				if err != nil {
					continue
				}
				if !bytes.Equal(b, readFile(t, filepath.Join(root, name))) {
					t.Fatalf("%s salvaged with other content", name)
				}
				n++
			}
			if n < c.atLeast || (c.allIntact && n != 30) || (!c.allIntact && n == 30) {
				t.Fatalf("%d files salvaged; stderr:\n%s", n, r.stderr)
			}
		})
	}
}

// TestExtractCommandUnsafe: hostile members are named, the rest is
// extracted, and the exit status is 1; a damaged member makes it 3.
func TestExtractCommandUnsafe(t *testing.T) {
	t.Parallel()
	keyPath := newKey(t)
	k, _, err := keys.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := format.NewWriter(&buf, k, format.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	add := func(m format.Meta, content string) {
		m.Size = int64(len(content))
		if _, err := w.Add(&m, strings.NewReader(content)); err != nil {
			t.Fatal(err)
		}
	}
	add(format.Meta{Type: format.TypeRegular, Path: []byte("good"), Mode: 0o644}, "good")
	add(format.Meta{Type: format.TypeRegular, Path: []byte("../escape"), Mode: 0o644}, "bad")
	add(format.Meta{Type: format.TypeSymlink, Path: []byte("up"), Link: []byte("..")}, "")
	add(format.Meta{Type: format.TypeRegular, Path: []byte("up/escape2"), Mode: 0o644}, "bad")
	add(format.Meta{Type: format.TypeHardlink, Path: []byte("hl"), Link: []byte("/etc/passwd")}, "")
	add(format.Meta{Type: format.TypeRegular, Path: []byte("victim"), Mode: 0o644}, strings.Repeat("v", 100_000))
	add(format.Meta{Type: format.TypeRegular, Path: []byte("last"), Mode: 0o644}, "last")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	arch := filepath.Join(base, "hostile.cbfs")
	writeFile(t, arch, buf.Bytes(), 0o600)
	dest := filepath.Join(base, "dest")
	r := cbfs(t, "", "extract", "-k", keyPath, "-C", dest, arch)
	if r.code != exitFailure {
		t.Errorf("exit %d, want 1: %s", r.code, r)
	}
	for _, name := range []string{`../escape`, `up/escape2`, `hl`} {
		if !strings.Contains(string(r.stderr), "cbfs: "+name+": ") {
			t.Errorf("stderr does not name %s:\n%s", name, r.stderr)
		}
	}
	if got := dirNames(t, base); !slices.Equal(got, []string{"dest", "hostile.cbfs"}) {
		t.Errorf("next to the destination: %q", got)
	}
	if got := dirNames(t, dest); !slices.Equal(got, []string{"good", "last", "up", "victim"}) {
		t.Errorf("destination holds %q", got)
	}

	// Damage the victim's content: exit 3, the victim is named and absent.
	a, err := format.OpenArchive(format.NewSource(bytes.NewReader(buf.Bytes()), int64(buf.Len())), k)
	if err != nil {
		t.Fatal(err)
	}
	es, err := a.Entries()
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Clone(buf.Bytes())
	b[a.PhysOffset(es[5].Offset+es[5].Length-50)] ^= 0x10
	writeFile(t, arch, b, 0o600)
	dest2 := filepath.Join(base, "dest2")
	r = cbfs(t, "", "extract", "-k", keyPath, "-C", dest2, arch)
	if r.code != exitDamaged || !strings.Contains(string(r.stderr), "cbfs: victim: ") {
		t.Errorf("damaged member: %s", r)
	}
	if got := dirNames(t, dest2); !slices.Equal(got, []string{"good", "last", "up"}) {
		t.Errorf("destination holds %q", got)
	}
}

// TestPackCommandUnreadable: a file pack cannot read is named, the archive
// is still written, and the exit status is 1.
func TestPackCommandUnreadable(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		t.Skip("root reads every file")
	}
	key := newKey(t)
	dir, root := packSource(t)
	if err := os.Chmod(filepath.Join(root, "a.txt"), 0); err != nil {
		t.Fatal(err)
	}
	arch := filepath.Join(t.TempDir(), "p.cbfs")
	r := cbfs(t, dir, "pack", "-k", key, "-o", arch, "proj")
	if r.code != exitFailure || !strings.Contains(string(r.stderr), "a.txt") {
		t.Errorf("%s", r)
	}
	ls := mustRun(t, "", "ls", "-k", key, arch)
	if strings.Contains(string(ls.stdout), "a.txt") || !strings.Contains(string(ls.stdout), "proj/sub/b.bin") {
		t.Errorf("archive lists:\n%s", ls.stdout)
	}
}
