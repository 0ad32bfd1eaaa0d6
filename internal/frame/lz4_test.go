package frame

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestLZ4EndRulesWriters: every block the writers' compressors make keeps
// the end-of-block rules that readers enforce (spec 5.5), over inputs of
// every length up to a few hundred bytes and larger compressible ones.
func TestLZ4EndRulesWriters(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	c := new(Compressor)
	var inputs [][]byte
	for n := 1; n < 400; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = "abcab"[r.IntN(3)+i%3]
		}
		inputs = append(inputs, b, bytes.Repeat([]byte{byte(n)}, n))
	}
	for _, n := range []int{4096, 65536, 300000} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(4)) + 'a'
		}
		inputs = append(inputs, b, make([]byte, n))
	}
	checked := 0
	for _, in := range inputs {
		dst := make([]byte, len(in)+len(in)/255+16)
		blk := c.Compress(dst, in)
		if blk == nil {
			continue
		}
		checked++
		out := make([]byte, len(in))
		n, err := DecodeLZ4(blk, out)
		if err != nil || !bytes.Equal(out[:n], in) {
			t.Fatalf("input of %d bytes: the writer's block does not decode under the end-of-block rules: %v", len(in), err)
		}
	}
	if checked < 300 {
		t.Fatalf("only %d inputs compressed", checked)
	}
}

// TestLZ4EndRules: blocks that decode but break an end-of-block rule are
// refused; the same data as a conforming block is accepted.
func TestLZ4EndRules(t *testing.T) {
	for _, c := range []struct {
		name  string
		block []byte
		ok    bool
	}{
		// "abcd", then a match of 16 at offset 4, and nothing after it.
		{"ends in a match", []byte{0x4c, 'a', 'b', 'c', 'd', 4, 0}, false},
		// The same, then one literal: the last 5 bytes are not literals.
		{"last literals short", []byte{0x4c, 'a', 'b', 'c', 'd', 4, 0, 0x10, 'x'}, false},
		// A match starting 9 bytes before the end of a 23-byte block.
		{"match too late", []byte{0x46, 'a', 'b', 'c', 'd', 4, 0, 0x00, 4, 0, 0x50, 'v', 'w', 'x', 'y', 'z'}, false},
		// "abcd", a match of 8, then 12 literals: within every rule.
		{"conforming", append([]byte{0x44, 'a', 'b', 'c', 'd', 4, 0, 0xc0}, "efghijklmnop"...), true},
	} {
		out := make([]byte, 64)
		_, err := DecodeLZ4(c.block, out)
		if c.ok && err != nil {
			t.Errorf("%s: %v, want it accepted", c.name, err)
		}
		if !c.ok && err != ErrLZ4End {
			t.Errorf("%s: %v, want %v", c.name, err, ErrLZ4End)
		}
	}
}
