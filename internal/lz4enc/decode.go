package lz4enc

import "errors"

// Problems Decode finds in a block.
var (
	// ErrCorrupt is a block that is not an LZ4 block for dst: it reads
	// past its own end, copies from before the start of the output or
	// writes past the end of dst, has a zero offset, or ends with a
	// match length.
	ErrCorrupt = errors.New("lz4: corrupt block")
	// ErrEnd is a block that decodes but breaks the end-of-block rules:
	// it ends in a match, a match starts within 12 bytes of the end, or
	// the last 5 bytes are not literals (the empty block included).
	ErrEnd = errors.New("lz4: the block breaks the end-of-block rules")
)

// Decode decodes the LZ4 block src into dst, which bounds what it may
// decode to, and returns the decoded length. It checks the end-of-block
// rules on the way: matches come in output order, so only the last one
// needs checking against the end, once the end is known. It accepts
// exactly the blocks that pierrec/lz4's decoder accepts and that meet
// those rules, and decodes them alike (the tests and a fuzz target check
// both); being one pass instead of a decode and a walk over the
// sequences, it takes about three quarters of the time.
//
// Short literals and matches are copied 16 bytes at a time where src and
// dst have room: the bytes past them are overwritten by what follows, or
// lie past the decoded length.
func Decode(dst, src []byte) (int, error) {
	si, di := 0, 0
	ns, nd := len(src), len(dst)
	lastStart, lastEnd := -1, -1
	for {
		if si >= ns {
			return 0, ErrEnd // empty, or the last sequence ended in a match
		}
		tok := int(src[si])
		si++
		lit := tok >> 4
		if lit == 15 {
			for {
				if si >= ns {
					return 0, ErrCorrupt
				}
				b := int(src[si])
				si++
				lit += b
				if b != 255 {
					break
				}
			}
		}
		if lit > ns-si || lit > nd-di {
			return 0, ErrCorrupt
		}
		if lit <= 16 && ns-si >= 16 && nd-di >= 16 {
			store64(dst, di, load64(src, si))
			store64(dst, di+8, load64(src, si+8))
		} else {
			copy(dst[di:di+lit], src[si:si+lit])
		}
		si += lit
		di += lit
		if si == ns {
			// The last sequence: literals only, with no match length.
			if tok&15 != 0 {
				return 0, ErrCorrupt
			}
			if lastStart >= 0 && (lastStart > di-12 || lastEnd > di-5) {
				return 0, ErrEnd
			}
			return di, nil
		}
		if ns-si < 2 {
			return 0, ErrCorrupt
		}
		off := int(src[si]) | int(src[si+1])<<8
		si += 2
		ml := tok&15 + minMatch
		if ml == 15+minMatch {
			for {
				if si >= ns {
					return 0, ErrCorrupt
				}
				b := int(src[si])
				si++
				ml += b
				if b != 255 {
					break
				}
			}
		}
		if off == 0 || off > di || ml > nd-di {
			return 0, ErrCorrupt
		}
		lastStart = di
		m := di - off
		switch {
		case off >= 8 && ml <= 16 && nd-di >= 16:
			// Each 8 bytes loaded were written before (off >= 8).
			store64(dst, di, load64(dst, m))
			store64(dst, di+8, load64(dst, m+8))
		case off >= ml:
			copy(dst[di:di+ml], dst[m:m+ml])
		default:
			// Overlapping: the match repeats its last off bytes.
			for i := range ml {
				dst[di+i] = dst[m+i]
			}
		}
		di += ml
		lastEnd = di
	}
}
