package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config is how an S3-compatible store is reached, configured as every
// S3 tool is: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (or --endpoint) for
// a store other than AWS; AWS_REGION (default us-east-1). Credentials
// come from the AWS CLI's chain of sources (s3creds.go): the environment,
// web identity, the shared credentials file, container credentials, the
// EC2 instance metadata service.
type S3Config struct {
	// Endpoint is the store's URL; "" is AWS. https:// unless it says
	// http:// (a test server). A custom endpoint gets path-style
	// requests, AWS virtual-host ones.
	Endpoint string
	Region   string
	// RetryFor is how long a request failing with a 5xx, 503 SlowDown or
	// a reset connection is retried, with jittered exponential backoff
	// (CBFS_S3_RETRY_FOR, default 3m).
	RetryFor time.Duration
	// PartSize and Parts: an upload holds at most Parts parts of PartSize
	// bytes in memory (CBFS_S3_PART_SIZE, default 16 MiB, at least 5 MiB;
	// CBFS_S3_PARTS, default 2: one part filling while the other goes
	// up. Each part in flight costs its buffer and about 9 MB more of the
	// client's (measured: 2 x 16 MiB 68.4-68.7 MB peak RSS for an import
	// of 256 MB whose local import takes 21 MB; 3 x 16 MiB 93.9; 4 x 8 MiB
	// 86.0), and an upload must stay within 64 MB of a local one. On a
	// link with a long round trip more parts in flight go faster.)
	PartSize int64
	Parts    int
	// TailRead is the most of an object's end its opening GET reads (1
	// MiB): an archive's footer and summary, usually all of it. It reads
	// less once the archives opened show they need less (S3.tailRead).
	TailRead int64
}

// EndpointFlag is --endpoint, which overrides the environment.
var EndpointFlag string

// ConfigError is a setting in the environment that cbfs cannot use: the
// command's input is wrong, like a bad flag.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// ErrNotObject is a location that names a prefix where an object is
// needed.
var ErrNotObject = errors.New("a prefix, not an object: give the object's full key")

// S3ConfigFromEnv reads the configuration from the environment.
func S3ConfigFromEnv() (S3Config, error) {
	c := S3Config{Region: os.Getenv("AWS_REGION"), RetryFor: 3 * time.Minute, PartSize: 16 << 20, Parts: 2, TailRead: 1 << 20}
	if c.Region == "" {
		c.Region = os.Getenv("AWS_DEFAULT_REGION")
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	c.Endpoint = EndpointFlag
	for _, v := range []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"} {
		if c.Endpoint == "" {
			c.Endpoint = os.Getenv(v)
		}
	}
	if v := os.Getenv("CBFS_S3_RETRY_FOR"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return c, &ConfigError{fmt.Errorf("CBFS_S3_RETRY_FOR=%q: want a duration such as 3m", v)}
		}
		c.RetryFor = d
	}
	if v := os.Getenv("CBFS_S3_PART_SIZE"); v != "" {
		n, err := ParseSize(v)
		if err != nil || n < 5<<20 || n > 5<<30 {
			return c, &ConfigError{fmt.Errorf("CBFS_S3_PART_SIZE=%q: want a size from 5MiB to 5GiB, such as 16MiB", v)}
		}
		c.PartSize = n
	}
	if v := os.Getenv("CBFS_S3_PARTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 64 {
			return c, &ConfigError{fmt.Errorf("CBFS_S3_PARTS=%q: want 1 to 64", v)}
		}
		c.Parts = n
	}
	return c, nil
}

// S3 is a client of one S3-compatible store.
type S3 struct {
	core  minio.Core
	cfg   S3Config
	creds *credChain
	// tailNeed is the longest end an opened object needed (see tailRead).
	tailNeed atomic.Int64
}

var (
	defaultOnce sync.Once
	defaultS3   *S3
	defaultErr  error
)

// DefaultS3 is the client the environment (and --endpoint) configure,
// made on first use.
func DefaultS3() (*S3, error) {
	defaultOnce.Do(func() {
		cfg, err := S3ConfigFromEnv()
		if err != nil {
			defaultErr = err
			return
		}
		defaultS3, defaultErr = NewS3(cfg)
	})
	return defaultS3, defaultErr
}

// NewS3 makes a client.
func NewS3(cfg S3Config) (*S3, error) {
	host, secure, lookup := "s3."+cfg.Region+".amazonaws.com", true, minio.BucketLookupDNS
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			// The endpoint is named without any user:password in it.
			return nil, fmt.Errorf("S3 endpoint %q: want a URL such as https://s3.example.com:9000", redactURL(cfg.Endpoint))
		}
		host, secure, lookup = u.Host, u.Scheme == "https", minio.BucketLookupPath
	}
	chain := newCredChain(cfg.Region)
	creds := credentials.New(chain)
	base, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, err
	}
	base.MaxIdleConnsPerHost = 256
	c, err := minio.New(host, &minio.Options{
		Creds: creds, Secure: secure, Region: cfg.Region, BucketLookup: lookup,
		Transport:  countingTransport{base},
		MaxRetries: 1, // retried here, for as long as RetryFor says
	})
	if err != nil {
		return nil, fmt.Errorf("S3 endpoint %s: %v", host, err)
	}
	return &S3{core: minio.Core{Client: c}, cfg: cfg, creds: chain}, nil
}

func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		u.User = nil
		return u.String()
	}
	return s
}

// Config is the client's configuration.
func (s *S3) Config() S3Config { return s.cfg }

// RequestStats counts the requests made to object stores, by kind.
type RequestStats struct {
	Get    int64 `json:"get"`
	List   int64 `json:"list"`
	Head   int64 `json:"head"`
	Put    int64 `json:"put"`
	Post   int64 `json:"post"`
	Delete int64 `json:"delete"`
	Total  int64 `json:"total"`
}

var reqGet, reqList, reqHead, reqPut, reqPost, reqDelete atomic.Int64

// Requests says how many requests this process made to object stores.
func Requests() RequestStats {
	r := RequestStats{Get: reqGet.Load(), List: reqList.Load(), Head: reqHead.Load(), Put: reqPut.Load(),
		Post: reqPost.Load(), Delete: reqDelete.Load()}
	r.Total = r.Get + r.List + r.Head + r.Put + r.Post + r.Delete
	return r
}

type countingTransport struct{ base http.RoundTripper }

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	switch q := r.URL.Query(); {
	case r.Method == http.MethodGet && (q.Has("list-type") || q.Has("uploads") || q.Has("uploadId") || q.Has("location")):
		reqList.Add(1)
	case r.Method == http.MethodGet:
		reqGet.Add(1)
	case r.Method == http.MethodHead:
		reqHead.Add(1)
	case r.Method == http.MethodPut:
		reqPut.Add(1)
	case r.Method == http.MethodPost:
		reqPost.Add(1)
	case r.Method == http.MethodDelete:
		reqDelete.Add(1)
	}
	return t.base.RoundTrip(r)
}

// Bucket is one bucket of the store, as a Store.
func (s *S3) Bucket(name string) *S3Bucket { return &S3Bucket{s: s, bucket: name} }

// S3Bucket is a bucket as a Store: names are keys.
type S3Bucket struct {
	s      *S3
	bucket string
}

// URL is how messages name a key: s3://BUCKET/KEY.
func (b *S3Bucket) URL(key string) string { return "s3://" + b.bucket + "/" + key }

// retryable says whether a failed request may succeed if tried again: a
// 5xx, 429, 503 SlowDown, a reset or dropped connection.
func retryable(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		switch er.Code {
		case "SlowDown", "SlowDownRead", "SlowDownWrite", "InternalError", "ServiceUnavailable", "RequestTimeout",
			"Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestThrottled", "RequestTimeTooSkewed":
			return true
		}
		return er.StatusCode >= 500 || er.StatusCode == 429 || er.StatusCode == 408
	}
	// A name that does not resolve, a TLS or certificate failure, an
	// HTTP answer to an HTTPS request: no retry will mend them (every
	// *url.Error is a net.Error, so only timeouts are taken from it).
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.IsTemporary || dns.IsTimeout
	}
	var ne net.Error
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.As(err, &ne) && ne.Timeout()
}

// refusedFor is how long a refused connection is retried: a store
// restarting comes back within seconds; an endpoint with nothing
// listening should be said at once, not after RetryFor.
const refusedFor = 10 * time.Second

// retry runs op until it succeeds, fails for good, or failed retryably
// for longer than RetryFor, waiting between tries a random time up to an
// exponentially growing cap (full jitter).
func (s *S3) retry(ctx context.Context, op func() error) error {
	start := time.Now()
	for n := 0; ; n++ {
		err := op()
		limit := s.cfg.RetryFor
		if errors.Is(err, syscall.ECONNREFUSED) {
			limit = min(refusedFor, limit)
		}
		if !retryable(ctx, err) || time.Since(start) >= limit {
			if err != nil && n > 0 && retryable(ctx, err) {
				err = fmt.Errorf("%w (still failing after %d tries in %s)", err, n+1, time.Since(start).Round(time.Second))
			}
			return err
		}
		capd := min(10*time.Second, 50*time.Millisecond<<min(n, 10))
		wait := min(time.Duration(rand.Int64N(int64(capd)+1)), limit-time.Since(start))
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(max(wait, 0)):
		}
	}
}

// s3Err makes an error of the store name its object, and says what a
// missing one is; no request headers (and so no secrets) are in it.
func (b *S3Bucket) s3Err(op, key string, err error) error {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		switch er.Code {
		case "NoSuchKey":
			err = noObject{"object"}
		case "NoSuchBucket":
			err = noObject{"bucket"}
		case "PreconditionFailed", "ConditionalRequestConflict":
			err = ErrChanged
		case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "XAdminUserNotFound":
			err = fmt.Errorf("%s (%s; credentials: %s): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the role", er.Message, er.Code, b.s.creds.Source())
		default:
			if er.Message != "" {
				err = fmt.Errorf("%s (%s, HTTP %d)", er.Message, er.Code, er.StatusCode)
			}
		}
	}
	return &os.PathError{Op: op, Path: b.URL(key), Err: err}
}

// Stat heads the object.
func (b *S3Bucket) Stat(ctx context.Context, key string) (Info, error) {
	var oi minio.ObjectInfo
	err := b.s.retry(ctx, func() (err error) {
		oi, err = b.s.core.StatObject(ctx, b.bucket, key, minio.StatObjectOptions{})
		return err
	})
	if err != nil {
		return Info{}, b.s3Err("stat", key, err)
	}
	return Info{Name: key, Size: oi.Size, ETag: strings.Trim(oi.ETag, `"`)}, nil
}

// List lists every object under prefix, recursively, 1,000 keys a page.
// Keys ending in '/' (folder markers) are left out.
// AnyUnder says whether some object's key starts with prefix: one LIST of
// one key.
func (b *S3Bucket) AnyUnder(ctx context.Context, prefix string) (bool, error) {
	var res minio.ListBucketV2Result
	err := b.s.retry(ctx, func() (err error) {
		res, err = b.s.core.ListObjectsV2(b.bucket, prefix, "", "", "", 1)
		return err
	})
	if err != nil {
		return false, b.s3Err("list", prefix, err)
	}
	return len(res.Contents) > 0, nil
}

func (b *S3Bucket) List(ctx context.Context, prefix string) ([]Info, error) {
	var out []Info
	token := ""
	for {
		var res minio.ListBucketV2Result
		err := b.s.retry(ctx, func() (err error) {
			res, err = b.s.core.ListObjectsV2(b.bucket, prefix, "", token, "", 1000)
			return err
		})
		if err != nil {
			return nil, b.s3Err("list", prefix, err)
		}
		for _, o := range res.Contents {
			if !strings.HasSuffix(o.Key, "/") {
				out = append(out, Info{Name: o.Key, Size: o.Size, ETag: strings.Trim(o.ETag, `"`)})
			}
		}
		if !res.IsTruncated || res.NextContinuationToken == "" {
			return out, nil
		}
		token = res.NextContinuationToken
	}
}

// ListUploads lists the keys under prefix with multipart uploads started
// and neither completed nor aborted: what an interrupted upload must not
// leave.
func (b *S3Bucket) ListUploads(ctx context.Context, prefix string) ([]string, error) {
	res, err := b.s.core.ListMultipartUploads(ctx, b.bucket, prefix, "", "", "", 1000)
	if err != nil {
		return nil, b.s3Err("list uploads", prefix, err)
	}
	var out []string
	for _, u := range res.Uploads {
		out = append(out, u.Key)
	}
	return out, nil
}

// Delete removes an object.
func (b *S3Bucket) Delete(ctx context.Context, key string) error {
	err := b.s.retry(ctx, func() error {
		return b.s.core.RemoveObject(ctx, b.bucket, key, minio.RemoveObjectOptions{})
	})
	if err != nil {
		return b.s3Err("delete", key, err)
	}
	return nil
}

// Put writes a small object whole, conditionally as opt says.
func (b *S3Bucket) Put(ctx context.Context, key string, data []byte, opt CreateOptions) error {
	err := b.s.retry(ctx, func() error {
		_, err := b.s.core.PutObject(ctx, b.bucket, key, strings.NewReader(string(data)), int64(len(data)), "", "", putOptions(opt))
		return err
	})
	if err != nil {
		return b.s3Err("write", key, err)
	}
	return nil
}

func putOptions(opt CreateOptions) minio.PutObjectOptions {
	var po minio.PutObjectOptions
	po.ContentType = "application/octet-stream"
	switch {
	case opt.IfMatch != "":
		po.SetMatchETag(opt.IfMatch)
	case !opt.Replace:
		po.SetMatchETagExcept("*")
	}
	return po
}

// ProbeConditionalWrites says whether the store honours If-None-Match: *
// on a write: it writes a probe object beside key twice, the second time
// conditionally, which such a store refuses, then removes it.
func (b *S3Bucket) ProbeConditionalWrites(ctx context.Context, key string) (bool, error) {
	// A dot name beside the index, as its lock file and sequence
	// reservations: a writer killed before removing it leaves nothing
	// that a listing of the prefix takes for an archive.
	dir, base := "", key
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		dir, base = key[:i+1], key[i+1:]
	}
	probe := dir + "." + base + ".probe-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := b.Put(ctx, probe, []byte("probe"), CreateOptions{Replace: true}); err != nil {
		return false, err
	}
	defer b.Delete(context.WithoutCancel(ctx), probe)
	err := b.Put(ctx, probe, []byte("probe2"), CreateOptions{})
	switch {
	case errors.Is(err, ErrChanged):
		return true, nil
	case err == nil:
		return false, nil
	}
	return false, err
}
