package frame

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cbfs/cbfs/internal/lz4enc"
	"github.com/pierrec/lz4/v4"
)

// Compressor writes the LZ4 blocks of frames. Chunks of the default size
// go through lz4enc, which runs at about 1.9 times the speed of
// pierrec/lz4 on source trees; larger blocks (chunk sizes above
// 64 KiB, metadata records longer than a chunk) go through pierrec/lz4.
// LZ4 output is not canonical: either is a valid block for every reader.
type Compressor struct {
	small lz4enc.Compressor
	large *lz4.Compressor
}

// Compress returns src's LZ4 block, written into dst (at least len(src)
// long), or nil when the block would not be shorter than src: the frame
// then stores src as it is.
func (c *Compressor) Compress(dst, src []byte) []byte {
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
var compressors = sync.Pool{New: func() any { return new(Compressor) }}

// Compress is Compressor.Compress with a compressor from a pool, for
// callers that seal on many goroutines.
func Compress(dst, src []byte) []byte {
	c := compressors.Get().(*Compressor)
	b := c.Compress(dst, src)
	compressors.Put(c)
	return b
}

// ErrLZ4End is an LZ4 block that breaks the end-of-block rules.
var ErrLZ4End = errors.New("the LZ4 block breaks the end-of-block rules")

// ErrLZ4 is a block that does not decode into its bound, or that is not
// shorter than what it decodes to: a writer stores such a chunk instead.
var ErrLZ4 = errors.New("bad LZ4 block")

// Decompress decodes the chunk's LZ4 block src into dst, which bounds
// what it may decode to, under the end-of-block rules. A block that does
// not shrink its plaintext is refused: a writer stores such a chunk.
func Decompress(src, dst []byte) (int, error) {
	n, err := DecodeLZ4(src, dst)
	if err == ErrLZ4End {
		return 0, fmt.Errorf("%w: %w", ErrLZ4, err)
	}
	if err != nil || n <= len(src) {
		return 0, ErrLZ4
	}
	return n, nil
}

// DecodeLZ4 decodes the LZ4 block src into dst and checks the block
// format's end-of-block rules, which a reader MUST enforce (spec 5.5): the
// last sequence holds only literals (a block does not end in a match),
// every match starts at least 12 bytes before the end of the block, and
// the last 5 bytes are literals.
func DecodeLZ4(src, dst []byte) (int, error) {
	n, err := lz4enc.Decode(dst, src)
	switch err {
	case nil:
		return n, nil
	case lz4enc.ErrEnd:
		return 0, ErrLZ4End
	}
	return 0, ErrLZ4
}
