package store

import (
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Written bytes wait in the page cache for at most writebackWindow before
// their writeback is started, and for at most flushWindow before they are
// flushed to the device.
const (
	writebackWindow = 8 << 20
	flushWindow     = 16 << 20
)

// flusher keeps the sync before an output's rename short: it starts the
// kernel's writeback every writebackWindow bytes (sync_file_range, which
// does not wait), and every flushWindow bytes it asks a goroutine of its
// own to fdatasync the file, which waits for the device, beside the
// writer's work. Writeback alone leaves the device's cache to flush
// (on a virtual disk, the host's) for the final sync: for 125 MB, 50-75
// ms with nothing else to do; flushed as it goes, the final sync covers
// the last window only. 16 MiB rather than 32: the final sync of an
// import waits for half as much (9-10 ms against 17-18), and the more
// frequent flushes run beside the work (import of the Go tree, ten
// interleaved runs on an idle machine: median 0.33 s against 0.345).
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
		spareProc(+1)
		err := rc.Control(func(fd uintptr) { serr = unix.Fdatasync(int(fd)) })
		spareProc(-1)
		if err != nil {
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

// A goroutine in a system call keeps its P (its right to run Go code)
// until the runtime's monitor takes it back, which for a long call comes
// 10-20 ms into it: through each fdatasync (10-20 ms for 32 MiB here) one
// of two cores' worth of the writer's goroutines would wait (go tool
// trace of an import: 1.0 goroutines running during a flush, 1.6-1.9
// outside). spareProc(+1) raises GOMAXPROCS by one for the length of a
// flush, spareProc(-1) puts it back once no flush is under way: the
// other goroutines keep every core while the flushing thread waits for
// the device.
var spare struct {
	sync.Mutex
	n, prev int
}

func spareProc(d int) {
	spare.Lock()
	defer spare.Unlock()
	switch spare.n += d; {
	case d > 0 && spare.n == 1:
		spare.prev = runtime.GOMAXPROCS(0)
		runtime.GOMAXPROCS(spare.prev + 1)
	case d < 0 && spare.n == 0:
		runtime.GOMAXPROCS(spare.prev)
	}
}
