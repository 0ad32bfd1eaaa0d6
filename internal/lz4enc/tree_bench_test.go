package lz4enc

import (
	"syscall"
	"testing"
	"time"
)

// BenchmarkWholeTree compresses every chunk of Go's source tree, as cbfs
// import of a tar of it would, and reports total in, out (raw for chunks
// that do not compress), the ratio, the best round's speed and the speed
// in CPU time (steadier on a shared machine).
func BenchmarkWholeTree(b *testing.B) {
	chunks := goChunks(b, 1<<62)
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
