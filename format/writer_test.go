package format

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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
	var madeBefore int32
	for i := range n {
		if i == n/2 {
			// The buffer free lists are full by now: measure from here.
			runtime.GC()
			runtime.ReadMemStats(&before)
			madeBefore = w.rec.free.made.Load()
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
	// pipeline (at most a hundred) may hold their 16 KiB. The record
	// writer makes its second and third record buffers (one block) when
	// the emitter first falls behind, which with io.Discard can come at
	// any point: when that was after the first measure, it is not the
	// members'.
	if made := w.rec.free.made.Load(); made != madeBefore {
		grew -= int64(made-madeBefore) * int64(w.rec.free.size)
	}
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

// TestWriterBatchBoundaries: members whose frames fall on every edge of
// the writer's batches (a chunk read ahead into the next batch, content
// ending exactly at a chunk, a batch closed by its frame count, a
// metadata record larger than a batch's arena, a summary of several
// chunks) read back as written, with and without LZ4, and verify.
func TestWriterBatchBoundaries(t *testing.T) {
	key := testutil.Key(t, 23)
	const cs = MinChunkSize
	rnd := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, batchBytes+3*cs)
	for i := range random {
		random[i] = byte(rnd.Uint32())
	}
	text := bytes.Repeat([]byte("a batch of frames, side by side\n"), (batchBytes+3*cs)/32+1)
	var ms []testMember
	add := func(name string, content []byte) {
		ms = append(ms, testMember{Meta{Type: TypeRegular, Path: []byte(name), Size: int64(len(content))}, content})
	}
	for _, n := range []int{0, 1, cs - 1, cs, cs + 1, 2 * cs, batchBytes - cs, batchBytes, batchBytes + 1, batchBytes + cs, batchBytes + 3*cs} {
		add(fmt.Sprintf("random-%d", n), random[:n])
		add(fmt.Sprintf("text-%d", n), text[:n])
	}
	for i := range 3 * batchFrames {
		add(fmt.Sprintf("tiny/%05d-with-a-longer-name-so-that-the-summary-spans-chunks", i), text[:i%7])
	}
	big := Meta{Type: TypeRegular, Path: []byte("xattrs"), Size: 3}
	for i := range 6 {
		big.Xattrs = append(big.Xattrs, Xattr{fmt.Sprintf("user.x%d", i), random[i*cs : i*cs+(batchBytes+cs)/6]})
	}
	ms = append(ms, testMember{big, text[:3]})
	add("after-xattrs", random[:2*cs+5])
	for _, compress := range []bool{false, true} {
		arc, entries := writeArchive(t, key, ms, WriterOptions{Compress: compress, ChunkSize: cs, RecordSize: MinRecordSize})
		if len(entries) != len(ms) {
			t.Fatalf("%d entries, want %d", len(entries), len(ms))
		}
		got, err := readAll(t, key, arc)
		if err != nil {
			t.Fatalf("compress=%v: %v", compress, err)
		}
		for i := range ms {
			if !bytes.Equal(got[i].content, ms[i].content) || !bytes.Equal(got[i].meta.Path, ms[i].meta.Path) || len(got[i].meta.Xattrs) != len(ms[i].meta.Xattrs) {
				t.Fatalf("compress=%v: member %d (%s) differs: %d bytes, want %d", compress, i, ms[i].meta.Path, len(got[i].content), len(ms[i].content))
			}
		}
		rep, _, err := scanBytes(arc, nil)
		if err != nil || !rep.Intact() {
			t.Fatalf("compress=%v: keyless scan: %v %v", compress, err, rep.Problems)
		}
	}
}

// shortReader gives n bytes of zeros, then fails.
type shortReader struct{ n int }

func (r *shortReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errors.New("disk on fire")
	}
	k := min(len(p), r.n)
	clear(p[:k])
	r.n -= k
	return k, nil
}

// TestWriterContentFails: a content reader that fails, at a chunk's
// edge or inside one, in the first batch or a later one, fails Add and
// Close with its error, and nothing hangs.
func TestWriterContentFails(t *testing.T) {
	const cs = MinChunkSize
	for _, n := range []int{0, 5, cs, 3 * cs, batchBytes, batchBytes + cs/2} {
		w, err := NewWriter(io.Discard, testutil.Key(t, 24), WriterOptions{Compress: true, ChunkSize: cs})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Add(&Meta{Type: TypeRegular, Path: []byte("before"), Size: 2}, strings.NewReader("ok")); err != nil {
			t.Fatal(err)
		}
		_, addErr := w.Add(&Meta{Type: TypeRegular, Path: []byte("f"), Size: 1 << 30}, &shortReader{n})
		closeErr := w.Close()
		for _, err := range []error{addErr, closeErr} {
			if err == nil || !strings.Contains(err.Error(), "disk on fire") {
				t.Errorf("failing after %d bytes: %v, want the reader's error", n, err)
			}
		}
	}
}
