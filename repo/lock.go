package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
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
	return fmt.Sprintf("index %s: another cbfs is still updating it after %s (%s is locked)", e.Index, e.Waited.Round(100*time.Millisecond), e.Lock)
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
	// ReadKeys are more keys the index may be sealed with (a key being
	// rotated out); the update is sealed with OpenIndexUpdate's key.
	ReadKeys []*crypt.Key
}

// IndexUpdate is one writer's hold on an index file: the lock, and the
// index as opened under it (its trailer and directory; blocks are read
// as needed). Close releases the lock.
type IndexUpdate struct {
	Path string
	// Index is the index as opened under the lock; nil when the file
	// did not exist (Created).
	Index    *index.Reader
	Created  bool
	key      *crypt.Key
	readKeys []*crypt.Key // more keys the index may be sealed with
	lock     *os.File
	file     io.Closer   // the open index file (or object) Index reads
	seen     os.FileInfo // the file as read; nil when it did not exist
	// Memory bounds the records of an archive added (DefaultMemory when
	// 0).
	Memory int
	// remote is set for an index in an object store: updated by
	// conditional writes, without a lock file.
	remote *remoteIndex
}

// OpenIndexUpdate takes the lock of the index at path (waiting as opt
// says) and opens the index under it.
//
// An index in an object store (s3://BUCKET/KEY) takes no lock: it is
// opened with its ETag and written conditionally on it (If-Match), and a
// store that does not honour conditional writes is refused
// (ErrNoConditionalWrites).
func OpenIndexUpdate(path string, key *crypt.Key, opt IndexOptions) (*IndexUpdate, error) {
	if store.IsURL(path) {
		return openRemoteUpdate(context.Background(), path, key, opt)
	}
	path = ResolveIndexPath(path)
	lock, err := lockIndex(path, opt)
	if err != nil {
		return nil, err
	}
	u := &IndexUpdate{Path: path, key: key, readKeys: opt.ReadKeys, lock: lock}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && opt.Create:
		u.Created = true
		return u, nil
	case errors.Is(err, fs.ErrNotExist):
		u.Close()
		return nil, &NoIndexError{Index: path}
	case err != nil:
		u.Close()
		return nil, err
	}
	u.seen = st
	if err := u.open(); err != nil {
		u.Close()
		return nil, fmt.Errorf("index %s: %w", path, err)
	}
	return u, nil
}

// open opens the index file for reading.
func (u *IndexUpdate) open() error {
	if u.remote != nil {
		return u.reopen(false)
	}
	if u.file != nil {
		u.file.Close()
	}
	x, f, err := OpenIndexFile(u.Path, append([]*crypt.Key{u.key}, u.readKeys...)...)
	if err != nil {
		return err
	}
	u.Index, u.file = x, f
	return nil
}

// Close releases the lock.
func (u *IndexUpdate) Close() {
	if u.file != nil {
		u.file.Close()
		u.file = nil
	}
	if u.lock != nil {
		u.lock.Close() // closing the descriptor releases the flock
		u.lock = nil
	}
}

// HighSeq is the highest sequence number the index has seen (0 for a new
// index).
func (u *IndexUpdate) HighSeq() uint64 {
	if u.Index == nil {
		return 0
	}
	return u.Index.HighSeq
}

// NextSeq is the default sequence number of a new archive: one more than
// the highest the index has seen (1 for a new index).
func (u *IndexUpdate) NextSeq() (uint64, error) {
	if u.HighSeq() == ^uint64(0) {
		return 0, fmt.Errorf("index %s: the highest sequence number is already 2^64-1", u.Path)
	}
	return u.HighSeq() + 1, nil
}

// Lookup finds path's record (reading one block).
func (u *IndexUpdate) Lookup(path []byte) (*index.Record, bool, error) {
	if u.Index == nil {
		return nil, false, nil
	}
	return u.Index.Lookup(path)
}

// LiveTree lists dir and every live path below it: what --delete-tree
// deletes. It reads only the blocks of that subtree.
func (u *IndexUpdate) LiveTree(dir []byte) ([][]byte, error) {
	if u.Index == nil {
		return nil, nil
	}
	return LiveTree(u.Index, dir)
}

// LiveTree lists dir and every live path below it in the index.
func LiveTree(x *index.Reader, dir []byte) ([][]byte, error) {
	var out [][]byte
	if rec, ok, err := x.Lookup(dir); err != nil {
		return nil, err
	} else if ok && rec.Live() {
		out = append(out, bytes.Clone(dir))
	}
	// The paths below dir sort together, from "dir/" on.
	prefix := append(bytes.Clone(dir), '/')
	it := x.Records(prefix)
	for it.Next() && bytes.HasPrefix(it.Path(), prefix) {
		if it.Record().Live() {
			out = append(out, bytes.Clone(it.Path()))
		}
	}
	return out, it.Err()
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

// replace writes the index that write produces in place of the file,
// atomically, if the file is still the one read under the lock, and
// opens it again. The update keeps the lock. An index in an object store
// is written conditionally on the ETag it was opened at instead; one
// changed since fails with store.ErrChanged (or fs.ErrExist where it did
// not exist).
func (u *IndexUpdate) replace(write func(io.Writer) error) error {
	if u.remote != nil {
		return u.replaceRemote(write)
	}
	f, err := store.CreateAtomic(u.Path, true)
	if err != nil {
		return err
	}
	f.BeforeRename = u.unchanged
	if err := write(f); err != nil {
		f.Abort()
		return err
	}
	if err := f.Commit(); err != nil {
		return err
	}
	u.Created = false
	if u.seen, err = os.Stat(u.Path); err != nil {
		u.seen = nil
	}
	return u.open()
}

// Write replaces the index file with x (see replace).
func (u *IndexUpdate) Write(x *index.Index) error {
	return u.replace(func(w io.Writer) error { return x.Encode(w, u.key) })
}

// addResult fills an AddResult from what was written.
func (u *IndexUpdate) addResult(c *index.CombineResult, id [crypt.IDSize]byte, created bool) *AddResult {
	res := &AddResult{Created: created, Copies: sortCopies(c.Copies)}
	for _, cf := range c.Conflicts {
		locs := conflictLocations(c.Archives, cf)
		for _, l := range locs {
			if l.Archive.ID == id {
				res.Conflicts = append(res.Conflicts, Conflict{Path: cf.Path, Candidates: locs})
				break
			}
		}
	}
	return res
}

// Add merges an archive's one-archive index into the index and writes it
// (see replace): a streaming merge, one block of the old index at a time.
func (u *IndexUpdate) Add(add *index.Index) (*AddResult, error) {
	var b bytes.Buffer
	if err := add.Encode(&b, u.key); err != nil {
		return nil, err
	}
	ar, err := index.Open(bytes.NewReader(b.Bytes()), int64(b.Len()), u.key)
	if err != nil {
		return nil, err
	}
	var c *index.CombineResult
	created, err := u.update(func(w io.Writer) error {
		parts := []*index.Reader{ar}
		if u.Index != nil {
			parts = append(parts, u.Index)
		}
		var err error
		c, err = index.MergeReaders(w, u.key, parts...)
		return err
	})
	if err != nil {
		return nil, u.wrapErr(err)
	}
	return u.addResult(c, add.Archives[0].ID, created), nil
}

// update replaces the index with what write produces from u.Index (see
// replace), saying whether the index was created. An index in an object
// store changed by another writer since it was opened is opened again
// and write run again on it: neither update is lost.
func (u *IndexUpdate) update(write func(io.Writer) error) (created bool, err error) {
	for tries := 0; ; tries++ {
		created = u.Created
		err = u.replace(write)
		if err == nil && u.remote != nil {
			u.releaseSeqs()
		}
		if err == nil || u.remote == nil || tries == 20 || !(errors.Is(err, store.ErrChanged) || errors.Is(err, fs.ErrExist)) {
			return created, err
		}
		// write runs again on the index as it is now: the archive's
		// records come from its header and summary, so its sequence
		// number (sealed in the archive) is the same whatever the index
		// became meanwhile.
		if err = u.reopen(u.remote.create); err != nil {
			return created, err
		}
	}
}

func (u *IndexUpdate) wrapErr(err error) error {
	var re *IndexReplacedError
	if errors.As(err, &re) {
		return err
	}
	return fmt.Errorf("index %s: %w", u.Path, err)
}

// AddArchiveFile adds the archive file at archivePath, read as a rebuild
// reads it (footer and summary), so that what is added is exactly what a
// rebuild finds. The archive's records are sorted in bounded memory and
// merged with the index's as the new file is written: the old index is
// read one block at a time, never held whole.
func (u *IndexUpdate) AddArchiveFile(archivePath string) (*AddResult, error) {
	return u.AddArchiveFiles([]string{archivePath})
}

// AddArchiveFiles adds several archives in one update of the index: all
// of them, or (on any failure) none.
func (u *IndexUpdate) AddArchiveFiles(paths []string) (*AddResult, error) {
	mem := u.Memory
	if mem <= 0 {
		mem = DefaultMemory
	}
	dir := filepath.Dir(u.Path)
	if u.remote != nil {
		dir = "" // the system's temporary directory
	}
	sp := &index.Spiller{Budget: mem / 2, Dir: dir}
	defer sp.Close()
	w := &indexWorker{sp: sp, limit: mem / 16}
	var excluded []ExcludedPath
	for _, p := range paths {
		src := sourceOf(context.Background(), p)
		// The archive may be under any of the keys the index reads with
		// (one being rotated in or out); the index stays sealed with u.key.
		_, scanned, err := w.index(src, append([]*crypt.Key{u.key}, u.readKeys...))
		if err != nil {
			return nil, locErr(src, err)
		}
		if scanned != nil {
			return nil, locErr(src, scanned.Err)
		}
		excluded = append(excluded, w.excluded...)
	}
	if u.Index != nil && allIndexed(u.Index.Archives, sp.Sources()) {
		// Each is in the table already, same name, same archive id:
		// the index would be written again as it is.
		return &AddResult{Already: true, Excluded: excluded}, nil
	}
	var c *index.CombineResult
	created, err := u.update(func(out io.Writer) error {
		var err error
		c, err = sp.Combine(out, u.key, u.Index)
		return err
	})
	if err != nil {
		return nil, u.wrapErr(err)
	}
	id := sp.Sources()[0].ID
	res := u.addResult(c, id, created)
	res.Excluded = excluded
	return res, nil
}

// allIndexed reports whether every archive of add is a row of table.
func allIndexed(table, add []index.Archive) bool {
	for _, a := range add {
		if !slices.ContainsFunc(table, func(t index.Archive) bool { return t.Name == a.Name && t.ID == a.ID }) {
			return false
		}
	}
	return len(add) > 0
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
	path = ResolveIndexPath(path)
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

// Path is the index file the lock is for, symlinks resolved: where the
// new index goes.
func (l *IndexLock) Path() string { return l.u.Path }

// ResolveIndexPath follows symlinks to the index file itself: the lock
// beside it and the rename into place must be those of the real file, or
// a writer using the link and one using the file would not exclude each
// other, and the rename would replace the link. A link to a file not yet
// there resolves to where it points.
func ResolveIndexPath(path string) string {
	if p, err := filepath.EvalSymlinks(path); err == nil {
		return p
	}
	for range 40 { // a chain of links to a file that does not exist yet
		target, err := os.Readlink(path)
		if err != nil {
			return path
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		path = target
	}
	return path
}
