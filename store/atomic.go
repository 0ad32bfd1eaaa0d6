// Package store is where archive and index bytes live. Today: local
// files, written to a temporary file and renamed into place only when
// complete (AtomicFile), never replacing a file unless asked to.
package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// AtomicFile is an output that appears under its name only once it is
// complete: it is written to a temporary file beside the name, synced,
// then linked (or, when an existing file may be replaced, renamed) into
// place, and the directory is synced so that the new name survives a
// crash. Until then the temporary file is recorded, so that
// RemoveUnfinished can delete it when the process is interrupted.
type AtomicFile struct {
	*os.File // the temporary file
	path     string
	replace  bool
	direct   bool // a character device or a pipe, written as it is
	// BeforeRename, if set, runs after the temporary file is synced and
	// before it is put in place; an error aborts the commit. An index
	// update checks there that the index was not replaced meanwhile.
	BeforeRename func() error
}

// ErrInterrupted is returned by CreateAtomic and Commit once
// RemoveUnfinished has run: the process is on its way out.
var ErrInterrupted = errors.New("interrupted")

var unfinished struct {
	sync.Mutex
	files       map[*AtomicFile]struct{}
	interrupted bool
}

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
	unfinished.Lock()
	defer unfinished.Unlock()
	if unfinished.interrupted {
		return nil, ErrInterrupted
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // it names the temporary file, not the output
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f := &AtomicFile{File: tmp, path: path, replace: replace}
	if unfinished.files == nil {
		unfinished.files = map[*AtomicFile]struct{}{}
	}
	unfinished.files[f] = struct{}{}
	return f, nil
}

// Commit syncs and closes the temporary file and puts it in place. On
// failure nothing is left behind.
func (f *AtomicFile) Commit() error {
	if f.direct {
		return f.Close()
	}
	err := f.Sync()
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
	unfinished.Lock()
	defer unfinished.Unlock()
	if unfinished.interrupted {
		return ErrInterrupted // RemoveUnfinished took the file
	}
	delete(unfinished.files, f)
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
func (f *AtomicFile) Abort() {
	if f.direct {
		f.Close()
		return
	}
	unfinished.Lock()
	defer unfinished.Unlock()
	f.Close()
	if _, ok := unfinished.files[f]; ok {
		delete(unfinished.files, f)
		os.Remove(f.Name())
	}
}

// RemoveUnfinished removes every temporary file of an output not yet
// committed, and makes later CreateAtomic and Commit calls fail: what a
// process does when interrupted, before it exits. It returns how many it
// removed.
func RemoveUnfinished() int {
	unfinished.Lock()
	defer unfinished.Unlock()
	unfinished.interrupted = true
	n := 0
	for f := range unfinished.files {
		if os.Remove(f.Name()) == nil {
			n++
		}
	}
	clear(unfinished.files)
	return n
}

// syncDir makes a rename or link in dir durable: without it, a crash can
// lose the new name although the file's data were synced. File systems
// that cannot sync a directory (EINVAL) are left as they are.
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
