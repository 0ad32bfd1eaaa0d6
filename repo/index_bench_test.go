package repo

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/keys"
	"github.com/cbfs/cbfs/tarconv"
)

// The index benchmark sets (issue 4): archives x members, every path
// distinct, so live entries = archives x members.
var benchSets = []struct {
	name              string
	archives, members int
}{
	{"40x2500", 40, 2500},
	{"1000x1000", 1000, 1000},
}

// benchPaths is archive a's member paths, sorted as pack writes them.
// Paths of different archives interleave, as when a tiering agent moves
// files of the same directories at different times.
func benchPaths(a, archives, members int) []string {
	ps := make([]string, members)
	for m := range members {
		g := m*archives + a
		ps[m] = fmt.Sprintf("home/user%02d/projects/p%03d/src/d%02d/file-%08d.dat", g%40, g/40%500, g/20000%50, g)
	}
	slices.Sort(ps)
	return ps
}

// benchTar is archive a as a plain tar: small files of 100 bytes.
func benchTar(a, archives, members int) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	content := bytes.Repeat([]byte("cold data "), 10)
	for i, p := range benchPaths(a, archives, members) {
		h := &tar.Header{Name: p, Mode: 0o644, Size: int64(len(content)), Uid: 1000, Gid: 1000, Uname: "user", Gname: "user",
			ModTime: time.Unix(1700000000+int64(i), 0), Typeflag: tar.TypeReg, Format: tar.FormatGNU}
		if err := tw.WriteHeader(h); err != nil {
			panic(err)
		}
		tw.Write(content)
	}
	tw.Close()
	return buf.Bytes()
}

// genBenchSet writes the set's archives (imported from the plain tars)
// to dir/cbfs, and the tars to dir/tar when tars is set.
func genBenchSet(dir string, key *crypt.Key, archives, members int, tars bool) error {
	for _, d := range []string{"cbfs", "tar"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, runtime.GOMAXPROCS(0))
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				a := int(next.Add(1) - 1)
				if a >= archives {
					return
				}
				in := benchTar(a, archives, members)
				name := fmt.Sprintf("fs1-%06d", a)
				if tars {
					if err := os.WriteFile(filepath.Join(dir, "tar", name+".tar"), in, 0o644); err != nil {
						errs[w] = err
						return
					}
				}
				f, err := os.Create(filepath.Join(dir, "cbfs", name+".cbfs"))
				if err != nil {
					errs[w] = err
					return
				}
				_, err = tarconv.ImportTar(context.Background(), f, bytes.NewReader(in), key, format.WriterOptions{Sequence: uint64(a + 1), Compress: true, Workers: 1})
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// TestGenerateIndexBenchSet writes a benchmark set for
// scripts/bench-index.sh: CBFS_BENCH_DIR=dir CBFS_BENCH_SET=1000x1000
// CBFS_BENCH_KEY=keyfile. Skipped otherwise.
func TestGenerateIndexBenchSet(t *testing.T) {
	dir, set, keyPath := os.Getenv("CBFS_BENCH_DIR"), os.Getenv("CBFS_BENCH_SET"), os.Getenv("CBFS_BENCH_KEY")
	if dir == "" || set == "" || keyPath == "" {
		t.Skip("set CBFS_BENCH_DIR, CBFS_BENCH_SET and CBFS_BENCH_KEY to generate a benchmark set")
	}
	key, _, err := keys.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	// Any set "AxM": A archives of M members (such as 10000x1000 for
	// 10M entries, 1x1000000 for one archive of a million members).
	// CBFS_BENCH_TARS=0 leaves the plain tars out.
	var archives, members int
	if _, err := fmt.Sscanf(set, "%dx%d", &archives, &members); err != nil || archives < 1 || members < 1 {
		t.Fatalf("set %q: want AxM", set)
	}
	if err := genBenchSet(dir, key, archives, members, os.Getenv("CBFS_BENCH_TARS") != "0"); err != nil {
		t.Fatal(err)
	}
}

// heapPeak samples the heap while a rebuild runs.
type heapPeak struct {
	stop chan struct{}
	done chan uint64
}

var heapSample = []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}

func heapInUse() uint64 {
	metrics.Read(heapSample)
	return heapSample[0].Value.Uint64() + heapSample[1].Value.Uint64()
}

func startHeapPeak() *heapPeak {
	h := &heapPeak{stop: make(chan struct{}), done: make(chan uint64)}
	go func() {
		var peak uint64
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, heapInUse())
			select {
			case <-h.stop:
				h.done <- max(peak, heapInUse())
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *heapPeak) end() uint64 {
	close(h.stop)
	return <-h.done
}

// BenchmarkRebuild: rebuild time, entries per second, and peak heap
// (heap in use, sampled every 2 ms: live objects plus garbage not yet
// collected, over the heap in use before) per live entry, for each set.
// Run it with: go test -bench Rebuild -run '^$' ./convert
func BenchmarkRebuild(b *testing.B) {
	key, _ := crypt.KeyFromBytes(bytes.Repeat([]byte{42}, crypt.KeySize))
	// CBFS_BENCH_CACHE=dir keeps the generated sets in dir for the next
	// run (they take a while to write); by default they are temporary.
	root, keep := os.Getenv("CBFS_BENCH_CACHE"), true
	if root == "" {
		root, keep = b.TempDir(), false
	}
	for _, s := range benchSets {
		dir := filepath.Join(root, s.name)
		if _, err := os.Stat(filepath.Join(dir, "done")); err != nil {
			start := time.Now()
			if err := genBenchSet(dir, key, s.archives, s.members, false); err != nil {
				b.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, "done"), nil, 0o644)
			b.Logf("%s: generated %d archives in %.1fs", s.name, s.archives, time.Since(start).Seconds())
		}
		srcs, _, err := ArchiveSources([]string{filepath.Join(dir, "cbfs")})
		if err != nil {
			b.Fatal(err)
		}
		entries := s.archives * s.members
		b.Run(s.name, func(b *testing.B) {
			var peak uint64
			var res *RebuildResult
			for b.Loop() {
				b.StopTimer()
				res = nil
				runtime.GC()
				base := heapInUse()
				hp := startHeapPeak()
				b.StartTimer()
				var err error
				res, err = Rebuild(context.Background(), srcs, key, Shard{})
				if err != nil {
					b.Fatal(err)
				}
				var sink countingWriter
				if err := res.Index.Encode(&sink, key); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				top := hp.end()
				peak = max(peak, top-min(base, top))
				b.StartTimer()
			}
			if st := res.Index.Stats(); st.Live != entries {
				b.Fatalf("%d live entries, want %d", st.Live, entries)
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(float64(entries)/sec, "entries/s")
			b.ReportMetric(float64(peak)/float64(entries), "peak-heap-B/entry")
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(sec, "s/rebuild")
		})
		if !keep {
			os.RemoveAll(dir)
		}
	}
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// BenchmarkRebuildMemory: heap held by an index of a million live
// entries (1,000 archives of 1,000 members, merged as a rebuild merges
// them), measured as HeapInuse after a GC, over HeapInuse before.
func BenchmarkRebuildMemory(b *testing.B) {
	const archives, members = 1000, 1000
	paths := make([][]string, archives)
	for a := range archives {
		paths[a] = benchPaths(a, archives, members)
	}
	var perEntry float64
	for b.Loop() {
		runtime.GC()
		debug.FreeOSMemory()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		parts := make([]*index.Index, archives)
		for a := range archives {
			ar := index.Archive{Name: fmt.Sprintf("fs1-%06d.cbfs", a), Seq: uint64(a + 1), Members: members}
			ar.ID[0], ar.ID[1] = byte(a), byte(a>>8)
			bl, err := index.NewBuilder(ar, members, 0)
			if err != nil {
				b.Fatal(err)
			}
			for m, p := range paths[a] {
				bl.Add([]byte(p), index.Entry{Member: uint32(m), Type: format.TypeRegular, Offset: int64(1536 + 1100*m), Span: 1100, Size: 100, Inode: uint64(m)})
			}
			parts[a] = bl.Index()
		}
		x, _, err := MergeAll(parts)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		perEntry = float64(after.HeapInuse-before.HeapInuse) / float64(x.Len())
		runtime.KeepAlive(x)
		if x.Len() != archives*members {
			b.Fatalf("%d entries", x.Len())
		}
	}
	b.ReportMetric(perEntry, "heap-B/entry")
	b.ReportMetric(0, "ns/op")
}
