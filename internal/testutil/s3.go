package testutil

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// S3 is an S3-compatible server a test runs: versitygw serving the
// subdirectories of Dir as buckets.
type S3 struct {
	Endpoint string // http://127.0.0.1:PORT
	Dir      string
	Access   string
	Secret   string
}

// Env is the environment that points cbfs at the server.
func (s *S3) Env() []string {
	return []string{"AWS_ENDPOINT_URL=" + s.Endpoint, "AWS_ACCESS_KEY_ID=" + s.Access,
		"AWS_SECRET_ACCESS_KEY=" + s.Secret, "AWS_REGION=us-east-1", "CBFS_S3_RETRY_FOR=3s"}
}

// Bucket makes a bucket (a directory the server serves).
func (s *S3) Bucket(t testing.TB, name string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(s.Dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
}

// VersityGW finds the versitygw binary: $CBFS_VERSITYGW, the one
// scripts/deps.sh installs under .tools/bin at the module's root, or
// PATH. None skips the test, unless CBFS_REQUIRE_TOOLS is set.
func VersityGW(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CBFS_VERSITYGW"); p != "" {
		return p
	}
	if dir, err := os.Getwd(); err == nil {
		for ; dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				if p := filepath.Join(dir, ".tools", "bin", "versitygw"); fileExists(p) {
					return p
				}
				break
			}
		}
	}
	return Tool(t, "versitygw")
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// StartS3 starts versitygw on a free port of 127.0.0.1, serving a new
// temporary directory; the test's cleanup stops it.
func StartS3(t testing.TB) *S3 {
	t.Helper()
	bin := VersityGW(t)
	s := &S3{Dir: t.TempDir(), Access: "cbfstest", Secret: "cbfstest-secret-key"}
	for try := 0; ; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		cmd := exec.Command(bin, "--port", addr, "posix", s.Dir)
		cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.Access, "ROOT_SECRET_KEY="+s.Secret)
		log, _ := os.Create(filepath.Join(t.TempDir(), "versitygw.log"))
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			log.Close()
		})
		s.Endpoint = "http://" + addr
		for i := 0; i < 200; i++ {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				return s
			}
			time.Sleep(25 * time.Millisecond)
		}
		cmd.Process.Kill()
		if try == 2 {
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("versitygw did not start on %s:\n%s", addr, b)
		}
	}
}

// Proxy stands between cbfs and a store: it adds Delay to every request,
// counts requests by method, and answers every FailEvery-th request
// with a 503 SlowDown (0: never), as a busy store does.
type Proxy struct {
	URL       string
	Delay     time.Duration
	FailEvery int64
	n         atomic.Int64
	mu        sync.Mutex
	counts    map[string]int64
	srv       *http.Server
}

// StartProxy starts a proxy to the endpoint target on 127.0.0.1.
func StartProxy(t testing.TB, target string, delay time.Duration, failEvery int64) *Proxy {
	t.Helper()
	p, err := NewProxy(target, delay, failEvery)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// NewProxy starts a proxy; Close stops it.
func NewProxy(target string, delay time.Duration, failEvery int64) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{URL: "http://" + l.Addr().String(), Delay: delay, FailEvery: failEvery, counts: map[string]int64{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 256}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := p.n.Add(1)
		kind := r.Method
		if q := r.URL.Query(); r.Method == http.MethodGet && (q.Has("list-type") || q.Has("uploads")) {
			kind = "LIST"
		}
		p.mu.Lock()
		p.counts[kind]++
		p.mu.Unlock()
		time.Sleep(p.Delay)
		if p.FailEvery > 0 && n%p.FailEvery == 0 {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
			return
		}
		// The host is the proxy's: requests are signed for it, and
		// passed on as they are.
		rp.ServeHTTP(w, r)
	})}
	go p.srv.Serve(l)
	return p, nil
}

// Counts says how many requests of each kind (GET, LIST, PUT, POST,
// HEAD, DELETE) the proxy passed or failed.
func (p *Proxy) Counts() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int64{}
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

// Reset zeroes the counts.
func (p *Proxy) Reset() {
	p.mu.Lock()
	p.counts = map[string]int64{}
	p.mu.Unlock()
}

// Close stops the proxy.
func (p *Proxy) Close() { p.srv.Close() }

// EnvVia is s's environment with the endpoint replaced by the proxy's.
func (s *S3) EnvVia(p *Proxy) []string {
	var out []string
	for _, e := range s.Env() {
		if strings.HasPrefix(e, "AWS_ENDPOINT_URL=") {
			e = "AWS_ENDPOINT_URL=" + p.URL
		}
		out = append(out, e)
	}
	return out
}
