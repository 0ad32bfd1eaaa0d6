//go:build linux

package tree

import (
	"bytes"
	"context"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/internal/testutil"
	"github.com/cbfs/cbfs/tarconv"
	"golang.org/x/sys/unix"
)

// crafted is a member written with format.Writer directly, as a hostile
// archive would be.
type crafted struct {
	m       format.Meta
	content string
}

func file(path, content string) crafted {
	return crafted{format.Meta{Type: format.TypeRegular, Path: []byte(path), Mode: 0o644, Size: int64(len(content))}, content}
}

func symlink(path, target string) crafted {
	return crafted{format.Meta{Type: format.TypeSymlink, Path: []byte(path), Link: []byte(target), Mode: 0o777}, ""}
}

func hardlink(path, target string) crafted {
	return crafted{format.Meta{Type: format.TypeHardlink, Path: []byte(path), Link: []byte(target), Mode: 0o644}, ""}
}

func dir(path string, mode uint32) crafted {
	return crafted{format.Meta{Type: format.TypeDir, Path: []byte(path), Mode: mode}, ""}
}

func craftArchive(t *testing.T, members ...crafted) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := format.NewWriter(&buf, testutil.Key(t, 3), format.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range members {
		if _, err := w.Add(&c.m, strings.NewReader(c.content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func extractBytes(t *testing.T, arch []byte, dest string, opt ExtractOptions) (ExtractStats, []Problem) {
	t.Helper()
	a, _ := openBytes(t, arch)
	var c collected
	opt.Report = c.report
	st, err := Extract(context.Background(), a, dest, opt)
	if err != nil {
		t.Fatal(err)
	}
	return st, c.problems
}

// listTree lists every path under root with its type and, for files and
// symlinks, content or target.
func listTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.Walk(root, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, path)
		s := rel + " " + fi.Mode().Type().String()
		switch {
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(path)
			s += " " + string(b)
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(path)
			s += " -> " + l
		}
		out = append(out, s)
		return nil
	})
	return out
}

func problemPaths(ps []Problem, kind ProblemKind) []string {
	var out []string
	for _, p := range ps {
		if p.Kind == kind {
			out = append(out, p.Path)
		}
	}
	slices.Sort(out)
	return out
}

// safetyDirs makes base/dest and, beside it, base/outside holding one
// file, "secret", that no member may touch.
func safetyDirs(t *testing.T) (base, dest, outside string) {
	t.Helper()
	base = t.TempDir()
	dest, outside = filepath.Join(base, "dest"), filepath.Join(base, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	return
}

func checkOutsideUntouched(t *testing.T, outside string) {
	t.Helper()
	got := listTree(t, outside)
	want := []string{". d---------", "secret ---------- secret"}
	if !slices.Equal(got, want) {
		t.Errorf("outside the destination:\n got %q\nwant %q", got, want)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(outside, "secret"), &st); err != nil || st.Nlink != 1 {
		t.Errorf("secret has %d links (%v): a hard link was made to it", st.Nlink, err)
	}
}

// TestExtractSafety crafts one archive per rule, each hostile member
// between harmless ones, and checks that the hostile member is named and
// rejected, nothing appears outside the destination, and the rest is
// extracted.
func TestExtractSafety(t *testing.T) {
	type tc struct {
		name    string
		members func(base, outside string) []crafted
		setup   func(t *testing.T, dest, outside string)
		reject  []string // paths reported as rejected
		notes   int      // notes reported
		want    []string // the destination afterwards, beyond "before" and "after"
	}
	cases := []tc{
		{name: "dotdot", members: func(base, outside string) []crafted {
			return []crafted{file("../outside/evil", "x"), file("a/../../outside/evil2", "x"), file("a/..", "x")}
		}, reject: []string{"../outside/evil", "a/..", "a/../../outside/evil2"}},
		// Absolute names go below the destination, their leading '/'
		// removed (with one note), as GNU tar extracts them.
		{name: "absolute", members: func(base, outside string) []crafted {
			return []crafted{file("/abs/evil", "x"), dir("//abs/d", 0o755), symlink("/abs/s", "/etc/passwd")}
		}, notes: 1, want: []string{"abs d---------", "abs/d d---------", "abs/evil ---------- x", "abs/s L--------- -> /etc/passwd"}},
		{name: "through extracted symlink", members: func(base, outside string) []crafted {
			return []crafted{symlink("esc", outside), file("esc/evil", "x"), dir("esc/d", 0o755),
				symlink("rel", "../outside"), file("rel/evil", "x"), symlink("d2/up", ".."), file("d2/up/up/outside/evil", "x")}
		}, reject: []string{"d2/up/up/outside/evil", "esc/d", "esc/evil", "rel/evil"},
			want: []string{"d2 d---------", "d2/up L--------- -> ..", "esc L--------- -> OUTSIDE", "rel L--------- -> ../outside"}},
		{name: "through existing symlink", setup: func(t *testing.T, dest, outside string) {
			os.MkdirAll(dest, 0o755)
			if err := os.Symlink(outside, filepath.Join(dest, "pre")); err != nil {
				t.Fatal(err)
			}
		}, members: func(base, outside string) []crafted {
			return []crafted{file("pre/evil", "x"), file("pre/secret", "overwritten"), hardlink("pre/hl", "after")}
		}, reject: []string{"pre/evil", "pre/hl", "pre/secret"}, want: []string{"pre L--------- -> OUTSIDE"}},
		{name: "hard link outside", members: func(base, outside string) []crafted {
			return []crafted{hardlink("hl1", "../outside/secret"), hardlink("hl2", outside+"/secret"),
				symlink("esc", outside), hardlink("hl3", "esc/secret"), hardlink("hl4", "./")}
		}, reject: []string{"hl1", "hl2", "hl3", "hl4"}, want: []string{"esc L--------- -> OUTSIDE"}},
		{name: "overwrite through symlink", members: func(base, outside string) []crafted {
			// With --overwrite a later member replaces the symlink itself,
			// never what it points to.
			return []crafted{symlink("victim", outside+"/secret"), file("victim", "replaced")}
		}, want: []string{"victim ---------- replaced"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base, dest, outside := safetyDirs(t)
			if c.setup != nil {
				c.setup(t, dest, outside)
			}
			ms := append([]crafted{file("before", "b")}, c.members(base, outside)...)
			ms = append(ms, file("after", "a"))
			arch := craftArchive(t, ms...)
			st, problems := extractBytes(t, arch, dest, ExtractOptions{Overwrite: true})
			for i := range c.reject {
				c.reject[i] = strings.ReplaceAll(c.reject[i], "OUTSIDE", outside)
			}
			if got := problemPaths(problems, Rejected); !slices.Equal(got, c.reject) {
				t.Errorf("rejected %q, want %q (problems: %v)", got, c.reject, problems)
			}
			if st.Rejected != len(c.reject) || len(problems) != len(c.reject)+c.notes {
				t.Errorf("stats %+v, problems %v", st, problems)
			}
			for _, p := range problems {
				if p.Kind != Note && !strings.Contains(p.What, "not extracted") {
					t.Errorf("problem %v does not say the member was not extracted", p)
				}
			}
			checkOutsideUntouched(t, outside)
			want := append([]string{". d---------", "after ---------- a", "before ---------- b"}, c.want...)
			for i := range want {
				want[i] = strings.ReplaceAll(want[i], "OUTSIDE", outside)
			}
			slices.Sort(want)
			if got := listTree(t, dest); !slices.Equal(got, want) {
				t.Errorf("destination:\n got %q\nwant %q", got, want)
			}
		})
	}
}

// TestExtractExisting: files that were there before are not replaced
// without Overwrite, and reported; an existing directory is used as it is.
func TestExtractExisting(t *testing.T) {
	for _, overwrite := range []bool{false, true} {
		dest := t.TempDir()
		os.WriteFile(filepath.Join(dest, "f"), []byte("old"), 0o600)
		os.Symlink("f", filepath.Join(dest, "s"))
		os.Mkdir(filepath.Join(dest, "d"), 0o700)
		arch := craftArchive(t, file("f", "new"), file("s", "new s"), dir("d", 0o755), file("d/inner", "in"),
			symlink("l", "f"))
		os.Symlink("old target", filepath.Join(dest, "l"))
		st, problems := extractBytes(t, arch, dest, ExtractOptions{Overwrite: overwrite})
		got := listTree(t, dest)
		var want []string
		if overwrite {
			want = []string{". d---------", "d d---------", "d/inner ---------- in", "f ---------- new", "l L--------- -> f", "s ---------- new s"}
			if len(problems) != 0 {
				t.Errorf("overwrite: problems %v", problems)
			}
		} else {
			want = []string{". d---------", "d d---------", "d/inner ---------- in", "f ---------- old", "l L--------- -> old target", "s L--------- -> f"}
			if got := problemPaths(problems, Failed); !slices.Equal(got, []string{"f", "l", "s"}) || st.Failed != 3 {
				t.Errorf("problems %v, want f, l and s reported", problems)
			}
			for _, p := range problems {
				if !strings.Contains(p.What, "exists; not replaced") {
					t.Errorf("problem %v", p)
				}
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("overwrite=%v:\n got %q\nwant %q", overwrite, got, want)
		}
		fi, _ := os.Stat(filepath.Join(dest, "d"))
		if wantMode := map[bool]os.FileMode{false: 0o700, true: 0o755}[overwrite]; fi.Mode().Perm() != wantMode {
			t.Errorf("overwrite=%v: existing directory has mode %v, want %v", overwrite, fi.Mode().Perm(), wantMode)
		}
	}
}

// TestExtractLastWins: a path that occurs several times ends as its last
// member, whatever the types, with no problem reported; a hard link made
// to an earlier version keeps that version, as with tar.
func TestExtractLastWins(t *testing.T) {
	dest := t.TempDir()
	arch := craftArchive(t, file("a", "one"), hardlink("keep", "a"), file("a", "two"),
		dir("b", 0o755), file("b", "file now"), file("c", "file"), dir("c", 0o750), file("c/x", "x"),
		symlink("d", "nowhere"), file("d", "d"),
		crafted{format.Meta{Type: format.TypeTombstone, Path: []byte("a")}, ""})
	st, problems := extractBytes(t, arch, dest, ExtractOptions{})
	if len(problems) != 0 {
		t.Fatalf("problems %v", problems)
	}
	want := []string{". d---------", "a ---------- two", "b ---------- file now", "c d---------", "c/x ---------- x", "d ---------- d", "keep ---------- one"}
	if got := listTree(t, dest); !slices.Equal(got, want) {
		t.Errorf("\n got %q\nwant %q", got, want)
	}
	if st.Members != 10 {
		t.Errorf("%d members written, want 10", st.Members)
	}
}

// TestExtractDamaged: a member whose bytes fail authentication is named,
// leaves no file (not even a temporary one), and the others are extracted.
func TestExtractDamaged(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 10000)
	arch := craftArchive(t, file("first", "1"), file("victim", big), file("last", "3"))
	a, es := openBytes(t, arch)
	e := es[1]
	arch[a.PhysOffset(e.Offset+e.Length-100)] ^= 1
	dest := t.TempDir()
	st, problems := extractBytes(t, arch, dest, ExtractOptions{})
	if st.Damaged != 1 || len(problems) != 1 || problems[0].Path != "victim" || problems[0].Kind != Damaged {
		t.Fatalf("stats %+v, problems %v; want victim reported as damaged", st, problems)
	}
	want := []string{". d---------", "first ---------- 1", "last ---------- 3"}
	if got := listTree(t, dest); !slices.Equal(got, want) {
		t.Errorf("\n got %q\nwant %q", got, want)
	}
}

// TestExtractPaths: only the given paths and what lies under them are
// extracted; a hard link whose target was left out gets the target's
// content; a path that matches nothing is reported.
func TestExtractPaths(t *testing.T) {
	arch := craftArchive(t, dir("a", 0o755), file("a/x", "ax"), file("a/y", "ay"), dir("b", 0o750),
		file("b/z", "bz"), hardlink("b/hl", "a/x"), file("bc", "not under b"), file("a/b/z", "no"))
	dest := t.TempDir()
	st, problems := extractBytes(t, arch, dest, ExtractOptions{Paths: []string{"./b/", "a/y", "nope"}})
	want := []string{". d---------", "a d---------", "a/y ---------- ay", "b d---------", "b/hl ---------- ax", "b/z ---------- bz"}
	if got := listTree(t, dest); !slices.Equal(got, want) {
		t.Errorf("\n got %q\nwant %q", got, want)
	}
	if len(problems) != 1 || problems[0].Path != "nope" || problems[0].What != "not found in the archive" || st.Failed != 1 {
		t.Errorf("problems %v, want nope reported", problems)
	}
	fi, _ := os.Stat(filepath.Join(dest, "b"))
	if fi.Mode().Perm() != 0o750 {
		t.Errorf("b has mode %v", fi.Mode().Perm())
	}
}

// TestExtractSkipped: tombstones, pax globals and trailers are not files;
// an unknown tar entry is not extracted and counts as a failure (status
// 1). Pax globals and other tar
// entries exist only imported (spec 7.2), and an imported archive holds
// nothing but imported entries, tombstones and its trailer (spec 7.5), so
// the imported members and the packed ones are two archives extracted
// into one directory.
func TestExtractSkipped(t *testing.T) {
	imported := []crafted{{format.Meta{Type: format.TypeTarGlobal, Path: []byte("g")}, "9 a=b\n"},
		{format.Meta{Type: format.TypeTarOther, Path: []byte("weird"), Typeflag: 'N'}, ""},
		// A GNU volume label is skipped without a word; a GNU incremental
		// dump directory is extracted as the directory it is.
		{format.Meta{Type: format.TypeTarOther, Path: []byte("label"), Typeflag: 'V'}, ""},
		{format.Meta{Type: format.TypeTarOther, Path: []byte("dd/"), Typeflag: 'D', Mode: 0o1777, Size: 4}, "Yf\x00\x00"},
		{format.Meta{Type: format.TypeTombstone, Path: []byte("gone")}, ""},
		{format.Meta{Type: format.TypeTrailer}, "\x00\x00"}}
	for i := range imported[:4] {
		imported[i].m.TarHeader = []byte("tar header bytes")
	}
	packed := []crafted{{format.Meta{Type: format.TypeTombstone, Path: []byte("gone")}, ""}, file("f", "f"),
		// Members that name the destination itself: a directory is the
		// destination, anything else is reported and not written.
		dir("./", 0o700), file(".", "x"), file("./", "y"), symlink(".", "f")}
	dest := t.TempDir()
	st, problems := extractBytes(t, craftArchive(t, imported...), dest, ExtractOptions{})
	if len(problems) != 1 || problems[0].Kind != Failed || problems[0].Path != "weird" || st.Failed != 1 {
		t.Fatalf("imported: problems %v, stats %+v", problems, st)
	}
	st, problems = extractBytes(t, craftArchive(t, packed...), dest, ExtractOptions{})
	if len(problems) != 3 || st.Failed != 3 {
		t.Fatalf("packed: problems %v, stats %+v", problems, st)
	}
	for _, p := range problems {
		if p.Kind != Failed || !strings.Contains(p.What, "destination directory itself; not extracted") {
			t.Errorf("problem %+v", p)
		}
	}
	if got := listTree(t, dest); !slices.Equal(got, []string{". d---------", "dd d---------", "f ---------- f"}) {
		t.Errorf("got %q", got)
	}
	if fi, err := os.Stat(filepath.Join(dest, "dd")); err != nil || fi.Mode() != fs.ModeDir|fs.ModeSticky|0o777 {
		t.Errorf("dump directory: %v, %v; want drwxrwxrwt", fi.Mode(), err)
	}
}

// TestExtractOwners: as root owners are restored, by name where the name
// exists here; without them set-id bits go, since the file would carry
// them for the wrong owner.
func TestExtractOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("restoring owners needs root")
	}
	daemon, err := user.Lookup("daemon")
	if err != nil {
		t.Skip("no user daemon here")
	}
	duid, _ := strconv.Atoi(daemon.Uid)
	suid := crafted{format.Meta{Type: format.TypeRegular, Path: []byte("suid"), Mode: 0o4755, UID: 1234, GID: 5678, Size: 1}, "x"}
	named := crafted{format.Meta{Type: format.TypeRegular, Path: []byte("named"), Mode: 0o6750, UID: 9999, GID: 9998, Uname: "daemon", Size: 1}, "y"}
	arch := craftArchive(t, suid, named)
	for _, c := range []struct {
		opt        ExtractOptions
		suid, name [3]int // uid, gid, mode
	}{
		{ExtractOptions{SameOwner: true}, [3]int{1234, 5678, 0o4755}, [3]int{duid, 9998, 0o6750}},
		{ExtractOptions{SameOwner: true, NumericOwner: true}, [3]int{1234, 5678, 0o4755}, [3]int{9999, 9998, 0o6750}},
		{ExtractOptions{}, [3]int{0, 0, 0o755}, [3]int{0, 0, 0o750}},
	} {
		dest := t.TempDir()
		if _, problems := extractBytes(t, arch, dest, c.opt); len(problems) != 0 {
			t.Fatalf("problems %v", problems)
		}
		for name, want := range map[string][3]int{"suid": c.suid, "named": c.name} {
			var st unix.Stat_t
			unix.Lstat(filepath.Join(dest, name), &st)
			if got := [3]int{int(st.Uid), int(st.Gid), int(st.Mode & 0o7777)}; got != want {
				t.Errorf("%+v: %s: uid, gid, mode %o, want %o", c.opt, name, got, want)
			}
		}
	}
}

// TestExtractNoDevicesNoSetID: --no-devices skips device nodes with a note
// (fifos are not devices), --no-setid clears set-id bits of files even
// when the owner is restored, and a directory keeps set-group-id.
func TestExtractNoDevicesNoSetID(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("device nodes and owners need root")
	}
	dev := crafted{format.Meta{Type: format.TypeChar, Path: []byte("null"), Mode: 0o666, DevMajor: 1, DevMinor: 3}, ""}
	fifo := crafted{format.Meta{Type: format.TypeFifo, Path: []byte("fifo"), Mode: 0o6644}, ""}
	suid := crafted{format.Meta{Type: format.TypeRegular, Path: []byte("suid"), Mode: 0o6755, Size: 1}, "x"}
	sgidDir := dir("shared", 0o2775)
	arch := craftArchive(t, dev, fifo, suid, sgidDir)
	modes := func(dest string) map[string]string {
		out := map[string]string{}
		for _, n := range []string{"null", "fifo", "suid", "shared"} {
			fi, err := os.Lstat(filepath.Join(dest, n))
			if err != nil {
				out[n] = "absent"
				continue
			}
			out[n] = fi.Mode().String()
		}
		return out
	}
	dest := t.TempDir()
	if _, problems := extractBytes(t, arch, dest, ExtractOptions{SameOwner: true}); len(problems) != 0 {
		t.Fatalf("problems %v", problems)
	}
	want := map[string]string{"null": "Dcrw-rw-rw-", "fifo": "pugrw-r--r--", "suid": "ugrwxr-xr-x", "shared": "dgrwxrwxr-x"}
	if got := modes(dest); !maps.Equal(got, want) {
		t.Errorf("by default: %v, want %v", got, want)
	}
	dest = t.TempDir()
	st, problems := extractBytes(t, arch, dest, ExtractOptions{SameOwner: true, NoDevices: true, NoSetID: true})
	want = map[string]string{"null": "absent", "fifo": "prw-r--r--", "suid": "-rwxr-xr-x", "shared": "dgrwxrwxr-x"}
	if got := modes(dest); !maps.Equal(got, want) {
		t.Errorf("--no-devices --no-setid: %v, want %v", got, want)
	}
	if len(problems) != 1 || problems[0].Kind != Note || problems[0].Path != "null" || !strings.Contains(problems[0].What, "--no-devices") {
		t.Errorf("problems %+v, want one note naming the skipped device", problems)
	}
	if st.Members != 3 {
		t.Errorf("%d members extracted, want 3", st.Members)
	}
}

// TestExtractImported: members imported from tars that GNU tar writes
// (pax with nanosecond times and xattrs, and GNU format with old-style
// sparse headers) extract to the tree tar read, holes included.
func TestExtractImported(t *testing.T) {
	gnutar := testutil.Tool(t, "tar")
	tr := buildPackTree(t)
	for _, c := range []struct {
		format string
		flags  []string
	}{
		{"pax", []string{"--format=pax", "--xattrs", "-S"}},
		{"gnu", []string{"--format=gnu", "-S"}},
		// Directories as GNU incremental dump directories (type 'D'),
		// and a volume label (type 'V').
		{"gnu-incremental", []string{"--format=gnu", "-S", "-V", "label", "--listed-incremental=" + filepath.Join(t.TempDir(), "snap")}},
	} {
		t.Run(c.format, func(t *testing.T) {
			args := append(c.flags, "-cf", "-", "-C", tr.parent, "src")
			cmd := exec.Command(gnutar, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			in, err := cmd.Output()
			if err != nil {
				t.Fatalf("tar: %v\n%s", err, stderr.Bytes())
			}
			var arch bytes.Buffer
			if _, err := tarconv.ImportTar(context.Background(), &arch, bytes.NewReader(in), testutil.Key(t, 3), format.WriterOptions{}); err != nil {
				t.Fatal(err)
			}
			dest := t.TempDir()
			st, problems := extractBytes(t, arch.Bytes(), dest, ExtractOptions{SameOwner: os.Geteuid() == 0})
			if len(problems) != 0 {
				t.Fatalf("problems %v (stats %+v)", problems, st)
			}
			got := filepath.Join(dest, "src")
			// The GNU format keeps whole seconds and no xattrs.
			gnu := strings.HasPrefix(c.format, "gnu")
			compareTrees(t, tr.root, got, compareOpts{owners: tr.owners, seconds: gnu, noXattrs: gnu})
			checkTreeFeatures(t, &packTree{sparse: tr.sparse, devices: tr.devices, xattrs: tr.xattrs && c.format == "pax"}, got)
		})
	}
}

// TestExtractWriteFails: when the destination refuses a write (here the
// file size limit, as a full disk would), Extract stops with an error
// naming the file, leaves no part of that file behind, and keeps what
// was complete before it.
func TestExtractWriteFails(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 10000)
	arch := craftArchive(t, file("first", "1"), file("big", big), file("last", "3"))
	a, _ := openBytes(t, arch)
	dest := t.TempDir()
	// first is extracted, and complete, before the run that fails: files
	// are written by several workers, and one still queued when another
	// fails is abandoned, so within one run "before" is not an order.
	if _, err := Extract(context.Background(), a, dest, ExtractOptions{Paths: []string{"first"}}); err != nil {
		t.Fatal(err)
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	small := lim
	small.Cur = 64 << 10
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &small); err != nil {
		t.Skipf("cannot set a file size limit: %v", err)
	}
	_, err := Extract(context.Background(), a, dest, ExtractOptions{})
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	if err == nil || !strings.Contains(err.Error(), "big: writing") {
		t.Fatalf("Extract: %v; want the write failure of big", err)
	}
	got := listTree(t, dest)
	if slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "big") || strings.HasPrefix(s, ".cbfs-") }) {
		t.Errorf("part of big left behind: %q", got)
	}
	if !slices.Contains(got, "first ---------- 1") {
		t.Errorf("first, complete before the failure, is gone: %q", got)
	}
}

// TestExtractAgainHardLink: extracting again into a full destination says
// of a hard link that it exists, as of any other file, not that its
// target was not extracted.
func TestExtractAgainHardLink(t *testing.T) {
	arch := craftArchive(t, dir("d", 0o755), file("d/f", "x"), hardlink("d/hard", "d/f"))
	dest := t.TempDir()
	if _, problems := extractBytes(t, arch, dest, ExtractOptions{}); len(problems) != 0 {
		t.Fatalf("first run: %v", problems)
	}
	_, problems := extractBytes(t, arch, dest, ExtractOptions{})
	if len(problems) != 2 {
		t.Fatalf("second run: %v", problems)
	}
	for _, p := range problems {
		if !strings.Contains(p.What, "exists; not replaced") {
			t.Errorf("%s: %s", p.Path, p.What)
		}
	}
}
