package lz4enc

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/cbfs/cbfs/internal/testutil"
)

// refDecode is testutil.LZ4Reference with this package's errors.
func refDecode(dst, src []byte) (int, error) {
	n, err := testutil.LZ4Reference(dst, src)
	switch err {
	case testutil.ErrLZ4Corrupt:
		err = ErrCorrupt
	case testutil.ErrLZ4End:
		err = ErrEnd
	}
	return n, err
}

// TestDecodeAsReference: on blocks the encoder writes for text, binary
// and random inputs, and on those blocks cut, grown, and with a byte
// changed, decoded into room of several sizes, Decode accepts what the
// reference accepts, decodes it to the same bytes, and says why it
// refuses the rest as the reference does (damage or the end rules).
func TestDecodeAsReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var c Compressor
	words := [][]byte{[]byte("func "), []byte("return err\n"), []byte("\t\t"), []byte("x := y[i]"), {0, 0, 0, 0, 0, 0, 0, 0}, {1, 2, 3}}
	accepted, rejected := 0, map[error]int{}
	for k := 0; k < 600; k++ {
		n := 1 + rng.IntN(1<<12)
		if k%10 == 0 {
			n = 1 + rng.IntN(MaxInput)
		}
		src := make([]byte, n)
		for i := 0; i < n; {
			if rng.IntN(4) == 0 {
				src[i] = byte(rng.Uint32())
				i++
				continue
			}
			i += copy(src[i:], words[rng.IntN(len(words))])
		}
		blk := make([]byte, n)
		m := c.Compress(blk, src)
		if m == 0 {
			continue
		}
		blk = blk[:m]
		cases := [][]byte{blk, blk[:m-1], blk[:m/2], append(bytes.Clone(blk), 0x10, 'x'), append(bytes.Clone(blk), 0x00), append(bytes.Clone(blk), 4, 0), append(bytes.Clone(blk[:m-1]), 0x1f)}
		for range 6 {
			b := bytes.Clone(blk)
			b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
			cases = append(cases, b)
		}
		for _, b := range cases {
			for _, room := range []int{n, n - 1, n + 7, n + 64} {
				if room < 0 {
					continue
				}
				got, want := make([]byte, room), make([]byte, room)
				gn, gerr := Decode(got, b)
				wn, werr := refDecode(want, b)
				if !errors.Is(gerr, werr) || gn != wn || !bytes.Equal(got[:gn], want[:wn]) {
					t.Fatalf("block of %d bytes into %d: Decode %d, %v; reference %d, %v", len(b), room, gn, gerr, wn, werr)
				}
				if gerr == nil {
					accepted++
					if room == n && !bytes.Equal(got[:gn], src) && len(b) == m && bytes.Equal(b, blk) {
						t.Fatalf("the encoder's block decodes to other bytes")
					}
				} else {
					rejected[gerr]++
				}
			}
		}
	}
	t.Logf("accepted %d, rejected %v", accepted, rejected)
	if accepted == 0 || rejected[ErrCorrupt] == 0 || rejected[ErrEnd] == 0 {
		t.Fatalf("accepted %d, rejected %v: the cases do not cover each outcome", accepted, rejected)
	}
}

// TestDecodeHandMade: blocks whose every byte is chosen, one per rule.
func TestDecodeHandMade(t *testing.T) {
	for _, c := range []struct {
		name  string
		block []byte
		want  error
	}{
		{"empty", nil, ErrEnd},
		{"literals only", []byte{0x30, 'a', 'b', 'c'}, nil},
		{"ends in a match", []byte{0x4c, 'a', 'b', 'c', 'd', 4, 0}, ErrEnd},
		{"last literals short", []byte{0x4c, 'a', 'b', 'c', 'd', 4, 0, 0x10, 'x'}, ErrEnd},
		{"match too late", []byte{0x46, 'a', 'b', 'c', 'd', 4, 0, 0x00, 4, 0, 0x50, 'v', 'w', 'x', 'y', 'z'}, ErrEnd},
		{"conforming", append([]byte{0x44, 'a', 'b', 'c', 'd', 4, 0, 0xc0}, "efghijklmnop"...), nil},
		{"zero offset", append([]byte{0x44, 'a', 'b', 'c', 'd', 0, 0, 0xc0}, "efghijklmnop"...), ErrCorrupt},
		{"offset before the start", append([]byte{0x44, 'a', 'b', 'c', 'd', 5, 0, 0xc0}, "efghijklmnop"...), ErrCorrupt},
		{"last token with a match length", []byte{0x31, 'a', 'b', 'c'}, ErrCorrupt},
		{"literals past the end", []byte{0x50, 'a', 'b'}, ErrCorrupt},
		{"cut offset", []byte{0x44, 'a', 'b', 'c', 'd', 4}, ErrCorrupt},
	} {
		out := make([]byte, 64)
		_, err := Decode(out, c.block)
		_, ref := refDecode(make([]byte, 64), c.block)
		if err != c.want || ref != c.want {
			t.Errorf("%s: Decode %v, reference %v, want %v", c.name, err, ref, c.want)
		}
	}
}
