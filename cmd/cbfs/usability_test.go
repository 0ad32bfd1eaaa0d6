package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cbfs/cbfs/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestImportCompressed: import recognises gzip, bzip2, xz and zstd by
// their first bytes, says so, and the archive exports the decompressed
// tar byte for byte.
func TestImportCompressed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := newKey(t)
	_, in := sourceTar(t)
	plain := readFile(t, in)
	for _, c := range []struct{ name, tool string }{
		{"gzip", "gzip"}, {"bzip2", "bzip2"}, {"xz", "xz"}, {"zstd", "zstd"},
	} {
		cmd := exec.Command(testutil.Tool(t, c.tool), "-c")
		cmd.Stdin = bytes.NewReader(plain)
		compressed, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", c.tool, err)
		}
		writeFile(t, filepath.Join(dir, "in."+c.name), compressed, 0o644)
		r := mustRun(t, dir, "import", "-k", key, "-o", c.name+".cbfs", "in."+c.name)
		if !strings.Contains(string(r.stderr), c.name+"-compressed") {
			t.Errorf("%s: stderr does not say so: %s", c.name, r.stderr)
		}
		out := mustRun(t, dir, "export", "-k", key, c.name+".cbfs").stdout
		if !bytes.Equal(out, plain) {
			t.Errorf("%s: export differs from the decompressed tar", c.name)
		}
		// Cut short: bad input, named, nothing written.
		writeFile(t, filepath.Join(dir, "cut."+c.name), compressed[:len(compressed)/2], 0o644)
		r = cbfs(t, dir, "import", "-k", key, "-o", "cut.cbfs", "cut."+c.name)
		if r.code == 0 || !strings.Contains(string(r.stderr), "cut."+c.name) {
			t.Errorf("%s cut short: %s", c.name, r)
		}
		if _, err := os.Stat(filepath.Join(dir, "cut.cbfs")); err == nil {
			t.Errorf("%s cut short: an output was left", c.name)
		}
	}
}

// TestImportNotTarHint: input that is some other archive is refused as
// bad input with a hint that says what it looks like.
func TestImportNotTarHint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := newKey(t)
	for name, head := range map[string]string{
		"zip":  "PK\x03\x04\x14\x00\x00\x00",
		"cpio": "070701000000010000",
	} {
		b := append([]byte(head), make([]byte, 2048)...)
		writeFile(t, filepath.Join(dir, "in."+name), b, 0o644)
		r := cbfs(t, dir, "import", "-k", key, "-o", "x.cbfs", "in."+name)
		if r.code != exitBadInput || !strings.Contains(string(r.stderr), "hint: it looks like a "+name) {
			t.Errorf("%s: %s", name, r)
		}
	}
}

// openPTY returns the terminal end of a new pseudo-terminal.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("ptsname: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestTerminalInputRefused: no command waits for an archive typed at a
// terminal; each refuses at once, as GNU tar does.
func TestTerminalInputRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := newKey(t)
	tty := openPTY(t)
	for _, args := range [][]string{
		{"import", "-k", key, "-o", "x.cbfs"},
		{"import", "-k", key, "-o", "x.cbfs", "-"},
		{"export", "-k", key, "-o", "x.tar", "-"},
		{"ls", "-k", key, "-"},
		{"cat", "-k", key, "-", "a"},
		{"extract", "-k", key, "-C", "d", "-"},
		{"verify", "-"},
	} {
		r := invocation{dir: dir, stdin: tty}.run(t, args...)
		if r.code == 0 || !strings.Contains(string(r.stderr), "refusing to read archive contents from a terminal") {
			t.Errorf("%v: %s", args, r)
		}
	}
}

// gnuTar builds a tar with entries of the types given, as GNU tar writes
// them.
func gnuTar(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		h.Format = tar.FormatGNU
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write(bytes.Repeat([]byte("m"), int(h.Size)))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// TestExtractNotExtractedIsStatus1: a member extract skips (a multi-volume
// continuation) is named, and the status is 1, not 0; ls shows its size
// as tar does.
func TestExtractNotExtractedIsStatus1(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := newKey(t)
	b := gnuTar(t, &tar.Header{Name: "f", Typeflag: tar.TypeReg, Size: 3, Mode: 0o644},
		&tar.Header{Name: "rest", Typeflag: 'M', Size: 700, Mode: 0o644})
	writeFile(t, filepath.Join(dir, "in.tar"), b, 0o644)
	mustRun(t, dir, "import", "-k", key, "-o", "a.cbfs", "in.tar")
	r := cbfs(t, dir, "extract", "-k", key, "-C", "out", "a.cbfs")
	if r.code != exitFailure || !strings.Contains(string(r.stderr), `rest: a multi-volume continuation`) ||
		!strings.Contains(string(r.stderr), "1 problem (named above); 1 member extracted") {
		t.Errorf("extract: %s", r)
	}
	ls := string(mustRun(t, dir, "ls", "-k", key, "a.cbfs").stdout)
	if !strings.Contains(ls, " 700 ") {
		t.Errorf("ls shows the M entry without its size:\n%s", ls)
	}
}

// TestKeygenRefusesStdout: a key is never written to standard output,
// nor to a file named "-".
func TestKeygenRefusesStdout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := cbfs(t, dir, "keygen", "-o", "-")
	if r.code != exitUsage || len(r.stdout) != 0 {
		t.Errorf("keygen -o -: %s, %d bytes on stdout", r, len(r.stdout))
	}
	if _, err := os.Stat(filepath.Join(dir, "-")); err == nil {
		t.Error("keygen -o - wrote a file named -")
	}
}

// TestExportChecksEndFirst: an archive file cut short is refused before
// export writes anything, to standard output or a file.
func TestExportChecksEndFirst(t *testing.T) {
	t.Parallel()
	im := importSource(t)
	cut := im.arc[:len(im.arc)/2/512*512]
	writeFile(t, filepath.Join(im.dir, "cut.cbfs"), cut, 0o644)
	r := cbfs(t, im.dir, "export", "-k", im.key, "cut.cbfs")
	if r.code != exitDamaged || len(r.stdout) != 0 {
		t.Errorf("export of a cut file: %s, %d bytes written", r, len(r.stdout))
	}
	f, err := os.Open(filepath.Join(im.dir, "cut.cbfs"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r = invocation{dir: im.dir, stdin: f}.run(t, "export", "-k", im.key, "-")
	if r.code != exitDamaged || len(r.stdout) != 0 {
		t.Errorf("export of a cut file on standard input: %s, %d bytes written", r, len(r.stdout))
	}
}

// TestVersionAndMan: --version names the formats read and written and
// the Go version; gen-man writes a page per command; completion works.
func TestVersionAndMan(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := string(mustRun(t, dir, "--version").stdout)
	for _, want := range []string{"cbfs ", "commit ", "built with go", "archive format: writes v1.0, reads v1.x", "index format: writes v1."} {
		if !strings.Contains(out, want) {
			t.Errorf("--version lacks %q:\n%s", want, out)
		}
	}
	mustRun(t, dir, "gen-man", "man")
	for _, page := range []string{"cbfs.1", "cbfs-extract.1", "cbfs-index-rebuild.1"} {
		b := readFile(t, filepath.Join(dir, "man", page))
		if !bytes.Contains(b, []byte(".TH")) {
			t.Errorf("%s is not a man page", page)
		}
	}
	if b := mustRun(t, dir, "completion", "bash").stdout; !bytes.Contains(b, []byte("complete")) {
		t.Error("completion bash printed no completion script")
	}
}

// TestVerboseAndLsPaths: -v lists members as tar -v does (on standard
// error when the archive goes to standard output); ls PATH lists only
// those paths and what is under them.
func TestVerboseAndLsPaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := newKey(t)
	b := gnuTar(t, &tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "d/a\nb", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644},
		&tar.Header{Name: "e", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})
	writeFile(t, filepath.Join(dir, "in.tar"), b, 0o644)
	want := "d/\nd/a\\nb\ne\n"
	r := mustRun(t, dir, "import", "-v", "-k", key, "-o", "a.cbfs", "in.tar")
	if string(r.stdout) != want {
		t.Errorf("import -v -o: stdout %q, want %q", r.stdout, want)
	}
	r = mustRun(t, dir, "import", "-v", "-k", key, "--delete", "gone", "in.tar")
	if !strings.HasPrefix(string(r.stderr), want) {
		t.Errorf("import -v to stdout: stderr %q, want it to start with %q", r.stderr, want)
	}
	if r = mustRun(t, dir, "export", "-v", "-k", key, "-o", "out.tar", "a.cbfs"); string(r.stdout) != want {
		t.Errorf("export -v: %q", r.stdout)
	}
	if r = mustRun(t, dir, "extract", "-v", "-k", key, "-C", "x", "a.cbfs"); string(r.stdout) != want {
		t.Errorf("extract -v: %q", r.stdout)
	}
	if r = mustRun(t, dir, "pack", "-v", "-k", key, "-o", "p.cbfs", "x/d"); string(r.stdout) != "d\nd/a\\nb\n" {
		t.Errorf("pack -v: %q", r.stdout)
	}
	ls := string(mustRun(t, dir, "ls", "-k", key, "a.cbfs", "./d/").stdout)
	if !strings.Contains(ls, " d/\n") || !strings.Contains(ls, ` d/a\nb`) || strings.Contains(ls, " e\n") {
		t.Errorf("ls a.cbfs ./d/:\n%s", ls)
	}
	r = cbfs(t, dir, "ls", "-k", key, "a.cbfs", "e", "nothere")
	if r.code != exitFailure || !strings.Contains(string(r.stderr), "nothere: not found") || !strings.HasSuffix(string(r.stdout), " e\n") {
		t.Errorf("ls with a missing path: %s\n%s", r, r.stdout)
	}
}

// TestWording: the messages a user sees speak of the tool, not of Go.
func TestWording(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := newKey(t)
	b := gnuTar(t, &tar.Header{Name: "f", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})
	writeFile(t, filepath.Join(dir, "in.tar"), b, 0o644)
	r := cbfs(t, dir, "import", "-k", key, "--seq", "x", "-o", "a.cbfs", "in.tar")
	if r.code != exitUsage || strings.Contains(string(r.stderr), "strconv") || !strings.Contains(string(r.stderr), `"--seq" flag: not a whole number`) {
		t.Errorf("--seq x: %s", r)
	}
	r = mustRun(t, dir, "import", "-k", key, "--delete", "gone", "-o", "a.cbfs", "in.tar")
	if !strings.Contains(string(r.stderr), "imported 1 entry (") {
		t.Errorf("import: %s", r.stderr)
	}
	ls := string(mustRun(t, dir, "ls", "-k", key, "a.cbfs").stdout)
	if strings.Contains(ls, "0001-01-01") || !strings.Contains(ls, "gone") {
		t.Errorf("a tombstone is listed with a year-1 date:\n%s", ls)
	}
	// A plain tar given where an archive is expected: a hint at tar and
	// import.
	r = cbfs(t, dir, "ls", "-k", key, "in.tar")
	if r.code != exitBadInput || !strings.Contains(string(r.stderr), "it is a plain tar") || !strings.Contains(string(r.stderr), "hint: list it with 'tar tvf in.tar'") {
		t.Errorf("ls of a plain tar: %s", r)
	}
	// Errors name what is wrong: the destination, the list file, the path.
	writeFile(t, filepath.Join(dir, "afile"), nil, 0o644)
	r = cbfs(t, dir, "extract", "-k", key, "-C", "afile/x", "a.cbfs")
	if r.code != exitFailure || !strings.Contains(string(r.stderr), "cbfs: destination afile/x: afile: not a directory") {
		t.Errorf("extract -C afile/x: %s", r)
	}
	r = cbfs(t, dir, "import", "-k", key, "--delete-from", "nofile", "-o", "b.cbfs", "in.tar")
	if r.code != exitFailure || !strings.Contains(string(r.stderr), "cbfs: --delete-from nofile: no such file or directory") {
		t.Errorf("--delete-from nofile: %s", r)
	}
	writeFile(t, filepath.Join(dir, "nul.lst"), []byte("a\x00b\n"), 0o644)
	r = cbfs(t, dir, "import", "-k", key, "--delete-from", "nul.lst", "-o", "b.cbfs", "in.tar")
	if r.code != exitUsage || !strings.Contains(string(r.stderr), `--delete a\000b: a path holds no NUL byte`) {
		t.Errorf("--delete-from with a NUL: %s", r)
	}
	r = cbfs(t, dir, "import", "-k", key, "--lock-timeout", "5", "-o", "b.cbfs", "in.tar")
	if r.code != exitUsage || !strings.Contains(string(r.stderr), "not a duration") || strings.Contains(string(r.stderr), "time:") {
		t.Errorf("--lock-timeout 5: %s", r)
	}
	for _, args := range [][]string{{"completion", "foo"}, {"index", "foo"}, {"foo"}} {
		if r = cbfs(t, dir, args...); r.code != exitUsage || !strings.Contains(string(r.stderr), `unknown command "foo"`) {
			t.Errorf("%v: %s", args, r)
		}
	}
	mustRun(t, dir, "import", "-k", key, "--index", "w.idx", "--new-index", "-o", "w.cbfs", "in.tar")
	if r = cbfs(t, dir, "ls", "-k", key, "w.idx"); r.code != exitBadInput || !strings.Contains(string(r.stderr), "it is a master index") || !strings.Contains(string(r.stderr), "cbfs index ls") {
		t.Errorf("ls of an index: %s", r)
	}
	if r = cbfs(t, dir, "index", "ls", "-k", key, "w.cbfs"); r.code != exitBadInput || !strings.Contains(string(r.stderr), "it is a CBFS archive") || !strings.Contains(string(r.stderr), "cbfs index rebuild") {
		t.Errorf("index ls of an archive: %s", r)
	}
	if r = cbfs(t, dir, "index", "rebuild", "-k", key, "-o", "p{shard}.idx", "in.tar"); r.code != exitUsage || !strings.Contains(string(r.stderr), "there is no --shard") {
		t.Errorf("{shard} without --shard: %s", r)
	}
	for _, args := range [][]string{{"help", "foo"}, {"help", "index", "foo"}} {
		if r = cbfs(t, dir, args...); r.code != exitUsage || !strings.Contains(string(r.stderr), "unknown help topic") {
			t.Errorf("%v: %s", args, r)
		}
	}
	if r = cbfs(t, dir, "help", "index", "rebuild"); r.code != 0 || !strings.Contains(string(r.stdout), "rebuild reads each archive") {
		t.Errorf("help index rebuild: %s", r)
	}
	if r = cbfs(t, dir, "gen-man"); r.code != exitUsage || !strings.Contains(string(r.stderr), "gen-man: takes exactly 1 argument, got 0") {
		t.Errorf("gen-man: %s", r)
	}
	// A tar cut inside a file's data mentions multi-volume tars.
	big := gnuTar(t, &tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: 5000, Mode: 0o644})
	writeFile(t, filepath.Join(dir, "cut.tar"), big[:2048], 0o644)
	r = cbfs(t, dir, "import", "-k", key, "-o", "c.cbfs", "cut.tar")
	if r.code == 0 || !strings.Contains(string(r.stderr), "multi-volume") {
		t.Errorf("cut tar: %s", r)
	}
}

// TestExtractAbsoluteNameIsTheCurrentCopy: a later member named "/x/a"
// supersedes "x/a" for cat and the index, and extract writes it too (its
// leading '/' removed, as GNU tar does), with or without a PATH.
func TestExtractAbsoluteNameIsTheCurrentCopy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := newKey(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, c := range []struct{ name, body string }{{"x/a", "old\n"}, {"/x/a", "new\n"}} {
		tw.WriteHeader(&tar.Header{Name: c.name, Typeflag: tar.TypeReg, Size: int64(len(c.body)), Mode: 0o644, Format: tar.FormatPAX})
		tw.Write([]byte(c.body))
	}
	tw.Close()
	writeFile(t, filepath.Join(dir, "abs.tar"), buf.Bytes(), 0o644)
	mustRun(t, dir, "import", "-k", key, "-o", "abs.cbfs", "abs.tar")
	if got := string(mustRun(t, dir, "cat", "-k", key, "abs.cbfs", "x/a").stdout); got != "new\n" {
		t.Fatalf("cat x/a: %q", got)
	}
	for i, sel := range [][]string{nil, {"x/a"}} {
		dest := fmt.Sprintf("out%d", i)
		r := cbfs(t, dir, append([]string{"extract", "--overwrite", "-k", key, "-C", dest, "abs.cbfs"}, sel...)...)
		if r.code != 0 || !strings.Contains(string(r.stderr), "removing leading '/' from member names") {
			t.Errorf("extract %v: %s", sel, r)
		}
		if got := string(readFile(t, filepath.Join(dir, dest, "x", "a"))); got != "new\n" {
			t.Errorf("extract %v wrote %q, want the current copy", sel, got)
		}
	}
}
