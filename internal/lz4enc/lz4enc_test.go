package lz4enc

import (
	"bytes"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/pierrec/lz4/v4"
)

// check compresses src and, when Compress returns a block, decodes it
// with pierrec/lz4 and compares; it returns the block's length.
func check(t testing.TB, c *Compressor, src []byte) int {
	t.Helper()
	dst := make([]byte, len(src))
	n := c.Compress(dst, src)
	if n == 0 {
		return 0
	}
	if n >= len(src) {
		t.Fatalf("%d-byte input: block of %d bytes is not shorter", len(src), n)
	}
	checkEnd(t, dst[:n], len(src))
	out := make([]byte, len(src))
	m, err := lz4.UncompressBlock(dst[:n], out)
	if err != nil {
		t.Fatalf("%d-byte input: pierrec/lz4 rejects the block: %v", len(src), err)
	}
	if !bytes.Equal(out[:m], src) {
		t.Fatalf("%d-byte input: block decodes to other bytes (%d)", len(src), m)
	}
	return n
}

// checkEnd walks the block's sequences and checks the format's end
// rules: the last sequence is literals only, at least 5 of them, and no
// match starts within the last 12 bytes.
func checkEnd(t testing.TB, b []byte, n int) {
	t.Helper()
	pos, i := 0, 0
	for {
		tok := b[i]
		i++
		lit := int(tok >> 4)
		if lit == 15 {
			for {
				x := b[i]
				i++
				lit += int(x)
				if x != 255 {
					break
				}
			}
		}
		i += lit
		pos += lit
		if i == len(b) {
			if n > mfLimit && lit < lastLiterals {
				t.Fatalf("block ends with %d literals", lit)
			}
			return
		}
		if pos > n-mfLimit {
			t.Fatalf("match starts at %d, within %d bytes of the end %d", pos, mfLimit, n)
		}
		i += 2
		m := int(tok & 15)
		if m == 15 {
			for {
				x := b[i]
				i++
				m += int(x)
				if x != 255 {
					break
				}
			}
		}
		pos += m + minMatch
	}
}

func TestShapes(t *testing.T) {
	var c Compressor
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog. "), 2000)[:MaxInput]
	for _, tc := range []struct {
		name       string
		src        []byte
		compresses bool
	}{
		{"empty", nil, false},
		{"one byte", []byte{7}, false},
		{"zeros 16", make([]byte, 16), false},
		{"zeros 17", make([]byte, 17), true},
		{"zeros 64KiB", make([]byte, MaxInput), true},
		{"text 64KiB", text, true},
		{"text odd", text[:12345], true},
		{"random 64KiB", random(MaxInput), false},
		{"random 100", random(100), false},
		{"long literals then run", append(random(4000), make([]byte, 4000)...), true},
		{"run then long literals", append(make([]byte, 4000), random(4000)...), true},
	} {
		n := check(t, &c, tc.src)
		if (n > 0) != tc.compresses {
			t.Errorf("%s: block of %d bytes for %d, want compressed=%v", tc.name, n, len(tc.src), tc.compresses)
		}
	}
	// A long run compresses to a few hundred bytes: the match length
	// extends over 255-byte length bytes.
	if n := check(t, &c, make([]byte, MaxInput)); n > 300 {
		t.Errorf("64 KiB of zeros: %d bytes", n)
	}
}

// TestEveryLength compresses prefixes of mixed data at every length up
// to a few hundred bytes and assorted lengths beyond, around the end
// rules' boundaries.
func TestEveryLength(t *testing.T) {
	var c Compressor
	rng := rand.New(rand.NewPCG(3, 4))
	src := make([]byte, MaxInput)
	for i := range src {
		if i%97 < 60 {
			src[i] = "abcabcabd"[i%9]
		} else {
			src[i] = byte(rng.Uint32())
		}
	}
	for n := 0; n < 600; n++ {
		check(t, &c, src[:n])
		check(t, &c, src[len(src)-n:])
	}
	for n := 600; n <= MaxInput; n += 997 {
		check(t, &c, src[:n])
	}
	check(t, &c, src)
}

func TestPanics(t *testing.T) {
	var c Compressor
	for _, tc := range []struct{ dst, src int }{{MaxInput + 1, MaxInput + 1}, {10, 11}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("dst %d, src %d: no panic", tc.dst, tc.src)
				}
			}()
			c.Compress(make([]byte, tc.dst), make([]byte, tc.src))
		}()
	}
}

// goChunks cuts the files of Go's source tree into chunks of at most
// 64 KiB, as an archive of that tree stores them.
func goChunks(tb testing.TB, limit int) [][]byte {
	var chunks [][]byte
	total := 0
	filepath.WalkDir(runtime.GOROOT(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || total >= limit {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		for len(b) > 0 {
			k := min(len(b), MaxInput)
			chunks = append(chunks, b[:k])
			total += k
			b = b[k:]
		}
		return nil
	})
	if len(chunks) == 0 {
		tb.Skip("no Go source tree")
	}
	return chunks
}

// TestGoTree checks every chunk of (part of) Go's tree, and that the
// ratio is within a few percent of pierrec/lz4's.
func TestGoTree(t *testing.T) {
	limit := 64 << 20
	if testing.Short() {
		limit = 8 << 20
	}
	var c Compressor
	var pc lz4.Compressor
	in, ours, theirs := 0, 0, 0
	buf := make([]byte, lz4.CompressBlockBound(MaxInput))
	for _, ch := range goChunks(t, limit) {
		in += len(ch)
		n := check(t, &c, ch)
		if n == 0 {
			n = len(ch)
		}
		ours += n
		m, _ := pc.CompressBlock(ch, buf)
		if m == 0 || m >= len(ch) {
			m = len(ch)
		}
		theirs += m
	}
	t.Logf("%d bytes: lz4enc %d (%.1f%%), pierrec %d (%.1f%%)", in, ours, 100*float64(ours)/float64(in), theirs, 100*float64(theirs)/float64(in))
	if float64(ours) > 1.06*float64(theirs) {
		t.Errorf("lz4enc output %d bytes, more than 6%% above pierrec/lz4's %d", ours, theirs)
	}
}

// BenchmarkGoTree compresses Go's tree in chunks with this package and
// with pierrec/lz4, side by side.
func BenchmarkGoTree(b *testing.B) {
	chunks := goChunks(b, 64<<20)
	total := 0
	for _, ch := range chunks {
		total += len(ch)
	}
	buf := make([]byte, lz4.CompressBlockBound(MaxInput))
	b.Run("lz4enc", func(b *testing.B) {
		var c Compressor
		b.SetBytes(int64(total))
		for b.Loop() {
			for _, ch := range chunks {
				c.Compress(buf, ch)
			}
		}
	})
	b.Run("pierrec", func(b *testing.B) {
		var c lz4.Compressor
		b.SetBytes(int64(total))
		for b.Loop() {
			for _, ch := range chunks {
				c.CompressBlock(ch, buf)
			}
		}
	})
}
