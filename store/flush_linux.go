package store

import (
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Written bytes wait in the page cache for at most writebackWindow before
// their writeback is started, and for at most flushWindow before they are
// flushed to the device.
const (
	writebackWindow = 8 << 20
	flushWindow     = 32 << 20
)

// flusher keeps the sync before an output's rename short: it starts the
// kernel's writeback every writebackWindow bytes (sync_file_range, which
// does not wait), and every flushWindow bytes it asks a goroutine of its
// own to fdatasync the file, which waits for the device, beside the
// writer's work. Writeback alone leaves the device's cache to flush
// (on a virtual disk, the host's) for the final sync: for 125 MB, 50-75
// ms with nothing else to do; flushed as it goes, the final sync covers
// the last window only.
type flusher struct {
	f                    *os.File
	off, started, synced int64 // the writer's
	req                  chan struct{}
	quit                 chan struct{}
	done                 chan struct{}
	stopOnce             sync.Once
	err                  error // the first failed fdatasync; read after done
}

func newFlusher(f *os.File) *flusher {
	fl := &flusher{f: f, req: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go fl.run()
	return fl
}

func (fl *flusher) run() {
	defer close(fl.done)
	rc, err := fl.f.SyscallConn()
	if err != nil {
		return
	}
	for {
		select {
		case <-fl.quit:
			return
		case <-fl.req:
		}
		// Control holds the descriptor open while fdatasync runs, even
		// if an abort closes the file meanwhile.
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = unix.Fdatasync(int(fd)) }); err != nil {
			return // closed: aborted
		}
		if serr != nil {
			// Linux reports a writeback error to one sync only: this
			// one's is the commit's.
			fl.err = &os.PathError{Op: "fdatasync", Path: fl.f.Name(), Err: serr}
			return
		}
	}
}

// wrote counts n bytes written by the one writer.
func (fl *flusher) wrote(n int) {
	fl.off += int64(n)
	if fl.off-fl.started >= writebackWindow {
		// Advisory: an error here leaves the work to the syncs.
		_ = unix.SyncFileRange(int(fl.f.Fd()), fl.started, fl.off-fl.started, unix.SYNC_FILE_RANGE_WRITE)
		fl.started = fl.off
	}
	if fl.off-fl.synced >= flushWindow {
		fl.synced = fl.off
		select {
		case fl.req <- struct{}{}:
		default: // one is under way: the next takes these bytes too
		}
	}
}

// stop ends the goroutine, after the fdatasync under way if any, and
// returns the first error one reported; safe to call more than once.
func (fl *flusher) stop() error {
	fl.stopOnce.Do(func() { close(fl.quit) })
	<-fl.done
	return fl.err
}

// cancel ends the goroutine without waiting for it.
func (fl *flusher) cancel() { fl.stopOnce.Do(func() { close(fl.quit) }) }
