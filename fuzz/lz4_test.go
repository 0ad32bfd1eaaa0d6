package fuzz

import (
	"bytes"
	"testing"

	"github.com/cbfs/cbfs/internal/frame"
	"github.com/cbfs/cbfs/internal/lz4enc"
	"github.com/cbfs/cbfs/internal/testutil"
)

// FuzzLZ4Encode: every block lz4enc writes is shorter than its input,
// stays inside the input's length in the destination, and decodes with
// pierrec/lz4 (the decoder every reader uses) to the input. The input is
// repeated to mix matches with the fuzzer's literals, and cut at 64 KiB.
func FuzzLZ4Encode(f *testing.F) {
	f.Add([]byte{}, uint8(0))
	f.Add([]byte("abcabcabcabcabcabcabc"), uint8(3))
	f.Add(bytes.Repeat([]byte{0}, 100), uint8(1))
	f.Add([]byte("The quick brown fox jumps over the lazy dog"), uint8(40))
	f.Fuzz(func(t *testing.T, p []byte, reps uint8) {
		src := p
		for i := 0; i < int(reps) && len(src) < lz4enc.MaxInput; i++ {
			src = append(src, p...)
		}
		src = src[:min(len(src), lz4enc.MaxInput)]
		// A guard zone after len(src) must be left alone.
		dst := make([]byte, len(src)+64)
		for i := range dst {
			dst[i] = 0xA5
		}
		var c lz4enc.Compressor
		n := c.Compress(dst[:len(src)], src)
		for i := len(src); i < len(dst); i++ {
			if dst[i] != 0xA5 {
				t.Fatalf("%d-byte input: byte %d of the destination written, past the input's length", len(src), i)
			}
		}
		if n == 0 {
			return
		}
		if n >= len(src) {
			t.Fatalf("%d-byte input: %d-byte block is not shorter", len(src), n)
		}
		out := make([]byte, len(src))
		m, err := frame.DecodeLZ4(dst[:n], out)
		if err != nil || !bytes.Equal(out[:m], src) {
			t.Fatalf("%d-byte input: block does not decode to it under the end-of-block rules (%d bytes, %v)", len(src), m, err)
		}
	})
}

// FuzzLZ4Decode: the reader's LZ4 decoder (spec 5.5) never panics, and
// accepts, decodes and refuses every block as the reference does: the
// plain block decoder, then a walk over the sequences for the
// end-of-block rules.
func FuzzLZ4Decode(f *testing.F) {
	f.Add([]byte{0x4c, 'a', 'b', 'c', 'd', 4, 0}, uint16(64))
	f.Add(append([]byte{0x44, 'a', 'b', 'c', 'd', 4, 0, 0xc0}, "efghijklmnop"...), uint16(64))
	f.Fuzz(func(t *testing.T, src []byte, n uint16) {
		out := make([]byte, n)
		m, err := frame.DecodeLZ4(src, out)
		ref := make([]byte, n)
		k, rerr := testutil.LZ4Reference(ref, src)
		if (err == nil) != (rerr == nil) || (err == frame.ErrLZ4End) != (rerr == testutil.ErrLZ4End) {
			t.Fatalf("decoder says %v, the reference %v", err, rerr)
		}
		if err == nil && (k != m || !bytes.Equal(out[:m], ref[:k])) {
			t.Fatalf("decoded %d bytes, the reference %d, or other bytes", m, k)
		}
	})
}
