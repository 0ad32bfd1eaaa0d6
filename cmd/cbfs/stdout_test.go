package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStdoutFull: every command that writes to standard output fails
// (status 1, a message naming standard output or the write) when the
// write fails, as on a full disk: /dev/full.
func TestStdoutFull(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full here")
	}
	im := importSource(t)
	dir := im.dir
	mustRun(t, dir, "index", "rebuild", "-k", im.key, "-o", "fs.idx", "a.cbfs")
	writeFile(t, filepath.Join(dir, "in.tar"), im.tarBytes, 0o644)
	path := im.entries[len(im.entries)/2].Meta.Path
	for _, e := range im.entries {
		if e.Meta.Type == 1 && e.Meta.Size > 0 {
			path = e.Meta.Path
			break
		}
	}
	for _, args := range [][]string{
		{"ls", "-k", im.key, "a.cbfs"},
		{"ls", "-k", im.key, "--json", "a.cbfs"},
		{"cat", "-k", im.key, "a.cbfs", string(path)},
		{"export", "-k", im.key, "a.cbfs"},
		{"import", "-k", im.key, "in.tar"},
		{"verify", "a.cbfs"},
		{"verify", "--json", "-k", im.key, "a.cbfs"},
		{"gc", "-k", im.key, "--index", "fs.idx", "a.cbfs"},
		{"gc", "-k", im.key, "--index", "fs.idx", "--json", "a.cbfs"},
		{"index", "ls", "-k", im.key, "fs.idx"},
		{"index", "ls", "-k", im.key, "--json", "fs.idx"},
		{"index", "lookup", "-k", im.key, "fs.idx", string(path)},
		{"index", "rebuild", "-k", im.key, "-o", "-", "a.cbfs"},
		{"key", "id", "-k", im.key},
		{"extract", "-v", "-k", im.key, "-C", "x", "a.cbfs"},
		{"--version"},
		{"help"},
		{"help", "extract"},
		{"completion", "bash"},
	} {
		cmd := exec.Command(cbfsBin, args...)
		cmd.Dir = dir
		full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout = full
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if args[0] == "import" {
			cmd.Args = append(cmd.Args[:len(cmd.Args)-1], "-")
			cmd.Stdin, _ = os.Open(filepath.Join(dir, "in.tar"))
		}
		err = cmd.Run()
		full.Close()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != exitFailure || !strings.Contains(stderr.String(), "no space left on device") {
			t.Errorf("%v > /dev/full: exit %d, stderr %q", args, code, stderr.String())
		}
	}
}

// TestInterruptedExtractLeavesNoPartialFile: extract stopped by a signal
// removes the file it was writing (and any temporary file of
// --overwrite); what was complete stays, as with tar.
func TestInterruptedExtractLeavesNoPartialFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := newKey(t)
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(src, "a-small"), []byte("small\n"), 0o644)
	writeFile(t, filepath.Join(src, "b-big"), randomBytes(256<<20, 1), 0o644)
	mustRun(t, dir, "pack", "--compress", "none", "-k", key, "-o", "a.cbfs", "src")
	os.RemoveAll(src)
	for _, overwrite := range []bool{false, true} {
		args := []string{"extract", "-k", key, "-C", "out", "a.cbfs"}
		if overwrite {
			args = append(args, "--overwrite")
		}
		cmd := exec.Command(cbfsBin, args...)
		cmd.Dir = dir
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		big := filepath.Join(dir, "out", "src", "b-big")
		deadline := time.Now().Add(10 * time.Second)
		for {
			if st, err := os.Stat(big); err == nil && st.Size() > 0 && !overwrite {
				break
			}
			if ents, _ := os.ReadDir(filepath.Join(dir, "out", "src")); overwrite && len(ents) > 2 {
				break // the temporary file beside the two extracted before
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatal("extract did not start writing the big file")
			}
			time.Sleep(time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
			t.Fatalf("overwrite %v: %v, want exit 130", overwrite, err)
		}
		// a-small may or may not have been complete when the signal came
		// (workers write files in parallel); if it is there it is whole.
		// b-big, being written, must not be (or, with --overwrite, must be
		// the complete one of the run before), nor any temporary file.
		names := strings.Join(dirNames(t, filepath.Join(dir, "out", "src")), " ")
		want := []string{"", "a-small"}
		if overwrite {
			want = []string{"a-small b-big"}
		}
		if !slices.Contains(want, names) {
			t.Errorf("overwrite %v: left %q, want one of %q", overwrite, names, want)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "out", "src", "a-small")); err == nil && string(b) != "small\n" {
			t.Errorf("a-small left incomplete: %q", b)
		}
		if overwrite {
			if st, err := os.Stat(big); err != nil || st.Size() != 256<<20 {
				t.Errorf("the file --overwrite was replacing is not whole: %v, %v", st, err)
			}
			break
		}
		// A complete tree, for the --overwrite round.
		os.RemoveAll(filepath.Join(dir, "out"))
		mustRun(t, dir, "extract", "-k", key, "-C", "out", "a.cbfs")
	}
}
