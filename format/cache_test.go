package format

import (
	"bytes"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestCachedSource: reads through the cache give the bytes and errors of
// the source, for reads across blocks, past the end, and from goroutines
// at once.
func TestCachedSource(t *testing.T) {
	data := make([]byte, 5*cacheBlock+12345)
	for i := range data {
		data[i] = byte(i * 7 / 3)
	}
	t.Run("1MiB", func(t *testing.T) {
		testCache(t, data, CachedSource(NewSource(bytes.NewReader(data), int64(len(data)))))
	})
	// Small blocks, fewer than a read can span: reads larger than half
	// a block go straight to the source.
	t.Run("5KiB", func(t *testing.T) {
		testCache(t, data, NewBlockCacheOf(3, 5000).Source(NewSource(bytes.NewReader(data), int64(len(data)))))
	})
}

func testCache(t *testing.T, data []byte, c Source) {
	if c.Size() != int64(len(data)) {
		t.Fatalf("size %d", c.Size())
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 9))
			for range 2000 {
				off := rnd.Int64N(int64(len(data)) + 100)
				n := rnd.IntN(3 * cacheBlock / 4)
				if rnd.IntN(2) == 0 {
					n = rnd.IntN(5000)
				}
				got := make([]byte, n)
				k, err := c.ReadAt(got, off)
				wantK := max(0, min(n, len(data)-int(min(off, int64(len(data))))))
				if k != wantK || (k < n) != (err == io.EOF) || (k == n && err != nil) {
					t.Errorf("ReadAt(%d bytes at %d) = %d, %v; want %d", n, off, k, err, wantK)
					return
				}
				if k > 0 && !bytes.Equal(got[:k], data[off:off+int64(k)]) {
					t.Errorf("ReadAt(%d bytes at %d): wrong bytes", n, off)
					return
				}
			}
		}()
	}
	wg.Wait()
}
