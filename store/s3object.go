package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/minio/minio-go/v7"
)

// s3Object is an object opened for reading at offsets. Opening it costs
// one GET: a suffix range of its last bytes (S3.tailRead), whose Content-Range
// gives the size (no HEAD). Those bytes are kept: an archive's footer and
// summary, and for most archives the header too, are read from them.
// Other reads fetch a block (64 KiB at the head, 4 MiB elsewhere, or the
// read's own size when larger) and keep the last two.
type s3Object struct {
	b    *S3Bucket
	key  string
	ctx  context.Context
	size int64
	etag string
	gets atomic.Int64 // GET requests made for it, retries included

	mu     sync.Mutex
	tail   block
	blocks []block // most recently used last
}

type block struct {
	off  int64
	data []byte
}

func (k block) has(pos int64) bool { return pos >= k.off && pos < k.off+int64(len(k.data)) }

// tailRead is the length of the suffix an opening GET asks for: what
// the archives opened so far needed at their end (footer, summary and
// the padding between), with a quarter to spare, from minTailRead up to
// TailRead. Archives of one file system are much alike, so after the
// first few nearly every opening is one GET that fetches little more
// than it needs, where a fixed 1 MiB would fetch whole small objects and
// a megabyte of content of large ones.
func (s *S3) tailRead() int64 {
	most := min(max(s.cfg.TailRead, 1), maxTailRead)
	return min(max(s.tailNeed.Load(), minTailRead), most)
}

// learnTail records that an object of size needed its bytes from pos on
// at its end.
func (s *S3) learnTail(size, pos int64) {
	most := min(max(s.cfg.TailRead, 1), maxTailRead)
	need := size - pos
	if need > most {
		return // a read of the content, not of the end
	}
	want := min((need+need/4+tailUnit-1)/tailUnit*tailUnit, most)
	for {
		old := s.tailNeed.Load()
		if old >= want || s.tailNeed.CompareAndSwap(old, want) {
			return
		}
	}
}

const (
	// minTailRead holds the end of an archive with one summary frame of
	// the default chunk size (64 KiB + 44 bytes), its footer record and
	// end blocks, and what format.OpenArchive reads to find the footer.
	minTailRead = 128 << 10
	tailUnit    = 64 << 10
	headBlock   = 64 << 10
	readBlock   = 4 << 20
	keptBlocks  = 2
	maxTailRead = 64 << 20
)

// Open opens the object at key.
func (b *S3Bucket) Open(ctx context.Context, key string) (Object, error) {
	if key == "" {
		return nil, &fs.PathError{Op: "open", Path: b.URL(key), Err: fmt.Errorf("a bucket, not an object: give s3://%s/KEY, or s3://%s/PREFIX/ where archives are taken", b.bucket, b.bucket)}
	}
	if strings.HasSuffix(key, "/") {
		return nil, &fs.PathError{Op: "open", Path: b.URL(key), Err: errors.New("a prefix, not an object")}
	}
	o := &s3Object{b: b, key: key, ctx: ctx}
	var opts minio.GetObjectOptions
	tail := b.s.tailRead()
	// A suffix range is SetRange(0, -N): bytes=-N. Its error is checked:
	// a range not set would silently be a GET of the whole object.
	if err := opts.SetRange(0, -tail); err != nil {
		return nil, b.s3Err("open", key, err)
	}
	err := b.s.retry(ctx, func() error {
		o.gets.Add(1)
		rc, info, hdr, err := b.s.core.GetObject(ctx, b.bucket, key, opts)
		if err != nil {
			return err
		}
		defer rc.Close()
		data, err := io.ReadAll(io.LimitReader(rc, tail+1))
		if err != nil {
			return err
		}
		size := int64(len(data))
		if cr := hdr.Get("Content-Range"); cr != "" {
			if size, err = contentRangeSize(cr, int64(len(data))); err != nil {
				return err
			}
		} else if int64(len(data)) > tail {
			return errors.New("the store ignored the Range header and sent the whole object")
		}
		o.size, o.etag, o.tail = size, strings.Trim(info.ETag, `"`), block{off: size - int64(len(data)), data: data}
		return nil
	})
	var er minio.ErrorResponse
	if errors.As(err, &er) && er.Code == "InvalidRange" {
		// An empty object has no last bytes, and some stores refuse a
		// suffix range longer than the object: it is read whole.
		err = b.s.retry(ctx, func() error {
			o.gets.Add(1)
			rc, info, _, err := b.s.core.GetObject(ctx, b.bucket, key, minio.GetObjectOptions{})
			if err != nil {
				return err
			}
			defer rc.Close()
			data, err := io.ReadAll(io.LimitReader(rc, tail+1))
			if err == nil && int64(len(data)) > tail {
				err = fmt.Errorf("the store refused the range bytes=-%d of an object larger than that", tail)
			}
			o.size, o.etag, o.tail = int64(len(data)), strings.Trim(info.ETag, `"`), block{data: data}
			return err
		})
	}
	if err != nil {
		err = b.s3Err("open", key, err)
		if errors.Is(err, fs.ErrNotExist) {
			// A prefix given without its '/': say so.
			var pe *fs.PathError
			if any, _ := b.AnyUnder(ctx, key+"/"); any && errors.As(err, &pe) {
				pe.Err = fmt.Errorf("%w (objects are under %s: give the prefix with its trailing '/')", pe.Err, b.URL(key+"/"))
			}
		}
		return nil, err
	}
	return o, nil
}

// contentRangeSize reads the object size from "bytes FIRST-LAST/SIZE",
// checking that the range is the last n bytes.
func contentRangeSize(cr string, n int64) (int64, error) {
	rng, total, ok := strings.Cut(strings.TrimPrefix(cr, "bytes "), "/")
	size, err := strconv.ParseInt(total, 10, 64)
	first, last, ok2 := strings.Cut(rng, "-")
	f, err1 := strconv.ParseInt(first, 10, 64)
	l, err2 := strconv.ParseInt(last, 10, 64)
	if !ok || !ok2 || err != nil || err1 != nil || err2 != nil || l != size-1 || l-f+1 != n {
		return 0, fmt.Errorf("unexpected Content-Range %q for %d bytes", cr, n)
	}
	return size, nil
}

func (o *s3Object) Size() int64  { return o.size }
func (o *s3Object) Close() error { return nil }

// ETag is the object's version tag as read.
func (o *s3Object) ETag() string { return o.etag }

// URL names the object.
func (o *s3Object) URL() string { return o.b.URL(o.key) }

func (o *s3Object) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: negative offset", o.URL())
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for n < len(p) && off+int64(n) < o.size {
		pos := off + int64(n)
		if k := o.cached(pos); k != nil {
			n += copy(p[n:], k.data[pos-k.off:])
			continue
		}
		end := o.size
		if pos < o.tail.off {
			end = o.tail.off // what follows is kept already
			o.b.s.learnTail(o.size, pos)
		}
		if want := int64(len(p) - n); want >= readBlock {
			// A large read is read into p as it is.
			end = min(end, pos+want)
			if err := o.get(p[n:n+int(end-pos)], pos); err != nil {
				return n, err
			}
			n += int(end - pos)
			continue
		}
		// Blocks end on 4 MiB boundaries (and start on them unless
		// what precedes is kept): readers of the object that walk it
		// in order find each other's blocks.
		start, a := pos, pos-pos%readBlock
		if pos < headBlock && len(o.blocks) == 0 {
			end = min(end, headBlock)
		} else {
			if o.cached(a) == nil {
				start = a
			}
			end = min(end, a+readBlock)
		}
		buf := make([]byte, end-start)
		if err := o.get(buf, start); err != nil {
			return n, err
		}
		if len(o.blocks) == keptBlocks {
			o.blocks = append(o.blocks[:0], o.blocks[1:]...)
		}
		o.blocks = append(o.blocks, block{off: start, data: buf})
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (o *s3Object) cached(pos int64) *block {
	if o.tail.has(pos) {
		return &o.tail
	}
	for i := range o.blocks {
		if o.blocks[i].has(pos) {
			k := o.blocks[i]
			o.blocks = append(append(o.blocks[:i:i], o.blocks[i+1:]...), k)
			return &o.blocks[len(o.blocks)-1]
		}
	}
	return nil
}

// get reads len(p) bytes at off in one ranged GET, retried; the object
// must still be the one opened (If-Match on its ETag).
func (o *s3Object) get(p []byte, off int64) error {
	var opts minio.GetObjectOptions
	if err := opts.SetRange(off, off+int64(len(p))-1); err != nil {
		return o.b.s3Err("read", o.key, err)
	}
	if o.etag != "" {
		if err := opts.SetMatchETag(o.etag); err != nil {
			return o.b.s3Err("read", o.key, err)
		}
	}
	err := o.b.s.retry(o.ctx, func() error {
		o.gets.Add(1)
		rc, _, _, err := o.b.s.core.GetObject(o.ctx, o.b.bucket, o.key, opts)
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.ReadFull(rc, p)
		return err
	})
	if err != nil {
		return o.b.s3Err("read", o.key, err)
	}
	return nil
}

// stream reads the object from off to its end in one GET, resumed where
// it broke off when the connection fails.
func (o *s3Object) stream(off int64) io.ReadCloser {
	return &s3Stream{o: o, pos: off, end: o.size}
}

// ReadRange reads the n bytes at off in order (format.RangeReader: how an
// archive's summary larger than a read window is read): what the opening
// GET holds already is copied from it, the rest read in one GET as it is
// consumed (resumed where it broke off when the connection fails). So a
// summary costs no GET when the opening one read it, and one otherwise,
// whatever its size, in the memory of a read buffer.
func (o *s3Object) ReadRange(off, n int64) (io.ReadCloser, error) {
	if off < 0 || n < 0 || off+n > o.size {
		return nil, fmt.Errorf("%s: range of %d bytes at %d outside the object's %d", o.URL(), n, off, o.size)
	}
	end := off + n
	o.mu.Lock()
	tail := o.tail
	o.mu.Unlock()
	s := &s3Stream{o: o, pos: off, end: min(end, tail.off)}
	var rs []io.Reader
	if s.pos < s.end {
		rs = append(rs, s)
	}
	if end > tail.off {
		rs = append(rs, bytes.NewReader(tail.data[max(off, tail.off)-tail.off:end-tail.off]))
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(rs...), s}, nil
}

// An object is a format.RangeReader (store does not import format).
var _ interface {
	ReadRange(off, n int64) (io.ReadCloser, error)
} = (*s3Object)(nil)

// s3Stream reads [pos, end) of an object in one GET.
type s3Stream struct {
	o        *s3Object
	pos, end int64
	rc       io.ReadCloser
}

func (s *s3Stream) Read(p []byte) (int, error) {
	if s.pos >= s.end {
		return 0, io.EOF
	}
	for tries := 0; ; tries++ {
		if s.rc == nil {
			var opts minio.GetObjectOptions
			if err := opts.SetRange(s.pos, s.end-1); err != nil {
				return 0, s.o.b.s3Err("read", s.o.key, err)
			}
			if s.o.etag != "" {
				if err := opts.SetMatchETag(s.o.etag); err != nil {
					return 0, s.o.b.s3Err("read", s.o.key, err)
				}
			}
			err := s.o.b.s.retry(s.o.ctx, func() (err error) {
				s.o.gets.Add(1)
				s.rc, _, _, err = s.o.b.s.core.GetObject(s.o.ctx, s.o.b.bucket, s.o.key, opts)
				return err
			})
			if err != nil {
				return 0, s.o.b.s3Err("read", s.o.key, err)
			}
		}
		n, err := s.rc.Read(p[:min(int64(len(p)), s.end-s.pos)])
		s.pos += int64(n)
		if err == io.EOF && s.pos < s.end {
			err = io.ErrUnexpectedEOF
		}
		if err != nil && err != io.EOF && retryable(s.o.ctx, err) && tries < 20 && n == 0 {
			s.rc.Close()
			s.rc = nil
			continue // reopened at pos
		}
		if err == io.EOF || (err == nil && s.pos >= s.end) {
			return n, nil
		}
		if err != nil && n == 0 {
			return 0, s.o.b.s3Err("read", s.o.key, err)
		}
		return n, nil
	}
}

func (s *s3Stream) Close() error {
	if s.rc != nil {
		return s.rc.Close()
	}
	return nil
}

// Stream reads obj from off to its end: in one GET from an object store
// (resumed if the connection breaks), by offsets otherwise.
func Stream(obj Object, off int64) io.ReadCloser {
	if o, ok := obj.(*s3Object); ok {
		return o.stream(off)
	}
	return io.NopCloser(io.NewSectionReader(obj, off, obj.Size()-off))
}

// RequestsOf says how many GET requests reading obj took (0 for a local
// file).
func RequestsOf(obj Object) int64 {
	if o, ok := obj.(*s3Object); ok {
		return o.gets.Load()
	}
	return 0
}

// ETag is the ETag an object of a store was read with ("" locally).
func ETag(obj Object) string {
	if o, ok := obj.(*s3Object); ok {
		return o.etag
	}
	return ""
}
