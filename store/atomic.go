// Package store is where archive and index bytes live. Today: local
// files, written to a temporary file and renamed into place only when
// complete (AtomicFile), never replacing a file unless asked to.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// AtomicFile is an output that appears under its name only once it is
// complete: it is written to a temporary file beside the name, synced,
// then linked (or, when an existing file may be replaced, renamed) into
// place, and the directory is synced so that the new name survives a
// crash. Abort, or the cancellation of the context given to AbortOn,
// removes the temporary file: a command stopped half way leaves nothing.
type AtomicFile struct {
	*os.File // the temporary file
	path     string
	replace  bool
	direct   bool // a character device or a pipe, written as it is
	// BeforeRename, if set, runs after the temporary file is synced and
	// before it is put in place; an error aborts the commit. An index
	// update checks there that the index was not replaced meanwhile.
	BeforeRename func() error

	flush *flusher // nil for a direct output

	mu   sync.Mutex
	done bool            // committed or aborted
	ctx  context.Context // set by AbortOn
	stop func() bool     // stops AbortOn's callback
}

// interrupted counts the outputs aborted by a cancelled context; armed
// those under AbortOn not yet committed or aborted.
var interrupted, armed atomic.Int64

// WaitOutputs waits, up to timeout, until every output under AbortOn is
// committed or aborted: a process exiting on a signal calls it so that
// the aborts its cancellation started have removed their files.
func WaitOutputs(timeout time.Duration) {
	for end := time.Now().Add(timeout); armed.Load() > 0 && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
}

// Interrupted says how many outputs the cancellation of their context
// aborted: what a command stopped by a signal reports.
func Interrupted() int { return int(interrupted.Load()) }

// CreateAtomic starts an output at path. With replace unset, Commit fails
// if a file of that name exists by then. A path that is a character device
// or a named pipe (/dev/null, a FIFO), or a symlink to one, is written
// directly: renaming a file over it would replace the device node itself.
// Any other existing file that is not a regular file is refused.
func CreateAtomic(path string, replace bool) (*AtomicFile, error) {
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		if st.Mode()&(fs.ModeCharDevice|fs.ModeNamedPipe) == 0 {
			return nil, fmt.Errorf("%s: not a regular file, a character device or a pipe", path)
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		return &AtomicFile{File: f, path: path, direct: true}, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // it names the temporary file, not the output
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &AtomicFile{File: tmp, path: path, replace: replace, flush: newFlusher(tmp)}, nil
}

// Write writes to the temporary file, and flushes it to the device as it
// goes (on Linux: writeback started every 8 MiB, fdatasync every 16 MiB
// on another goroutine), so that Commit's sync waits for the last bytes
// only. One goroutine at a time may write.
func (f *AtomicFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	if f.flush != nil {
		f.flush.wrote(n)
	}
	return n, err
}

// ReadFrom copies r to the file through Write: os.File's own would write
// around the flushing.
func (f *AtomicFile) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{f}, r)
}

// AbortOn aborts the output when ctx is cancelled before Commit: a signal
// that cancels the command's context removes its unfinished outputs at
// once, even while the command is still blocked reading its input.
func (f *AtomicFile) AbortOn(ctx context.Context) {
	if f.direct {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ctx = ctx
	armed.Add(1)
	f.stop = context.AfterFunc(ctx, func() { f.abort(true) })
}

// Commit syncs and closes the temporary file and puts it in place. On
// failure nothing is left behind.
func (f *AtomicFile) Commit() error {
	if f.direct {
		return f.Close()
	}
	f.mu.Lock()
	aborted, ctx := f.done, f.ctx
	f.mu.Unlock()
	if aborted && ctx != nil && context.Cause(ctx) != nil {
		return fmt.Errorf("%s: %w", f.path, context.Cause(ctx))
	}
	err := f.flush.stop()
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && f.BeforeRename != nil {
		err = f.BeforeRename()
	}
	if err != nil {
		f.Abort()
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done { // aborted meanwhile: by AbortOn's context, or by Abort
		if f.ctx != nil && context.Cause(f.ctx) != nil {
			return fmt.Errorf("%s: %w", f.path, context.Cause(f.ctx))
		}
		return fmt.Errorf("%s: the output was aborted", f.path)
	}
	if f.stop != nil && !f.stop() {
		return fmt.Errorf("%s: %w", f.path, context.Cause(f.ctx))
	}
	f.done = true
	if f.stop != nil {
		defer armed.Add(-1)
	}
	tmp := f.Name()
	if f.replace {
		err = os.Rename(tmp, f.path)
	} else {
		// link(2) refuses to replace a file created meanwhile.
		if err = os.Link(tmp, f.path); errors.Is(err, fs.ErrExist) {
			err = fmt.Errorf("%s: %w", f.path, fs.ErrExist)
		}
		if rerr := os.Remove(tmp); err == nil {
			err = rerr
		}
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(f.path))
}

// Abort closes and removes the temporary file.
func (f *AtomicFile) Abort() { f.abort(false) }

// abort says whether it removed the file (false: committed or aborted
// already). One aborted once its context is cancelled counts as
// interrupted, before WaitOutputs can see it done.
func (f *AtomicFile) abort(byCancel bool) bool {
	if f.direct {
		f.Close()
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return false
	}
	f.done = true
	if f.stop != nil {
		f.stop()
		defer armed.Add(-1) // after the file is gone
	}
	f.flush.cancel()
	f.Close()
	removed := os.Remove(f.Name()) == nil
	// Aborted because the command's context was cancelled, by the
	// callback or by the command that stopped on it first.
	if removed && (byCancel || f.ctx != nil && f.ctx.Err() != nil) {
		interrupted.Add(1)
	}
	return removed
}

// syncDir makes a rename or link in dir durable: without it, a crash can
// lose the new name although the file's data were synced. File systems
// that cannot sync a directory (EINVAL) are left as they are.
// SyncDir makes a directory's entries durable: after a rename into it
// or a removal from it.
func SyncDir(dir string) error { return syncDir(dir) }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("%s: sync: %w", dir, err)
	}
	return nil
}
