package repo

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/internal/parallel"
	"github.com/cbfs/cbfs/store"
)

// ArchiveSources expands command-line arguments: a file is one archive; a
// directory stands for the archives ListArchiveDir finds in it. The
// result is sorted by name, then by where. indexes are the index files
// found in the directories and skipped.
func ArchiveSources(args []string) (srcs []store.Source, indexes []string, err error) {
	return ArchiveSourcesContext(context.Background(), args)
}

// ArchiveSourcesContext is ArchiveSources where an argument may also be
// an object-store URL (URLSources); ctx is that of the reads.
func ArchiveSourcesContext(ctx context.Context, args []string) (srcs []store.Source, indexes []string, err error) {
	var out []store.Source
	seen := map[string]bool{}
	add := func(p string) {
		p = filepath.Clean(p)
		if !seen[p] {
			seen[p] = true
			out = append(out, store.File(p))
		}
	}
	for _, arg := range args {
		if store.IsURL(arg) {
			us, err := URLSources(ctx, arg)
			if err != nil {
				return nil, nil, err
			}
			for _, s := range us {
				if !seen[s.Where] {
					seen[s.Where] = true
					out = append(out, s)
				}
			}
			continue
		}
		st, err := os.Stat(arg)
		if err != nil {
			return nil, nil, err
		}
		if !st.IsDir() {
			add(arg)
			continue
		}
		files, idx, err := ListArchiveDir(arg)
		if err != nil {
			return nil, nil, err
		}
		indexes = append(indexes, idx...)
		for _, p := range files {
			add(p)
		}
	}
	sortSources(out)
	return out, indexes, nil
}

// ListArchiveDir lists the archives a directory argument stands for:
// every regular file directly in it (not in its subdirectories, symlinks
// to regular files included) whose name does not start with '.', so that
// temporary files, the index's own among them, are left out; in name
// order. Master index files kept beside the archives are recognised by
// their magic and returned apart, in indexes, so that they are skipped
// with a note and never counted as bad archives. A directory with no
// archive is an error: it is more likely the wrong directory than an
// empty set of archives.
func ListArchiveDir(dir string) (archives, indexes []string, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		regular := e.Type().IsRegular()
		if e.Type()&fs.ModeSymlink != 0 {
			st, err := os.Stat(p)
			regular = err == nil && st.Mode().IsRegular()
		}
		switch {
		case !regular:
		case isIndexFile(p):
			indexes = append(indexes, p)
		default:
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		if len(indexes) > 0 {
			return nil, indexes, fmt.Errorf("%s: no archive files in this directory, only the master index %s", dir, filepath.Base(indexes[0]))
		}
		return nil, nil, fmt.Errorf("%s: no archive files in this directory", dir)
	}
	return out, indexes, nil
}

// isIndexFile reports whether the file at p starts with the magic of a
// master index. A file that cannot be read is not one: it is listed as
// an archive, and reading it says why it cannot be read.
func isIndexFile(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [8]byte
	n, _ := io.ReadFull(f, b[:])
	return index.HasMagic(b[:n])
}

func sortSources(s []store.Source) {
	slices.SortStableFunc(s, func(a, b store.Source) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Location(), b.Location())
	})
}

// Shard selects part of the archives: of the archives sorted by name,
// those at positions I, I+N, I+2N, ... (0-based). The zero Shard (N = 0)
// selects all.
type Shard struct{ I, N int }

// ParseShard parses "I/N" with 0 <= I < N.
//
// "env/N" takes I from the environment of a batch engine: the first set
// of JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs),
// AWS_BATCH_JOB_ARRAY_INDEX and SLURM_ARRAY_TASK_ID.
func ParseShard(s string) (Shard, error) {
	i, n, ok := strings.Cut(s, "/")
	from := ""
	if i == "env" {
		var err error
		if from, i, err = shardFromEnv(); err != nil {
			return Shard{}, err
		}
	}
	I, err1 := strconv.Atoi(i)
	N, err2 := strconv.Atoi(n)
	if !ok || err1 != nil || err2 != nil || N < 1 || I < 0 || I >= N {
		if from != "" && err2 == nil && N >= 1 {
			return Shard{}, fmt.Errorf("shard %q: %s=%s, want 0 <= I < %d (an array numbered from 1 needs its range from 0, such as 0-%d)", s, from, i, N, N-1)
		}
		return Shard{}, fmt.Errorf("shard %q: want I/N with 0 <= I < N, such as 0/4", s)
	}
	return Shard{I, N}, nil
}

func (sh Shard) String() string { return fmt.Sprintf("%d/%d", sh.I, sh.N) }

// ArchiveProblem is an archive the rebuild could not read from its
// summary.
type ArchiveProblem struct {
	Name, Where string
	// Err is why the archive could not be read (unreadable), or why its
	// summary could not be used (scanned).
	Err error
	// Problems are what the member scan found (scanned only), and Members
	// the number of complete members it counted.
	Problems []*format.Error
	Members  int
}

// ExcludedPath is a member kept out of the index because its path has
// a '..' component (spec cbfs-index-v1 section 2.7).
type ExcludedPath struct {
	Archive string
	Member  uint32
	Path    []byte
}

// RebuildResult is what a rebuild read and found.
type RebuildResult struct {
	// Excluded are members whose paths have no canonical form.
	Excluded []ExcludedPath
	// Index is the index read back (Rebuild only; RebuildTo writes it).
	Index *index.Index
	// Archives is the number of archives read (from their summaries or
	// by a scan); Members the number of members counted.
	Archives int
	Members  int64
	// Scanned are archives read member by member because their footer or
	// summary was missing or damaged: every complete member counted.
	Scanned []ArchiveProblem
	// Unreadable are archives that could not be read at all: wrong key,
	// not a CBFS archive, damaged header, I/O error. Nothing of them is
	// in the index.
	Unreadable []ArchiveProblem
	// Copies are archives seen more than once (the same archive id).
	Copies []index.Copy
	// Combined is what was written: the table, counts and conflicts.
	Combined *index.CombineResult
	// Spills is how many times runs spilled to temporary files.
	Spills int
	// KeyArchives counts, for the key and each of RebuildOptions.ReadKeys
	// in turn, the archives read with it.
	KeyArchives []int
}

// DefaultMemory is the default budget of a rebuild's records in memory.
const DefaultMemory = 64 << 20

// RebuildOptions bound what a rebuild holds in memory.
type RebuildOptions struct {
	// Memory is the budget for records held in memory (DefaultMemory
	// when 0): past half of it, sorted runs spill, merged, to temporary
	// files in TempDir; each worker builds its archive's runs in an
	// eighth of it.
	Memory int
	// TempDir is where runs spill (beside the output); "" is the
	// system's temporary directory.
	TempDir string
	// Keep, if set, says, once every archive was read, whether to write
	// the index at all.
	Keep func(*RebuildResult) bool
	// Jobs is how many archives are read at once (GOMAXPROCS when 0):
	// more than the cores where each read waits on an object store.
	Jobs int
	// ReadKeys are more keys the archives may be under (a key being
	// rotated in or out): each archive is read with the one of the key
	// and these whose key check value it carries. The index is sealed
	// with the key.
	ReadKeys []*crypt.Key
}

// Rebuild builds the master index of the archives in sources, or of the
// shard of them that shard selects, in memory (see RebuildTo).
func Rebuild(ctx context.Context, sources []store.Source, key *crypt.Key, shard Shard) (*RebuildResult, error) {
	var buf bytes.Buffer
	res, err := RebuildTo(ctx, sources, key, shard, RebuildOptions{}, &buf)
	if err != nil {
		return nil, err
	}
	if res.Index, err = index.Read(bytes.NewReader(buf.Bytes()), key); err != nil {
		return nil, err
	}
	return res, nil
}

// RebuildTo builds the master index of the archives in sources, or of
// the shard of them that shard selects, and writes it to out (only when
// res.Archives > 0; the caller decides whether to keep it). Each archive
// is read from its footer and summary; one whose footer or summary is
// missing or damaged is scanned member by member. Archives are read in
// parallel (opt.Jobs at a time) into sorted runs, which spill to
// temporary files past the memory budget and are merged k-way into the
// index: the result does not depend on the order of the archives or on
// the budget.
func RebuildTo(ctx context.Context, sources []store.Source, key *crypt.Key, shard Shard, opt RebuildOptions, out io.Writer) (*RebuildResult, error) {
	sources = slices.Clone(sources)
	sortSources(sources)
	if shard.N > 0 {
		var pick []store.Source
		for i := shard.I; i < len(sources); i += shard.N {
			pick = append(pick, sources[i])
		}
		sources = pick
	}
	if opt.Memory <= 0 {
		opt.Memory = DefaultMemory
	}
	if opt.Jobs <= 0 {
		opt.Jobs = runtime.GOMAXPROCS(0)
	}
	sp := &index.Spiller{Budget: opt.Memory / 2, Dir: opt.TempDir}
	defer sp.Close()
	keys := append([]*crypt.Key{key}, opt.ReadKeys...)
	type result struct {
		excluded []ExcludedPath
		key      int // which of keys read it
		members  int
		scanned  *ArchiveProblem
		unreadOK bool
		unread   ArchiveProblem
		err      error
	}
	results := make([]result, len(sources))
	// Each worker goroutine keeps its buffers from archive to archive.
	workers := sync.Pool{New: func() any { return &indexWorker{} }}
	err := parallel.Do(ctx, len(sources), opt.Jobs, func(_ context.Context, i int) {
		w := workers.Get().(*indexWorker)
		defer workers.Put(w)
		w.sp, w.limit = sp, opt.Memory/16
		r := &results[i]
		var err error
		r.members, r.scanned, err = w.index(sources[i], keys)
		r.excluded, w.excluded, r.key = w.excluded, nil, w.key
		var se *spillError
		if errors.As(err, &se) {
			r.err = se.err
		} else if err != nil {
			r.unreadOK = true
			r.unread = ArchiveProblem{Name: sources[i].Name, Where: sources[i].Location(), Err: err}
		}
	})
	if err != nil {
		return nil, err
	}
	res := &RebuildResult{KeyArchives: make([]int, len(keys))}
	for i := range results {
		r := &results[i]
		switch {
		case r.err != nil:
			return nil, r.err
		case r.unreadOK:
			res.Unreadable = append(res.Unreadable, r.unread)
			continue
		case r.scanned != nil:
			res.Scanned = append(res.Scanned, *r.scanned)
		}
		res.Archives++
		res.KeyArchives[r.key]++
		res.Members += int64(r.members)
		res.Excluded = append(res.Excluded, r.excluded...)
	}
	// No archive at all (an empty shard) still writes an empty index when
	// the caller keeps it, so that every part merges.
	if opt.Keep != nil && !opt.Keep(res) || opt.Keep == nil && res.Archives == 0 {
		res.Combined = &index.CombineResult{}
		return res, nil
	}
	c, err := sp.Combine(out, key, nil)
	if err != nil {
		return nil, err
	}
	res.Combined, res.Copies, res.Spills = c, sortCopies(c.Copies), sp.Spills
	return res, nil
}

// spillError is a failure of the rebuild itself (a spill file that
// could not be written), not of the archive being read.
type spillError struct{ err error }

func (e *spillError) Error() string { return e.err.Error() }

func sortCopies(copies []index.Copy) []index.Copy {
	slices.SortFunc(copies, func(a, b index.Copy) int {
		return cmp.Or(bytes.Compare(a.ID[:], b.ID[:]), strings.Compare(a.Names[0], b.Names[0]), strings.Compare(a.Names[1], b.Names[1]))
	})
	return copies
}

// indexWorker reads archives one after another, reusing its buffers.
type indexWorker struct {
	scratch  format.SummaryScratch
	sp       *index.Spiller
	limit    int
	excluded []ExcludedPath // of the last archive read
	key      int            // the position of the key it was read with
}

// exclude takes a member whose path has no canonical form out of the
// index, noting it; any other error stands.
func (w *indexWorker) exclude(name string, member uint32, err error) error {
	var ce *index.CanonicalPathError
	if !errors.As(err, &ce) {
		return err
	}
	w.excluded = append(w.excluded, ExcludedPath{Archive: name, Member: member, Path: bytes.Clone(ce.Path)})
	return nil
}

// commit hands an archive's runs over; a failure there is the rebuild's.
func commit(b *index.RunBuilder) error {
	if err := b.Commit(); err != nil {
		b.Abort()
		return &spillError{err}
	}
	return nil
}

// index reads one archive into sorted runs of the spiller, with the one
// of keys whose key check value its header carries (w.key says which).
func (w *indexWorker) index(ns store.Source, keys []*crypt.Key) (int, *ArchiveProblem, error) {
	w.excluded, w.key = nil, 0
	src, err := ns.Open()
	if err != nil {
		return 0, nil, err
	}
	defer src.Close()
	a, why := format.OpenArchive(src, keys...)
	if why == nil {
		h := a.Header
		w.key = keyIndex(h, keys)
		b, err := w.sp.NewRunBuilder(index.Archive{Name: ns.Name, ID: h.ID, Seq: h.Sequence, Members: a.Footer.Members}, w.limit)
		if err != nil {
			return 0, nil, err
		}
		why = a.SummaryItems(&w.scratch, func(it *format.SummaryItem) error {
			if it.Type == format.TypeReplaces {
				return b.SetReplaces(it.Replaces)
			}
			err := b.Add(it.Path, index.Entry{Member: it.Member, Type: it.Type, Offset: it.Offset, Span: it.Span, Size: it.Size, Inode: it.Inode})
			return w.exclude(ns.Name, it.Member, err)
		})
		w.scratch.Trim(16 << 20)
		if why == nil {
			return int(a.Footer.Members), nil, commit(b)
		}
		b.Abort()
	}
	var ve *format.VersionError
	if errors.Is(why, format.ErrWrongKey) || errors.Is(why, format.ErrNotCBFS) || errors.As(why, &ve) {
		return 0, nil, why
	}
	var fe *format.Error
	if !errors.As(why, &fe) {
		return 0, nil, why // I/O: a scan would fail the same way
	}
	w.excluded = nil
	return w.scanArchive(ns, src, keys, why)
}

// keyIndex is the position in keys of the key h is under (0 if none).
func keyIndex(h *format.Header, keys []*crypt.Key) int {
	return max(0, slices.Index(keys, h.KeyOf(keys...)))
}

// scanArchive is the fallback: a member scan that counts every complete,
// authenticated member, each handed to the archive's runs as the scan
// finds it (memory does not grow with the archive). The member count is
// known only at the end: the footer's, when it authenticates, or one more
// than the highest member found.
func (w *indexWorker) scanArchive(ns store.Source, src format.Source, keys []*crypt.Key, why error) (int, *ArchiveProblem, error) {
	var b *index.RunBuilder
	var h *format.Header
	n, top := 0, uint64(0) // top: one more than the highest member number found
	rep, err := format.ScanArchive(src, format.ScanOptions{Key: keys[0], Keys: keys[1:], Header: func(hdr *format.Header) error {
		var err error
		h = hdr
		b, err = w.sp.NewRunBuilder(index.Archive{Name: ns.Name, ID: h.ID, Seq: h.Sequence, Members: format.MaxMembers}, w.limit)
		return err
	}}, func(e format.Entry) error {
		n, top = n+1, max(top, uint64(e.Number)+1)
		if e.Meta.Type == format.TypeReplaces {
			return b.SetReplaces(e.Meta.Replaces)
		}
		err := b.Add(e.Meta.Path, index.Entry{Member: e.Number, Type: e.Meta.Type, Offset: h.PhysOffset(e.Offset),
			Span: h.PhysSpan(e.Offset, e.Length), Size: e.Meta.Size, Inode: e.Meta.Inode})
		return w.exclude(ns.Name, e.Number, err)
	})
	fail := func(err error) (int, *ArchiveProblem, error) {
		if b != nil {
			b.Abort()
		}
		return 0, nil, err
	}
	if err != nil {
		return fail(err)
	}
	if rep == nil || rep.Header == nil || b == nil {
		return fail(fmt.Errorf("%v; the member scan found no header", why))
	}
	for _, p := range rep.Problems {
		if p.Class == format.ClassHeader {
			// The sequence number orders the archive: from a header that
			// does not authenticate it cannot be trusted.
			return fail(p)
		}
	}
	w.key = keyIndex(h, keys)
	members := uint64(0)
	if rep.Footer != nil && rep.FooterAuthenticated {
		members = rep.Footer.Members
	}
	if err := b.SetMembers(max(members, top)); err != nil {
		return fail(err)
	}
	return n, &ArchiveProblem{Name: ns.Name, Where: ns.Location(), Err: why, Problems: rep.Problems, Members: n}, commit(b)
}

// MergeAll merges indexes (see index.Merge), in parallel. The
// parts are spent. No parts give an empty index.
func MergeAll(parts []*index.Index) (*index.Index, []index.Copy, error) {
	if len(parts) == 0 {
		return &index.Index{}, nil, nil
	}
	x, copies, err := index.Merge(parts...)
	if err != nil {
		return nil, nil, err
	}
	slices.SortFunc(copies, func(a, b index.Copy) int {
		return cmp.Or(bytes.Compare(a.ID[:], b.ID[:]), strings.Compare(a.Names[0], b.Names[0]), strings.Compare(a.Names[1], b.Names[1]))
	})
	return x, copies, nil
}

// Location is one candidate of an index record with its archive.
type Location struct {
	Archive index.Archive
	index.Entry
}

// Locate returns record i's candidates with their archives.
func Locate(x *index.Index, i int) []Location {
	var out []Location
	for _, e := range x.Entries(i) {
		out = append(out, Location{Archive: x.Archives[e.Archive], Entry: e})
	}
	return out
}

// Conflict is a path two or more archives of the same sequence number
// hold.
type Conflict struct {
	Path       []byte
	Candidates []Location
}

// Conflicts lists the index's conflicted records.
func Conflicts(x *index.Index) []Conflict {
	var out []Conflict
	for i := 0; i < x.Len(); i++ {
		if x.Conflicted(i) {
			out = append(out, Conflict{Path: x.Path(i), Candidates: Locate(x, i)})
		}
	}
	return out
}

// ReadIndexFile reads and opens an index file with the one of keys it was
// sealed with.
//
// path may be an object-store URL (s3://BUCKET/KEY).
func ReadIndexFile(path string, keys ...*crypt.Key) (*index.Index, error) {
	if store.IsURL(path) {
		x, _, err := readIndexURL(context.Background(), path, keys...)
		return x, err
	}
	f, err := store.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	x, err := index.Read(f, keys...)
	if err != nil {
		return nil, locErr(store.File(path), err)
	}
	return x, nil
}

// WriteIndexFile writes x to path atomically: to a temporary file in the
// same directory, synced, then moved into place. On any failure path is
// left as it was. Without replace, an existing path is an error.
func WriteIndexFile(path string, x *index.Index, key *crypt.Key, replace bool) error {
	f, err := store.CreateAtomic(path, replace)
	if err != nil {
		return err
	}
	if err := x.Encode(f, key); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}

// ArchiveIndex is the index of one archive just written, from the
// writer's header and entries.
func ArchiveIndex(name string, hdr *format.Header, entries []format.Entry) (*index.Index, error) {
	a := index.Archive{Name: name, ID: hdr.ID, Seq: hdr.Sequence, Members: uint64(len(entries))}
	if len(entries) > 0 && entries[0].Meta.Type == format.TypeReplaces {
		a.Replaces = entries[0].Meta.Replaces
	}
	b, err := index.NewBuilder(a, len(entries), 0)
	if err != nil {
		return nil, err
	}
	var ce *index.CanonicalPathError
	for _, e := range entries {
		err := b.Add(e.Meta.Path, index.Entry{Member: e.Number, Type: e.Meta.Type, Offset: hdr.PhysOffset(e.Offset),
			Span: hdr.PhysSpan(e.Offset, e.Length), Size: e.Meta.Size, Inode: e.Meta.Inode})
		if err != nil && !errors.As(err, &ce) { // a '..' path is kept out, as a rebuild keeps it out
			return nil, err
		}
	}
	return b.Index(), nil
}

// AddResult says what an index update did.
type AddResult struct {
	Created bool // the index did not exist
	// Already: every archive was in the index already (same name and
	// archive id): the index was left as it was.
	Already bool
	Copies  []index.Copy
	// Conflicts are the index's conflicts that involve the new archive.
	Conflicts []Conflict
	// Excluded are the archive's members whose paths have a '..'
	// component: kept out of the index.
	Excluded []ExcludedPath
}

// AddToIndex adds an archive just written (its file name, header and
// entries) to the index file at indexPath, creating it if missing, under
// the index's lock (waiting for it DefaultLockTimeout). The update is
// atomic: on any failure the old index is left untouched. The result is
// the index a rebuild from the same archives gives, byte for byte.
// Conflicts are written into the index and returned, not refused: the
// archive exists, and the index must say what the archives say.
func AddToIndex(indexPath string, key *crypt.Key, archiveName string, hdr *format.Header, entries []format.Entry) (*AddResult, error) {
	add, err := ArchiveIndex(archiveName, hdr, entries)
	if err != nil {
		return nil, err
	}
	u, err := OpenIndexUpdate(indexPath, key, IndexOptions{Create: true, LockTimeout: DefaultLockTimeout})
	if err != nil {
		return nil, err
	}
	defer u.Close()
	return u.Add(add)
}

// AddArchiveFile adds the archive file at archivePath to the index at
// indexPath as AddToIndex does, reading the archive as a rebuild reads it
// (footer and summary): what is added is exactly what a rebuild finds.
func AddArchiveFile(indexPath string, key *crypt.Key, archivePath string) (*AddResult, error) {
	u, err := OpenIndexUpdate(indexPath, key, IndexOptions{Create: true, LockTimeout: DefaultLockTimeout})
	if err != nil {
		return nil, err
	}
	defer u.Close()
	return u.AddArchiveFile(archivePath)
}

// NextSeq is the default sequence number of a new archive written with
// --index: one more than the highest the index has seen, or 1 for an
// index that does not exist yet. It reads without the lock: a writer
// takes its number from an IndexUpdate, under the lock.
func NextSeq(indexPath string, key *crypt.Key) (uint64, error) {
	x, f, err := OpenIndexFile(indexPath, key)
	if errors.Is(err, fs.ErrNotExist) {
		return 1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("index %s: %w", indexPath, err)
	}
	f.Close()
	u := &IndexUpdate{Path: indexPath, Index: x}
	return u.NextSeq()
}

// OpenIndexFile opens an index file for lookups: its header, trailer and
// directory are read and checked; blocks are read from the file as
// needed, so the file stays open (close it when done).
//
// path may be an object-store URL (s3://BUCKET/KEY): the object is read
// by ranged GETs (its last bytes, where the trailer and directory are,
// in the GET that opens it; blocks through its block cache), each on the
// ETag it was opened at.
func OpenIndexFile(path string, keys ...*crypt.Key) (*index.Reader, io.Closer, error) {
	x, obj, err := openIndexObject(context.Background(), path, keys...)
	if err != nil {
		return nil, nil, err
	}
	return x, obj, nil
}

// openIndexObject opens an index file or object for lookups (see
// OpenIndexFile), with the object it reads.
func openIndexObject(ctx context.Context, path string, keys ...*crypt.Key) (*index.Reader, store.Object, error) {
	var obj store.Object
	if store.IsURL(path) {
		o, err := store.OpenURL(ctx, path)
		if err != nil {
			return nil, nil, err
		}
		obj = o
	} else {
		f, err := store.OpenRegular(path)
		if err != nil {
			return nil, nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		obj = fileObject{f, st.Size()}
	}
	// Several keys: the one that opens it (its key check value matches).
	var x *index.Reader
	err := error(format.ErrWrongKey)
	for _, k := range keys {
		if k == nil {
			continue
		}
		if x, err = index.Open(obj, obj.Size(), k); !errors.Is(err, format.ErrWrongKey) {
			break
		}
	}
	if err != nil {
		obj.Close()
		return nil, nil, locErr(sourceOf(ctx, path), err)
	}
	return x, obj, nil
}

// fileObject is an open file as a store.Object.
type fileObject struct {
	*os.File
	size int64
}

func (f fileObject) Size() int64 { return f.size }

// MergeIndexFiles reads index files and merges them, in memory.
func MergeIndexFiles(ctx context.Context, paths []string, key *crypt.Key) (*index.Index, []index.Copy, error) {
	var buf bytes.Buffer
	c, err := MergeIndexFilesTo(ctx, paths, key, &buf)
	if err != nil {
		return nil, nil, err
	}
	x, err := index.Read(bytes.NewReader(buf.Bytes()), key)
	if err != nil {
		return nil, nil, err
	}
	return x, c.Copies, nil
}

// MergeIndexFilesTo merges index files into out as it reads them: a
// k-way merge holding one block of each part, whatever their size.
func MergeIndexFilesTo(ctx context.Context, paths []string, key *crypt.Key, out io.Writer) (*index.CombineResult, error) {
	parts := make([]*index.Reader, len(paths))
	for i, p := range paths {
		x, f, err := OpenIndexFile(p, key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		defer f.Close()
		parts[i] = x
	}
	if err := ctx.Err(); err != nil {
		return nil, context.Cause(ctx)
	}
	c, err := index.MergeReaders(out, key, parts...)
	if err != nil {
		return nil, err
	}
	c.Copies = sortCopies(c.Copies)
	return c, nil
}

// conflictLocations are a conflict's candidates with their archives.
func conflictLocations(table []index.Archive, c index.Conflict) []Location {
	out := make([]Location, len(c.Entries))
	for i, e := range c.Entries {
		out[i] = Location{Archive: table[e.Archive], Entry: e}
	}
	return out
}

// CombinedConflicts are the conflicts a rebuild or merge wrote.
func CombinedConflicts(c *index.CombineResult) []Conflict {
	var out []Conflict
	for _, cf := range c.Conflicts {
		out = append(out, Conflict{Path: cf.Path, Candidates: conflictLocations(c.Archives, cf)})
	}
	return out
}

// IndexDiff is one difference between two indexes: an archive (Path nil)
// or a path whose candidates differ. A or B is empty where one side lacks
// it.
type IndexDiff struct {
	Path     []byte
	ArchA    *index.Archive
	ArchB    *index.Archive
	A, B     []Location
	IsRecord bool
}

func sameLocation(p, q Location) bool {
	p.Entry.Archive, q.Entry.Archive = 0, 0
	return p.Entry == q.Entry && p.Archive.Equal(&q.Archive)
}

// DiffReaders compares two indexes, streaming: the archives tables first
// (by archive id: positions in the tables do not matter, what they point
// to does), then the records of both by path, one block of each at a
// time; fn gets each difference in order.
func DiffReaders(a, b *index.Reader, fn func(IndexDiff) error) error {
	ids := map[[crypt.IDSize]byte]int{}
	for i := range b.Archives {
		ids[b.Archives[i].ID] = i
	}
	seen := map[[crypt.IDSize]byte]bool{}
	for i := range a.Archives {
		pa := &a.Archives[i]
		seen[pa.ID] = true
		if j, ok := ids[pa.ID]; ok {
			if pb := &b.Archives[j]; !pa.Equal(pb) {
				if err := fn(IndexDiff{ArchA: pa, ArchB: pb}); err != nil {
					return err
				}
			}
			continue
		}
		if err := fn(IndexDiff{ArchA: pa}); err != nil {
			return err
		}
	}
	for j := range b.Archives {
		if !seen[b.Archives[j].ID] {
			if err := fn(IndexDiff{ArchB: &b.Archives[j]}); err != nil {
				return err
			}
		}
	}
	locs := func(x *index.Reader, rec *index.Record) []Location {
		out := make([]Location, len(rec.Entries))
		for i, e := range rec.Entries {
			out[i] = Location{Archive: x.Archives[e.Archive], Entry: e}
		}
		return out
	}
	ia, ib := a.Records(nil), b.Records(nil)
	okA, okB := ia.Next(), ib.Next()
	for okA || okB {
		c := 0
		switch {
		case !okA:
			c = 1
		case !okB:
			c = -1
		default:
			c = bytes.Compare(ia.Path(), ib.Path())
		}
		var d *IndexDiff
		switch {
		case c < 0:
			d = &IndexDiff{IsRecord: true, Path: bytes.Clone(ia.Path()), A: locs(a, ia.Record())}
			okA = ia.Next()
		case c > 0:
			d = &IndexDiff{IsRecord: true, Path: bytes.Clone(ib.Path()), B: locs(b, ib.Record())}
			okB = ib.Next()
		default:
			la, lb := locs(a, ia.Record()), locs(b, ib.Record())
			if !slices.EqualFunc(la, lb, sameLocation) {
				d = &IndexDiff{IsRecord: true, Path: bytes.Clone(ia.Path()), A: la, B: lb}
			}
			okA, okB = ia.Next(), ib.Next()
		}
		if d != nil {
			if err := fn(*d); err != nil {
				return err
			}
		}
	}
	return errors.Join(ia.Err(), ib.Err())
}
