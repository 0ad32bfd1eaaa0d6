//go:build linux

package tree

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/internal/testutil"
	"github.com/cbfs/cbfs/tarconv"
	"golang.org/x/sys/unix"
)

// packTree is a source tree for the pack tests, with what this machine
// let the test make.
type packTree struct {
	parent  string // directory that holds root
	root    string // parent/src
	sparse  bool   // the file system made holes
	xattrs  bool   // the file system took user xattrs
	owners  bool   // files were given other owners (root only)
	devices bool   // device nodes were made (root only)
	// atimes are the access times the tree was given, by path under
	// root: pack must record them before its own reads change them.
	atimes map[string]unix.Timespec
}

const sparseSize = 8 << 20

// buildPackTree makes a tree with every type pack keeps: regular, empty,
// random and sparse files, directories with set-id and sticky bits,
// symlinks, a hard link, a fifo, long and non-UTF-8 names, user xattrs,
// nanosecond times, and as root other owners and device nodes.
func buildPackTree(t *testing.T) *packTree {
	t.Helper()
	parent := t.TempDir()
	tr := &packTree{parent: parent, root: filepath.Join(parent, "src")}
	p := func(rel string) string { return filepath.Join(tr.root, rel) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"", "sub", "sub/deep", "sticky", "sgid", "locked"} {
		must(os.MkdirAll(p(d), 0o755))
	}
	rnd := rand.New(rand.NewPCG(7, 8))
	random := make([]byte, 200_000)
	for i := range random {
		random[i] = byte(rnd.Uint32())
	}
	files := map[string][]byte{
		"empty":                           nil,
		"text":                            bytes.Repeat([]byte("all your data is just in a tarball\n"), 1000),
		"random":                          random,
		"setuid":                          []byte("#!/bin/sh\n"),
		"setgid":                          []byte("#!/bin/sh\n"),
		"sub/deep/file":                   []byte("deep\n"),
		"sub/" + strings.Repeat("n", 120): []byte("long name\n"),
		"caf\xe9":                         []byte("latin-1 name\n"),
		"locked/inner":                    []byte("inside a read-only directory\n"),
		// Over the read-ahead limit: read by the walk itself.
		"sub/big": bytes.Repeat(random[:100_000], 13),
	}
	for name, b := range files {
		must(os.WriteFile(p(name), b, 0o644))
	}
	must(os.Symlink("text", p("link")))
	must(os.Symlink("/nonexistent/target", p("sub/dangling")))
	must(os.Link(p("text"), p("sub/hard")))
	must(unix.Mkfifo(p("fifo"), 0o600))

	f, err := os.Create(p("sparse"))
	must(err)
	must(f.Truncate(sparseSize))
	_, err = f.WriteAt(bytes.Repeat([]byte("a"), 4096), 0)
	must(err)
	_, err = f.WriteAt(random[:8192], 3<<20)
	must(err)
	must(f.Close())
	must(os.WriteFile(p("allhole"), nil, 0o600))
	must(os.Truncate(p("allhole"), 1<<20))
	var st unix.Stat_t
	must(unix.Stat(p("sparse"), &st))
	tr.sparse = st.Blocks*512 < sparseSize/4

	if err := unix.Setxattr(p("text"), "user.note", []byte("a note"), 0); err == nil {
		tr.xattrs = true
		must(unix.Setxattr(p("text"), "user.bin", []byte{0, 1, 2, 0xff}, 0))
		must(unix.Setxattr(p("random"), "user.empty", nil, 0))
		must(unix.Setxattr(p("sub"), "user.dir", []byte("on a directory"), 0))
	} else if !errors.Is(err, unix.ENOTSUP) {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		tr.owners = true
		must(os.Chown(p("text"), 1234, 5678))
		must(os.Lchown(p("link"), 4321, 8765))
		must(os.Chown(p("sub/deep"), 2000, 2001))
		must(os.Chown(p("setuid"), 1, 1))
		if unix.Mknod(p("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))) == nil {
			must(unix.Mknod(p("blk"), unix.S_IFBLK|0o640, int(unix.Mkdev(7, 200))))
			tr.devices = true
		}
	}
	// Modes after owners: chown clears set-id bits. os.Chmod would not
	// take raw set-id bits.
	for name, mode := range map[string]uint32{"setuid": 0o4755, "setgid": 0o2750, "text": 0o640,
		"sticky": 0o1777, "sgid": 0o2775, "locked": 0o555} {
		must(unix.Chmod(p(name), mode))
	}
	makeWritableLater(t, tr.root)

	// Nanosecond times, distinct per file, set deepest first so that a
	// directory's own times are not disturbed afterwards.
	var all []string
	must(filepath.WalkDir(tr.root, func(path string, d fs.DirEntry, err error) error {
		all = append(all, path)
		return err
	}))
	slices.SortFunc(all, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	tr.atimes = map[string]unix.Timespec{}
	for i, path := range all {
		ts := []unix.Timespec{
			{Sec: 1_500_000_000 + int64(i), Nsec: int64(i*7919+3) % 1e9},
			{Sec: 1_600_000_000 + int64(i), Nsec: int64(i*104729+123456789) % 1e9},
		}
		must(unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW))
	}
	// Hard links share one inode: read back what each path has.
	for _, path := range all {
		var st unix.Stat_t
		must(unix.Lstat(path, &st))
		rel, _ := filepath.Rel(tr.root, path)
		tr.atimes[rel] = st.Atim
	}
	t.Logf("tree made with holes %v, user xattrs %v, other owners %v, devices %v", tr.sparse, tr.xattrs, tr.owners, tr.devices)
	return tr
}

type collected struct {
	problems []Problem
}

func (c *collected) report(p Problem) { c.problems = append(c.problems, p) }

// packBytes packs roots into an archive in memory.
func packBytes(t *testing.T, opt PackOptions, roots ...string) ([]byte, PackStats, []Problem) {
	t.Helper()
	var c collected
	opt.Report = c.report
	var buf bytes.Buffer
	p, err := NewPacker(&buf, testutil.Key(t, 3), opt)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range roots {
		if err := p.AddTree(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	st, err := p.Close()
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), st, c.problems
}

func openBytes(t *testing.T, b []byte) (*format.Archive, []format.Entry) {
	t.Helper()
	a, err := format.OpenArchive(format.NewSource(bytes.NewReader(b), int64(len(b))), testutil.Key(t, 3))
	if err != nil {
		t.Fatal(err)
	}
	es, err := a.Entries()
	if err != nil {
		t.Fatal(err)
	}
	return a, es
}

// treeStat is one file of a tree as compareTrees sees it.
type treeStat struct {
	st     unix.Stat_t
	link   string
	xattrs []format.Xattr
}

func statTree(t *testing.T, root string) ([]string, map[string]*treeStat) {
	t.Helper()
	var rels []string
	m := map[string]*treeStat{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		ts := &treeStat{}
		if err := unix.Lstat(path, &ts.st); err != nil {
			return err
		}
		switch ts.st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			l, err := os.Readlink(path)
			if err != nil {
				return err
			}
			ts.link = l
		case unix.S_IFREG, unix.S_IFDIR:
			x, err := readXattrs(-1, path)
			if err != nil {
				return err
			}
			ts.xattrs = x
		}
		rels = append(rels, rel)
		m[rel] = ts
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rels, m
}

type compareOpts struct {
	owners bool
	atimes map[string]unix.Timespec // if set, the access times got must have
	// seconds: got has want's mtimes to the second (a format without
	// fractions); noXattrs: got has none.
	seconds, noXattrs bool
}

// compareTrees checks that got holds the same tree as want: the same
// paths, types, modes, owners (when asked), nanosecond mtimes, link
// targets, device numbers, user xattrs, hard-link groups, contents, and
// holes where want has them.
func compareTrees(t *testing.T, want, got string, o compareOpts) {
	t.Helper()
	makeWritableLater(t, got)
	wrels, ws := statTree(t, want)
	grels, gs := statTree(t, got)
	if !slices.Equal(wrels, grels) {
		t.Fatalf("trees hold different paths:\nwant %q\ngot  %q", wrels, grels)
	}
	firstOfInode := map[uint64]string{}
	for _, rel := range wrels {
		w, g := ws[rel], gs[rel]
		typ := w.st.Mode & unix.S_IFMT
		if g.st.Mode&unix.S_IFMT != typ {
			t.Errorf("%s: type %#o, want %#o", rel, g.st.Mode&unix.S_IFMT, typ)
			continue
		}
		if typ != unix.S_IFLNK && g.st.Mode&0o7777 != w.st.Mode&0o7777 {
			t.Errorf("%s: mode %#o, want %#o", rel, g.st.Mode&0o7777, w.st.Mode&0o7777)
		}
		if o.owners && (g.st.Uid != w.st.Uid || g.st.Gid != w.st.Gid) {
			t.Errorf("%s: owner %d:%d, want %d:%d", rel, g.st.Uid, g.st.Gid, w.st.Uid, w.st.Gid)
		}
		if o.seconds {
			if g.st.Mtim.Sec != w.st.Mtim.Sec || g.st.Mtim.Nsec != 0 {
				t.Errorf("%s: mtime %d.%09d, want %d", rel, g.st.Mtim.Sec, g.st.Mtim.Nsec, w.st.Mtim.Sec)
			}
		} else if g.st.Mtim != w.st.Mtim {
			t.Errorf("%s: mtime %d.%09d, want %d.%09d", rel, g.st.Mtim.Sec, g.st.Mtim.Nsec, w.st.Mtim.Sec, w.st.Mtim.Nsec)
		}
		if a, ok := o.atimes[rel]; ok && g.st.Atim != a {
			t.Errorf("%s: atime %d.%09d, want %d.%09d", rel, g.st.Atim.Sec, g.st.Atim.Nsec, a.Sec, a.Nsec)
		}
		if g.link != w.link {
			t.Errorf("%s: link target %q, want %q", rel, g.link, w.link)
		}
		if (typ == unix.S_IFCHR || typ == unix.S_IFBLK) && g.st.Rdev != w.st.Rdev {
			t.Errorf("%s: device %#x, want %#x", rel, g.st.Rdev, w.st.Rdev)
		}
		if o.noXattrs {
			if len(g.xattrs) != 0 {
				t.Errorf("%s: xattrs %q, want none", rel, g.xattrs)
			}
		} else if !xattrsEqual(g.xattrs, w.xattrs) {
			t.Errorf("%s: xattrs %q, want %q", rel, g.xattrs, w.xattrs)
		}
		if typ != unix.S_IFDIR && w.st.Nlink > 1 {
			first, ok := firstOfInode[w.st.Ino]
			if !ok {
				firstOfInode[w.st.Ino] = rel
			} else if gs[first].st.Ino != g.st.Ino {
				t.Errorf("%s: not a hard link to %s", rel, first)
			}
		}
		if typ != unix.S_IFDIR && g.st.Nlink != w.st.Nlink {
			t.Errorf("%s: %d links, want %d", rel, g.st.Nlink, w.st.Nlink)
		}
	}
	// Contents last: reading may change access times.
	for _, rel := range wrels {
		w, g := ws[rel], gs[rel]
		if w.st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		if g.st.Size != w.st.Size {
			t.Errorf("%s: size %d, want %d", rel, g.st.Size, w.st.Size)
			continue
		}
		if hashFile(t, filepath.Join(got, rel)) != hashFile(t, filepath.Join(want, rel)) {
			t.Errorf("%s: content differs", rel)
		}
		if w.st.Blocks*512 < w.st.Size/2 && g.st.Blocks > w.st.Blocks+128 {
			t.Errorf("%s: %d bytes allocated for %d (source: %d): holes were filled", rel, g.st.Blocks*512, g.st.Size, w.st.Blocks*512)
		}
	}
}

// makeWritableLater lets the test's cleanup remove a tree holding a
// read-only directory when the test does not run as root.
func makeWritableLater(t *testing.T, root string) {
	t.Cleanup(func() {
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(path, 0o755)
			}
			return nil
		})
	})
}

func xattrsEqual(a, b []format.Xattr) bool {
	return slices.EqualFunc(a, b, func(x, y format.Xattr) bool { return x.Name == y.Name && bytes.Equal(x.Value, y.Value) })
}

func hashFile(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// checkTreeFeatures makes sure the features the comparison relies on were
// really exercised, so that a tree that silently lost them cannot pass.
func checkTreeFeatures(t *testing.T, tr *packTree, got string) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(got, "sparse"), &st); err != nil {
		t.Fatal(err)
	}
	if tr.sparse && st.Blocks*512 > sparseSize/4 {
		t.Errorf("sparse: %d bytes allocated for %d", st.Blocks*512, st.Size)
	}
	if err := unix.Lstat(filepath.Join(got, "setuid"), &st); err != nil || st.Mode&0o4000 == 0 {
		t.Errorf("setuid bit lost: %#o %v", st.Mode, err)
	}
	if err := unix.Lstat(filepath.Join(got, "sticky"), &st); err != nil || st.Mode&0o1000 == 0 {
		t.Errorf("sticky bit lost: %#o %v", st.Mode, err)
	}
	if tr.xattrs {
		if v, err := xattrValue(filepath.Join(got, "text"), "user.note"); err != nil || v != "a note" {
			t.Errorf("xattr user.note = %q, %v", v, err)
		}
	}
	if tr.devices {
		if err := unix.Lstat(filepath.Join(got, "null"), &st); err != nil || st.Rdev != unix.Mkdev(1, 3) {
			t.Errorf("device null: rdev %#x, %v", st.Rdev, err)
		}
	}
}

func xattrValue(path, name string) (string, error) {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(path, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// TestPackExportGNUTar is the requirement 4: a packed tree,
// exported with ExportTar, is a tar from which GNU tar extracts the same
// tree, with no warning but GNU tar's about hdrcharset. bsdtar is held to
// the same, with none.
func TestPackExportGNUTar(t *testing.T) {
	tr := buildPackTree(t)
	arch, _, problems := packBytes(t, PackOptions{WriterOptions: format.WriterOptions{Compress: true}}, tr.root)
	if len(problems) != 0 {
		t.Fatalf("pack reported %v", problems)
	}
	var tarBuf bytes.Buffer
	if err := tarconv.ExportTar(context.Background(), &tarBuf, bytes.NewReader(arch), testutil.Key(t, 3), tarconv.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "tree.tar")
	if err := os.WriteFile(tarPath, tarBuf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tool string
		args []string
	}{
		{"tar", []string{"--xattrs", "--xattrs-include=*", "-xpf"}},
		{"bsdtar", []string{"--xattrs", "-xpf"}},
	} {
		t.Run(c.tool, func(t *testing.T) {
			bin := testutil.Tool(t, c.tool)
			out := t.TempDir()
			cmd := exec.Command(bin, append(c.args, tarPath, "-C", out)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if c.tool == "tar" && err == nil {
				// A name that is not UTF-8 goes in a pax path record
				// with hdrcharset=BINARY (spec 7.6), as POSIX says and
				// bsdtar writes; GNU tar takes the bytes as they are and
				// warns that it does not know the record.
				stderr = *bytes.NewBufferString(regexp.MustCompile(`(?m)^\S*tar: Ignoring unknown extended header keyword 'hdrcharset'\n`).ReplaceAllString(stderr.String(), ""))
			}
			if err != nil || stderr.Len() > 0 {
				t.Fatalf("%s: %v\n%s", c.tool, err, stderr.Bytes())
			}
			compareTrees(t, tr.root, filepath.Join(out, "src"), compareOpts{owners: tr.owners})
			checkTreeFeatures(t, tr, filepath.Join(out, "src"))
		})
	}
}

// TestPackExtractRoundTrip: pack then extract gives the same tree, access
// times included: pack records them before it reads a file or lists a
// directory, and extract sets them.
func TestPackExtractRoundTrip(t *testing.T) {
	tr := buildPackTree(t)
	atimes := tr.atimes
	for _, wo := range []format.WriterOptions{{Compress: true}, {ChunkSize: format.MinChunkSize, RecordSize: format.MinRecordSize}} {
		arch, st, problems := packBytes(t, PackOptions{WriterOptions: wo}, tr.root)
		if len(problems) != 0 || st.Failed != 0 {
			t.Fatalf("pack reported %v", problems)
		}
		// The second pass reads through the block cache, as cbfs extract
		// does.
		var a *format.Archive
		if wo.Compress {
			a, _ = openBytes(t, arch)
		} else {
			var err error
			a, err = format.OpenArchive(format.CachedSource(format.NewSource(bytes.NewReader(arch), int64(len(arch)))), testutil.Key(t, 3))
			if err != nil {
				t.Fatal(err)
			}
		}
		dest := t.TempDir()
		var c collected
		xs, err := Extract(context.Background(), a, dest, ExtractOptions{SameOwner: os.Geteuid() == 0, Report: c.report})
		if err != nil {
			t.Fatal(err)
		}
		if len(c.problems) != 0 || xs.Failed+xs.Rejected+xs.Damaged != 0 {
			t.Fatalf("extract reported %v (stats %+v)", c.problems, xs)
		}
		if xs.Members != st.Members {
			t.Errorf("extracted %d members, packed %d", xs.Members, st.Members)
		}
		compareTrees(t, tr.root, filepath.Join(dest, "src"), compareOpts{owners: tr.owners, atimes: atimes})
		// The comparison read the source: its access times have moved.
		atimes = nil
		checkTreeFeatures(t, tr, filepath.Join(dest, "src"))
	}
}

// TestPackMembers checks what pack records: the member order, names
// relative to the root's parent, inode numbers, hard links as links to
// the first path, sparse files as extents, and sockets left out.
func TestPackMembers(t *testing.T) {
	tr := buildPackTree(t)
	sock := filepath.Join(tr.root, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	arch, st, problems := packBytes(t, PackOptions{}, tr.root)
	if st.Failed != 0 || len(problems) != 1 || problems[0].Kind != Note || problems[0].Path != sock || problems[0].What != "socket ignored" {
		t.Fatalf("problems %v, want one note for the socket", problems)
	}
	a, es := openBytes(t, arch)

	// The same order filepath.WalkDir gives: byte order in each
	// directory, a directory before its contents.
	var want []string
	filepath.WalkDir(tr.root, func(path string, d fs.DirEntry, err error) error {
		if path != sock {
			rel, _ := filepath.Rel(tr.parent, path)
			want = append(want, rel)
		}
		return err
	})
	var got []string
	for _, e := range es {
		got = append(got, string(e.Meta.Path))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("member order\n got %q\nwant %q", got, want)
	}
	byPath := map[string]format.Entry{}
	for _, e := range es {
		byPath[string(e.Meta.Path)] = e
	}
	for _, rel := range want {
		var s unix.Stat_t
		if err := unix.Lstat(filepath.Join(tr.parent, rel), &s); err != nil {
			t.Fatal(err)
		}
		if m := byPath[rel].Meta; m.Inode != s.Ino {
			t.Errorf("%s: inode %d, want %d", rel, m.Inode, s.Ino)
		}
	}
	// The hard link: "src/sub/hard" comes after "src/text"? No: "sub"
	// sorts before "text", so sub/hard is the first path and text links
	// to it.
	text := byPath["src/text"].Meta
	if text.Type != format.TypeHardlink || string(text.Link) != "src/sub/hard" {
		t.Errorf("src/text: %s to %q, want a hard link to src/sub/hard", text.Type, text.Link)
	}
	if m := byPath["src/sub/hard"].Meta; m.Type != format.TypeRegular || m.Size != 35000 {
		t.Errorf("src/sub/hard: %s of %d bytes", m.Type, m.Size)
	}
	sp, err := a.Meta(byPath["src/sparse"])
	if err != nil {
		t.Fatal(err)
	}
	if tr.sparse {
		want := []format.Extent{{Offset: 0, Length: 4096}, {Offset: 3 << 20, Length: 8192}}
		if sp.Size != sparseSize || !slices.Equal(sp.Sparse, want) {
			t.Errorf("sparse: size %d extents %v, want %d %v", sp.Size, sp.Sparse, sparseSize, want)
		}
		if e := byPath["src/sparse"]; e.Length > 64<<10 {
			t.Errorf("sparse member takes %d bytes in the archive: holes stored", e.Length)
		}
		ah := byPath["src/allhole"].Meta
		if ah.Size != 1<<20 || ah.Sparse == nil || len(ah.Sparse) != 0 {
			t.Errorf("allhole: size %d extents %v, want 1 MiB and no extent", ah.Size, ah.Sparse)
		}
	}
	var content bytes.Buffer
	if err := tarconv.WriteContent(a, byPath["src/sparse"], &content); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(content.Bytes(), mustRead(t, filepath.Join(tr.root, "sparse"))) {
		t.Error("sparse: content read back differs")
	}
	if tr.xattrs {
		m, err := a.Meta(byPath["src/sub/hard"])
		if err != nil {
			t.Fatal(err)
		}
		want := []format.Xattr{{Name: "user.bin", Value: []byte{0, 1, 2, 0xff}}, {Name: "user.note", Value: []byte("a note")}}
		if !xattrsEqual(m.Xattrs, want) {
			t.Errorf("xattrs %q, want %q", m.Xattrs, want)
		}
	}
	if tr.owners {
		if m := byPath["src/setuid"].Meta; m.UID != 1 || m.Uname != "daemon" && m.Uname != "bin" {
			t.Logf("setuid: uid %d uname %q", m.UID, m.Uname)
		}
		if m := byPath["src/sub/hard"].Meta; m.UID != 1234 || m.GID != 5678 {
			t.Errorf("owner %d:%d, want 1234:5678", m.UID, m.GID)
		}
	}
	if m := byPath["src"].Meta; m.Uname == "" && os.Geteuid() == 0 {
		t.Errorf("src: no owner name for uid %d", m.UID)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPackExclude: a pattern matches the member path or the base name,
// and an excluded directory takes its contents with it.
func TestPackExclude(t *testing.T) {
	tr := buildPackTree(t)
	arch, _, _ := packBytes(t, PackOptions{Exclude: []string{"src/sub", "*and*", "sp?rse"}}, tr.root)
	_, es := openBytes(t, arch)
	for _, e := range es {
		p := string(e.Meta.Path)
		if strings.HasPrefix(p, "src/sub") || strings.Contains(p, "and") || p == "src/sparse" {
			t.Errorf("%s was not excluded", p)
		}
	}
	// "src/text" links to the excluded "src/sub/hard": it becomes the
	// first path of its inode and is stored as a file.
	for _, e := range es {
		if string(e.Meta.Path) == "src/text" && e.Meta.Type != format.TypeRegular {
			t.Errorf("src/text is a %s", e.Meta.Type)
		}
	}
	if len(es) < 10 {
		t.Errorf("only %d members left", len(es))
	}
	if _, err := NewPacker(io.Discard, testutil.Key(t, 3), PackOptions{Exclude: []string{"[z-"}}); err == nil {
		t.Error("a bad pattern was accepted")
	}
}

// TestPackChangedWhileRead: a file that changes between its stat and the
// end of its read is named, counted, and stored with its size at the
// start; the archive stays complete and valid.
func TestPackChangedWhileRead(t *testing.T) {
	cases := []struct {
		name   string
		change func(path string) error
		what   string
		want   []byte
	}{
		{"grows", func(p string) error {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte("more"))
			return err
		}, "changed size", []byte("0123456789")},
		{"shrinks", func(p string) error { return os.Truncate(p, 4) }, "shrank", []byte("0123\x00\x00\x00\x00\x00\x00")},
		{"rewritten", func(p string) error {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			_, err = f.WriteAt([]byte("abcdefghij"), 0)
			f.Close()
			if err != nil {
				return err
			}
			return unix.UtimesNano(p, []unix.Timespec{{Sec: 1}, {Sec: 1}})
		}, "changed while being read", []byte("abcdefghij")},
	}
	for _, c := range cases {
		for _, big := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/big=%v", c.name, big), func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "d")
				os.Mkdir(dir, 0o755)
				victim := filepath.Join(dir, "victim")
				// A big file is read by the walk, a small one ahead of it.
				var pad []byte
				if big {
					pad = bytes.Repeat([]byte("p"), readAheadMaxFile)
				}
				os.WriteFile(victim, append([]byte("0123456789"), pad...), 0o644)
				os.WriteFile(filepath.Join(dir, "other"), []byte("other"), 0o644)
				packReadHook = func(p string) {
					if p == victim {
						if err := c.change(p); err != nil {
							t.Error(err)
						}
					}
				}
				defer func() { packReadHook = nil }()
				arch, st, problems := packBytes(t, PackOptions{}, dir)
				if st.Failed != 1 || len(problems) != 1 || problems[0].Path != victim || problems[0].Kind != Failed ||
					!strings.Contains(problems[0].What, c.what) {
					t.Fatalf("failed %d, problems %v; want one naming %s with %q", st.Failed, problems, victim, c.what)
				}
				a, es := openBytes(t, arch)
				e, err := tarconv.Lookup(es, []byte("d/victim"))
				if err != nil {
					t.Fatal(err)
				}
				var got bytes.Buffer
				if err := tarconv.WriteContent(a, e, &got); err != nil {
					t.Fatal(err)
				}
				want := c.want
				if big {
					want = append(bytes.Clone(want), pad...)
					if c.name == "shrinks" {
						want = append([]byte("0123"), make([]byte, len(want)-4)...)
					}
				}
				if !bytes.Equal(got.Bytes(), want) {
					t.Errorf("stored %d bytes %.20q..., want %d bytes %.20q...", got.Len(), got.Bytes(), len(want), want)
				}
				if len(es) != 3 {
					t.Errorf("%d members, want 3", len(es))
				}
			})
		}
	}
}

// TestPackerAdd is the embeddable API without a file system: content of
// the wrong length is an error and leaves no complete archive.
func TestPackerAdd(t *testing.T) {
	for _, c := range []struct {
		name    string
		m       format.Meta
		content string
	}{
		{"short", format.Meta{Type: format.TypeRegular, Path: []byte("a"), Size: 5}, "abc"},
		{"long", format.Meta{Type: format.TypeRegular, Path: []byte("a"), Size: 2}, "abc"},
		{"sparse short", format.Meta{Type: format.TypeRegular, Path: []byte("a"), Size: 100,
			Sparse: []format.Extent{{Offset: 10, Length: 4}}}, "abc"},
		{"dir with content", format.Meta{Type: format.TypeDir, Path: []byte("d")}, "x"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			p, err := NewPacker(&buf, testutil.Key(t, 3), PackOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Add(&c.m, strings.NewReader(c.content)); err == nil {
				t.Fatal("Add accepted content of the wrong length")
			}
			if _, err := p.Close(); err == nil {
				t.Fatal("Close succeeded after a failed Add")
			}
			b := buf.Bytes()
			if _, err := format.OpenArchive(format.NewSource(bytes.NewReader(b), int64(len(b))), testutil.Key(t, 3)); err == nil {
				t.Fatal("the aborted archive opens as complete")
			}
		})
	}
}
