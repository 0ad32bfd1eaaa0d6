package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// Progress goes to standard error only when asked for, or when it is a
// terminal (never in these tests): a pipe or a log stays clean.
func TestProgress(t *testing.T) {
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
}
