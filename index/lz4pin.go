package index

import "encoding/binary"

// The index's compressor is pinned down completely (index spec section
// 4.5): every implementation of the spec writes the same LZ4 block for
// the same plaintext, so the index's bytes do not depend on an LZ4
// encoder's choices. It is a greedy parser with one hash table of 2^14
// positions, no skipping, matches extended forward only, and nothing
// inserted into the table from inside a match.

const (
	pinHashBits = 14
	pinMinMatch = 4
	pinMaxDist  = 65535
	// pinEndLiterals and pinMatchLimit are the LZ4 block format's end
	// rules: the last 5 bytes are literals, and a match starts at least
	// 12 bytes before the end.
	pinEndLiterals = 5
	pinMatchLimit  = 12
)

// pinHash is the hash of the 4 bytes at a position: the low 32 bits of
// their u32le value times 2654435761, shifted right by 18.
func pinHash(v uint32) uint32 { return (v * 2654435761) >> (32 - pinHashBits) }

// pinCompressor holds the hash table between calls.
type pinCompressor struct {
	table [1 << pinHashBits]int32
}

// compress appends the pinned LZ4 block of src to dst.
func (c *pinCompressor) compress(dst, src []byte) []byte {
	n := len(src)
	for i := range c.table {
		c.table[i] = -1
	}
	anchor, i := 0, 0
	for i+pinMatchLimit <= n {
		v := binary.LittleEndian.Uint32(src[i:])
		h := pinHash(v)
		cand := int(c.table[h])
		c.table[h] = int32(i)
		if cand < 0 || i-cand > pinMaxDist || binary.LittleEndian.Uint32(src[cand:]) != v {
			i++
			continue
		}
		m := pinMinMatch
		for i+m < n-pinEndLiterals && src[cand+m] == src[i+m] {
			m++
		}
		dst = appendSeq(dst, src[anchor:i], i-cand, m)
		i += m
		anchor = i
	}
	return appendSeq(dst, src[anchor:], 0, 0)
}

// appendSeq appends one LZ4 sequence: literals, then a match of length
// m at distance off (m 0: the last sequence, literals only).
func appendSeq(dst, lit []byte, off, m int) []byte {
	ll := len(lit)
	tok := byte(min(ll, 15)) << 4
	if m > 0 {
		tok |= byte(min(m-pinMinMatch, 15))
	}
	dst = append(dst, tok)
	if ll >= 15 {
		dst = appendLen(dst, ll-15)
	}
	dst = append(dst, lit...)
	if m == 0 {
		return dst
	}
	dst = binary.LittleEndian.AppendUint16(dst, uint16(off))
	if m-pinMinMatch >= 15 {
		dst = appendLen(dst, m-pinMinMatch-15)
	}
	return dst
}

func appendLen(dst []byte, v int) []byte {
	for v >= 255 {
		dst = append(dst, 255)
		v -= 255
	}
	return append(dst, byte(v))
}
