package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Progress goes to standard error only when asked for, or when it is a
// terminal (never in these tests): a pipe or a log stays clean.
func TestProgress(t *testing.T) {
	t.Parallel()
	_, tarPath := sourceTar(t)
	key := newKey(t)
	dir := t.TempDir()
	arc := filepath.Join(dir, "a.cbfs")
	r := mustRun(t, dir, "import", "-k", key, "-o", arc, tarPath)
	if strings.Contains(string(r.stderr), "MB/s") {
		t.Errorf("progress without a terminal: %q", r.stderr)
	}
	r = mustRun(t, dir, "export", "--progress", "-k", key, "-o", filepath.Join(dir, "x.tar"), arc)
	if !strings.Contains(string(r.stderr), "cbfs: export ") || !strings.Contains(string(r.stderr), "(100%)") {
		t.Errorf("export --progress: stderr %q", r.stderr)
	}
	r = mustRun(t, dir, "verify", "--progress", "--no-progress", arc)
	if strings.Contains(string(r.stderr), "MB/s") {
		t.Errorf("--no-progress still shows progress: %q", r.stderr)
	}

	// pack counts what it writes; a problem it reports (a socket left
	// out) clears the progress line first instead of running into it.
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "f"), []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A long temporary directory can exceed a socket path's limit: the
	// note is then not checked.
	l, sockErr := net.Listen("unix", filepath.Join(tree, "sock"))
	if sockErr == nil {
		defer l.Close()
	}
	packed := filepath.Join(dir, "p.cbfs")
	r = mustRun(t, dir, "pack", "--progress", "-k", key, "-o", packed, tree)
	if !strings.Contains(string(r.stderr), "cbfs: pack "+tree+": ") || !strings.Contains(string(r.stderr), "MB written") {
		t.Errorf("pack --progress: stderr %q", r.stderr)
	}
	if sockErr == nil && !strings.Contains(string(r.stderr), "\r\x1b[Kcbfs: "+filepath.Join(tree, "sock")+": socket ignored\n") {
		t.Errorf("pack --progress: the note is not on a line of its own: %q", r.stderr)
	}
	// extract counts what it reads of the archive.
	r = mustRun(t, dir, "extract", "--progress", "-k", key, "-C", filepath.Join(dir, "out"), packed)
	if !strings.Contains(string(r.stderr), "cbfs: extract "+packed+": ") || !strings.Contains(string(r.stderr), "(100%)") {
		t.Errorf("extract --progress: stderr %q", r.stderr)
	}
}
