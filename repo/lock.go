package repo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/store"
)

// One writer at a time (spec/cbfs-index-v1.md section 6.6): every update
// of an index file holds an exclusive flock on a lock file beside it for
// the whole read-modify-write, so that two writers never lose each
// other's updates. The lock file is never removed: a writer that removed
// it could leave a waiter holding a lock on a file no one else opens.

// DefaultLockTimeout is how long an index writer waits for the lock by
// default.
const DefaultLockTimeout = 5 * time.Minute

// LockWaitNotice is how long a writer waits before it says it is waiting.
const LockWaitNotice = time.Second

// IndexLockPath is the lock file of the index at path: ".NAME.lock" in
// the same directory. Its name starts with '.', so that a directory of
// archives never lists it as one.
func IndexLockPath(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".lock")
}

// LockBusyError is returned when another writer held an index's lock for
// longer than the lock timeout.
type LockBusyError struct {
	Index, Lock string
	Waited      time.Duration
}

func (e *LockBusyError) Error() string {
	if e.Waited == 0 {
		return fmt.Sprintf("index %s: another cbfs is updating it (%s is locked)", e.Index, e.Lock)
	}
	return fmt.Sprintf("index %s: another cbfs is still updating it after %s (%s is locked)", e.Index, e.Waited.Round(time.Second), e.Lock)
}

// IndexReplacedError is returned when an index file changed while its
// update held the lock: something that does not take the lock (an older
// cbfs, a copy put back by hand) replaced it. The update is not written,
// so that neither change is lost silently.
type IndexReplacedError struct{ Index string }

func (e *IndexReplacedError) Error() string {
	return fmt.Sprintf("index %s was replaced or changed while this update held its lock (by a writer that does not lock it?); the update was not written", e.Index)
}

// NoIndexError is returned for an index file that does not exist when
// the writer was not told to create one: a lost index must be rebuilt
// from the archives, not restarted at sequence 1.
type NoIndexError struct{ Index string }

func (e *NoIndexError) Error() string {
	return fmt.Sprintf("index %s does not exist", e.Index)
}

func (e *NoIndexError) Unwrap() error { return fs.ErrNotExist }

// IndexOptions say how an index is opened for an update.
type IndexOptions struct {
	// Create allows the index not to exist yet: it is then created
	// (--new-index). Without it, a missing index is a *NoIndexError.
	Create bool
	// LockTimeout is how long to wait for another writer; 0 fails at
	// once.
	LockTimeout time.Duration
	// Waiting, if set, is called once when the lock has not been had for
	// LockWaitNotice.
	Waiting func(lockPath string)
}

// IndexUpdate is one writer's hold on an index file: the lock, and the
// index as read under it. Close releases the lock.
type IndexUpdate struct {
	Path string
	// Index is the index as read under the lock; an empty one when the
	// file did not exist (Created).
	Index   *index.Index
	Created bool
	key     *crypt.Key
	lock    *os.File
	seen    os.FileInfo // the file as read; nil when it did not exist
	// remote is set for an index in an object store: updated by
	// conditional writes, without a lock file.
	remote *remoteIndex
}

// OpenIndexUpdate takes the lock of the index at path (waiting as opt
// says) and reads the index under it.
//
// An index in an object store (s3://BUCKET/KEY) takes no lock: it is
// read with its ETag and written conditionally on it (If-Match), and a
// store that does not honour conditional writes is refused
// (ErrNoConditionalWrites).
func OpenIndexUpdate(path string, key *crypt.Key, opt IndexOptions) (*IndexUpdate, error) {
	if store.IsURL(path) {
		return openRemoteUpdate(context.Background(), path, key, opt)
	}
	lock, err := lockIndex(path, opt)
	if err != nil {
		return nil, err
	}
	u := &IndexUpdate{Path: path, key: key, lock: lock}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && opt.Create:
		u.Index, u.Created = &index.Index{}, true
		return u, nil
	case errors.Is(err, fs.ErrNotExist):
		u.Close()
		return nil, &NoIndexError{Index: path}
	case err != nil:
		u.Close()
		return nil, err
	}
	u.seen = st
	if u.Index, err = ReadIndexFile(path, key); err != nil {
		u.Close()
		return nil, fmt.Errorf("index %s: %w", path, err)
	}
	return u, nil
}

// Close releases the lock.
func (u *IndexUpdate) Close() {
	if u.lock != nil {
		u.lock.Close() // closing the descriptor releases the flock
		u.lock = nil
	}
}

// NextSeq is the default sequence number of a new archive: one more than
// the highest the index has seen (1 for a new index).
func (u *IndexUpdate) NextSeq() (uint64, error) {
	if u.Index.HighSeq == ^uint64(0) {
		return 0, fmt.Errorf("index %s: the highest sequence number is already 2^64-1", u.Path)
	}
	return u.Index.HighSeq + 1, nil
}

// unchanged checks, before the new index is renamed into place, that the
// file is still the one read under the lock.
func (u *IndexUpdate) unchanged() error {
	st, err := os.Stat(u.Path)
	switch {
	case u.seen == nil && errors.Is(err, fs.ErrNotExist):
		return nil
	case u.seen == nil || err != nil:
		return &IndexReplacedError{Index: u.Path}
	case !os.SameFile(u.seen, st) || st.Size() != u.seen.Size() || !st.ModTime().Equal(u.seen.ModTime()):
		return &IndexReplacedError{Index: u.Path}
	}
	return nil
}

// Write replaces the index file with x, atomically, if the file is still
// the one read under the lock. The update keeps the lock.
func (u *IndexUpdate) Write(x *index.Index) error {
	if u.remote != nil {
		return u.writeRemote(x)
	}
	f, err := store.CreateAtomic(u.Path, true)
	if err != nil {
		return err
	}
	f.BeforeRename = u.unchanged
	if err := x.Encode(f, u.key); err != nil {
		f.Abort()
		return err
	}
	if err := f.Commit(); err != nil {
		return err
	}
	u.Index, u.Created = x, false
	if u.seen, err = os.Stat(u.Path); err != nil {
		u.seen = nil
	}
	return nil
}

// Add merges an archive's one-archive index into the index and writes it
// (see Write).
func (u *IndexUpdate) Add(add *index.Index) (*AddResult, error) {
	id := add.Archives[0].ID
	res := &AddResult{Created: u.Created}
	x, copies, err := index.Merge(u.Index, add)
	// An index in an object store changed by another writer since it was
	// read is read again and the archive merged into it again: neither
	// update is lost.
	for tries := 0; err == nil && u.remote != nil; tries++ {
		if err = u.Write(x); err == nil || tries == 20 || !(errors.Is(err, store.ErrChanged) || errors.Is(err, fs.ErrExist)) {
			break
		}
		if err = u.reread(true); err == nil {
			res.Created = u.Created
			x, copies, err = index.Merge(u.Index, add)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", u.Path, err)
	}
	res.Copies = copies
	for _, c := range Conflicts(x) {
		for _, l := range c.Candidates {
			if l.Archive.ID == id {
				res.Conflicts = append(res.Conflicts, c)
				break
			}
		}
	}
	if u.remote != nil {
		// written above
	} else if err := u.Write(x); err != nil {
		var re *IndexReplacedError
		if errors.As(err, &re) {
			return nil, err
		}
		return nil, fmt.Errorf("index %s: %w", u.Path, err)
	}
	return res, nil
}

// AddArchiveFile adds the archive file at archivePath, read as a rebuild
// reads it (footer and summary), so that what is added is exactly what a
// rebuild finds.
func (u *IndexUpdate) AddArchiveFile(archivePath string) (*AddResult, error) {
	w := &indexWorker{}
	add, _, scanned, err := w.index(sourceOf(context.Background(), archivePath), u.key)
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", archivePath, err)
	}
	if scanned != nil {
		return nil, fmt.Errorf("archive %s: %w", archivePath, scanned.Err)
	}
	res, err := u.Add(add)
	if res != nil {
		res.Excluded = w.excluded
	}
	return res, err
}

// lockIndex takes the exclusive lock of the index at path.
func lockIndex(path string, opt IndexOptions) (*os.File, error) {
	lp := IndexLockPath(path)
	// Looked at before it is opened: opening a FIFO would block.
	if st, err := os.Lstat(lp); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("lock file %s: %w", lp, store.ErrNotRegular)
	}
	f, err := os.OpenFile(lp, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("index %s: its lock file: %w", path, err)
	}
	start := time.Now()
	told := false
	for {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock file %s: %w", lp, err)
		}
		if ok {
			return f, nil
		}
		waited := time.Since(start)
		if waited >= opt.LockTimeout {
			f.Close()
			return nil, &LockBusyError{Index: path, Lock: lp, Waited: opt.LockTimeout}
		}
		if !told && waited >= LockWaitNotice && opt.Waiting != nil {
			opt.Waiting(lp)
			told = true
		}
		time.Sleep(min(50*time.Millisecond, opt.LockTimeout-waited))
	}
}

// IndexLock is the lock of an index file held by a tool that replaces
// the file whole (a rebuild or a merge into it), with the file as it was
// when the lock was taken.
type IndexLock struct {
	u IndexUpdate
}

// LockIndexFile takes the lock of the index at path, for a tool that
// replaces the file whole and does not read it.
func LockIndexFile(path string, opt IndexOptions) (*IndexLock, error) {
	f, err := lockIndex(path, opt)
	if err != nil {
		return nil, err
	}
	l := &IndexLock{u: IndexUpdate{Path: path, lock: f}}
	if st, err := os.Stat(path); err == nil {
		l.u.seen = st
	}
	return l, nil
}

// Unchanged says whether the file is still as it was when the lock was
// taken (an *IndexReplacedError if not): for AtomicFile.BeforeRename.
func (l *IndexLock) Unchanged() error { return l.u.unchanged() }

// Unlock releases the lock.
func (l *IndexLock) Unlock() { l.u.Close() }
