package format

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/cbfs/cbfs/internal/testutil"
)

// TestWriterMemoryPerMember: the writer keeps, per member, its summary
// entry and nothing more. Each member here has a path that points into
// a 16 KiB buffer of its own, as the tar scanner's paths point into the
// header bytes it read; if the writer held on to members' metadata, every
// buffer would stay alive.
func TestWriterMemoryPerMember(t *testing.T) {
	const n = 4000
	w, err := NewWriter(io.Discard, testutil.Key(t, 1), WriterOptions{Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	for i := range n {
		if i == n/2 {
			// The buffer free lists are full by now: measure from here.
			runtime.GC()
			runtime.ReadMemStats(&before)
		}
		buf := make([]byte, 16<<10)
		p := buf[:copy(buf, fmt.Sprintf("dir/file-%06d", i))]
		m := &Meta{Type: TypeRegular, Path: p, Mode: 0o644, Size: 5}
		if _, err := w.Add(m, strings.NewReader("hello")); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	// A summary entry here is about 40 bytes; members still in the
	// pipeline (at most a hundred) may hold their 16 KiB.
	per := grew / (n / 2)
	t.Logf("heap grew %d bytes over %d members: %d per member", grew, n/2, per)
	if per > 1<<10 {
		t.Errorf("heap grew %d bytes over %d members: %d per member", grew, n/2, per)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	es := w.Entries()
	if len(es) != n || string(es[n-1].Meta.Path) != fmt.Sprintf("dir/file-%06d", n-1) || es[n-1].Number != n-1 {
		t.Fatalf("Entries after Close: %d entries, last %+v", len(es), es[len(es)-1])
	}
}

// TestWriterRefusesWhatReadersReject: metadata a reader would reject is
// refused by Add, before anything is written (found by an audit: sizes
// over 2^62 made archives the writer's own reader refused).
func TestWriterRefusesWhatReadersReject(t *testing.T) {
	key := testutil.Key(t, 21)
	for _, m := range []Meta{
		{Type: TypeDir, Path: []byte("d"), Size: 1<<63 - 1},
		{Type: TypeRegular, Path: []byte("s"), Size: 1<<62 + 1, Sparse: []Extent{{Offset: 1 << 62, Length: 1}}},
		{Type: TypeRegular, Path: []byte("m"), Mode: 0o17777},
		{Type: TypeDir, Path: []byte("dir-with-content")},
		{Type: TypeSymlink, Path: []byte("l"), Link: []byte("t")},
		{Type: TypeTombstone, Path: []byte("gone")},
	} {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, key, WriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Add(&m, strings.NewReader("content")); err == nil {
			t.Errorf("Add accepted %+v", m)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		a, err := OpenArchive(NewSource(bytes.NewReader(buf.Bytes()), int64(buf.Len())), key)
		if err != nil {
			t.Fatal(err)
		}
		if es, err := a.Entries(); err != nil || len(es) != 0 {
			t.Errorf("after a refused Add: %d entries, %v", len(es), err)
		}
	}
}

// failAfter is an output that takes n bytes, then fails.
type failAfter struct{ n int }

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		k := f.n
		f.n = 0
		return k, errors.New("no space left on device")
	}
	f.n -= len(p)
	return len(p), nil
}

// TestWriterOutputFails: a failing output stops the writer with an error
// that carries the output's own error, from Add or Close.
func TestWriterOutputFails(t *testing.T) {
	w, err := NewWriter(&failAfter{n: 5000}, testutil.Key(t, 22), WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	content := strings.Repeat("incompressible? no, but long enough ", 20000)
	var addErr error
	for i := 0; i < 20 && addErr == nil; i++ {
		_, addErr = w.Add(&Meta{Type: TypeRegular, Path: []byte(fmt.Sprintf("f%d", i)), Size: int64(len(content))}, strings.NewReader(content))
	}
	closeErr := w.Close()
	for _, err := range []error{addErr, closeErr} {
		if err != nil && !strings.Contains(err.Error(), "writing the archive: no space left on device") {
			t.Errorf("error %q does not give the output's error", err)
		}
	}
	if closeErr == nil {
		t.Fatal("Close succeeded on a failing output")
	}
}
