package format

import (
	"sync"

	"github.com/cbfs/cbfs/format/lz4enc"
	"github.com/pierrec/lz4/v4"
)

// compressor writes the LZ4 blocks of frames. Chunks of the default size
// go through lz4enc, which runs at about 1.9 times the speed of
// pierrec/lz4 on source trees; larger blocks (chunk sizes above
// 64 KiB, metadata records longer than a chunk) go through pierrec/lz4.
// LZ4 output is not canonical: either is a valid block for every reader.
type compressor struct {
	small lz4enc.Compressor
	large *lz4.Compressor
}

// compress returns src's LZ4 block, written into dst (at least len(src)
// long), or nil when the block would not be shorter than src: the frame
// then stores src as it is.
func (c *compressor) compress(dst, src []byte) []byte {
	if len(src) == 0 {
		return nil
	}
	if len(src) <= lz4enc.MaxInput {
		if n := c.small.Compress(dst, src); n > 0 {
			return dst[:n]
		}
		return nil
	}
	if c.large == nil {
		c.large = new(lz4.Compressor)
	}
	// Without room for the worst case, pierrec/lz4 returns 0 or an
	// error as soon as the block outgrows dst.
	n, err := c.large.CompressBlock(src, dst[:len(src)])
	if err != nil || n == 0 || n >= len(src) {
		return nil
	}
	return dst[:n]
}

// compressors are reused across writers: each carries a hash table that
// would otherwise be allocated for every chunk.
var compressors = sync.Pool{New: func() any { return new(compressor) }}
