package main

// The commands against a real S3-compatible server (versitygw, started
// by the test on 127.0.0.1): every command that reads or writes
// archives and indexes, with s3:// locations.

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/internal/testutil"
	"github.com/cbfs/cbfs/keys"
	"github.com/cbfs/cbfs/store"
)

type s3env struct {
	s   *testutil.S3
	dir string // the working directory: key, local trees
	iv  invocation
}

func newS3Env(t *testing.T) *s3env {
	t.Helper()
	s := testutil.StartS3(t)
	s.Bucket(t, "bkt")
	dir := t.TempDir()
	e := &s3env{s: s, dir: dir, iv: invocation{dir: dir, env: s.Env()}}
	mustRun(t, dir, "keygen", "-o", "k")
	for i := range 3 {
		p := filepath.Join(dir, "tree", fmt.Sprintf("d%d", i))
		os.MkdirAll(p, 0o755)
		os.WriteFile(filepath.Join(p, "f.txt"), []byte(strings.Repeat(fmt.Sprintf("file %d\n", i), 100)), 0o644)
	}
	return e
}

func (e *s3env) run(t *testing.T, args ...string) result {
	t.Helper()
	return e.iv.run(t, args...)
}

func (e *s3env) must(t *testing.T, args ...string) result {
	t.Helper()
	r := e.run(t, args...)
	if r.code != 0 {
		t.Fatalf("cbfs %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// object is the bytes of an object as the server keeps them (versitygw's
// posix backend: a plain file).
func (e *s3env) object(t *testing.T, bucket, key string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.s.Dir, bucket, key))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *s3env) bucket(t *testing.T) *store.S3Bucket {
	t.Helper()
	c, err := store.NewS3(store.S3Config{Endpoint: e.s.Endpoint, Region: "us-east-1", RetryFor: time.Second, PartSize: 5 << 20, Parts: 2, TailRead: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	os.Setenv("AWS_ACCESS_KEY_ID", e.s.Access)
	os.Setenv("AWS_SECRET_ACCESS_KEY", e.s.Secret)
	return c.Bucket("bkt")
}

// rebuildAsLocal rebuilds the index of prefix into s3.idx, requires it
// to be byte for byte the rebuild of the same archives as local files
// (local.idx), and returns the requests the store rebuild made.
func (e *s3env) rebuildAsLocal(t *testing.T, prefix, local string) store.RequestStats {
	t.Helper()
	r := e.must(t, "index", "rebuild", "-k", "k", "--json", "-o", "s3.idx", prefix)
	var rep struct{ Requests store.RequestStats }
	if err := json.Unmarshal(r.stdout, &rep); err != nil {
		t.Fatalf("rebuild --json: %v\n%s", err, r.stdout)
	}
	e.must(t, "index", "rebuild", "-k", "k", "-o", "local.idx", local)
	s3idx, _ := os.ReadFile(filepath.Join(e.dir, "s3.idx"))
	if l, _ := os.ReadFile(filepath.Join(e.dir, "local.idx")); len(l) == 0 || !bytes.Equal(s3idx, l) {
		t.Fatal("the rebuild from the store differs from the local one")
	}
	return rep.Requests
}

// gcRequests runs gc --json over prefix against s3.idx and returns each
// archive's requests.
func (e *s3env) gcRequests(t *testing.T, prefix string) []int64 {
	t.Helper()
	r := e.must(t, "gc", "-k", "k", "--index", "s3.idx", "--json", prefix)
	var gc []struct{ Requests int64 }
	if err := json.Unmarshal(r.stdout, &gc); err != nil {
		t.Fatalf("gc --json: %v\n%s", err, r.stdout)
	}
	var out []int64
	for _, g := range gc {
		out = append(out, g.Requests)
	}
	return out
}

func s3Tar(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg, ModTime: time.Unix(1e9, 0)})
		tw.Write([]byte(body))
	}
	tw.Close()
	return buf.Bytes()
}

// TestS3Commands: every command with s3:// inputs and outputs; what a
// rebuild from the store writes equals the index kept while writing.
func TestS3Commands(t *testing.T) {
	t.Parallel()
	e := newS3Env(t)
	e.must(t, "pack", "-k", "k", "-o", "s3://bkt/arch/0001.cbfs", "--index", "s3://bkt/fs.idx", "--new-index", "tree")
	os.WriteFile(filepath.Join(e.dir, "in.tar"), s3Tar(t, map[string]string{"tree/d0/f.txt": "changed\n", "x/y": "new\n"}), 0o644)
	e.must(t, "import", "-k", "k", "-o", "s3://bkt/arch/0002.cbfs", "--index", "s3://bkt/fs.idx", "--delete", "tree/d1/f.txt", "in.tar")

	// Reading one archive.
	if r := e.must(t, "ls", "-k", "k", "s3://bkt/arch/0001.cbfs"); !strings.Contains(string(r.stdout), "tree/d2/f.txt") {
		t.Fatalf("ls: %s", r.stdout)
	}
	if r := e.must(t, "cat", "-k", "k", "s3://bkt/arch/0002.cbfs", "tree/d0/f.txt"); string(r.stdout) != "changed\n" {
		t.Fatalf("cat: %q", r.stdout)
	}
	e.must(t, "extract", "-k", "k", "-C", "ex", "s3://bkt/arch/0001.cbfs")
	if b, _ := os.ReadFile(filepath.Join(e.dir, "ex/tree/d1/f.txt")); !bytes.Equal(b, []byte(strings.Repeat("file 1\n", 100))) {
		t.Fatalf("extract wrote %q", b)
	}
	e.must(t, "export", "-k", "k", "-o", "s3://bkt/out/0002.tar", "s3://bkt/arch/0002.cbfs")
	// export(import(tar)) is the tar byte for byte, read from and
	// written to the store.
	if in, _ := os.ReadFile(filepath.Join(e.dir, "in.tar")); !bytes.Equal(e.object(t, "bkt", "out/0002.tar"), in) {
		t.Fatal("export to the store differs from the imported tar")
	}

	// Verify, keyless and keyed, with the index; gc.
	r := e.must(t, "verify", "--json", "s3://bkt/arch/")
	var doc struct {
		Archives []struct{ Archive, Status string }
		Requests *store.RequestStats
	}
	if err := json.Unmarshal(r.stdout, &doc); err != nil || len(doc.Archives) != 2 || doc.Requests == nil || doc.Requests.List != 1 {
		t.Fatalf("verify --json: %v\n%s", err, r.stdout)
	}
	if doc.Archives[0].Archive != "s3://bkt/arch/0001.cbfs" {
		t.Errorf("verify names %q", doc.Archives[0].Archive)
	}
	e.must(t, "verify", "-k", "k", "--index", "s3://bkt/fs.idx", "s3://bkt/arch/")
	r = e.must(t, "gc", "-k", "k", "--index", "s3://bkt/fs.idx", "--json", "s3://bkt/arch/")
	var gc []struct {
		Archive   string
		DeadBytes int64 `json:"dead_bytes"`
		Requests  int64
	}
	if err := json.Unmarshal(r.stdout, &gc); err != nil || len(gc) != 2 || gc[0].DeadBytes == 0 || gc[0].Requests != 1 {
		t.Fatalf("gc --json: %v\n%s", err, r.stdout)
	}

	// Index commands: rebuild from the store equals the index kept.
	r = e.must(t, "index", "rebuild", "-k", "k", "--json", "-o", "s3://bkt/re.idx", "s3://bkt/arch/")
	var rep struct{ Requests store.RequestStats }
	json.Unmarshal(r.stdout, &rep)
	if rep.Requests.Get != 2 || rep.Requests.List != 1 {
		t.Errorf("rebuild of 2 small archives took %+v requests, want 2 GETs and 1 list", rep.Requests)
	}
	if !bytes.Equal(e.object(t, "bkt", "re.idx"), e.object(t, "bkt", "fs.idx")) {
		t.Fatal("the index rebuilt from the store differs from the one kept while writing")
	}
	e.must(t, "index", "rebuild", "-k", "k", "-o", "local.idx", "s3://bkt/arch/0001.cbfs", "s3://bkt/arch/0002.cbfs")
	if b, _ := os.ReadFile(filepath.Join(e.dir, "local.idx")); !bytes.Equal(b, e.object(t, "bkt", "fs.idx")) {
		t.Fatal("a local rebuild from two objects differs")
	}
	e.must(t, "index", "diff", "-k", "k", "s3://bkt/re.idx", "local.idx")
	if r := e.must(t, "index", "ls", "-k", "k", "s3://bkt/fs.idx"); !strings.Contains(string(r.stdout), "x/y\t0002.cbfs") {
		t.Fatalf("index ls: %s", r.stdout)
	}
	if r := e.must(t, "index", "lookup", "-k", "k", "s3://bkt/fs.idx", "tree/d0/f.txt"); !strings.HasPrefix(string(r.stdout), "0002.cbfs") {
		t.Fatalf("index lookup: %s", r.stdout)
	}
	e.must(t, "index", "merge", "-k", "k", "-o", "s3://bkt/merged.idx", "s3://bkt/re.idx", "local.idx")

	// The current tree through the index, its archives under a prefix.
	e.must(t, "export", "-k", "k", "--index", "s3://bkt/fs.idx", "-o", "cur.tar", "s3://bkt/arch/")
	cur, _ := os.ReadFile(filepath.Join(e.dir, "cur.tar"))
	got := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(cur))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		b := new(bytes.Buffer)
		b.ReadFrom(tr)
		got[strings.TrimSuffix(h.Name, "/")] = b.String()
	}
	if got["tree/d0/f.txt"] != "changed\n" || got["x/y"] != "new\n" || got["tree/d2/f.txt"] == "" {
		t.Fatalf("export --index from s3://: %v", got)
	}
	if _, ok := got["tree/d1/f.txt"]; ok {
		t.Fatal("export --index from s3:// wrote a deleted path")
	}
	e.must(t, "extract", "-k", "k", "--index", "s3://bkt/fs.idx", "-C", "cur", "s3://bkt/arch/", "tree")
	if b, _ := os.ReadFile(filepath.Join(e.dir, "cur/tree/d0/f.txt")); string(b) != "changed\n" {
		t.Fatalf("extract --index from s3:// wrote %q", b)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "cur/x/y")); err == nil {
		t.Error("extract --index PATH wrote a path outside it")
	}
	if r := e.run(t, "export", "-k", "k", "--index", "s3://bkt/fs.idx", "-o", "cur2.tar", "s3://bkt/arch"); r.code != exitUsage {
		t.Errorf("export --index with ARCHIVES not a prefix: %s", r)
	}

	// An index under the prefix is skipped with a note, as in a DIR.
	os.WriteFile(filepath.Join(e.dir, "copy.idx"), e.object(t, "bkt", "fs.idx"), 0o644)
	e.must(t, "index", "merge", "-k", "k", "-o", "s3://bkt/arch/zz.idx", "copy.idx")
	r = e.must(t, "index", "rebuild", "-k", "k", "-o", "s3://bkt/re2.idx", "s3://bkt/arch/")
	if !strings.Contains(string(r.stderr), "s3://bkt/arch/zz.idx: a master index, not an archive: skipped") {
		t.Errorf("rebuild with an index under the prefix: %s", r.stderr)
	}
	if !bytes.Equal(e.object(t, "bkt", "re2.idx"), e.object(t, "bkt", "fs.idx")) {
		t.Error("the index under the prefix changed the rebuild")
	}

	// --force: an existing object is kept without it.
	r = e.run(t, "pack", "-k", "k", "-o", "s3://bkt/arch/0001.cbfs", "tree")
	if r.code != exitFailure || !strings.Contains(string(r.stderr), "s3://bkt/arch/0001.cbfs: output object exists") || !strings.Contains(string(r.stderr), "--force") {
		t.Fatalf("pack over an existing object: %s", r)
	}
	before := e.object(t, "bkt", "arch/0001.cbfs")
	e.must(t, "pack", "-k", "k", "--force", "-o", "s3://bkt/arch/0001.cbfs", "tree")
	if bytes.Equal(before, e.object(t, "bkt", "arch/0001.cbfs")) {
		t.Error("--force did not replace the object")
	}
}

// TestS3DamagedAndMissing: a damaged object is named by its URL with
// status 3; a missing one with status 1.
func TestS3DamagedAndMissing(t *testing.T) {
	t.Parallel()
	e := newS3Env(t)
	e.must(t, "pack", "-k", "k", "-o", "s3://bkt/a/0001.cbfs", "tree")
	e.must(t, "pack", "-k", "k", "-o", "s3://bkt/a/0002.cbfs", "tree")
	p := filepath.Join(e.s.Dir, "bkt", "a", "0002.cbfs")
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 1
	os.WriteFile(p, b, 0o644)
	r := e.run(t, "verify", "-k", "k", "s3://bkt/a/")
	if r.code != exitDamaged || !strings.Contains(string(r.stdout), "DAMAGED  s3://bkt/a/0002.cbfs") || !strings.Contains(string(r.stdout), "ok       s3://bkt/a/0001.cbfs") {
		t.Fatalf("verify of a damaged object: %s\n%s", r, r.stdout)
	}
	r = e.run(t, "ls", "-k", "k", "s3://bkt/a/nope.cbfs")
	if r.code != exitFailure || !strings.Contains(string(r.stderr), "s3://bkt/a/nope.cbfs: no such object") {
		t.Fatalf("ls of a missing object: %s", r)
	}
	r = e.run(t, "index", "rebuild", "-k", "k", "-o", "x.idx", "s3://bkt/a/0001.cbfs", "s3://bkt/a/nope.cbfs")
	if r.code != exitFailure || !strings.Contains(string(r.stderr), "s3://bkt/a/nope.cbfs") {
		t.Fatalf("rebuild with a missing object: %s", r)
	}
	r = e.run(t, "verify", "s3://nobucket/a/")
	if r.code != exitFailure || !strings.Contains(string(r.stdout), "UNREAD   s3://nobucket/a/: no such bucket") {
		t.Fatalf("verify of a missing bucket: %s", r)
	}
}

// TestS3SlowStore: behind a proxy that adds latency and answers every
// third request 503 SlowDown, every command still succeeds (retried) and
// the rebuild is the same.
func TestS3SlowStore(t *testing.T) {
	t.Parallel()
	e := newS3Env(t)
	for i := range 6 {
		e.must(t, "pack", "-k", "k", "--seq", fmt.Sprint(i+1), "-o", fmt.Sprintf("s3://bkt/a/%04d.cbfs", i), "tree")
	}
	e.must(t, "index", "rebuild", "-k", "k", "-o", "direct.idx", "s3://bkt/a/")
	p := testutil.StartProxy(t, e.s.Endpoint, 5*time.Millisecond, 3)
	slow := invocation{dir: e.dir, env: append(e.s.EnvVia(p), "CBFS_S3_RETRY_FOR=30s")}
	if r := slow.run(t, "index", "rebuild", "-k", "k", "-o", "slow.idx", "s3://bkt/a/"); r.code != 0 {
		t.Fatalf("rebuild through a failing store: %s", r)
	}
	a, _ := os.ReadFile(filepath.Join(e.dir, "direct.idx"))
	b, _ := os.ReadFile(filepath.Join(e.dir, "slow.idx"))
	if !bytes.Equal(a, b) {
		t.Fatal("the rebuild through the slow store differs")
	}
	if r := slow.run(t, "verify", "-k", "k", "s3://bkt/a/"); r.code != 0 {
		t.Fatalf("verify through a failing store: %s", r)
	}
	if r := slow.run(t, "pack", "-k", "k", "-o", "s3://bkt/a/slow.cbfs", "tree"); r.code != 0 {
		t.Fatalf("pack through a failing store: %s", r)
	}
	if p.Counts()["GET"] == 0 {
		t.Error("nothing went through the proxy")
	}
	// A store that keeps failing is reported per archive, with its URL.
	dead := testutil.StartProxy(t, e.s.Endpoint, 0, 1)
	r := invocation{dir: e.dir, env: append(e.s.EnvVia(dead), "CBFS_S3_RETRY_FOR=1s")}.run(t, "gc", "-k", "k", "--index", "direct.idx", "s3://bkt/a/0000.cbfs")
	if r.code != exitFailure || !strings.Contains(string(r.stderr), "s3://bkt/a/0000.cbfs") || !strings.Contains(string(r.stderr), "SlowDown") {
		t.Fatalf("gc through a store that always fails: %s", r)
	}
}

// TestS3InterruptedUpload: a signal during a multipart upload aborts it:
// no object, no multipart upload left.
func TestS3InterruptedUpload(t *testing.T) {
	t.Parallel()
	e := newS3Env(t)
	bk := e.bucket(t)
	cmd := exec.Command(cbfsBin, "import", "-k", "k", "--compress", "none", "-o", "s3://bkt/big.cbfs")
	cmd.Dir = e.dir
	cmd.Env = append(os.Environ(), append(e.s.Env(), "CBFS_S3_PART_SIZE=5242880", "CBFS_S3_PARTS=2")...)
	in, _ := cmd.StdinPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A tar whose one file is never finished: more than two parts go up.
	tw := tar.NewWriter(in)
	tw.WriteHeader(&tar.Header{Name: "big", Mode: 0o644, Size: 1 << 30, Typeflag: tar.TypeReg})
	chunk := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	started := false
	for i := 0; i < 200 && !started; i++ {
		for j := range chunk {
			chunk[j] = byte(rng.Uint32())
		}
		if _, err := tw.Write(chunk); err != nil {
			cmd.Wait()
			t.Fatalf("%v: %s", err, stderr.Bytes())
		}
		if i > 12 {
			ups, _ := bk.ListUploads(context.Background(), "")
			started = len(ups) > 0
		}
	}
	if !started {
		t.Fatal("no multipart upload was started")
	}
	// Standard input stays open: the signal, not the end of the input,
	// stops the command.
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("import interrupted: %v\n%s", err, stderr.Bytes())
	}
	if ups, err := bk.ListUploads(context.Background(), ""); err != nil || len(ups) > 0 {
		t.Fatalf("multipart uploads left: %v %v", ups, err)
	}
	if _, err := bk.Stat(context.Background(), "big.cbfs"); err == nil {
		t.Fatal("the interrupted output is visible")
	}
	if !strings.Contains(stderr.String(), "1 unfinished output file removed") {
		t.Errorf("stderr: %s", stderr.Bytes())
	}
}

// TestS3Shards: 8 shard processes (--shard env/8, as an Indexed Job runs
// them) write their parts to fixed names in the store; index merge of the
// prefix equals the full rebuild byte for byte.
func TestS3Shards(t *testing.T) {
	t.Parallel()
	e := newS3Env(t)
	for i := range 20 {
		os.WriteFile(filepath.Join(e.dir, "tree", "d0", "f.txt"), []byte(fmt.Sprint("version ", i)), 0o644)
		e.must(t, "pack", "-k", "k", "-o", fmt.Sprintf("s3://bkt/a/%04d.cbfs", i), "--seq", fmt.Sprint(i+1), "tree")
	}
	e.must(t, "index", "rebuild", "-k", "k", "-o", "s3://bkt/full.idx", "s3://bkt/a/")
	var wg sync.WaitGroup
	results := make([]result, 8)
	for i := range 8 {
		wg.Go(func() {
			iv := e.iv
			iv.env = append(append([]string(nil), iv.env...), fmt.Sprintf("JOB_COMPLETION_INDEX=%d", i))
			results[i] = iv.run(t, "index", "rebuild", "-k", "k", "--shard", "env/8", "--force", "-o", "s3://bkt/parts/part-{shard}.idx", "s3://bkt/a/")
		})
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("shard %d: %s", i, r)
		}
	}
	e.must(t, "index", "merge", "-k", "k", "-o", "s3://bkt/merged.idx", "s3://bkt/parts/")
	if !bytes.Equal(e.object(t, "bkt", "merged.idx"), e.object(t, "bkt", "full.idx")) {
		t.Fatal("the merged shards differ from the full rebuild")
	}
	if _, err := os.Stat(filepath.Join(e.s.Dir, "bkt", "parts", "part-7.idx")); err != nil {
		t.Fatal(err)
	}
}

// TestS3ConcurrentIndexUpdates: writers adding archives to one index in
// the store at once (conditional writes on its ETag, no lock file) lose
// none of each other's updates: the index ends up as the rebuild of every
// archive, byte for byte. Each takes a sequence number of its own (a
// reservation object beside the index): their archives all hold one path,
// and no conflict comes of it. A reservation a crashed writer left is
// skipped (a gap) and removed; reservations are never taken for archives.
func TestS3ConcurrentIndexUpdates(t *testing.T) {
	t.Parallel()
	e := newS3Env(t)
	// The index among its archives: a rebuild of the prefix skips it and
	// the reservations beside it.
	e.must(t, "pack", "-k", "k", "-o", "s3://bkt/a/0000.cbfs", "--seq", "1", "--index", "s3://bkt/a/fs.idx", "--new-index", "tree")
	bk := e.bucket(t)
	ctx := context.Background()
	if err := bk.Put(ctx, store.SeqKey("a/fs.idx", 3), nil, store.CreateOptions{}); err != nil { // a crashed writer's
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(e.dir, "shared"), 0o755)
	os.WriteFile(filepath.Join(e.dir, "shared", "f"), []byte("every writer's"), 0o644)
	var wg sync.WaitGroup
	const writers = 6
	results := make([]result, writers)
	for i := range writers {
		os.MkdirAll(filepath.Join(e.dir, fmt.Sprintf("w%d", i)), 0o755)
		os.WriteFile(filepath.Join(e.dir, fmt.Sprintf("w%d", i), "f"), []byte(fmt.Sprint("writer ", i)), 0o644)
	}
	for i := range writers {
		wg.Go(func() {
			results[i] = e.iv.run(t, "pack", "-k", "k", "-o", fmt.Sprintf("s3://bkt/a/%04d.cbfs", i+1), "--index", "s3://bkt/a/fs.idx", fmt.Sprintf("w%d", i), "shared")
		})
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("writer %d: %s", i, r)
		}
	}
	r := e.must(t, "index", "rebuild", "-k", "k", "-o", "s3://bkt/re.idx", "s3://bkt/a/")
	if bytes.Contains(r.stderr, []byte(".seq/")) {
		t.Errorf("the rebuild names a reservation: %s", r.stderr)
	}
	if !bytes.Equal(e.object(t, "bkt", "re.idx"), e.object(t, "bkt", "a/fs.idx")) {
		r := e.run(t, "index", "diff", "-k", "k", "s3://bkt/re.idx", "s3://bkt/a/fs.idx")
		t.Fatalf("the index updated by concurrent writers differs from the rebuild:\n%s", r.stdout)
	}
	// Every writer took a sequence number of its own: no two archives
	// share one.
	r = e.must(t, "index", "ls", "-k", "k", "--json", "s3://bkt/a/fs.idx")
	var rows []struct {
		Archive  string
		Seq      uint64
		Conflict bool
	}
	if err := json.Unmarshal(r.stdout, &rows); err != nil {
		t.Fatalf("index ls --json: %v\n%s", err, r.stdout)
	}
	seqOf := map[string]uint64{}
	for _, row := range rows {
		seqOf[row.Archive] = row.Seq
		if row.Conflict {
			t.Errorf("conflict: %+v", row)
		}
	}
	byName := map[uint64]string{}
	for a, s := range seqOf {
		if b, ok := byName[s]; ok {
			t.Errorf("%s and %s both have sequence %d", a, b, s)
		}
		byName[s] = a
	}
	if len(seqOf) != writers+1 {
		t.Errorf("the index lists %d archives, want %d: %v", len(seqOf), writers+1, seqOf)
	}
	if a, ok := byName[3]; ok {
		t.Errorf("%s took sequence 3, which a crashed writer had reserved", a)
	}
	// Every reservation is gone once the last index is written.
	if left, err := bk.List(ctx, "a/.fs.idx.seq/"); err != nil || len(left) > 0 {
		t.Errorf("reservations left: %v %v", left, err)
	}
}

// TestS3LargeSummary: an archive whose summary is several times the
// opening GET's tail read and a read block costs three GETs, whatever the
// summary's size: the tail, the header's block, and the rest of the
// summary in one (rebuild, gc, ls).
func TestS3LargeSummary(t *testing.T) {
	t.Parallel()
	e := newS3Env(t)
	key, _, err := keys.ReadFile(filepath.Join(e.dir, "k"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := format.NewWriter(&buf, key, format.WriterOptions{Sequence: 1, ChunkSize: format.MinChunkSize, RecordSize: format.MinRecordSize})
	if err != nil {
		t.Fatal(err)
	}
	const n = 16000
	deep := strings.Repeat("deep/", 60)
	for i := range n {
		if _, err := w.Add(&format.Meta{Type: format.TypeDir, Path: fmt.Appendf(nil, "%s%06d", deep, i), Mode: 0o755}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	a, err := format.OpenArchive(format.NewSource(bytes.NewReader(buf.Bytes()), int64(buf.Len())), key)
	if err != nil {
		t.Fatal(err)
	}
	if sum := int64(a.Footer.FooterOffset) - a.PhysOffset(int64(a.Footer.SummaryOffset)); sum < 5<<20 {
		t.Fatalf("summary of %d bytes: want more than the tail read and a read block", sum)
	}
	if err := e.bucket(t).Put(context.Background(), "big/0001.cbfs", buf.Bytes(), store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(e.dir, "0001.cbfs"), buf.Bytes(), 0o644)

	if req := e.rebuildAsLocal(t, "s3://bkt/big/", "0001.cbfs"); req.Get != 2 || req.List != 1 {
		t.Errorf("rebuild of an archive with a large summary took %+v requests, want 2 GETs (the end, then the rest of the summary) and 1 list", req)
	}
	if gc := e.gcRequests(t, "s3://bkt/big/"); len(gc) != 1 || gc[0] != 2 {
		t.Errorf("gc of an archive with a large summary: requests %v, want [2]", gc)
	}
	if r := e.must(t, "ls", "-k", "k", "s3://bkt/big/0001.cbfs"); bytes.Count(r.stdout, []byte("\n")) != n {
		t.Errorf("ls listed %d members, want %d", bytes.Count(r.stdout, []byte("\n")), n)
	}
}

// TestS3Rekey: rekey from and to the store. Each new archive goes up as
// an upload completed only once it verified with the new key; an
// existing object is replaced only with --force; the sources' prefix is
// refused; a source that fails part way leaves neither an object nor a
// multipart upload. index rekey over the new prefix writes what a
// rebuild under the new key writes.
func TestS3Rekey(t *testing.T) {
	t.Parallel()
	e := newS3Env(t)
	e.must(t, "keygen", "-o", "k2")
	e.must(t, "pack", "-k", "k", "-o", "s3://bkt/a/0001.cbfs", "--index", "s3://bkt/fs.idx", "--new-index", "tree")
	os.WriteFile(filepath.Join(e.dir, "tree", "d0", "f.txt"), []byte("changed\n"), 0o644)
	e.must(t, "pack", "-k", "k", "-o", "s3://bkt/a/0002.cbfs", "--index", "s3://bkt/fs.idx", "tree/d0")
	// An index among the archives is skipped with a note, as in a DIR.
	os.WriteFile(filepath.Join(e.dir, "copy.idx"), e.object(t, "bkt", "fs.idx"), 0o644)
	e.must(t, "index", "merge", "-k", "k", "-o", "s3://bkt/a/zz.idx", "copy.idx")

	r := e.must(t, "rekey", "-k", "k", "--new-key", "k2", "-o", "s3://bkt/b/", "--json", "s3://bkt/a/")
	var rows []rekeyJSON
	if err := json.Unmarshal(r.stdout, &rows); err != nil || len(rows) != 2 || rows[1].Output != "s3://bkt/b/0002.cbfs" || rows[1].Status != "rekeyed" || *rows[1].Sequence != 2 {
		t.Fatalf("rekey --json: %v\n%s", err, r.stdout)
	}
	if !strings.Contains(string(r.stderr), "s3://bkt/a/zz.idx: a master index, not an archive: skipped") {
		t.Errorf("rekey of a prefix with an index: %s", r.stderr)
	}
	for _, name := range []string{"0001.cbfs", "0002.cbfs"} {
		a, b := e.object(t, "bkt", "a/"+name), e.object(t, "bkt", "b/"+name)
		if len(a) != len(b) || bytes.Equal(a[:48], b[:48]) {
			t.Fatalf("%s: sizes %d and %d", name, len(a), len(b))
		}
	}
	e.must(t, "verify", "-k", "k2", "s3://bkt/b/")
	if r := e.run(t, "verify", "-k", "k", "s3://bkt/b/"); r.code != exitWrongKey {
		t.Errorf("the old key over the new archives: %s", r)
	}
	// The index under the new key from the old index and the new prefix:
	// what a rebuild under the new key writes.
	e.must(t, "index", "rekey", "-k", "k", "--new-key", "k2", "-o", "s3://bkt/fs2.idx", "s3://bkt/fs.idx", "s3://bkt/b/")
	e.must(t, "index", "rebuild", "-k", "k2", "-o", "s3://bkt/re2.idx", "s3://bkt/b/")
	if !bytes.Equal(e.object(t, "bkt", "fs2.idx"), e.object(t, "bkt", "re2.idx")) {
		t.Error("index rekey over s3://bkt/b/ differs from the rebuild under the new key")
	}

	// Existing objects: refused without --force (nothing replaced),
	// replaced with it.
	before := e.object(t, "bkt", "b/0001.cbfs")
	r = e.run(t, "rekey", "-k", "k", "--new-key", "k2", "-o", "s3://bkt/b/", "s3://bkt/a/0001.cbfs")
	if r.code != exitFailure || !strings.Contains(string(r.stdout), "s3://bkt/b/0001.cbfs: output object exists (--force replaces it)") {
		t.Fatalf("rekey over an existing object: %s\n%s", r, r.stdout)
	}
	if !bytes.Equal(before, e.object(t, "bkt", "b/0001.cbfs")) {
		t.Fatal("the existing object changed")
	}
	e.must(t, "rekey", "-k", "k", "--new-key", "k2", "-o", "s3://bkt/b/", "--force", "s3://bkt/a/0001.cbfs")
	if after := e.object(t, "bkt", "b/0001.cbfs"); bytes.Equal(before[:48], after[:48]) {
		t.Error("--force did not replace the object (the same archive id)")
	}
	// The sources' prefix, and an output that is not a prefix: usage.
	if r := e.run(t, "rekey", "-k", "k", "--new-key", "k2", "-o", "s3://bkt/a/", "s3://bkt/a/"); r.code != exitUsage {
		t.Errorf("rekey into the sources' prefix: %s", r)
	}
	// A prefix holds its sub-prefixes: rekeying into one would mix the
	// keys under the sources' prefix (found by the audit).
	for _, src := range []string{"s3://bkt/a/", "s3://bkt/a/0001.cbfs"} {
		if r := e.run(t, "rekey", "-k", "k", "--new-key", "k2", "-o", "s3://bkt/a/sub/", src); r.code != exitUsage {
			t.Errorf("rekey of %s into a prefix under it: %s", src, r)
		}
	}
	if r := e.run(t, "rekey", "-k", "k", "--new-key", "k2", "-o", "s3://bkt/c", "s3://bkt/a/"); r.code != exitUsage || !strings.Contains(string(r.stderr), "not a prefix") {
		t.Errorf("rekey -o an object: %s", r)
	}
	// Between the store and local files, both ways.
	os.Mkdir(filepath.Join(e.dir, "local"), 0o755)
	e.must(t, "rekey", "-k", "k", "--new-key", "k2", "-o", "local", "s3://bkt/a/0002.cbfs")
	if b, _ := os.ReadFile(filepath.Join(e.dir, "local", "0002.cbfs")); len(b) != len(e.object(t, "bkt", "a/0002.cbfs")) {
		t.Error("rekey from the store to a directory")
	}
	e.must(t, "rekey", "-k", "k2", "--new-key", "k", "-o", "s3://bkt/back/", "local/0002.cbfs")
	e.must(t, "verify", "-k", "k", "s3://bkt/back/0002.cbfs")

	// A source damaged past its first part: the rekey fails there, after
	// parts went up; the upload is aborted, nothing is left.
	big := filepath.Join(e.dir, "big")
	os.Mkdir(big, 0o755)
	rnd := make([]byte, 12<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range rnd {
		rnd[i] = byte(rng.Uint32())
	}
	os.WriteFile(filepath.Join(big, "f"), rnd, 0o644)
	e.must(t, "pack", "-k", "k", "--compress", "none", "-o", "s3://bkt/big/0001.cbfs", "big")
	p := filepath.Join(e.s.Dir, "bkt", "big", "0001.cbfs")
	b, _ := os.ReadFile(p)
	b[len(b)*4/5] ^= 1
	os.WriteFile(p, b, 0o644)
	px := testutil.StartProxy(t, e.s.Endpoint, 0, 0)
	small := append(e.s.EnvVia(px), "CBFS_S3_PART_SIZE=5242880", "CBFS_S3_PARTS=2")
	r = invocation{dir: e.dir, env: small}.run(t, "rekey", "-k", "k", "--new-key", "k2", "-o", "s3://bkt/bigout/", "s3://bkt/big/0001.cbfs")
	if r.code != exitDamaged || !strings.Contains(string(r.stdout), "FAILED   s3://bkt/big/0001.cbfs") {
		t.Fatalf("rekey of a damaged source: %s\n%s", r, r.stdout)
	}
	// Started (POST ?uploads), a part up (PUT), aborted (DELETE).
	if c := px.Counts(); c["POST"] < 1 || c["PUT"] < 1 || c["DELETE"] < 1 {
		t.Errorf("the damaged source's upload: requests %v", c)
	}
	bk := e.bucket(t)
	if ups, err := bk.ListUploads(context.Background(), ""); err != nil || len(ups) > 0 {
		t.Fatalf("multipart uploads left: %v %v", ups, err)
	}
	if _, err := bk.Stat(context.Background(), "bigout/0001.cbfs"); err == nil {
		t.Fatal("the failed rekey's output is visible")
	}
}

// TestS3LargeArchivesOneGet: archives much larger than the opening read
// (3 MiB of content each, the tail read 1 MiB) are opened from their end
// alone: rebuild and gc take one GET per archive, the start of the
// object is never fetched (archive spec 8.2: the footer's header copy).
func TestS3LargeArchivesOneGet(t *testing.T) {
	t.Parallel()
	e := newS3Env(t)
	rnd := make([]byte, 3<<20)
	os.Mkdir(filepath.Join(e.dir, "local"), 0o755)
	for i := range 3 {
		cc := rand.NewChaCha8([32]byte{byte(i)})
		cc.Read(rnd)
		os.WriteFile(filepath.Join(e.dir, "tree", "d0", "big"), rnd, 0o644)
		name := fmt.Sprintf("%04d.cbfs", i)
		e.must(t, "pack", "-k", "k", "--seq", fmt.Sprint(i+1), "-o", "local/"+name, "tree")
		b, _ := os.ReadFile(filepath.Join(e.dir, "local", name))
		if err := e.bucket(t).Put(context.Background(), "large/"+name, b, store.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if req := e.rebuildAsLocal(t, "s3://bkt/large/", "local"); req.Get != 3 || req.List != 1 {
		t.Errorf("rebuild of 3 archives of 3 MiB took %+v requests, want 3 GETs and 1 list", req)
	}
	if gc := e.gcRequests(t, "s3://bkt/large/"); len(gc) != 3 || gc[0] != 1 {
		t.Errorf("gc of archives of 3 MiB: requests %v, want one each", gc)
	}
}

// TestS3Prefixes: what the command-line audit found about prefixes. A
// prefix stands for every object under it, nested ones included, and an
// index rebuilt from it serves export --index over the same prefix;
// objects with a component starting with '.' are skipped as a DIR skips
// them (a synced .NAME.lock); an empty prefix is one unreadable entry of
// verify, the other arguments still verified; a prefix given without its
// '/' and a bucket given as an object are said to be so; an HTTPS
// request to an HTTP endpoint is not retried for CBFS_S3_RETRY_FOR.
func TestS3Prefixes(t *testing.T) {
	t.Parallel()
	e := newS3Env(t)
	e.must(t, "pack", "-k", "k", "--seq", "1", "-o", "s3://bkt/rec/a/0001.cbfs", "tree/d0")
	e.must(t, "pack", "-k", "k", "--seq", "2", "-o", "s3://bkt/rec/b/0002.cbfs", "tree/d1")
	if err := e.bucket(t).Put(context.Background(), "rec/.fs.idx.lock", nil, store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.bucket(t).Put(context.Background(), "rec/.trash/x.cbfs", []byte("junk"), store.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.must(t, "index", "rebuild", "-k", "k", "-o", "s3://bkt/rec.idx", "s3://bkt/rec/")
	r := e.must(t, "export", "-k", "k", "--index", "s3://bkt/rec.idx", "s3://bkt/rec/")
	tr := tar.NewReader(bytes.NewReader(r.stdout))
	var names []string
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		names = append(names, h.Name)
	}
	if !slices.Contains(names, "d0/f.txt") || !slices.Contains(names, "d1/f.txt") {
		t.Errorf("export --index over a nested prefix wrote %v", names)
	}
	e.must(t, "verify", "s3://bkt/rec/")
	// Another archive under the same name earlier in key order: the one
	// with the id the index holds is taken (found by the audit).
	e.must(t, "pack", "-k", "k", "--seq", "9", "-o", "s3://bkt/rec/0/0002.cbfs", "tree/d2")
	r = e.must(t, "export", "-k", "k", "--index", "s3://bkt/rec.idx", "s3://bkt/rec/")
	if !bytes.Contains(r.stdout, []byte("d1/f.txt")) {
		t.Errorf("export --index with two objects named 0002.cbfs: %s", r)
	}

	r = e.run(t, "verify", "--json", "s3://bkt/nothere/", "s3://bkt/rec/a/0001.cbfs")
	var doc struct {
		Archives []struct{ Archive, Status string }
	}
	if err := json.Unmarshal(r.stdout, &doc); err != nil || len(doc.Archives) != 2 || doc.Archives[1].Status != "ok" ||
		doc.Archives[0].Status != "unreadable" || !strings.Contains(string(r.stdout), "no objects under this prefix") {
		t.Errorf("verify of an empty prefix and an archive: %v\n%s", err, r)
	}
	if r = e.run(t, "ls", "-k", "k", "s3://bkt/rec/a"); r.code == 0 || !strings.Contains(string(r.stderr), "give the prefix with its trailing '/'") {
		t.Errorf("ls of a prefix without its '/': %s", r)
	}
	if r = e.run(t, "ls", "-k", "k", "s3://bkt"); r.code == 0 || !strings.Contains(string(r.stderr), "s3://bkt: a bucket, not an object") {
		t.Errorf("ls of a bucket: %s", r)
	}
	iv := e.iv
	iv.env = append(slices.Clone(iv.env), "AWS_ENDPOINT_URL="+strings.Replace(e.s.Endpoint, "http://", "https://", 1), "CBFS_S3_RETRY_FOR=3m")
	start := time.Now()
	if r = iv.run(t, "ls", "-k", "k", "s3://bkt/rec/a/0001.cbfs"); r.code == 0 || time.Since(start) > time.Minute {
		t.Errorf("HTTPS to an HTTP endpoint: %s after %v", r, time.Since(start))
	}
}

// TestS3VerifyReadsOnce: verify of a large archive in the store reads each
// 4 MiB block once (a digest pass of its own, which verify had before the
// digest covered only the frames' headers and tags, read most blocks
// twice: 23-29 GETs for a 45 MB archive).
func TestS3VerifyReadsOnce(t *testing.T) {
	t.Parallel()
	e := newS3Env(t)
	rnd := make([]byte, 24<<20)
	cc := rand.NewChaCha8([32]byte{9})
	cc.Read(rnd)
	os.WriteFile(filepath.Join(e.dir, "tree", "d2", "big"), rnd, 0o644)
	e.must(t, "pack", "-k", "k", "--compress", "none", "-o", "s3://bkt/v/big.cbfs", "tree")
	size := int64(len(e.object(t, "bkt", "v/big.cbfs")))
	want := (size+(4<<20)-1)/(4<<20) + 2 // the blocks, the opening, the head
	for _, args := range [][]string{{"verify", "--json", "s3://bkt/v/big.cbfs"}, {"verify", "--json", "-k", "k", "s3://bkt/v/big.cbfs"}} {
		r := e.must(t, args...)
		var doc struct{ Requests store.RequestStats }
		if err := json.Unmarshal(r.stdout, &doc); err != nil || doc.Requests.Get > want {
			t.Errorf("%v of %d bytes: %d GETs, want at most %d (%v)", args, size, doc.Requests.Get, want, err)
		}
	}
}
