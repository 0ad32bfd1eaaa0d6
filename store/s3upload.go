package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
)

// s3Upload is an output to an object store: a multipart upload whose
// parts go up as they fill, at most Parts buffers of PartSize bytes in
// memory (the one filling included). Nothing is visible under the key
// until CompleteMultipartUpload (or, for an output smaller than one part,
// the single PUT) succeeds; an error, Abort or the cancellation of the
// context given to AbortOn aborts the upload, removing its parts.
type s3Upload struct {
	b   *S3Bucket
	key string
	opt CreateOptions

	ctx    context.Context // the upload's own requests
	cancel context.CancelFunc

	buf   []byte      // the part filling
	free  chan []byte // buffers back from uploaded parts
	bufs  int         // buffers made
	wg    sync.WaitGroup
	id    string // the multipart upload, once started
	parts []minio.CompletePart

	mu    sync.Mutex
	err   error // the first failure of a part
	done  bool  // committed or aborted
	stop  func() bool
	cause context.Context // set by AbortOn
}

// Create starts an upload to key. Without opt.Replace an existing object
// is refused now (a HEAD) and, where the store honours it, by a
// conditional write at the end (If-None-Match: *).
func (b *S3Bucket) Create(ctx context.Context, key string, opt CreateOptions) (Pending, error) {
	if key == "" || key[len(key)-1] == '/' {
		return nil, b.s3Err("create", key, ErrNotObject)
	}
	if !opt.Replace && opt.IfMatch == "" {
		_, err := b.Stat(ctx, key)
		switch {
		case err == nil:
			return nil, &fs.PathError{Op: "create", Path: b.URL(key), Err: fs.ErrExist}
		case !errors.Is(err, fs.ErrNotExist):
			return nil, err
		}
	}
	uctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return &s3Upload{b: b, key: key, opt: opt, ctx: uctx, cancel: cancel, free: make(chan []byte, b.s.cfg.Parts)}, nil
}

func (u *s3Upload) failed() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.err != nil {
		return u.err
	}
	if u.done {
		if u.cause != nil && context.Cause(u.cause) != nil {
			return fmt.Errorf("%s: %w", u.b.URL(u.key), context.Cause(u.cause))
		}
		return fmt.Errorf("%s: the upload was aborted", u.b.URL(u.key))
	}
	return nil
}

func (u *s3Upload) Write(p []byte) (int, error) {
	if err := u.failed(); err != nil {
		return 0, err
	}
	ps := int(u.b.s.cfg.PartSize)
	n := 0
	for n < len(p) {
		if u.buf == nil {
			if err := u.nextBuf(); err != nil {
				return n, err
			}
		}
		k := min(len(p)-n, ps-len(u.buf))
		if len(u.buf)+k > cap(u.buf) {
			// The first buffer, grown once to a whole part: append's
			// growth would overshoot it and leave copies behind.
			u.buf = append(make([]byte, 0, ps), u.buf...)
		}
		u.buf = append(u.buf, p[n:n+k]...)
		n += k
		if len(u.buf) == ps {
			if err := u.sendPart(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// nextBuf takes a free buffer, or makes one while fewer than Parts
// exist, or waits for a part in flight to finish.
func (u *s3Upload) nextBuf() error {
	select {
	case b := <-u.free:
		u.buf = b[:0]
		return nil
	default:
	}
	if u.bufs < u.b.s.cfg.Parts {
		u.bufs++
		// The first buffer grows as it fills: a small output costs its
		// own size, not a part's.
		if u.bufs == 1 {
			u.buf = make([]byte, 0, 64<<10)
		} else {
			u.buf = make([]byte, 0, u.b.s.cfg.PartSize)
		}
		return nil
	}
	select {
	case b := <-u.free:
		u.buf = b[:0]
		return nil
	case <-u.ctx.Done():
		return u.failed()
	}
}

// sendPart uploads the full buffer as the next part, in the background.
func (u *s3Upload) sendPart() error {
	if u.id == "" {
		var id string
		err := u.b.s.retry(u.ctx, func() (err error) {
			id, err = u.b.s.core.NewMultipartUpload(u.ctx, u.b.bucket, u.key, minio.PutObjectOptions{ContentType: "application/octet-stream"})
			return err
		})
		if err != nil {
			return u.fail(u.b.s3Err("upload", u.key, err))
		}
		u.mu.Lock()
		u.id = id
		aborted := u.done
		u.mu.Unlock()
		if aborted {
			// Aborted while it was being created: abort it here.
			u.b.s.core.AbortMultipartUpload(context.Background(), u.b.bucket, u.key, id)
			return u.failed()
		}
	}
	num := len(u.parts) + 1
	u.parts = append(u.parts, minio.CompletePart{PartNumber: num})
	data := u.buf
	u.buf = nil
	u.mu.Lock()
	if u.done {
		u.mu.Unlock()
		return u.failed()
	}
	u.wg.Add(1)
	u.mu.Unlock()
	go func() {
		defer u.wg.Done()
		var part minio.ObjectPart
		err := u.b.s.retry(u.ctx, func() (err error) {
			part, err = u.b.s.core.PutObjectPart(u.ctx, u.b.bucket, u.key, u.id, num, bytes.NewReader(data), int64(len(data)), minio.PutObjectPartOptions{})
			return err
		})
		if err != nil {
			u.fail(u.b.s3Err("upload", u.key, fmt.Errorf("part %d: %w", num, err)))
		} else {
			u.mu.Lock()
			u.parts[num-1].ETag = part.ETag
			u.mu.Unlock()
		}
		u.free <- data
	}()
	return u.failed()
}

func (u *s3Upload) fail(err error) error {
	u.mu.Lock()
	if u.err == nil {
		u.err = err
	}
	u.mu.Unlock()
	u.cancel()
	return err
}

// Commit uploads what is left and completes the upload, conditionally.
func (u *s3Upload) Commit() error {
	err := u.failed()
	if err == nil {
		err = u.commit()
	}
	if err != nil {
		u.Abort()
		return err
	}
	return nil
}

func (u *s3Upload) commit() error {
	opts := putOptions(u.opt)
	if u.id == "" {
		data := u.buf
		err := u.b.s.retry(u.ctx, func() error {
			_, err := u.b.s.core.PutObject(u.ctx, u.b.bucket, u.key, bytes.NewReader(data), int64(len(data)), "", "", opts)
			return err
		})
		return u.finish(err)
	}
	if len(u.buf) > 0 {
		if err := u.sendPart(); err != nil {
			return err
		}
	}
	u.wg.Wait()
	if err := u.failed(); err != nil {
		return err
	}
	u.mu.Lock()
	if u.done {
		u.mu.Unlock()
		return u.failed()
	}
	parts := append([]minio.CompletePart(nil), u.parts...)
	u.mu.Unlock()
	err := u.b.s.retry(u.ctx, func() error {
		_, err := u.b.s.core.CompleteMultipartUpload(u.ctx, u.b.bucket, u.key, u.id, parts, opts)
		return err
	})
	return u.finish(err)
}

// finish marks the upload done once its last request succeeded, or says
// why it failed.
func (u *s3Upload) finish(err error) error {
	if err != nil {
		err = u.b.s3Err("write", u.key, err)
		if errors.Is(err, ErrChanged) && u.opt.IfMatch == "" {
			// If-None-Match: * failed: an object appeared meanwhile.
			err = &fs.PathError{Op: "write", Path: u.b.URL(u.key), Err: fs.ErrExist}
		}
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return fmt.Errorf("%s: the upload was aborted", u.b.URL(u.key))
	}
	u.done = true
	if u.stop != nil {
		u.stop()
	}
	u.cancel()
	return nil
}

// Abort stops the upload and removes its parts.
func (u *s3Upload) Abort() { u.abort() }

func (u *s3Upload) abort() bool {
	u.mu.Lock()
	if u.done {
		u.mu.Unlock()
		return false
	}
	u.done = true
	aborting.Add(1)
	defer aborting.Add(-1)
	if u.cause != nil && u.cause.Err() != nil {
		// Aborted because the command was stopped, by whichever of the
		// context's callback and the command's own error path came
		// first: what a process exiting on a signal says it removed.
		interrupted.Add(1)
	}
	if u.stop != nil {
		u.stop()
	}
	u.mu.Unlock()
	u.cancel()
	u.wg.Wait()
	u.mu.Lock()
	id := u.id
	u.mu.Unlock()
	if id != "" {
		// Aborted on a context of its own: the command's may be the one
		// cancelled. Retried, so that no part is left behind.
		ctx, cancel := context.WithTimeout(context.Background(), max(u.b.s.cfg.RetryFor, 30*time.Second))
		defer cancel()
		u.b.s.retry(ctx, func() error {
			err := u.b.s.core.AbortMultipartUpload(ctx, u.b.bucket, u.key, id)
			var er minio.ErrorResponse
			if errors.As(err, &er) && er.Code == "NoSuchUpload" {
				return nil
			}
			return err
		})
	}
	return true
}

// aborting counts the aborts under way: a process exiting on a signal
// waits for them (WaitAborts), so that no upload's parts are left.
var aborting atomic.Int64

// WaitAborts waits, up to timeout, for the aborts of uploads under way.
func WaitAborts(timeout time.Duration) {
	for end := time.Now().Add(timeout); aborting.Load() > 0 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
}

// AbortOn aborts the upload when ctx is cancelled before Commit.
func (u *s3Upload) AbortOn(ctx context.Context) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.cause = ctx
	u.stop = context.AfterFunc(ctx, func() { u.abort() })
}
