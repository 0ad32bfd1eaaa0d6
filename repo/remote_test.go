package repo

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/internal/testutil"
	"github.com/cbfs/cbfs/store"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

var (
	fakeOnce   sync.Once
	fakeBucket *store.S3Bucket
)

// fakeStore is gofakes3 in process, with a bucket "bkt", as the store
// s3:// locations reach: the environment is set before the process's
// first s3:// location makes its client. One server serves every test of
// the package; each keeps to a prefix of its own.
func fakeStore(t *testing.T) *store.S3Bucket {
	t.Helper()
	fakeOnce.Do(func() {
		be := s3mem.New()
		if err := be.CreateBucket("bkt"); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(gofakes3.New(be).Server())
		for k, v := range map[string]string{"AWS_ENDPOINT_URL": srv.URL, "AWS_ACCESS_KEY_ID": "fake", "AWS_SECRET_ACCESS_KEY": "fake-secret",
			"AWS_REGION": "us-east-1", "CBFS_S3_RETRY_FOR": "5s"} {
			os.Setenv(k, v)
		}
		c, err := store.NewS3(store.S3Config{Endpoint: srv.URL, Region: "us-east-1", RetryFor: 5 * time.Second, PartSize: 5 << 20, Parts: 2, TailRead: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		fakeBucket = c.Bucket("bkt")
	})
	if fakeBucket == nil {
		t.Fatal("no fake store")
	}
	return fakeBucket
}

// putArchive writes an archive of one file at path of sequence seq to
// the store under key.
func putArchive(t *testing.T, b *store.S3Bucket, key string, k *crypt.Key, seq uint64, path string) string {
	t.Helper()
	dir := t.TempDir()
	writeIndexed(t, dir, "a", k, seq, []im{{format.TypeRegular, path}})
	data, err := os.ReadFile(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(context.Background(), key, data, store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return b.URL(key)
}

// TestRemoteReserveSeq: writers of an index in an object store reserve
// their sequence numbers. One that read the index before another writer
// wrote it and released the reservations (its own and a third writer's)
// does not take the third writer's number, although its object is gone:
// it finds the index changed and reserves above its high-seq. The third
// writer, whose index update loses the race, merges its archive in again
// with the sequence number sealed in it.
func TestRemoteReserveSeq(t *testing.T) {
	b := fakeStore(t)
	key := testutil.Key(t, 31)
	idx := "s3://bkt/reserve/fs.idx"
	ctx := context.Background()
	open := func() *IndexUpdate {
		t.Helper()
		u, err := OpenIndexUpdate(idx, key, IndexOptions{Create: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(u.Close)
		return u
	}
	reserve := func(u *IndexUpdate) uint64 {
		t.Helper()
		n, err := u.ReserveSeq()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// A new index: the first number is 1.
	first := open()
	if n := reserve(first); n != 1 {
		t.Fatalf("a new index reserved %d, want 1", n)
	}
	if _, err := first.AddArchiveFile(putArchive(t, b, "reserve/a/0001.cbfs", key, 1, "one")); err != nil {
		t.Fatal(err)
	}

	d := open() // reads high-seq 1, reserves later
	c := open()
	nc := reserve(c)
	bw := open()
	nb := reserve(bw)
	if nc != 2 || nb != 3 {
		t.Fatalf("reserved %d and %d, want 2 and 3", nc, nb)
	}
	if _, err := bw.AddArchiveFile(putArchive(t, b, "reserve/a/0003.cbfs", key, nb, "shared")); err != nil {
		t.Fatal(err)
	}
	// bw's update released every reservation up to its high-seq, c's 2
	// among them.
	if _, err := b.Stat(ctx, store.SeqKey("reserve/fs.idx", nc)); err == nil {
		t.Fatal("the reservation of 2 is still there")
	}
	if nd := reserve(d); nd == nc || nd != 4 {
		t.Fatalf("the writer that read the index first reserved %d (another writer holds %d), want 4", nd, nc)
	}
	// c's update is conditional on the index it read: it loses to bw's,
	// reads the index again and merges its archive in with its sequence.
	if _, err := c.AddArchiveFile(putArchive(t, b, "reserve/a/0002.cbfs", key, nc, "shared")); err != nil {
		t.Fatal(err)
	}
	x, err := ReadIndexFile(idx, key)
	if err != nil {
		t.Fatal(err)
	}
	seqs := map[string]uint64{}
	for _, a := range x.Archives {
		seqs[a.Name] = a.Seq
	}
	if len(seqs) != 3 || seqs["0001.cbfs"] != 1 || seqs["0002.cbfs"] != 2 || seqs["0003.cbfs"] != 3 || x.HighSeq != 3 {
		t.Fatalf("index archives %v, high-seq %d", seqs, x.HighSeq)
	}
	// The higher sequence wins "shared": no conflict.
	for i := 0; i < x.Len(); i++ {
		if x.Conflicted(i) {
			t.Errorf("conflict on %s", x.Path(i))
		}
	}
	// d's reservation (4, unused) stays; a prefix's archives leave it out.
	srcs, err := URLSources(ctx, "s3://bkt/reserve/")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range srcs {
		if strings.Contains(s.Where, ".seq/") {
			t.Errorf("a reservation among the archives: %s", s.Where)
		}
	}
	if len(srcs) != 4 { // three archives and the index (skipped as it opens)
		t.Errorf("%d objects under the prefix, want 4", len(srcs))
	}
}
