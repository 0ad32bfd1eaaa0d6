package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/internal/parallel"
	"github.com/cbfs/cbfs/store"
)

// ArchiveUsage is how much of an archive the master index still points
// at: what an operator needs to choose archives to compact.
type ArchiveUsage struct {
	Archive     string `json:"archive"`
	InIndex     bool   `json:"in_index"`
	Members     int    `json:"members"`
	LiveMembers int    `json:"live_members"`
	LiveBytes   int64  `json:"live_bytes"`
	DeadBytes   int64  `json:"dead_bytes"`
	// Retired: the index leaves the archive out because a compacted
	// archive replaces it (index spec 2.8): all of it is dead, and it
	// may be removed.
	Retired bool `json:"retired"`
	// KeyID is the id of the key the archive is under (GC).
	KeyID string `json:"key_id,omitempty"`
}

// indexPos finds an archive in the index's table by file name and id.
func indexPos(x *index.Index, name string, id [crypt.IDSize]byte) (int, bool) {
	base := filepath.Base(name)
	for i, a := range x.Archives {
		if a.Name == base && a.ID == id {
			return i, true
		}
	}
	return 0, false
}

// isWinner reports whether member num of the index's archive pos is what
// the index holds for path.
func isWinner(x *index.Index, pos int, path []byte, num uint32) bool {
	path, err := index.CanonicalPath(path)
	if err != nil {
		return false
	}
	i, ok := x.Find(path)
	if !ok {
		return false
	}
	for _, e := range x.Entries(i) {
		if e.Archive == pos && e.Member == num {
			return true
		}
	}
	return false
}

// Usage counts an archive's live and dead members against an index. A
// member is live when the index holds it for its path: the current
// version of a file, or a deletion that still hides older versions. It is
// dead when a later member or archive superseded it, or a later tombstone
// deleted it. Members that hold no file system path (an imported tar's
// pax globals, other tar entries and trailer) count as live: export
// needs them. Bytes are the members' spans in the archive, record headers
// included; the header, summary and footer are counted in neither. An
// archive the index does not list (InIndex false) counts as all live.
func Usage(x *index.Index, name string, a *format.Archive, entries []format.Entry) ArchiveUsage {
	c := newUsageCounter(x, RetiredIDs(x.Archives), name, a)
	for _, e := range entries {
		c.add(e)
	}
	return c.u
}

// RetiredIDs are the archives an index's rows replace (index spec 2.8).
func RetiredIDs(rows []index.Archive) map[[crypt.IDSize]byte]bool {
	m := map[[crypt.IDSize]byte]bool{}
	for _, a := range rows {
		for _, r := range a.Replaces {
			m[r.ID] = true
		}
	}
	return m
}

// usageCounter counts an archive's members one at a time (see Usage), as
// its summary is walked.
type usageCounter struct {
	x   *index.Index
	a   *format.Archive
	pos int
	u   ArchiveUsage
}

// newUsageCounter starts counting archive a, named name, against x;
// retired are the archives x's rows replace (RetiredIDs).
func newUsageCounter(x *index.Index, retired map[[crypt.IDSize]byte]bool, name string, a *format.Archive) *usageCounter {
	c := &usageCounter{x: x, a: a, u: ArchiveUsage{Archive: name}}
	c.pos, c.u.InIndex = indexPos(x, name, a.Header.ID)
	c.u.Retired = !c.u.InIndex && retired[a.Header.ID]
	return c
}

func (c *usageCounter) add(e format.Entry) {
	c.u.Members++
	if e.Meta.Type == format.TypeReplaces && !c.u.Retired {
		return // a compacted archive's record of what it replaces: neither live nor dead
	}
	span := c.a.Header.PhysSpan(e.Offset, e.Length)
	if c.u.Retired {
		// A compacted archive replaces this one: all of it is dead.
		c.u.DeadBytes += span
		return
	}
	// An archive the index does not list (renamed, or written without
	// the index) may hold the only copy of a path: nothing in it is
	// known to be dead.
	// A member whose path has no canonical form is not in the index
	// either (spec cbfs-index-v1 2.7): it is live as far as gc knows.
	_, noPath := index.CanonicalPath(e.Meta.Path)
	live := !c.u.InIndex || !index.Indexed(e.Meta.Type) || noPath != nil || isWinner(c.x, c.pos, e.Meta.Path, e.Number)
	if live {
		c.u.LiveMembers++
		c.u.LiveBytes += span
	} else {
		c.u.DeadBytes += span
	}
}

// IndexProblem is a live index entry that does not lead to an intact
// member of the archives checked.
type IndexProblem struct {
	Path    string `json:"path"`
	Archive string `json:"archive"`
	Member  uint32 `json:"member"`
	What    string `json:"what"`
}

// IntactMember is where a scan found an intact member.
type IntactMember struct {
	Offset, Span int64
}

// GivenArchive is what a verify scan found in one archive given, for
// CheckIndex.
type GivenArchive struct {
	ID  [crypt.IDSize]byte
	Seq uint64
	// Intact are its intact members by number; nil when the archive
	// could not be read at all.
	Intact map[uint32]IntactMember
	// Paths are the canonical paths its members other than tombstones
	// hold: what a deletion elsewhere may hide.
	Paths map[string]bool
}

// IndexCheck is what CheckIndex found.
type IndexCheck struct {
	Problems []IndexProblem `json:"problems"`
	// NotChecked counts live entries that point at archives not given:
	// a subset of the archives was checked, which is not damage.
	NotChecked int `json:"not_checked"`
	// Unknown are archives given that the index does not list (by id):
	// written without the index, or the index is stale or rolled back.
	Unknown []string `json:"not_in_index"`
	// Retired are archives given that the index leaves out because a
	// compacted archive replaces them: they may be removed.
	Retired []string `json:"retired"`
}

// CheckIndex checks an index against the archives given (by file base
// name). Every live entry whose archive was given must point at an
// intact member of it, at the offset the index says, in the archive of
// the id the index records. Every tombstone that hides an older
// candidate in a given archive must itself be an intact member of a
// given archive: else a rebuild from these archives would bring the
// deleted path back. Entries whose archives were not given are counted,
// not reported.
func CheckIndex(x *index.Index, given map[string]*GivenArchive) IndexCheck {
	res := IndexCheck{Problems: []IndexProblem{}, Unknown: []string{}, Retired: []string{}}
	check := func(p *IndexProblem, arch index.Archive, e index.Entry) bool {
		g := given[arch.Name]
		m, ok := g.Intact[e.Member]
		switch {
		case g.Intact == nil:
			p.What = "its archive could not be read"
		case g.ID != arch.ID:
			p.What = fmt.Sprintf("the archive of that name has id %x, the index says %x", g.ID, arch.ID)
		case !ok:
			p.What = "points at a member that is missing or damaged"
		case m.Offset != e.Offset || m.Span != e.Span:
			p.What = fmt.Sprintf("the member is at offset %d (%d bytes), the index says %d (%d bytes)", m.Offset, m.Span, e.Offset, e.Span)
		default:
			return true
		}
		return false
	}
	for i := 0; i < x.Len(); i++ {
		path := x.Path(i)
		if !x.Live(i) {
			for _, e := range x.Entries(i) {
				arch := x.Archives[e.Archive]
				hider := hiddenIn(given, arch, path)
				if hider == "" {
					continue // a deletion that hides nothing given: losing it loses nothing here
				}
				p := IndexProblem{Path: string(path), Archive: arch.Name, Member: e.Member}
				if _, ok := given[arch.Name]; !ok {
					p.What = fmt.Sprintf("the deletion is in an archive not given: a rebuild from these archives would bring the path back from %s", hider)
				} else if check(&p, arch, e) {
					continue
				} else {
					p.What = "deletion: " + p.What + fmt.Sprintf("; a rebuild would bring the path back from %s", hider)
				}
				res.Problems = append(res.Problems, p)
			}
			continue
		}
		for _, e := range x.Entries(i) {
			if e.Type == format.TypeTombstone {
				continue
			}
			arch := x.Archives[e.Archive]
			if _, ok := given[arch.Name]; !ok {
				res.NotChecked++
				continue
			}
			p := IndexProblem{Path: string(path), Archive: arch.Name, Member: e.Member}
			if !check(&p, arch, e) {
				res.Problems = append(res.Problems, p)
			}
		}
	}
	ids := map[[crypt.IDSize]byte]bool{}
	for _, a := range x.Archives {
		ids[a.ID] = true
	}
	retired := RetiredIDs(x.Archives)
	for name, g := range given {
		switch {
		case g.Intact == nil || ids[g.ID]:
		case retired[g.ID]:
			res.Retired = append(res.Retired, name)
		default:
			res.Unknown = append(res.Unknown, name)
		}
	}
	slices.Sort(res.Unknown)
	slices.Sort(res.Retired)
	return res
}

// hiddenIn names a given archive older than the tombstone's that holds
// path, or "".
func hiddenIn(given map[string]*GivenArchive, ts index.Archive, path []byte) string {
	// A rebuild without the tombstone serves the path from the highest
	// sequence below it (the first name of that sequence, when several).
	best, bestSeq := "", uint64(0)
	for name, g := range given {
		if g.ID == ts.ID || g.Seq >= ts.Seq || !g.Paths[string(path)] {
			continue
		}
		if best == "" || g.Seq > bestSeq || g.Seq == bestSeq && name < best {
			best, bestSeq = name, g.Seq
		}
	}
	return best
}

// GCResult is one archive's usage, or why it could not be read.
type GCResult struct {
	Source store.Source
	Usage  ArchiveUsage
	Err    error // names the archive
}

// GC reads the summary of each archive (never its members) and says how
// much of it the index x still serves (Usage), jobs archives at a time:
// each summary is counted as it is walked, never held. An archive that
// cannot be read has its error in its result; the others are still read.
// Once ctx is cancelled no further archive is started and the error is
// ctx's cause.
func GC(ctx context.Context, x *index.Index, sources []store.Source, keys []*crypt.Key, jobs int) ([]GCResult, error) {
	out := make([]GCResult, len(sources))
	retired := RetiredIDs(x.Archives)
	err := parallel.Do(ctx, len(sources), jobs, func(_ context.Context, i int) {
		src := sources[i]
		out[i].Source = src
		a, obj, err := openArchiveVia(src, nil, keys...)
		if err != nil {
			out[i].Err = err
			return
		}
		defer obj.Close()
		c := newUsageCounter(x, retired, src.Location(), a)
		if err := a.WalkEntries(func(e format.Entry) error { c.add(e); return nil }); err != nil {
			out[i].Err = locErr(src, err)
			return
		}
		out[i].Usage = c.u
		if k := a.Header.KeyOf(keys...); k != nil {
			out[i].Usage.KeyID = k.ID()
		}
	})
	return out, err
}

// OpenSummary opens an archive and reads its summary; the returned
// closer closes the object. Errors name the archive.
func OpenSummary(src store.Source, keys ...*crypt.Key) (*format.Archive, []format.Entry, io.Closer, error) {
	return openSummaryVia(src, nil, keys...)
}

// openSummaryVia is OpenSummary reading through cache, when not nil.
func openSummaryVia(src store.Source, cache *format.BlockCache, keys ...*crypt.Key) (*format.Archive, []format.Entry, io.Closer, error) {
	a, obj, err := openArchiveVia(src, cache, keys...)
	if err != nil {
		return nil, nil, nil, err
	}
	entries, err := a.Entries()
	if err != nil {
		obj.Close()
		return nil, nil, nil, locErr(src, err)
	}
	return a, entries, obj, nil
}

// openArchiveVia opens an archive for random access, reading through
// cache when not nil; the returned closer closes the object. Errors name
// the archive.
func openArchiveVia(src store.Source, cache *format.BlockCache, keys ...*crypt.Key) (*format.Archive, io.Closer, error) {
	obj, err := src.Open()
	if err != nil {
		return nil, nil, locErr(src, err)
	}
	var from format.Source = obj
	if cache != nil {
		from = cache.Source(obj)
	}
	a, err := format.OpenArchive(from, keys...)
	if err != nil {
		obj.Close()
		return nil, nil, locErr(src, err)
	}
	return a, obj, nil
}

// locErr names the object an error is about, once.
func locErr(src store.Source, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == src.Location() {
		err = pe.Err
	}
	return &ObjectError{Where: src.Location(), Err: err}
}

// ObjectError is an error about one stored object (an archive or an
// index), named by where it is.
type ObjectError struct {
	Where string
	Err   error
}

func (e *ObjectError) Error() string { return e.Where + ": " + e.Err.Error() }
func (e *ObjectError) Unwrap() error { return e.Err }
