package testutil

import (
	"errors"

	"github.com/pierrec/lz4/v4"
)

// LZ4Reference's refusals.
var (
	ErrLZ4Corrupt = errors.New("corrupt LZ4 block")
	ErrLZ4End     = errors.New("LZ4 block breaking the end-of-block rules")
)

// LZ4Reference decodes an LZ4 block as the archive spec says a reader
// must (section 5.5), written plainly for tests to compare the fast
// decoder with: pierrec/lz4's decoder, then a walk over the sequences for
// the end-of-block rules. ErrLZ4Corrupt is a block pierrec/lz4 refuses,
// ErrLZ4End one that breaks the rules.
func LZ4Reference(dst, src []byte) (int, error) {
	n, err := lz4.UncompressBlock(src, dst)
	if err != nil {
		return 0, ErrLZ4Corrupt
	}
	i, out := 0, 0
	length := func(v int) (int, bool) {
		if v != 15 {
			return v, true
		}
		for {
			if i >= len(src) {
				return 0, false
			}
			b := src[i]
			i++
			v += int(b)
			if b != 255 {
				return v, true
			}
		}
	}
	for {
		if i >= len(src) {
			return 0, ErrLZ4End
		}
		tok := src[i]
		i++
		lit, ok := length(int(tok >> 4))
		if !ok || lit > len(src)-i {
			return 0, ErrLZ4End
		}
		i += lit
		out += lit
		if i == len(src) {
			if out != n {
				return 0, ErrLZ4End
			}
			return n, nil
		}
		if len(src)-i < 2 {
			return 0, ErrLZ4End
		}
		i += 2
		ml, ok := length(int(tok & 15))
		if !ok {
			return 0, ErrLZ4End
		}
		ml += 4
		if out > n-12 || out+ml > n-5 {
			return 0, ErrLZ4End
		}
		out += ml
	}
}
