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
	return &cachedSource{src: src}
}

const (
	cacheBlock  = 1 << 20
	cacheBlocks = 8
)

type cachedSource struct {
	src    Source
	mu     sync.Mutex
	blocks [cacheBlocks]cacheEntry
	tick   uint64
}

type cacheEntry struct {
	off  int64 // block start; -1 when empty
	data []byte
	used uint64
}

func (c *cachedSource) Size() int64 { return c.src.Size() }

func (c *cachedSource) ReadAt(p []byte, off int64) (int, error) {
	if len(p) >= cacheBlock/2 {
		// Large reads gain nothing from a copy.
		return c.src.ReadAt(p, off)
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= c.src.Size() {
			return n, io.EOF
		}
		c.mu.Lock()
		b, err := c.block(pos - pos%cacheBlock)
		if err != nil {
			c.mu.Unlock()
			return n, err
		}
		k := copy(p[n:], b[pos%cacheBlock:])
		c.mu.Unlock()
		if k == 0 {
			return n, io.EOF
		}
		n += k
	}
	return n, nil
}

// block returns the block at start, reading it into the least recently
// used slot if it is not held. c.mu is held.
func (c *cachedSource) block(start int64) ([]byte, error) {
	c.tick++
	victim := 0
	for i := range c.blocks {
		e := &c.blocks[i]
		if e.data != nil && e.off == start {
			e.used = c.tick
			return e.data, nil
		}
		if c.blocks[i].used < c.blocks[victim].used {
			victim = i
		}
	}
	e := &c.blocks[victim]
	size := min(int64(cacheBlock), c.src.Size()-start)
	if cap(e.data) < int(size) {
		e.data = make([]byte, size) // the last block of a small source is small
	}
	e.data = e.data[:size]
	k, err := c.src.ReadAt(e.data, start)
	if err == io.EOF && int64(k) == size {
		err = nil
	}
	if err != nil {
		e.data, e.used = nil, 0
		return nil, err
	}
	e.off, e.used = start, c.tick
	return e.data, nil
}
