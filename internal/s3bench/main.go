// Command s3bench is make bench's object-store part: N archives in
// versitygw behind a proxy that adds 20 ms to every request (a real
// store's first-byte latency) and counts requests; index rebuild and
// keyless verify over the store, the same rebuild on the local copies, a
// rebuild in 8 shards merged from parts in the store, and an upload's
// memory. Prints a markdown table and checks the targets.
//
//	go run ./internal/s3bench -cbfs bin/cbfs -n 2000 -out out/bench/s3
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/internal/testutil"
	"github.com/cbfs/cbfs/keys"
	"github.com/cbfs/cbfs/store"
	"github.com/cbfs/cbfs/tree"
)

var (
	cbfsBin = flag.String("cbfs", "bin/cbfs", "the cbfs binary")
	n       = flag.Int("n", 2000, "archives")
	outDir  = flag.String("out", "out/bench/s3", "work directory")
	delay   = flag.Duration("delay", 20*time.Millisecond, "latency the proxy adds to every request")
	upload  = flag.Int("upload-mb", 256, "size of the upload measured for memory, MB")
)

type run struct {
	wall  time.Duration
	rssMB float64
	out   []byte
}

// cbfs runs the binary and measures its wall time and peak RSS. The RSS
// comes from /usr/bin/time when there is one: Linux counts in a child's
// maxrss the memory of the process it was forked from (the high-water
// mark of the mm that exec replaced), here this benchmark with its proxy,
// which would put a floor of tens of MB under every figure.
func cbfs(env []string, args ...string) run {
	var rssFile string
	cmd := exec.Command(*cbfsBin, args...)
	if _, err := os.Stat("/usr/bin/time"); err == nil {
		f, err := os.CreateTemp("", "s3bench-rss-")
		if err != nil {
			fail("%v", err)
		}
		f.Close()
		rssFile = f.Name()
		defer os.Remove(rssFile)
		cmd = exec.Command("/usr/bin/time", append([]string{"-f", "%M", "-o", rssFile, *cbfsBin}, args...)...)
	}
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := run{wall: time.Since(start), out: stdout.Bytes()}
	if rssFile != "" {
		b, _ := os.ReadFile(rssFile)
		f := strings.Fields(string(b))
		if len(f) > 0 {
			kb, _ := strconv.ParseFloat(f[len(f)-1], 64)
			r.rssMB = kb / 1024
		}
	} else if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.rssMB = float64(ru.Maxrss) / 1024
	}
	if err != nil {
		fail("cbfs %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return r
}

func fail(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "s3bench: "+f+"\n", a...)
	os.Exit(1)
}

func main() {
	flag.Parse()
	testing.Init()
	t := &tb{}
	defer t.cleanup()
	abs, _ := filepath.Abs(*cbfsBin)
	*cbfsBin = abs
	os.RemoveAll(*outDir)
	must(os.MkdirAll(filepath.Join(*outDir, "archives"), 0o755))
	keyPath := filepath.Join(*outDir, "fs.key")
	cbfs(nil, "keygen", "-o", keyPath)
	key, _, err := keys.ReadFile(keyPath)
	must(err)

	// N small archives: a few files each, as a tiering agent writes them.
	src := filepath.Join(*outDir, "src")
	for i := range *n {
		d := filepath.Join(src, "t", fmt.Sprintf("d%02d", i%50))
		must(os.MkdirAll(d, 0o755))
		must(os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d", i)), bytes.Repeat([]byte(fmt.Sprintf("data %d\n", i)), 200), 0o644))
		must(os.WriteFile(filepath.Join(src, "t", "common"), []byte(fmt.Sprint("version ", i)), 0o644))
		f, err := os.Create(filepath.Join(*outDir, "archives", fmt.Sprintf("%06d.cbfs", i)))
		must(err)
		p, err := tree.NewPacker(f, key, tree.PackOptions{WriterOptions: format.WriterOptions{Sequence: uint64(i + 1), Compress: true}})
		must(err)
		must(p.AddTree(context.Background(), filepath.Join(src, "t")))
		_, err = p.Close()
		must(err)
		must(f.Close())
		must(os.RemoveAll(filepath.Join(src, "t", fmt.Sprintf("d%02d", i%50), fmt.Sprintf("f%05d", i))))
	}

	s := testutil.StartS3(t)
	s.Bucket(t, "bench")
	for _, e := range s.Env() {
		k, v, _ := strings.Cut(e, "=")
		os.Setenv(k, v)
	}
	c, err := store.NewS3(store.S3Config{Endpoint: s.Endpoint, Region: "us-east-1", RetryFor: time.Minute, PartSize: 16 << 20, Parts: 4, TailRead: 1 << 20})
	must(err)
	b := c.Bucket("bench")
	ents, _ := os.ReadDir(filepath.Join(*outDir, "archives"))
	var total int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(*outDir, "archives", e.Name()))
		must(err)
		total += int64(len(data))
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			must(b.Put(context.Background(), "arch/"+e.Name(), data, store.CreateOptions{Replace: true}))
		}()
	}
	wg.Wait()

	p := testutil.StartProxy(t, s.Endpoint, *delay, 0)
	env := s.EnvVia(p)
	key0 := []string{"-k", keyPath}

	local := cbfs(nil, append(append([]string{"index", "rebuild"}, key0...), "-o", filepath.Join(*outDir, "local.idx"), filepath.Join(*outDir, "archives"))...)

	p.Reset()
	rb := cbfs(env, append(append([]string{"index", "rebuild", "--json"}, key0...), "-o", "s3://bench/idx/store.idx", "s3://bench/arch/")...)
	rbCounts := p.Counts()
	var rep struct{ Requests store.RequestStats }
	json.Unmarshal(rb.out, &rep)

	p.Reset()
	vf := cbfs(env, "verify", "--json", "s3://bench/arch/")
	vfCounts := p.Counts()

	p.Reset()
	start := time.Now()
	var shardWG sync.WaitGroup
	var shardRSS [8]float64
	for i := range 8 {
		shardWG.Go(func() {
			// A copy each: appending to the shared slice from 8
			// goroutines could give two shards the same index.
			r := cbfs(append(slices.Clone(env), fmt.Sprintf("JOB_COMPLETION_INDEX=%d", i)), append(append([]string{"index", "rebuild", "--shard", "env/8", "--force"}, key0...), "-o", "s3://bench/parts/part-{shard}.idx", "s3://bench/arch/")...)
			shardRSS[i] = r.rssMB
		})
	}
	shardWG.Wait()
	mg := cbfs(env, append(append([]string{"index", "merge"}, key0...), "-o", "s3://bench/idx/merged.idx", "s3://bench/parts/")...)
	shardWall := time.Since(start)
	_ = mg

	localIdx, _ := os.ReadFile(filepath.Join(*outDir, "local.idx"))
	storeIdx, _ := os.ReadFile(filepath.Join(s.Dir, "bench", "idx", "store.idx"))
	mergedIdx, _ := os.ReadFile(filepath.Join(s.Dir, "bench", "idx", "merged.idx"))

	// Upload memory: an import of an incompressible tar to the store.
	tarPath := filepath.Join(*outDir, "big.tar")
	makeTar(tarPath, int64(*upload)<<20)
	up := cbfs(env, append(append([]string{"import", "--compress", "none"}, key0...), "-o", "s3://bench/big.cbfs", tarPath)...)
	upLocal := cbfs(nil, append(append([]string{"import", "--compress", "none"}, key0...), "-o", filepath.Join(*outDir, "big.cbfs"), tarPath)...)

	gets := float64(rbCounts["GET"])
	perArchive := gets / float64(*n)
	target := time.Second + time.Duration(gets)*(*delay)/16
	fmt.Printf("\n### Object store (versitygw v1.8.0 behind a proxy adding %v a request; %d archives, %.1f MB)\n\n", *delay, *n, float64(total)/1e6)
	fmt.Printf("| command | wall | peak RSS | GETs | GETs per archive | list pages | other requests |\n|---|---|---|---|---|---|---|\n")
	row := func(name string, r run, c map[string]int64) {
		other := c["PUT"] + c["POST"] + c["HEAD"] + c["DELETE"]
		fmt.Printf("| %s | %.2f s | %.1f MB | %d | %.3f | %d | %d |\n", name, r.wall.Seconds(), r.rssMB, c["GET"], float64(c["GET"])/float64(*n), c["LIST"], other)
	}
	fmt.Printf("| index rebuild, local copies | %.2f s | %.1f MB | - | - | - | - |\n", local.wall.Seconds(), local.rssMB)
	row("index rebuild, s3:// (-j 16)", rb, rbCounts)
	row("verify (keyless), s3:// (-j 16)", vf, vfCounts)
	maxShard := 0.0
	for _, r := range shardRSS {
		maxShard = max(maxShard, r)
	}
	fmt.Printf("| index rebuild in 8 shards + merge, s3:// | %.2f s | %.1f MB (largest shard) | | | | |\n", shardWall.Seconds(), maxShard)
	fmt.Printf("| import %d MB to s3:// (multipart) | %.2f s | %.1f MB | | | | |\n", *upload, up.wall.Seconds(), up.rssMB)
	fmt.Printf("| import %d MB to a local file | %.2f s | %.1f MB | | | | |\n", *upload, upLocal.wall.Seconds(), upLocal.rssMB)
	fmt.Printf("\nrebuild: cbfs counted %d GETs and %d list pages itself.\n\nTargets:\n", rep.Requests.Get, rep.Requests.List)
	check := func(ok bool, f string, a ...any) {
		mark := "ok  "
		if !ok {
			mark = "MISS"
		}
		fmt.Printf("- %s %s\n", mark, fmt.Sprintf(f, a...))
	}
	check(perArchive <= 1.2, "GETs per archive %.3f <= 1.2 (plus %d list pages)", perArchive, rbCounts["LIST"])
	check(rb.wall <= target, "rebuild wall %.2f s <= 1 s + GETs x %v / 16 = %.2f s", rb.wall.Seconds(), *delay, target.Seconds())
	check(bytes.Equal(localIdx, storeIdx) && len(localIdx) > 0, "rebuild from the store == local rebuild, byte for byte (%d bytes)", len(localIdx))
	check(bytes.Equal(localIdx, mergedIdx), "8 shards merged from parts in the store == local rebuild, byte for byte")
	check(up.rssMB <= 64+upLocal.rssMB, "upload peak RSS %.1f MB <= 64 MB + the local import's %.1f MB", up.rssMB, upLocal.rssMB)
}

func makeTar(path string, size int64) {
	f, err := os.Create(path)
	must(err)
	defer f.Close()
	hdr := make([]byte, 512)
	copy(hdr, "big")
	copy(hdr[100:], "0000644\x00")
	copy(hdr[108:], "0000000\x00")
	copy(hdr[116:], "0000000\x00")
	copy(hdr[124:], fmt.Sprintf("%011o\x00", size))
	copy(hdr[136:], "00000000000\x00")
	hdr[156] = '0'
	copy(hdr[257:], "ustar\x0000")
	copy(hdr[148:], "        ")
	sum := 0
	for _, c := range hdr {
		sum += int(c)
	}
	copy(hdr[148:], fmt.Sprintf("%06o\x00 ", sum))
	f.Write(hdr)
	buf := make([]byte, 1<<20)
	x := uint64(88172645463325252)
	for w := int64(0); w < size; w += int64(len(buf)) {
		for i := 0; i+8 <= len(buf); i += 8 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			for j := range 8 {
				buf[i+j] = byte(x >> (8 * j))
			}
		}
		f.Write(buf[:min(int64(len(buf)), size-w)])
	}
	f.Write(make([]byte, (512-size%512)%512+1024))
}

func must(err error) {
	if err != nil {
		fail("%v", err)
	}
}

// tb is enough of testing.TB for the test harness's server and proxy.
type tb struct {
	testing.TB
	cleanups []func()
	dirs     []string
}

func (t *tb) Helper()                   {}
func (t *tb) Cleanup(f func())          { t.cleanups = append(t.cleanups, f) }
func (t *tb) Fatal(a ...any)            { t.cleanup(); fail("%s", fmt.Sprint(a...)) }
func (t *tb) Fatalf(f string, a ...any) { t.cleanup(); fail(f, a...) }
func (t *tb) Skipf(f string, a ...any)  { t.cleanup(); fail(f, a...) }
func (t *tb) TempDir() string {
	d, err := os.MkdirTemp(*outDir, "tmp-")
	must(err)
	return d
}
func (t *tb) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	t.cleanups = nil
}
