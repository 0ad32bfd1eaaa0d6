package lz4enc

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// tarChunks reads the regular files of the tar named by $LZ4_TAR (or
// the bench tree of Go's sources) and cuts each into 64 KiB chunks, as
// cbfs import does.
func tarChunks(tb testing.TB) [][]byte {
	p := os.Getenv("LZ4_TAR")
	if p == "" {
		p = "../../out/bench/gotree.tar"
	}
	f, err := os.Open(p)
	if err != nil {
		tb.Skip("no tar:", err)
	}
	defer f.Close()
	var chunks [][]byte
	limit, total := 1<<62, 0
	if l := os.Getenv("LZ4_LIMIT"); l != "" {
		limit, _ = strconv.Atoi(l)
	}
	tr := tar.NewReader(f)
	for total < limit {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			tb.Fatal(err)
		}
		for len(b) > 0 {
			k := min(len(b), MaxInput)
			chunks = append(chunks, b[:k])
			total += k
			b = b[k:]
		}
	}
	return chunks
}

// BenchmarkTar compresses every chunk of the tar and reports total in,
// out (raw for chunks that do not compress), the ratio and the speed of
// each of 3 rounds.
func BenchmarkTar(b *testing.B) {
	chunks := tarChunks(b)
	dst := make([]byte, MaxInput)
	var c Compressor
	in, out, raw := 0, 0, 0
	for _, ch := range chunks {
		in += len(ch)
		n := c.Compress(dst, ch)
		if n == 0 {
			n = len(ch)
			raw += n
		}
		out += n
	}
	b.Logf("in %d out %d ratio %.4f raw %d chunks %d", in, out, float64(out)/float64(in), raw, len(chunks))
	b.SetBytes(int64(in))
	b.ResetTimer()
	cpu0 := cpuTime()
	best := 0.0
	for b.Loop() {
		t0 := time.Now()
		for _, ch := range chunks {
			c.Compress(dst, ch)
		}
		best = max(best, float64(in)/time.Since(t0).Seconds()/1e6)
	}
	b.ReportMetric(float64(out)/float64(in), "ratio")
	b.ReportMetric(best, "bestMB/s")
	b.ReportMetric(float64(in)*float64(b.N)/(cpuTime()-cpu0).Seconds()/1e6, "cpuMB/s")
}

// cpuTime is the process's user+sys time: on a shared machine a steadier
// measure than the wall clock.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
