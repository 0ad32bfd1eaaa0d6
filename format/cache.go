package format

import (
	"io"
	"sync"
)

// CachedSource wraps an archive's Source so that the many small reads
// of a pass over its members (each member's frame headers, metadata and
// content are read separately) are served from a few large blocks read
// in full. Extract reads members in order; over a network source, where
// every read is a request, the saving is larger still. It is safe for
// concurrent use.
func CachedSource(src Source) Source {
	return NewBlockCache(cacheBlocks).Source(src)
}

const (
	cacheBlock  = 1 << 20
	cacheBlocks = 8
)

// BlockCache holds blocks of the sources it wraps, least recently used
// first out. Several sources share one cache, so that reading members of
// many archives at once (the current tree of a file system, through its
// index) takes the memory of the cache, not of the number of archives.
// It is safe for concurrent use.
type BlockCache struct {
	size   int64 // block size
	mu     sync.Mutex
	blocks []cacheEntry
	tick   uint64
	nextID uint64
}

type cacheEntry struct {
	src  uint64 // the source's id; 0: empty
	off  int64  // block start
	data []byte
	used uint64
}

// NewBlockCache is a cache of n blocks of 1 MiB (at least one).
func NewBlockCache(n int) *BlockCache { return NewBlockCacheOf(n, cacheBlock) }

// NewBlockCacheOf is a cache of n blocks of size bytes (at least one
// block of at least 4 KiB).
func NewBlockCacheOf(n, size int) *BlockCache {
	return &BlockCache{size: int64(max(4096, size)), blocks: make([]cacheEntry, max(1, n))}
}

// Source wraps src to read through the cache.
func (c *BlockCache) Source(src Source) Source {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextID++
	return &cachedSource{c: c, src: src, id: c.nextID}
}

type cachedSource struct {
	c   *BlockCache
	src Source
	id  uint64
}

func (s *cachedSource) Size() int64 { return s.src.Size() }

// ReadRange reads a range in order past the cache: from the source's own
// ReadRange when it has one (one request), else by offsets.
func (s *cachedSource) ReadRange(off, n int64) (io.ReadCloser, error) {
	if rr, ok := s.src.(RangeReader); ok {
		return rr.ReadRange(off, n)
	}
	return io.NopCloser(io.NewSectionReader(s.src, off, n)), nil
}

func (s *cachedSource) ReadAt(p []byte, off int64) (int, error) {
	if int64(len(p)) >= s.c.size/2 {
		// Large reads gain nothing from a copy.
		return s.src.ReadAt(p, off)
	}
	c := s.c
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= s.src.Size() {
			return n, io.EOF
		}
		c.mu.Lock()
		b, err := c.block(s, pos-pos%c.size)
		if err != nil {
			c.mu.Unlock()
			return n, err
		}
		k := copy(p[n:], b[pos%c.size:])
		c.mu.Unlock()
		if k == 0 {
			return n, io.EOF
		}
		n += k
	}
	return n, nil
}

// block returns the block of s at start, reading it into the least
// recently used slot if it is not held. c.mu is held.
func (c *BlockCache) block(s *cachedSource, start int64) ([]byte, error) {
	c.tick++
	victim := 0
	for i := range c.blocks {
		e := &c.blocks[i]
		if e.src == s.id && e.off == start {
			e.used = c.tick
			return e.data, nil
		}
		if e.used < c.blocks[victim].used {
			victim = i
		}
	}
	e := &c.blocks[victim]
	size := min(c.size, s.src.Size()-start)
	if cap(e.data) < int(size) {
		e.data = make([]byte, size) // the last block of a small source is small
	}
	e.data = e.data[:size]
	k, err := s.src.ReadAt(e.data, start)
	if err == io.EOF && int64(k) == size {
		err = nil
	}
	if err != nil {
		e.src, e.used = 0, 0
		return nil, err
	}
	e.src, e.off, e.used = s.id, start, c.tick
	return e.data, nil
}
