package store

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestAtomicFile: the output appears only on Commit, complete; Abort
// leaves nothing; without replace an existing file is kept and the
// commit fails.
func TestAtomicFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out")
	f, err := CreateAtomic(p, false)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("hello"))
	if _, err := os.Stat(p); err == nil {
		t.Fatal("the output is visible before Commit")
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "hello" {
		t.Fatalf("committed %q", b)
	}
	g, _ := CreateAtomic(p, false)
	g.Write([]byte("other"))
	if err := g.Commit(); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("commit over an existing file without replace: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "hello" {
		t.Fatalf("the existing file became %q", b)
	}
	h, _ := CreateAtomic(p, true)
	h.Write([]byte("new"))
	h.Abort()
	if names := dirNames(t, dir); len(names) != 1 {
		t.Fatalf("abort left %v", names)
	}
	r, _ := CreateAtomic(p, true)
	r.Write([]byte("replaced"))
	if err := r.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "replaced" {
		t.Fatalf("replace committed %q", b)
	}
}

// TestAbortOn: cancelling the context removes the unfinished output at
// once, counts it, and a later Commit fails with the cause; an output
// committed before the cancel stays.
func TestAbortOn(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancelCause(context.Background())
	done, _ := CreateAtomic(filepath.Join(dir, "done"), false)
	done.AbortOn(ctx)
	done.Write([]byte("x"))
	if err := done.Commit(); err != nil {
		t.Fatal(err)
	}
	f, _ := CreateAtomic(filepath.Join(dir, "out"), false)
	f.AbortOn(ctx)
	before := Interrupted()
	stop := errors.New("signal")
	cancel(stop)
	for range 1000 {
		if len(dirNames(t, dir)) == 1 {
			break
		}
		os.ReadDir(dir) // the abort runs on its own goroutine
	}
	if names := dirNames(t, dir); len(names) != 1 || names[0] != "done" {
		t.Fatalf("after the cancel: %v", names)
	}
	if err := f.Commit(); !errors.Is(err, stop) {
		t.Fatalf("commit after the cancel: %v", err)
	}
	if Interrupted() != before+1 {
		t.Errorf("Interrupted %d, want %d", Interrupted(), before+1)
	}
}

// TestDevicesWrittenDirectly: /dev/null is written, never renamed over.
func TestDevicesWrittenDirectly(t *testing.T) {
	f, err := CreateAtomic("/dev/null", false)
	if err != nil {
		t.Skip(err)
	}
	f.Write([]byte("x"))
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat("/dev/null"); err != nil || st.Mode()&fs.ModeCharDevice == 0 {
		t.Fatal("/dev/null is no longer a device")
	}
}

// TestFileSource: a local file opens as an object of its size; a
// directory is not a regular file.
func TestFileSource(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.cbfs")
	os.WriteFile(p, []byte("12345"), 0o644)
	s := File(p)
	if s.Name != "a.cbfs" || s.Location() != p {
		t.Fatalf("source %+v", s)
	}
	o, err := s.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	b := make([]byte, 2)
	if o.Size() != 5 {
		t.Fatalf("size %d", o.Size())
	}
	if _, err := o.ReadAt(b, 3); err != nil || string(b) != "45" {
		t.Fatalf("ReadAt: %q, %v", b, err)
	}
	if _, err := File(dir).Open(); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("a directory: %v", err)
	}
}
