package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/internal/parallel"
	"github.com/cbfs/cbfs/store"
	"github.com/cbfs/cbfs/tarconv"
)

// The file system's current tree: for every live path of the master
// index, the member that holds its current state, read from the archive
// that wins it. Export and extract of the whole tree (or of subtrees) go
// through a Tree.

// TreeOptions configure OpenTree.
type TreeOptions struct {
	// Paths select subtrees: the live paths at or under one of these
	// (any form; matched canonically). None: the whole tree.
	Paths [][]byte
	// Keys open the archives.
	Keys []*crypt.Key
	// Jobs is how many archives are opened at once.
	Jobs int
}

// TreeArchive is an archive the tree needs, opened through its summary.
type TreeArchive struct {
	Index   index.Archive
	Source  store.Source
	Archive *format.Archive
	// Entries is the summary, by member number, while OpenTree works; it
	// is dropped once the tree is made (the members keep their entries).
	Entries []format.Entry
	Err     error // why it could not be opened (then Archive is nil)
	Paths   int   // how many live paths it supplies
	closer  interface{ Close() error }
}

// TreeMember is one entry of the tree.
type TreeMember struct {
	Path    []byte // canonical
	Archive *TreeArchive
	Entry   format.Entry
	// LinkAs, for a hard link whose target in the tree is not the member
	// it linked to, is that member (in the link's own archive): the link
	// becomes a regular file with its content.
	LinkAs *format.Entry
}

// TreeSkip is a live path left out of the tree, and why.
type TreeSkip struct {
	Path []byte
	Why  string
	// Conflict says two archives of one sequence hold the path.
	Conflict bool
}

// Tree is the current tree of an index over the archives given.
type Tree struct {
	Archives []*TreeArchive // those the members come from, by name
	Members  []TreeMember   // in path order: a directory before what it holds
	Skipped  []TreeSkip
	Missing  []*TreeArchive // archives needed and not opened (Err says why)
	// Unmatched are the TreeOptions.Paths no live path is at or under.
	Unmatched [][]byte
	// Hidden are live paths of the index below a path whose current
	// member is not a directory (a directory replaced by a file or a
	// symlink): not part of the current tree, never written, since a tar
	// would put them through that file or symlink.
	Hidden []TreeSkip
}

// Close closes the archives.
func (t *Tree) Close() {
	for _, a := range t.Archives {
		if a.closer != nil {
			a.closer.Close()
		}
	}
}

// ArchiveIDError is an archive found under the name the index records
// whose id is not the one the index holds for that name: another archive
// (a copy renamed over it, or a rewrite).
type ArchiveIDError struct {
	Name      string
	Got, Want [crypt.IDSize]byte
}

func (e *ArchiveIDError) Error() string {
	return fmt.Sprintf("archive id %x, but the index holds %x under the name %s: not the archive the index means", e.Got, e.Want, e.Name)
}

// OpenTree finds each live path of x (at or under opt.Paths), the
// archive that wins it, and the member there, opening every archive it
// needs through open (given the archive's row: its name and id) once, and checking
// that each is the archive the index means (its id). Conflicted paths are
// skipped (Skipped, Conflict set); archives that cannot be opened are in
// Missing, and their paths skipped. Hard links are checked against the
// tree: see TreeMember.LinkAs.
func OpenTree(ctx context.Context, x *index.Index, open func(index.Archive) store.Source, opt TreeOptions) (*Tree, error) {
	var sel [][]byte
	for _, p := range opt.Paths {
		c, err := index.CanonicalPath(p)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", p, err)
		}
		sel = append(sel, c)
	}
	matched := make([]bool, len(sel))
	selected := func(p []byte) bool {
		if len(sel) == 0 {
			return true
		}
		hit := false
		for k, s := range sel {
			if len(s) == 0 || bytes.Equal(p, s) || len(p) > len(s) && bytes.HasPrefix(p, s) && p[len(s)] == '/' {
				matched[k], hit = true, true
			}
		}
		return hit
	}
	type pick struct {
		path []byte
		e    index.Entry
	}
	picks := make([]pick, 0, x.Len())
	t := &Tree{}
	need := map[int]int{} // archive position in x -> live paths
	for i := range x.Len() {
		p := x.Path(i)
		if !x.Live(i) || !selected(p) {
			continue
		}
		if x.Conflicted(i) {
			t.Skipped = append(t.Skipped, TreeSkip{Path: slices.Clone(p), Why: "conflict: two archives of one sequence hold it", Conflict: true})
			continue
		}
		es := x.Entries(i)
		e := es[len(es)-1]
		for _, c := range es {
			if x.Archives[c.Archive].Seq > x.Archives[e.Archive].Seq {
				e = c
			}
		}
		picks = append(picks, pick{slices.Clone(p), e})
		need[e.Archive]++
	}
	// Open every archive needed, once.
	order := make([]int, 0, len(need))
	for ai := range need {
		order = append(order, ai)
	}
	slices.SortFunc(order, func(a, b int) int { return cmpStr(x.Archives[a].Name, x.Archives[b].Name) })
	byPos := map[int]*TreeArchive{}
	for _, ai := range order {
		ta := &TreeArchive{Index: x.Archives[ai], Source: open(x.Archives[ai]), Paths: need[ai]}
		byPos[ai] = ta
		t.Archives = append(t.Archives, ta)
	}
	// Members are read in path order, which within one archive is mostly
	// its own order: a cache of blocks, shared by every archive so that its
	// memory does not grow with their number, turns the many small reads of
	// each member into a few large ones.
	cache := treeCache(len(t.Archives))
	err := parallel.Do(ctx, len(t.Archives), opt.Jobs, func(_ context.Context, i int) {
		ta := t.Archives[i]
		a, entries, closer, err := openSummaryVia(ta.Source, cache, opt.Keys...)
		if err == nil && a.Header.ID != ta.Index.ID {
			closer.Close()
			err = &ObjectError{Where: ta.Source.Location(), Err: &ArchiveIDError{Name: ta.Index.Name, Got: a.Header.ID, Want: ta.Index.ID}}
		}
		if err != nil {
			ta.Err = err
			return
		}
		ta.Archive, ta.Entries, ta.closer = a, entries, closer
	})
	if err != nil {
		t.Close()
		return nil, err
	}
	kept := t.Archives[:0]
	for _, ta := range t.Archives {
		if ta.Err != nil {
			t.Missing = append(t.Missing, ta)
		} else {
			kept = append(kept, ta)
		}
	}
	t.Archives = kept
	// Each path's member, from its archive's summary.
	t.Members = make([]TreeMember, 0, len(picks))
	for _, pk := range picks {
		ta := byPos[pk.e.Archive]
		if ta.Err != nil {
			t.Skipped = append(t.Skipped, TreeSkip{Path: pk.path, Why: "its archive " + ta.Index.Name + " was not opened"})
			continue
		}
		e, ok := memberByNumber(ta.Entries, pk.e.Member)
		if !ok {
			t.Skipped = append(t.Skipped, TreeSkip{Path: pk.path, Why: fmt.Sprintf("member %d is not in the summary of %s", pk.e.Member, ta.Index.Name)})
			continue
		}
		t.Members = append(t.Members, TreeMember{Path: pk.path, Archive: ta, Entry: e})
	}
	// The members are in path order: a path's member is found by binary
	// search.
	winner := func(p []byte) (*TreeMember, bool) {
		i, ok := slices.BinarySearchFunc(t.Members, p, func(m TreeMember, p []byte) int { return bytes.Compare(m.Path, p) })
		if !ok {
			return nil, false
		}
		return &t.Members[i], true
	}
	var drop []int
	// A hard link stays a link only when its target in the tree is the
	// very member it linked to: the last member of that path before the
	// link in the link's own archive.
	for i := range t.Members {
		m := &t.Members[i]
		if m.Entry.Meta.Type != format.TypeHardlink {
			continue
		}
		target, err := index.CanonicalPath(m.Entry.Meta.Link)
		if err != nil {
			t.Skipped = append(t.Skipped, TreeSkip{Path: m.Path, Why: fmt.Sprintf("hard link to %q, a path with no canonical form", m.Entry.Meta.Link)})
			drop = append(drop, i)
			continue
		}
		pointed, ok := lastBefore(m.Archive.Entries, target, m.Entry.Number)
		if w, in := winner(target); in && ok && w.Archive == m.Archive && w.Entry.Number == pointed.Number {
			continue
		}
		if !ok || pointed.Meta.Type != format.TypeRegular {
			t.Skipped = append(t.Skipped, TreeSkip{Path: m.Path, Why: fmt.Sprintf("hard link to %q, which is not a file before it in %s", target, m.Archive.Index.Name)})
			drop = append(drop, i)
			continue
		}
		m.LinkAs = &pointed
	}
	for _, i := range drop {
		t.Members[i].Archive = nil
	}
	t.Members = slices.DeleteFunc(t.Members, func(m TreeMember) bool { return m.Archive == nil })
	t.Members, t.Hidden = dropHidden(t.Members)
	t.Members = linksAfterTargets(t.Members)
	for k, ok := range matched {
		if !ok {
			t.Unmatched = append(t.Unmatched, opt.Paths[k])
		}
	}
	sort.SliceStable(t.Skipped, func(i, j int) bool { return bytes.Compare(t.Skipped[i].Path, t.Skipped[j].Path) < 0 })
	// The members not in the tree (superseded, deleted) need not stay.
	for _, ta := range t.Archives {
		ta.Entries = nil
	}
	return t, nil
}

// dropHidden leaves out the members below a member that is not a
// directory (any ancestor: a tar would write them through it). ms is in
// path order, where what is below a path P is one run: from P/ up to
// P0 ('0' follows '/'), found by binary search; an outer path comes
// before the paths below it, and names why they are left out.
func dropHidden(ms []TreeMember) (kept []TreeMember, hidden []TreeSkip) {
	var under []int // 1 + the member above it that hides it; 0: none
	var below []byte
	for i := range ms {
		m := &ms[i]
		if m.Entry.Meta.Type == format.TypeDir || under != nil && under[i] != 0 {
			continue
		}
		below = append(append(below[:0], m.Path...), '/')
		j, _ := slices.BinarySearchFunc(ms[i+1:], below, func(m TreeMember, p []byte) int { return bytes.Compare(m.Path, p) })
		for j += i + 1; j < len(ms) && bytes.HasPrefix(ms[j].Path, below); j++ {
			if under == nil {
				under = make([]int, len(ms))
			}
			if under[j] == 0 {
				under[j] = i + 1
			}
		}
	}
	if under == nil {
		return ms, nil
	}
	kept = make([]TreeMember, 0, len(ms))
	for i, m := range ms {
		if under[i] == 0 {
			kept = append(kept, m)
			continue
		}
		top := &ms[under[i]-1]
		hidden = append(hidden, TreeSkip{Path: m.Path, Why: fmt.Sprintf("below %q, which is now a %s, not a directory", top.Path, top.Entry.Meta.Type)})
	}
	return kept, hidden
}

// linksAfterTargets moves each hard link kept as a link to just after
// its target when the target's path sorts after the link's: tar makes a
// link only to a file it has already extracted.
func linksAfterTargets(ms []TreeMember) []TreeMember {
	postponed := map[string][]TreeMember{}
	out := make([]TreeMember, 0, len(ms))
	for _, m := range ms {
		if m.Entry.Meta.Type == format.TypeHardlink && m.LinkAs == nil {
			if target, err := index.CanonicalPath(m.Entry.Meta.Link); err == nil && bytes.Compare(target, m.Path) > 0 {
				postponed[string(target)] = append(postponed[string(target)], m)
				continue
			}
		}
		out = append(out, m)
		if ls, ok := postponed[string(m.Path)]; ok {
			out = append(out, ls...)
			delete(postponed, string(m.Path))
		}
	}
	// A target that was not in the tree after all (cannot happen for a
	// link kept as a link): at the end, in path order.
	for _, k := range slices.Sorted(maps.Keys(postponed)) {
		out = append(out, postponed[k]...)
	}
	return out
}

// treeCache is the block cache of a tree: 4 MiB, in blocks of 128 KiB,
// or smaller ones for more than 16 archives (down to 16 KiB: 256 blocks),
// two for each archive. In path order the members of one archive mostly
// follow each other, but several archives are read at once: the one that
// holds most of a directory, and every later archive that rewrote files
// in it, each at its own place. Four blocks of 1 MiB were read again and
// again by those cursors: 1.38 GB read for the 167 MB of archives of the
// benchmark's tree, 116 MB with 32 blocks of 128 KiB.
func treeCache(archives int) *format.BlockCache {
	const budget = 4 << 20
	size := 128 << 10
	for size > 16<<10 && budget/size < 2*archives {
		size /= 2
	}
	return format.NewBlockCacheOf(budget/size, size)
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// memberByNumber finds member n in a summary (in member order).
func memberByNumber(entries []format.Entry, n uint32) (format.Entry, bool) {
	i, ok := slices.BinarySearchFunc(entries, n, func(e format.Entry, n uint32) int {
		switch {
		case e.Number < n:
			return -1
		case e.Number > n:
			return 1
		}
		return 0
	})
	if !ok {
		return format.Entry{}, false
	}
	return entries[i], true
}

// lastBefore is the last member with canonical path p numbered below n.
func lastBefore(entries []format.Entry, p []byte, n uint32) (format.Entry, bool) {
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if e.Number >= n {
			continue
		}
		if c, err := index.CanonicalPath(e.Meta.Path); err == nil && bytes.Equal(c, p) {
			return e, true
		}
	}
	return format.Entry{}, false
}

// ErrIncomplete is returned when archives the tree needs could not be
// opened: a tree without them would be silently wrong.
var ErrIncomplete = errors.New("archives the index needs could not be opened")

// WriteTree writes every member of t as one plain tar entry to w, in
// order, calling onMember (when set) before each; it does not write the
// end-of-archive blocks. It returns how many members and bytes it wrote;
// on an error (a member that fails authentication names it) what was
// written is incomplete. The members are read as one stream
// (format.MemberStream): one goroutine reads their frames in output
// order, which within each archive is mostly the archive's own, through
// the tree's block cache; the other cores authenticate and decompress
// them ahead of the writer, a bounded window of frames at a time. A hard
// link written as the file it linked to is read by random access.
func WriteTree(ctx context.Context, t *Tree, w io.Writer, onMember func(*TreeMember)) (n int, written int64, err error) {
	cw := &countWriter{w: w}
	var items []format.StreamItem
	for i := range t.Members {
		if m := &t.Members[i]; m.LinkAs == nil {
			items = append(items, format.StreamItem{Archive: m.Archive.Archive, Entry: m.Entry})
		}
	}
	ms := format.NewMemberStream(items)
	defer ms.Close()
	for i := range t.Members {
		if err := context.Cause(ctx); err != nil {
			return n, cw.n, err
		}
		m := &t.Members[i]
		if onMember != nil {
			onMember(m)
		}
		var err error
		if m.LinkAs != nil {
			err = tarconv.WriteMemberAs(cw, m.Archive.Archive, *m.LinkAs, m.Entry.Meta.Path)
		} else {
			var sm *format.Member
			if sm, err = ms.Next(); err == nil {
				err = tarconv.WriteStreamMember(cw, sm, ms)
			}
		}
		if err != nil {
			return n, cw.n, locErr(m.Archive.Source, err)
		}
		n++
	}
	return n, cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
