package format

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/internal/testutil"
	"github.com/google/go-cmp/cmp"
)

type testMember struct {
	meta    Meta
	content []byte
}

func sampleMembers() []testMember {
	rnd := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 200_000)
	for i := range random {
		random[i] = byte(rnd.Uint32())
	}
	text := bytes.Repeat([]byte("all your data is just in a tarball\n"), 5000)
	return []testMember{
		{Meta{Type: TypeDir, Path: []byte("d"), Mode: 0o755, MTime: Time{Sec: 1, Nsec: 5, Set: true}}, nil},
		{Meta{Type: TypeRegular, Path: []byte("d/empty"), Mode: 0o644}, nil},
		{Meta{Type: TypeRegular, Path: []byte("d/text"), Mode: 0o644, Size: int64(len(text)), Uname: "u", Xattrs: []Xattr{{"user.a", []byte("b")}}}, text},
		{Meta{Type: TypeRegular, Path: []byte("d/random"), Size: int64(len(random))}, random},
		{Meta{Type: TypeRegular, Path: []byte("d/exact"), Size: 65536}, random[:65536]},
		{Meta{Type: TypeSymlink, Path: []byte("d/link"), Link: []byte("text")}, nil},
		{Meta{Type: TypeTombstone, Path: []byte("gone")}, nil},
	}
}

func writeArchive(t testing.TB, key *crypt.Key, ms []testMember, opt WriterOptions) ([]byte, []Entry) {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, key, opt)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		n, err := w.Add(&m.meta, bytes.NewReader(m.content))
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(len(m.content)) {
			t.Fatalf("Add read %d bytes, want %d", n, len(m.content))
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), w.Entries()
}

func readAll(t testing.TB, key *crypt.Key, archive []byte) ([]testMember, error) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(archive), key, ReaderOptions{})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []testMember
	for {
		m, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		var c []byte
		if key != nil {
			if c, err = io.ReadAll(r); err != nil {
				return out, err
			}
		}
		tm := testMember{content: c}
		if m.Meta != nil {
			tm.meta = *m.Meta
		}
		out = append(out, tm)
	}
}

func TestRoundTrip(t *testing.T) {
	key := testutil.Key(t, 7)
	for _, compress := range []bool{false, true} {
		ms := sampleMembers()
		arc, entries := writeArchive(t, key, ms, WriterOptions{Compress: compress, RecordSize: MinRecordSize})
		if len(entries) != len(ms) {
			t.Fatalf("%d entries, want %d", len(entries), len(ms))
		}
		got, err := readAll(t, key, arc)
		if err != nil {
			t.Fatalf("compress=%v: %v", compress, err)
		}
		if len(got) != len(ms) {
			t.Fatalf("read %d members, want %d", len(got), len(ms))
		}
		for i := range ms {
			want := ms[i]
			if want.content == nil {
				want.content = []byte{}
			}
			if got[i].content == nil {
				got[i].content = []byte{}
			}
			if diff := cmp.Diff(want, got[i], cmp.AllowUnexported(testMember{})); diff != "" {
				t.Errorf("member %d differs (-want +got):\n%s", i, diff)
			}
		}
		// Keyless reading checks framing and the digest.
		if _, err := readAll(t, nil, arc); err != nil {
			t.Errorf("keyless read: %v", err)
		}
	}
}

func TestWrongKey(t *testing.T) {
	arc, _ := writeArchive(t, testutil.Key(t, 1), sampleMembers(), WriterOptions{})
	_, err := readAll(t, testutil.Key(t, 2), arc)
	if !errors.Is(err, ErrWrongKey) {
		t.Fatalf("got %v, want ErrWrongKey", err)
	}
}

// parallelFor runs fn(0..n-1) on every core and fails the test with the
// first error.
func parallelFor(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if err := fn(i); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

func TestEveryByteFlipDetected(t *testing.T) {
	if testing.Short() {
		t.Skip("every offset: run without -short (make test runs it once, without the race detector)")
	}
	key := testutil.Key(t, 3)
	ms := []testMember{
		{Meta{Type: TypeRegular, Path: []byte("a"), Size: 3}, []byte("abc")},
		{Meta{Type: TypeDir, Path: []byte("b")}, nil},
	}
	arc, _ := writeArchive(t, key, ms, WriterOptions{Compress: true, RecordSize: MinRecordSize, ChunkSize: MinChunkSize})
	parallelFor(t, len(arc), func(i int) error {
		bad := bytes.Clone(arc)
		bad[i] ^= 0x01
		if _, err := readAll(t, key, bad); err == nil {
			return fmt.Errorf("flip at %d of %d not detected with the key", i, len(arc))
		}
		if _, err := readAll(t, nil, bad); err == nil {
			return fmt.Errorf("flip at %d of %d not detected without the key", i, len(arc))
		}
		return nil
	})
	for n := 0; n < len(arc); n += 97 {
		if _, err := readAll(t, key, arc[:n]); err == nil {
			t.Fatalf("truncation to %d bytes not detected", n)
		}
	}
}
