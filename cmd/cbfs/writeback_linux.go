package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// writebackWindow is how many written bytes may wait in the page cache
// before their writeback is started.
const writebackWindow = 8 << 20

// writeback starts the kernel writing out what has been written to f so
// far, every writebackWindow bytes, without waiting for it: the fsync
// before the output is renamed into place then waits for the last window
// only, instead of for the whole file after the work is done.
type writeback struct {
	f            *os.File
	off, started int64
}

func (w *writeback) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.started >= writebackWindow {
		// Advisory: an error here only means the fsync does all the work.
		_ = unix.SyncFileRange(int(w.f.Fd()), w.started, w.off-w.started, unix.SYNC_FILE_RANGE_WRITE)
		w.started = w.off
	}
	return n, err
}
