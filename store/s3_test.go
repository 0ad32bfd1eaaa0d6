package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// fakeS3 is gofakes3 in process; wrap, if set, stands before it.
func fakeS3(t *testing.T, wrap func(http.Handler) http.Handler) *S3Bucket {
	t.Helper()
	be := s3mem.New()
	if err := be.CreateBucket("bkt"); err != nil {
		t.Fatal(err)
	}
	var h http.Handler = gofakes3.New(be).Server()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "fake")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "fake-secret")
	c, err := NewS3(S3Config{Endpoint: srv.URL, Region: "us-east-1", RetryFor: 5 * time.Second, PartSize: 5 << 20, Parts: 2, TailRead: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return c.Bucket("bkt")
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func put(t *testing.T, b *S3Bucket, key string, data []byte) {
	t.Helper()
	if err := b.Put(context.Background(), key, data, CreateOptions{Replace: true}); err != nil {
		t.Fatal(err)
	}
}

// TestS3Open: opening costs one GET, whose Content-Range gives the size;
// reads anywhere return the object's bytes.
func TestS3Open(t *testing.T) {
	b := fakeS3(t, nil)
	ctx := context.Background()
	for _, n := range []int{100, 1 << 20, 3<<20 + 17} {
		data := randBytes(n)
		key := fmt.Sprintf("o%d", n)
		put(t, b, key, data)
		obj, err := b.Open(ctx, key)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if obj.Size() != int64(n) {
			t.Fatalf("size %d, want %d", obj.Size(), n)
		}
		// gofakes3 refuses a suffix range longer than the object (AWS and
		// versitygw send it whole): then a second GET reads it whole.
		if want := int64(1 + btoi(n < 1<<20)); RequestsOf(obj) > want {
			t.Errorf("%d bytes: opening took %d GETs", n, RequestsOf(obj))
		}
		for _, off := range []int{0, n / 3, n - 5, n - 1<<20 - 3} {
			if off < 0 || off >= n {
				continue
			}
			p := make([]byte, min(70000, n-off))
			if _, err := obj.ReadAt(p, int64(off)); err != nil || !bytes.Equal(p, data[off:off+len(p)]) {
				t.Fatalf("%d bytes: ReadAt(%d): %v", n, off, err)
			}
		}
		all, err := io.ReadAll(Stream(obj, 0))
		if err != nil || !bytes.Equal(all, data) {
			t.Fatalf("%d bytes: Stream: %v", n, err)
		}
	}
	if _, err := b.Open(ctx, "missing"); !errors.Is(err, fs.ErrNotExist) || err.Error() != "open s3://bkt/missing: no such object" {
		t.Fatalf("a missing object: %v", err)
	}
}

// TestS3ReadRange: a range is read in one GET as it is consumed, what the
// opening GET holds copied from it: none for a range within it, one for a
// range of any size before it, and none for a range never read.
func TestS3ReadRange(t *testing.T) {
	b := fakeS3(t, nil)
	n := 9<<20 + 17
	data := randBytes(n)
	put(t, b, "o", data)
	obj, err := b.Open(context.Background(), "o")
	if err != nil {
		t.Fatal(err)
	}
	rr := obj.(interface {
		ReadRange(off, n int64) (io.ReadCloser, error)
	})
	for _, c := range []struct {
		off, n int
		gets   int64
	}{
		{n - 5000, 4000, 0},        // in the tail read
		{n - 8<<20, 8<<20 - 10, 1}, // over two read blocks, into the tail
		{100, 7 << 20, 1},          // before the tail
		{n - 3, 3, 0},
		{0, 0, 0},
	} {
		before := RequestsOf(obj)
		rc, err := rr.ReadRange(int64(c.off), int64(c.n))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data[c.off:c.off+c.n]) {
			t.Fatalf("ReadRange(%d, %d): %d bytes, %v", c.off, c.n, len(got), err)
		}
		if gets := RequestsOf(obj) - before; gets != c.gets {
			t.Errorf("ReadRange(%d, %d): %d GETs, want %d", c.off, c.n, gets, c.gets)
		}
	}
	before := RequestsOf(obj)
	rc, _ := rr.ReadRange(0, 1<<20)
	rc.Close()
	if RequestsOf(obj) != before {
		t.Errorf("a range closed unread cost %d GETs", RequestsOf(obj)-before)
	}
	if _, err := rr.ReadRange(int64(n-2), 3); err == nil {
		t.Errorf("a range past the end was not refused")
	}
}

// TestS3ListPages: a listing goes by pages of 1,000 keys.
func TestS3ListPages(t *testing.T) {
	b := fakeS3(t, nil)
	for i := range 2100 {
		put(t, b, fmt.Sprintf("p/%05d", i), []byte("x"))
	}
	put(t, b, "other", []byte("y"))
	before := Requests().List
	infos, err := b.List(context.Background(), "p/")
	if err != nil || len(infos) != 2100 || infos[2099].Name != "p/02099" {
		t.Fatalf("listed %d, %v", len(infos), err)
	}
	if pages := Requests().List - before; pages != 3 {
		t.Errorf("%d list requests, want 3", pages)
	}
}

// TestS3Upload: an output is visible only once committed; an aborted
// multipart upload leaves no upload; without Replace an existing object
// is refused. (gofakes3 keeps parts signed in aws-chunked encoding as
// they came: multipart contents are checked against versitygw, in
// cmd/cbfs's tests.)
func TestS3Upload(t *testing.T) {
	b := fakeS3(t, nil)
	ctx := context.Background()
	data := randBytes(3<<20 + 5)
	w, err := b.Create(ctx, "big", CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(data); i += 100000 {
		w.Write(data[i:min(i+100000, len(data))])
	}
	if _, err := b.Stat(ctx, "big"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("visible before commit: %v", err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	obj, err := b.Open(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(Stream(obj, 0)); !bytes.Equal(got, data) {
		t.Fatal("the uploaded object differs")
	}
	if _, err := b.Create(ctx, "big", CreateOptions{}); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("create over an existing object: %v", err)
	}

	c, _ := b.Create(ctx, "aborted", CreateOptions{})
	cctx, cancel := context.WithCancel(ctx)
	c.AbortOn(cctx)
	c.Write(randBytes(12 << 20))
	cancel()
	WaitAborts(5 * time.Second)
	time.Sleep(50 * time.Millisecond)
	if err := c.Commit(); err == nil {
		t.Fatal("commit after the cancel succeeded")
	}
	if ups, err := b.ListUploads(ctx, ""); err != nil || len(ups) != 0 {
		t.Fatalf("uploads left: %v %v", ups, err)
	}
	if _, err := b.Stat(ctx, "aborted"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the aborted output exists: %v", err)
	}
}

// TestS3Conditional: a store that honours If-None-Match is found so; one
// that ignores the headers is found not to.
func TestS3Conditional(t *testing.T) {
	ctx := context.Background()
	if ok, err := fakeS3(t, nil).ProbeConditionalWrites(ctx, "idx"); !ok || err != nil {
		t.Errorf("gofakes3: conditional writes %v, %v", ok, err)
	}
	strip := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Del("If-None-Match")
			r.Header.Del("If-Match")
			h.ServeHTTP(w, r)
		})
	}
	if ok, err := fakeS3(t, strip).ProbeConditionalWrites(ctx, "idx"); ok || err != nil {
		t.Errorf("a store ignoring the headers: conditional writes %v, %v", ok, err)
	}
}

// TestS3Retry: 503 SlowDown is retried.
func TestS3Retry(t *testing.T) {
	var n atomic.Int64
	flaky := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && n.Add(1)%2 == 1 {
				w.WriteHeader(http.StatusServiceUnavailable)
				io.WriteString(w, `<Error><Code>SlowDown</Code><Message>slow down</Message></Error>`)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	b := fakeS3(t, flaky)
	put(t, b, "k", []byte("hello"))
	obj, err := b.Open(context.Background(), "k")
	if err != nil || obj.Size() != 5 || RequestsOf(obj) < 2 {
		t.Fatalf("open through a flaky store: %v", err)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestS3ReserveSeq: writers reserving sequence numbers for one index at
// once each get one of their own (If-None-Match: * on the reservation's
// object), from the number asked for up, past the numbers taken; a
// release removes the reservations up to a high-seq and no others.
func TestS3ReserveSeq(t *testing.T) {
	b := fakeS3(t, nil)
	ctx := context.Background()
	// A crashed writer's reservation below the start, one above it.
	for _, n := range []uint64{2, 9} {
		if err := b.Put(ctx, SeqKey("fs/x.idx", n), seqBody, CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	const writers = 16
	got := make([]uint64, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() { got[i], errs[i] = b.ReserveSeq(ctx, "fs/x.idx", 5) })
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for i, n := range got {
		if errs[i] != nil {
			t.Fatalf("writer %d: %v", i, errs[i])
		}
		if seen[n] || n < 5 || n == 9 {
			t.Errorf("writer %d reserved %d (all: %v)", i, n, got)
		}
		seen[n] = true
	}
	// A LIST jumps past the numbers taken: the next is above them all.
	n, err := b.ReserveSeq(ctx, "fs/x.idx", 1)
	if err != nil || n != slices.Max(got)+1 {
		t.Errorf("reserved %d, %v after %v", n, err, got)
	}
	// Another index's reservations are its own.
	if n, err := b.ReserveSeq(ctx, "fs/y.idx", 5); n != 5 || err != nil {
		t.Errorf("another index: %d, %v", n, err)
	}
	infos, _ := b.List(ctx, "fs/")
	for _, in := range infos {
		if !IsSeqReservation(in.Name) || in.Size != int64(len(seqBody)) {
			t.Errorf("%s (%d bytes) is not a reservation", in.Name, in.Size)
		}
	}
	// Released up to 12: 2, 5 to 9 and 10 to 12 go; the rest stay.
	if _, err := b.ReleaseSeqs(ctx, "fs/x.idx", 12); err != nil {
		t.Fatal(err)
	}
	left, err := b.listSeqs(ctx, "fs/x.idx", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range left {
		if s <= 12 {
			t.Errorf("%d left after the release", s)
		}
	}
	if want := int(n) - 12; len(left) != want {
		t.Errorf("%d left after the release (%v), want %d", len(left), left, want)
	}
	if _, err := b.Stat(ctx, SeqKey("fs/y.idx", 5)); err != nil {
		t.Errorf("another index's reservation: %v", err)
	}
}

func TestSeqReservationNames(t *testing.T) {
	if k := SeqKey("a/b/fs.idx", 42); k != "a/b/.fs.idx.seq/00000000000000000042" || !IsSeqReservation(k) {
		t.Errorf("SeqKey: %q", k)
	}
	if k := SeqKey("fs.idx", 1<<64-1); k != ".fs.idx.seq/18446744073709551615" || !IsSeqReservation(k) {
		t.Errorf("SeqKey: %q", k)
	}
	for _, k := range []string{"a/0001.cbfs", "a/.fs.idx.seq/42", "a/fs.idx.seq/00000000000000000042", "00000000000000000042", "a/.seq/00000000000000000042", "a/.x.seq/0000000000000000004x"} {
		if IsSeqReservation(k) {
			t.Errorf("%q taken for a reservation", k)
		}
	}
}
