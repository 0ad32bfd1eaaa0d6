package main

// Tests of the cbfs command as users run it: the binary is built once
// (TestMain) and run as a child process, so exit statuses, standard error
// and the files left behind are what a user sees.

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/internal/testutil"
	"github.com/cbfs/cbfs/keys"
)

var cbfsBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cbfs-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cbfsBin = filepath.Join(dir, "cbfs")
	if out, err := exec.Command("go", "build", "-o", cbfsBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr []byte
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stderr:\n%s", r.code, r.stderr)
}

// invocation is one run of cbfs: in dir, with extra environment and
// standard input.
type invocation struct {
	dir   string
	env   []string
	stdin io.Reader
}

func (iv invocation) run(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(cbfsBin, args...)
	cmd.Dir = iv.dir
	// A developer's own CBFS_KEY_FILE must not leak into the tests.
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "CBFS_KEY_FILE=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, iv.env...)
	cmd.Stdin = iv.stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.Bytes(), stderr: stderr.Bytes()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("cbfs %v: %v", args, err)
		}
		r.code = ee.ExitCode()
	}
	return r
}

func cbfs(t *testing.T, dir string, args ...string) result {
	t.Helper()
	return invocation{dir: dir}.run(t, args...)
}

// mustRun runs cbfs and requires exit status 0.
func mustRun(t *testing.T, dir string, args ...string) result {
	t.Helper()
	r := cbfs(t, dir, args...)
	if r.code != 0 {
		t.Fatalf("cbfs %s: %s", strings.Join(args, " "), r)
	}
	return r
}

func runTar(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(testutil.Tool(t, "tar"), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "TZ=UTC")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tar %v: %v\n%s", args, err, stderr.Bytes())
	}
	return stdout.Bytes()
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
}

func randomBytes(n int, seed uint64) []byte {
	rnd := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	return b
}

// dirNames lists a directory, so that a test can say nothing was left.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// newKey makes a key file with cbfs keygen in its own directory, apart
// from the directories whose contents the tests check.
func newKey(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fs.key")
	mustRun(t, "", "keygen", "-o", p)
	return p
}

// sourceTar builds a small tree and its GNU tar (posix format).
func sourceTar(t *testing.T) (srcDir string, tarPath string) {
	t.Helper()
	srcDir = t.TempDir()
	writeFile(t, filepath.Join(srcDir, "d/hello.txt"), []byte("hello, world\n"), 0o644)
	writeFile(t, filepath.Join(srcDir, "d/sub/random.bin"), randomBytes(100_000, 1), 0o600)
	writeFile(t, filepath.Join(srcDir, "d/sub/text.txt"), bytes.Repeat([]byte("text line\n"), 3000), 0o644)
	writeFile(t, filepath.Join(srcDir, "d/name with spaces"), []byte("spaces\n"), 0o644)
	writeFile(t, filepath.Join(srcDir, "d/caf\u00e9.txt"), []byte("utf-8 name\n"), 0o644)
	writeFile(t, filepath.Join(srcDir, "d/bad\xffname"), []byte("latin-1 name\n"), 0o644)
	if err := os.Symlink("hello.txt", filepath.Join(srcDir, "d/sym")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(srcDir, "d/hello.txt"), filepath.Join(srcDir, "d/sub/hard")); err != nil {
		t.Fatal(err)
	}
	runTar(t, srcDir, "--format=posix", "-cf", "x.tar", "d")
	return srcDir, filepath.Join(srcDir, "x.tar")
}

// TestRoundTripFilesAndPipes: import and export through files and through
// standard input and output give the input back byte for byte.
func TestRoundTripFilesAndPipes(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	_, in := sourceTar(t)
	want := readFile(t, in)
	dir := t.TempDir()

	t.Run("files", func(t *testing.T) {
		mustRun(t, dir, "import", "-k", key, "-o", "a.cbfs", in)
		mustRun(t, dir, "export", "-k", key, "-o", "back.tar", "a.cbfs")
		if !bytes.Equal(readFile(t, filepath.Join(dir, "back.tar")), want) {
			t.Fatal("export -o back.tar differs from the input")
		}
	})
	t.Run("pipes", func(t *testing.T) {
		f, err := os.Open(in)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		r := invocation{dir: dir, stdin: f}.run(t, "import", "-k", key)
		if r.code != 0 {
			t.Fatalf("import from stdin: %s", r)
		}
		if len(r.stderr) != 0 {
			t.Errorf("import to stdout wrote to stderr: %s", r.stderr)
		}
		r = invocation{dir: dir, stdin: bytes.NewReader(r.stdout)}.run(t, "export", "-k", key, "-")
		if r.code != 0 {
			t.Fatalf("export from stdin: %s", r)
		}
		if !bytes.Equal(r.stdout, want) {
			t.Fatal("export to stdout differs from the input")
		}
	})
}

// truncatedTars writes a two-entry tar with Go's writer (headers at 0 and
// 1024, 10 data bytes at 512 and 1536, end blocks at 2048) and cuts it at
// the interesting offsets.
func badInputs(t *testing.T) map[string][]byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range []string{"d/f", "d/g"} {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 10, Format: tar.FormatUSTAR}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte("0123456789"))
	}
	tw.Close()
	good := buf.Bytes()
	if len(good) != 3072 {
		t.Fatalf("test setup: tar of %d bytes", len(good))
	}
	return map[string][]byte{
		"not-a-tar":                  bytes.Repeat([]byte("this is a text file, not a tar\n"), 100),
		"empty":                      nil,
		"random":                     randomBytes(4096, 2),
		"truncated-in-first-header":  good[:300],
		"truncated-in-second-header": good[:1300],
		"truncated-at-data":          good[:512],
		"truncated-in-data":          good[:515],
		"truncated-in-padding":       good[:700],
		"truncated-in-last-data":     good[:1540],
	}
}

// TestImportBadInput: input that is not a tar, or a truncated tar, fails
// with exit status 5 and one line naming the input, and leaves no output
// or temporary file.
func TestImportBadInput(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	for name, in := range badInputs(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, name+".tar"), in, 0o644)
			r := cbfs(t, dir, "import", "-k", key, "-o", "out", name+".tar")
			checkBadInput(t, r, name+".tar")
			if got := dirNames(t, dir); !slices.Equal(got, []string{name + ".tar"}) {
				t.Fatalf("files left in the output directory: %v", got)
			}
		})
	}
	t.Run("stdin-not-a-tar", func(t *testing.T) {
		dir := t.TempDir()
		r := invocation{dir: dir, stdin: strings.NewReader("not a tar\n")}.run(t, "import", "-k", key, "-o", "out", "-")
		checkBadInput(t, r, "standard input")
		if got := dirNames(t, dir); len(got) != 0 {
			t.Fatalf("files left in the output directory: %v", got)
		}
	})
}

func checkBadInput(t *testing.T, r result, input string) {
	t.Helper()
	if r.code != exitBadInput {
		t.Fatalf("want exit %d; got %s", exitBadInput, r)
	}
	msg := string(r.stderr)
	if !strings.HasPrefix(msg, "cbfs: ") || !strings.HasSuffix(msg, "\n") || strings.Count(msg, "\n") != 1 {
		t.Fatalf("want one line 'cbfs: ...' on stderr, got %q", msg)
	}
	if !strings.Contains(msg, input) {
		t.Fatalf("message %q does not name the input %q", msg, input)
	}
	if len(r.stdout) != 0 {
		t.Fatalf("wrote %d bytes to stdout", len(r.stdout))
	}
	t.Logf("%s", strings.TrimSpace(msg))
}

// imported imports the source tar and returns the archive's bytes and
// where its members are.
type imported struct {
	key      string
	dir      string
	arc      []byte
	archive  *format.Archive
	entries  []format.Entry
	tarBytes []byte
}

func importSource(t *testing.T) *imported {
	t.Helper()
	im := &imported{key: newKey(t), dir: t.TempDir()}
	_, in := sourceTar(t)
	im.tarBytes = readFile(t, in)
	mustRun(t, im.dir, "import", "-k", im.key, "-o", "a.cbfs", in)
	im.arc = readFile(t, filepath.Join(im.dir, "a.cbfs"))
	k, _, err := keys.ReadFile(im.key)
	if err != nil {
		t.Fatal(err)
	}
	a, err := format.OpenArchive(format.NewSource(bytes.NewReader(im.arc), int64(len(im.arc))), k)
	if err != nil {
		t.Fatal(err)
	}
	im.archive = a
	if im.entries, err = a.Entries(); err != nil {
		t.Fatal(err)
	}
	return im
}

func (im *imported) entry(t *testing.T, path string) format.Entry {
	t.Helper()
	for _, e := range im.entries {
		if string(e.Meta.Path) == path {
			return e
		}
	}
	t.Fatalf("no member %q", path)
	return format.Entry{}
}

// TestExportTampered: any change to an archive makes export fail with
// exit status 3 and leaves no output file; a change in a member's data
// names the member.
func TestExportTampered(t *testing.T) {
	t.Parallel()
	im := importSource(t)
	if im.archive.Footer.FooterOffset > uint64(im.archive.Header.RecordSize) {
		t.Fatal("test setup: the archive has more than one data record")
	}
	rnd := im.entry(t, "d/sub/random.bin")
	meta := im.entry(t, "d/hello.txt")
	a := im.archive
	flip := func(off int64) func([]byte) []byte {
		return func(b []byte) []byte {
			b = bytes.Clone(b)
			b[off] ^= 0x40
			return b
		}
	}
	n := int64(len(im.arc))
	cases := []struct {
		name       string
		change     func([]byte) []byte
		wantMember string // the message must name this member
	}{
		{"member-data-crc-fixed", reseal(a, rnd, 1), "d/sub/random.bin"},
		{"member-metadata-crc-fixed", reseal(a, meta, 0), "member 2"},
		{"member-data-middle", flip(a.PhysOffset(rnd.Offset + rnd.Length/2)), "d/sub/random.bin"},
		{"member-data-last-byte", flip(a.PhysOffset(rnd.Offset + rnd.Length - 1)), "d/sub/random.bin"},
		{"member-metadata", flip(a.PhysOffset(meta.Offset + 100)), "member"},
		{"member-frame-length", flip(a.PhysOffset(meta.Offset + 5)), "member"},
		{"summary", flip(a.PhysOffset(int64(a.Footer.SummaryOffset) + 20)), ""},
		{"footer", flip(int64(a.Footer.FooterOffset) + 512 + 40), ""},
		{"header-record-archive-id", flip(512 + 12 + 8 + 4 + 8 + 3), ""},
		{"outer-ustar-name", flip(1024 + 3), ""},
		{"outer-ustar-checksum", flip(1024 + 148 + 2), ""},
		{"last-end-block", flip(n - 100), ""},
		{"truncated-one-block", func(b []byte) []byte { return b[:n-512] }, ""},
		{"truncated-end-blocks", func(b []byte) []byte { return b[:n-1024] }, ""},
		{"truncated-mid-member", func(b []byte) []byte { return b[:a.PhysOffset(rnd.Offset+rnd.Length/2)] }, ""},
		{"garbage-appended", func(b []byte) []byte { return append(bytes.Clone(b), randomBytes(1024, 3)...) }, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "a.cbfs"), c.change(im.arc), 0o644)
			r := cbfs(t, dir, "export", "-k", im.key, "-o", "out.tar", "a.cbfs")
			if r.code != exitDamaged {
				t.Errorf("want exit %d; got %s", exitDamaged, r)
			}
			msg := string(r.stderr)
			if !strings.HasPrefix(msg, "cbfs: ") || !strings.Contains(msg, "a.cbfs") {
				t.Errorf("message %q does not start with 'cbfs: ' and name the archive", msg)
			}
			if c.wantMember != "" && !strings.Contains(msg, "member") {
				t.Errorf("message %q does not name the member", msg)
			}
			if c.wantMember != "" && !strings.Contains(msg, c.wantMember) {
				t.Errorf("message %q does not contain %q", msg, c.wantMember)
			}
			if got := dirNames(t, dir); !slices.Equal(got, []string{"a.cbfs"}) {
				t.Errorf("files left in the output directory: %v", got)
			}
			t.Logf("%s", strings.TrimSpace(msg))
		})
	}
}

// reseal flips a byte in the payload of frame k of a member (0 is its
// metadata frame) and recomputes the frame's CRC-32C, as someone changing
// the archive on purpose would: only the AEAD tag can catch it. The
// archive must have a single data record, so that logical offsets map to
// physical ones linearly.
func reseal(a *format.Archive, e format.Entry, k int) func([]byte) []byte {
	return func(b []byte) []byte {
		b = bytes.Clone(b)
		off := a.PhysOffset(e.Offset)
		for range k {
			off += format.FrameHeaderSize + int64(binary.LittleEndian.Uint32(b[off+4:]))
		}
		n := int64(binary.LittleEndian.Uint32(b[off+4:]))
		payload := b[off+format.FrameHeaderSize : off+format.FrameHeaderSize+n]
		payload[n/2] ^= 0x01
		crc := crc32.New(crc32.MakeTable(crc32.Castagnoli))
		crc.Write(b[off : off+8])
		crc.Write(payload)
		binary.LittleEndian.PutUint32(b[off+8:], crc.Sum32())
		return b
	}
}

// TestWrongKey: another key gives exit status 4 and "wrong key" before
// anything is written, to a file or to standard output.
func TestWrongKey(t *testing.T) {
	t.Parallel()
	im := importSource(t)
	other := newKey(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.cbfs"), im.arc, 0o644)
	for _, args := range [][]string{
		{"export", "-k", other, "-o", "out.tar", "a.cbfs"},
		{"export", "-k", other, "a.cbfs"},
		{"ls", "-k", other, "a.cbfs"},
		{"cat", "-k", other, "a.cbfs", "d/hello.txt"},
	} {
		t.Run(strings.Join(slices.DeleteFunc(slices.Clone(args), func(s string) bool { return s == other }), " "), func(t *testing.T) {
			r := cbfs(t, dir, args...)
			if r.code != exitWrongKey {
				t.Fatalf("want exit %d; got %s", exitWrongKey, r)
			}
			if !strings.Contains(string(r.stderr), "wrong key") {
				t.Errorf("stderr %q does not say wrong key", r.stderr)
			}
			if len(r.stdout) != 0 {
				t.Errorf("%d bytes on stdout", len(r.stdout))
			}
			if got := dirNames(t, dir); !slices.Equal(got, []string{"a.cbfs"}) {
				t.Errorf("files left in the output directory: %v", got)
			}
		})
	}
	t.Run("stdin-to-stdout", func(t *testing.T) {
		r := invocation{dir: dir, stdin: bytes.NewReader(im.arc)}.run(t, "export", "-k", other)
		if r.code != exitWrongKey || len(r.stdout) != 0 {
			t.Fatalf("want exit %d and no output; got %d bytes, %s", exitWrongKey, len(r.stdout), r)
		}
	})
}

// TestKeyFile: keygen, key sizes, permissions, CBFS_KEY_FILE and key id.
func TestKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	t.Run("keygen-writes-32-bytes-0600", func(t *testing.T) {
		r := mustRun(t, dir, "keygen", "-o", "k1")
		st, err := os.Stat(filepath.Join(dir, "k1"))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != 32 || st.Mode().Perm() != 0o600 {
			t.Fatalf("key file of %d bytes, mode %04o; want 32 bytes, 0600", st.Size(), st.Mode().Perm())
		}
		if len(r.stdout) != 0 {
			t.Fatalf("keygen wrote to stdout: %q", r.stdout)
		}
		t.Logf("%s", strings.TrimSpace(string(r.stderr)))
	})
	t.Run("keygen-refuses-to-overwrite", func(t *testing.T) {
		p := filepath.Join(dir, "k1")
		before := readFile(t, p)
		r := cbfs(t, dir, "keygen", "-o", "k1")
		if r.code == 0 {
			t.Fatal("keygen replaced an existing key file")
		}
		if !bytes.Equal(readFile(t, p), before) {
			t.Fatal("keygen changed the existing key file")
		}
		st, _ := os.Stat(p)
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("mode changed to %04o", st.Mode().Perm())
		}
		if got := dirNames(t, dir); !slices.Equal(got, []string{"k1"}) {
			t.Fatalf("files left: %v", got)
		}
		t.Logf("%s", r)
	})
	t.Run("33-bytes-with-newline", func(t *testing.T) {
		p := filepath.Join(dir, "k33")
		writeFile(t, p, append(randomBytes(32, 4), '\n'), 0o600)
		r := cbfs(t, dir, "key", "id", "-k", "k33")
		if r.code == 0 {
			t.Fatal("a 33-byte key file was accepted")
		}
		msg := string(r.stderr)
		for _, want := range []string{"33 bytes", "32", "newline", "k33"} {
			if !strings.Contains(msg, want) {
				t.Errorf("message %q does not mention %q", msg, want)
			}
		}
	})
	t.Run("31-bytes", func(t *testing.T) {
		writeFile(t, filepath.Join(dir, "k31"), randomBytes(31, 4), 0o600)
		r := cbfs(t, dir, "key", "id", "-k", "k31")
		if r.code == 0 || !strings.Contains(string(r.stderr), "31 bytes") {
			t.Fatalf("want a failure mentioning 31 bytes; got %s", r)
		}
	})
	t.Run("mode-0644-warns-but-works", func(t *testing.T) {
		key := randomBytes(32, 5)
		writeFile(t, filepath.Join(dir, "k644"), key, 0o644)
		writeFile(t, filepath.Join(dir, "k600"), key, 0o600)
		r := mustRun(t, dir, "key", "id", "-k", "k644")
		if !strings.Contains(string(r.stderr), "warning") || !strings.Contains(string(r.stderr), "k644") {
			t.Fatalf("no warning naming the file on stderr: %q", r.stderr)
		}
		r600 := mustRun(t, dir, "key", "id", "-k", "k600")
		if len(r600.stderr) != 0 {
			t.Errorf("a 0600 key file gives stderr %q", r600.stderr)
		}
		if !bytes.Equal(r.stdout, r600.stdout) {
			t.Fatalf("same key, different ids: %q and %q", r.stdout, r600.stdout)
		}
	})
	t.Run("key-id-stable-and-distinct", func(t *testing.T) {
		id1 := mustRun(t, dir, "key", "id", "-k", "k1").stdout
		again := mustRun(t, dir, "key", "id", "-k", "k1").stdout
		writeFile(t, filepath.Join(dir, "copy"), readFile(t, filepath.Join(dir, "k1")), 0o600)
		cp := mustRun(t, dir, "key", "id", "-k", "copy").stdout
		mustRun(t, dir, "keygen", "-o", "k2")
		id2 := mustRun(t, dir, "key", "id", "-k", "k2").stdout
		if !regexp.MustCompile(`^[0-9a-f-]{8,}\n$`).Match(id1) {
			t.Fatalf("key id %q is not a short hex fingerprint on one line", id1)
		}
		if !bytes.Equal(id1, again) || !bytes.Equal(id1, cp) {
			t.Fatalf("ids of one key differ: %q %q %q", id1, again, cp)
		}
		if bytes.Equal(id1, id2) {
			t.Fatalf("two keys have the same id %q", id1)
		}
		key := readFile(t, filepath.Join(dir, "k1"))
		for _, s := range []string{fmt.Sprintf("%x", key), fmt.Sprintf("%X", key)} {
			if strings.Contains(string(id1), s[:16]) {
				t.Fatal("key id shows key bytes")
			}
		}
	})
	t.Run("CBFS_KEY_FILE", func(t *testing.T) {
		_, in := sourceTar(t)
		env := invocation{dir: dir, env: []string{"CBFS_KEY_FILE=" + filepath.Join(dir, "k1")}}
		if r := env.run(t, "import", "-o", "env.cbfs", in); r.code != 0 {
			t.Fatalf("import with CBFS_KEY_FILE: %s", r)
		}
		r := env.run(t, "export", "env.cbfs")
		if r.code != 0 || !bytes.Equal(r.stdout, readFile(t, in)) {
			t.Fatalf("export with CBFS_KEY_FILE does not give the input back: %s", r)
		}
		// The archive really is under k1: -k k1 reads it, k2 does not.
		mustRun(t, dir, "ls", "-k", "k1", "env.cbfs")
		if r := cbfs(t, dir, "ls", "-k", "k2", "env.cbfs"); r.code != exitWrongKey {
			t.Fatalf("ls with another key: %s", r)
		}
		if r := env.run(t, "key", "id"); r.code != 0 || !bytes.Equal(r.stdout, mustRun(t, dir, "key", "id", "-k", "k1").stdout) {
			t.Fatalf("key id with CBFS_KEY_FILE: %s", r)
		}
	})
	t.Run("no-key", func(t *testing.T) {
		r := cbfs(t, dir, "key", "id")
		if r.code != exitUsage || !strings.Contains(string(r.stderr), "CBFS_KEY_FILE") {
			t.Fatalf("want exit %d naming CBFS_KEY_FILE; got %s", exitUsage, r)
		}
	})
}

// lsLineRE splits a cbfs ls line: type and mode, owner/group, size,
// date, time, then the name (and a link target).
var lsLineRE = regexp.MustCompile(`^([-dlhcbp?D])[-rwxsStT]{9} \S+ +\S+ \d{4}-\d\d-\d\d \d\d:\d\d (.*)$`)

// TestLsAndCat: ls lists what tar tf lists, in order; --json has the same
// paths; cat gives back files' content, sparse ones with their holes.
func TestLsAndCat(t *testing.T) {
	t.Parallel()
	src, in := sourceTar(t)
	// Sparse files appended to the archive by GNU tar, in the old GNU
	// format and in pax format 1.0: 1 MiB each, almost all holes.
	for _, sp := range []struct{ name, format string }{{"sparse", "--format=gnu"}, {"sparse-pax", "--format=posix"}} {
		f, err := os.Create(filepath.Join(src, "d", sp.name))
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(1 << 20)
		f.WriteAt([]byte("data at 0"), 0)
		f.WriteAt([]byte("data at 512 KiB"), 512<<10)
		f.Close()
		runTar(t, src, sp.format, "--sparse", "--sparse-version=1.0", "-rf", "x.tar", "d/"+sp.name)
	}
	sparse := filepath.Join(src, "d/sparse")
	if tv := string(runTar(t, src, "-tvf", "x.tar", "d/sparse", "d/sparse-pax")); strings.Count(tv, " 1048576 ") != 2 {
		t.Fatalf("test setup: tar lists the sparse files as %q", tv)
	}
	if st, _ := os.Stat(in); st.Size() > 1<<20 {
		t.Fatalf("test setup: the tar (%d bytes) does not hold the 1 MiB files as sparse", st.Size())
	}
	key := newKey(t)
	dir := t.TempDir()
	mustRun(t, dir, "import", "-k", key, "-o", "a.cbfs", in)

	want := strings.Split(strings.TrimSuffix(string(runTar(t, src, "-tf", "x.tar")), "\n"), "\n")
	t.Run("ls", func(t *testing.T) {
		out := mustRun(t, dir, "ls", "-k", key, "a.cbfs").stdout
		lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
		if len(lines) != len(want) {
			t.Fatalf("ls prints %d lines, tar tf %d:\n%s", len(lines), len(want), out)
		}
		for i, l := range lines {
			m := lsLineRE.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("line %d %q is not a tar tv line", i, l)
			}
			name := m[2]
			switch m[1] {
			case "l":
				name, _, _ = strings.Cut(name, " -> ")
			case "h":
				name, _, _ = strings.Cut(name, " link to ")
			}
			if name != want[i] {
				t.Errorf("line %d: path %q, tar tf says %q", i, name, want[i])
			}
		}
	})
	t.Run("ls-json", func(t *testing.T) {
		out := mustRun(t, dir, "ls", "-k", key, "--json", "a.cbfs").stdout
		var members []struct {
			Path       string `json:"path"`
			PathBase64 string `json:"path_base64"`
			Type       string `json:"type"`
			Size       int64  `json:"size"`
		}
		if err := json.Unmarshal(out, &members); err != nil {
			t.Fatalf("--json output is not JSON: %v\n%s", err, out)
		}
		// tar tf escapes bytes that are not printable; compare with Go's
		// reader for the raw names instead.
		var raw []string
		tr := tar.NewReader(bytes.NewReader(readFile(t, in)))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			raw = append(raw, h.Name)
		}
		var got []string
		for _, m := range members {
			if m.Type == "tar-trailer" || m.Type == "tar-global" {
				continue
			}
			p := m.Path
			if m.PathBase64 != "" { // JSON strings cannot hold a non-UTF-8 path
				b, err := base64.StdEncoding.DecodeString(m.PathBase64)
				if err != nil {
					t.Fatalf("path_base64 %q: %v", m.PathBase64, err)
				}
				p = string(b)
			}
			got = append(got, p)
		}
		if !slices.Equal(got, raw) {
			t.Fatalf("--json paths differ from the tar's:\n got %q\nwant %q", got, raw)
		}
	})
	t.Run("cat", func(t *testing.T) {
		for _, p := range []string{"d/hello.txt", "d/sub/random.bin", "d/sub/text.txt", "d/name with spaces", "d/caf\u00e9.txt", "d/bad\xffname", "d/sparse", "d/sparse-pax"} {
			r := mustRun(t, dir, "cat", "-k", key, "a.cbfs", p)
			if want := readFile(t, filepath.Join(src, p)); !bytes.Equal(r.stdout, want) {
				t.Errorf("cat %q: %d bytes, want the file's %d", p, len(r.stdout), len(want))
			}
		}
		// Several paths at once: their contents in order.
		r := mustRun(t, dir, "cat", "-k", key, "a.cbfs", "d/hello.txt", "d/sparse", "d/hello.txt")
		h, s := readFile(t, filepath.Join(src, "d/hello.txt")), readFile(t, sparse)
		if !bytes.Equal(r.stdout, slices.Concat(h, s, h)) {
			t.Error("cat of three paths is not their contents in order")
		}
	})
	t.Run("cat-missing", func(t *testing.T) {
		// A path that is not there, and a directory, are named; the
		// other paths are still written, in order; the status is 1.
		r := cbfs(t, dir, "cat", "-k", key, "a.cbfs", "d/nothing", "d/hello.txt", "d/sub", "d/hello.txt")
		h := readFile(t, filepath.Join(src, "d/hello.txt"))
		if r.code != exitFailure || !bytes.Equal(r.stdout, slices.Concat(h, h)) {
			t.Fatalf("cat with a missing path: %d bytes out; %s", len(r.stdout), r)
		}
		want := "cbfs: a.cbfs: \"d/nothing\": no such member\ncbfs: a.cbfs: \"d/sub\" is a dir, not a file\n" +
			"cbfs: a.cbfs: 2 of 4 paths not written (named above)\n"
		if string(r.stderr) != want {
			t.Errorf("stderr %q, want %q", r.stderr, want)
		}
	})
	t.Run("cat-paths-as-extract-names-them", func(t *testing.T) {
		h := readFile(t, filepath.Join(src, "d/hello.txt"))
		for _, p := range []string{"./d/hello.txt", "d//hello.txt", "./d/./hello.txt"} {
			if r := mustRun(t, dir, "cat", "-k", key, "a.cbfs", p); !bytes.Equal(r.stdout, h) {
				t.Errorf("cat %q: %q", p, r.stdout)
			}
		}
	})
}

// TestCompression: LZ4 shrinks a compressible tar; both settings round-trip.
func TestCompression(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	dir := t.TempDir()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	text := bytes.Repeat([]byte("compressible line of text, again and again\n"), 20_000)
	for i := range 3 {
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("f%d.txt", i), Mode: 0o644, Size: int64(len(text))})
		tw.Write(text)
	}
	tw.Close()
	writeFile(t, filepath.Join(dir, "in.tar"), buf.Bytes(), 0o644)
	mustRun(t, dir, "import", "-k", key, "--compress", "none", "-o", "none.cbfs", "in.tar")
	mustRun(t, dir, "import", "-k", key, "-o", "lz4.cbfs", "in.tar")
	none := int64(len(readFile(t, filepath.Join(dir, "none.cbfs"))))
	lz4 := int64(len(readFile(t, filepath.Join(dir, "lz4.cbfs"))))
	t.Logf("input %d bytes, --compress none %d, lz4 %d", buf.Len(), none, lz4)
	if none < int64(buf.Len()) {
		t.Errorf("uncompressed archive (%d) is smaller than its input (%d)", none, buf.Len())
	}
	if lz4*4 > none {
		t.Errorf("lz4 archive of %d bytes is not well under the uncompressed %d", lz4, none)
	}
	for _, a := range []string{"none.cbfs", "lz4.cbfs"} {
		r := mustRun(t, dir, "export", "-k", key, a)
		if !bytes.Equal(r.stdout, buf.Bytes()) {
			t.Errorf("export of %s differs from the input", a)
		}
	}
	if r := cbfs(t, dir, "import", "-k", key, "--compress", "zstd", "-o", "x.cbfs", "in.tar"); r.code != exitUsage {
		t.Errorf("--compress zstd: want exit %d; got %s", exitUsage, r)
	}
}

// TestOutputRules: usage errors, and an existing output file is never
// replaced without --force.
// TestInterruptLeavesNothing: SIGINT, SIGTERM or SIGHUP while an import
// writes to -o removes the unfinished output, and cbfs exits with 128 plus
// the signal's number, as a shell reports a process the signal killed.
func TestInterruptLeavesNothing(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	_, in := sourceTar(t)
	src := readFile(t, in)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(cbfsBin, "import", "-k", key, "-o", "out.cbfs", "-")
			cmd.Dir = dir
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			defer stdin.Close()
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Half the tar: the import then waits for the rest, with its
			// temporary output open.
			if _, err := stdin.Write(src[:len(src)/2]); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(10 * time.Second); len(dirNames(t, dir)) == 0; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					t.Fatal("no temporary output appeared")
				}
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			err = cmd.Wait()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 128+int(sig) {
				t.Fatalf("want exit %d; got %v, stderr %q", 128+int(sig), err, stderr.Bytes())
			}
			if want := "cbfs: interrupted (" + sig.String() + "): 1 unfinished output file removed\n"; stderr.String() != want {
				t.Errorf("stderr %q, want %q", stderr.Bytes(), want)
			}
			if got := dirNames(t, dir); len(got) != 0 {
				t.Fatalf("files left: %v", got)
			}
		})
	}
}

func TestOutputRules(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	_, in := sourceTar(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "exists"), []byte("precious"), 0o644)
	t.Run("exists-without-force", func(t *testing.T) {
		r := cbfs(t, dir, "import", "-k", key, "-o", "exists", in)
		if r.code == 0 || !strings.Contains(string(r.stderr), "exists") {
			t.Fatalf("want a failure naming the file; got %s", r)
		}
		if string(readFile(t, filepath.Join(dir, "exists"))) != "precious" {
			t.Fatal("the existing file was changed")
		}
		if got := dirNames(t, dir); !slices.Equal(got, []string{"exists"}) {
			t.Fatalf("files left: %v", got)
		}
	})
	t.Run("exists-with-force", func(t *testing.T) {
		mustRun(t, dir, "import", "-k", key, "--force", "-o", "exists", in)
		r := mustRun(t, dir, "export", "-k", key, "exists")
		if !bytes.Equal(r.stdout, readFile(t, in)) {
			t.Fatal("--force output does not round-trip")
		}
	})
	// A device or a pipe is written, never replaced by a file: a rename
	// over /dev/null would leave a regular file there (this happened).
	t.Run("device-and-fifo", func(t *testing.T) {
		devDir := t.TempDir()
		null := filepath.Join(devDir, "null")
		if err := os.Symlink("/dev/null", null); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"-o", null}, {"--force", "-o", null}} {
			mustRun(t, dir, append([]string{"import", "-k", key}, append(args, in)...)...)
			if target, err := os.Readlink(null); err != nil || target != "/dev/null" {
				t.Fatalf("import %q: the symlink to /dev/null is now %q, %v", args, target, err)
			}
		}
		fifo := filepath.Join(devDir, "fifo")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
		got := make(chan []byte)
		go func() {
			b, _ := os.ReadFile(fifo)
			got <- b
		}()
		mustRun(t, dir, "export", "-k", key, "-o", fifo, "exists")
		if b := <-got; !bytes.Equal(b, readFile(t, in)) {
			t.Errorf("export to a FIFO: %d bytes, want the tar's %d", len(b), len(readFile(t, in)))
		}
		if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
			t.Errorf("the FIFO was replaced: %v, %v", fi.Mode(), err)
		}
	})
	for _, c := range []struct {
		name string
		args []string
	}{
		{"unknown-flag", []string{"import", "--bogus"}},
		{"no-key", []string{"import", "-o", "x", in}},
		{"too-many-args", []string{"export", "-k", key, "a", "b"}},
		{"missing-arg", []string{"ls", "-k", key}},
		{"unknown-command", []string{"bogus"}},
		{"keygen-without-o", []string{"keygen"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := cbfs(t, dir, c.args...)
			if r.code != exitUsage {
				t.Fatalf("want exit %d; got %s", exitUsage, r)
			}
			if !strings.HasPrefix(string(r.stderr), "cbfs: ") {
				t.Fatalf("stderr %q does not start with 'cbfs: '", r.stderr)
			}
		})
	}
}
