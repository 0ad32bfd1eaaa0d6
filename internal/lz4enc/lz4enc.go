// Package lz4enc writes and reads LZ4 blocks for inputs of at most 64
// KiB: the size of a CBFS chunk. It exists for speed. A general LZ4
// compressor keeps a hash table sized for any input (pierrec/lz4: 64 Ki
// entries plus an in-use bitmap, 136 KiB); a chunk needs a table that
// fits in the L1 cache, scaled down further for short inputs. With three
// probes per 8-byte load, matches extended forwards eight bytes at a
// time and loads without bounds checks (on little-endian machines),
// it runs at about 1.9 times pierrec/lz4's speed on source trees, at the
// same ratio within half a percent. Decode reads a block and checks the
// end-of-block rules in one pass, where pierrec/lz4's decoder (in
// assembly) and a walk over the sequences took two; the tests and a fuzz
// target check both directions against pierrec/lz4.
//
// The output is a plain LZ4 block (no frame) that follows the block
// format's end-of-block rules: the last match starts at least 12 bytes
// before the end, and the last 5 bytes are literals.
package lz4enc

import (
	"math/bits"
)

const (
	// MaxInput is the largest input Compress accepts: every position then
	// fits in the table's 16-bit entries and every offset in LZ4's.
	MaxInput = 1 << 16

	minMatch     = 4
	lastLiterals = 5  // the block ends with at least this many literals
	mfLimit      = 12 // no match starts within this many bytes of the end

	// maxHashLog sets the table at up to 1<<maxHashLog 16-bit entries:
	// 32 KiB, small enough to stay in L1 beside the input being read. A
	// smaller input uses a smaller part of it, so that clearing the table
	// does not cost more than compressing a short file.
	maxHashLog = 14
	minHashLog = 8

	// skipLog sets how fast the search skips ahead through input that
	// does not compress: after k bytes without a match, a round that
	// finds none moves on by its three positions plus k>>skipLog.
	skipLog = 5
)

// Compressor holds the hash table between calls, so a chunk costs no
// allocation. The zero value is ready; a Compressor is not safe for
// concurrent use.
type Compressor struct {
	table [1 << maxHashLog]uint16
}

// hash6 hashes the low 6 bytes of x into shift's table size: more
// selective than 4 bytes, so fewer probes end in a failed comparison.
func hash6(x uint64, shift uint) uint32 {
	const prime6 = 227718039650203
	return uint32(((x << 16) * prime6) >> shift)
}

// Compress writes src as one LZ4 block into dst and returns its length.
// It returns 0 when the block would not be shorter than src, as soon as
// that is certain: the caller then stores src as it is. dst must be at
// least len(src) long; Compress never writes at or beyond len(src).
// Compress panics if len(src) > MaxInput.
func (c *Compressor) Compress(dst, src []byte) int {
	n := len(src)
	if n > MaxInput {
		panic("lz4enc: input larger than MaxInput")
	}
	if len(dst) < n {
		panic("lz4enc: destination shorter than the input")
	}
	dst = dst[:n]
	di, anchor := 0, 0
	if n > mfLimit+minMatch {
		di, anchor = c.sequences(dst, src)
		if di < 0 {
			return 0
		}
	}
	// The last literals: token, length bytes, bytes.
	lit := n - anchor
	need := 1 + lit
	if lit >= 15 {
		need += (lit-15)/255 + 1
	}
	if di+need >= n {
		return 0
	}
	di = putLiteralLen(dst, di, lit, 0)
	di += copy(dst[di:], src[anchor:])
	return di
}

// sequences writes every sequence with a match and returns the output
// length and where the last literals begin; di < 0 means the output
// would reach len(src).
func (c *Compressor) sequences(dst, src []byte) (di, anchor int) {
	n := len(src)
	hl := min(max(bits.Len(uint(n))-2, minHashLog), maxHashLog)
	clear(c.table[:1<<hl])
	// Hashes are below 1<<hl; the mask only spares the bounds checks.
	t := &c.table
	const mask = 1<<maxHashLog - 1
	shift := uint(64 - hl)
	// Three positions are probed per round, si..si+2, so the round stops
	// where si+2 could start a match: n-mfLimit.
	sn := n - mfLimit - 2
	matchLimit := n - lastLiterals
	// Position 0 would be its own match at offset 0 through the zeroed
	// table; it is only ever a literal.
	si := 1
	for si < sn {
		seq := load64(src, si)
		h0, h1 := hash6(seq, shift), hash6(seq>>8, shift)
		r0, r1 := int(t[h0&mask]), int(t[h1&mask])
		t[h0&mask], t[h1&mask] = uint16(si), uint16(si+1)
		// Every table entry is a position below the one probed, so
		// offsets are positive and below MaxInput; entries still zero
		// point at position 0, a real position, checked like any other.
		ref := r0
		if uint32(seq) != load32(src, r0) {
			h2 := hash6(seq>>16, shift)
			r2 := int(t[h2&mask])
			t[h2&mask] = uint16(si + 2)
			if uint32(seq>>8) == load32(src, r1) {
				si, ref = si+1, r1
			} else if uint32(seq>>16) == load32(src, r2) {
				si, ref = si+2, r2
			} else {
				si += 3 + (si-anchor)>>skipLog
				continue
			}
		}

		// Extend the match backwards into the pending literals, byte by
		// byte: it rarely goes back more than a byte or two (average
		// literals are 5 bytes), and an 8-byte comparison first cost
		// more than it saved (3% of the speed on the Go tree).
		for si > anchor && ref > 0 && src[si-1] == src[ref-1] {
			si--
			ref--
		}
		// And forwards, eight bytes at a time.
		end, rend := si+minMatch, ref+minMatch
		for end+8 <= matchLimit {
			x := load64(src, end) ^ load64(src, rend)
			if x != 0 {
				end += bits.TrailingZeros64(x) >> 3
				goto extended
			}
			end += 8
			rend += 8
		}
		for end < matchLimit && src[end] == src[rend] {
			end++
			rend++
		}
	extended:
		lit := si - anchor
		mlen := end - si - minMatch
		// Worst case for this sequence: token, literal length bytes, the
		// literals, offset, match length bytes.
		need := 1 + lit + 2
		if lit >= 15 {
			need += (lit-15)/255 + 1
		}
		if mlen >= 15 {
			need += (mlen-15)/255 + 1
		}
		// The last literals still need a token after this.
		if di+need+1 >= n {
			return -1, 0
		}
		di = putLiteralLen(dst, di, lit, min(mlen, 15))
		if lit <= 16 && di+16 <= n && anchor+16 <= n {
			// Short literals as two words, past their end: what lies
			// beyond is overwritten next.
			store64(dst, di, load64(src, anchor))
			store64(dst, di+8, load64(src, anchor+8))
			di += lit
		} else {
			di += copy(dst[di:], src[anchor:si])
		}
		off := si - ref
		dst[di] = byte(off)
		dst[di+1] = byte(off >> 8)
		di += 2
		if mlen >= 15 {
			m := mlen - 15
			for ; m >= 255; m -= 255 {
				dst[di] = 255
				di++
			}
			dst[di] = byte(m)
			di++
		}
		si, anchor = end, end
		if si >= sn {
			break
		}
		// Index a position inside the match, so a repeat of its end
		// is found again.
		h := hash6(load64(src, si-2), shift)
		t[h&mask] = uint16(si - 2)
	}
	return di, anchor
}

// putLiteralLen writes a token with literal length lit and the match
// length nibble m, then lit's extra length bytes, and returns the new
// output position.
func putLiteralLen(dst []byte, di, lit, m int) int {
	if lit < 15 {
		dst[di] = byte(lit<<4 | m)
		return di + 1
	}
	dst[di] = 0xF0 | byte(m)
	di++
	l := lit - 15
	for ; l >= 255; l -= 255 {
		dst[di] = 255
		di++
	}
	dst[di] = byte(l)
	return di + 1
}
