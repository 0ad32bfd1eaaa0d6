package format

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

// TestWriterMemoryPerMember: the writer keeps, per member, its summary
// entry and nothing more. Each member here has a path that points into
// a 16 KiB buffer of its own, as the tar scanner's paths point into the
// header bytes it read; if the writer held on to members' metadata, every
// buffer would stay alive.
func TestWriterMemoryPerMember(t *testing.T) {
	const n = 4000
	w, err := NewWriter(io.Discard, testKey(t, 1), WriterOptions{Compress: true})
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
