package format

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/internal/frame"
)

// The master index (spec/cbfs-index-v1.md): for every path of a file
// system, the member that holds its current state. This file holds the
// model (records, the winner rule, merging); indexcodec.go holds the
// sealed encoding.

// Caps of the master index.
const (
	// MaxIndexArchives caps the archives table of one index.
	MaxIndexArchives = 1 << 26
	// MaxArchiveNameLen caps an archive's file name (NAME_MAX).
	MaxArchiveNameLen = 255
	// maxIndexValue caps offsets and sizes, as in the summary.
	maxIndexValue = 1 << 62
	// pathBlockCap caps one block of the path store: record offsets into
	// a block are 32 bits.
	pathBlockCap = 1 << 30
)

// IndexedType reports whether members of type t take part in the index:
// the file types and tombstones. Imported pax globals, other tar entries
// and trailers hold no path of the file system.
func IndexedType(t Type) bool { return t >= TypeRegular && t <= TypeTombstone }

// IndexArchive is one row of an index's archives table.
type IndexArchive struct {
	// Name is the archive's file name (a base name, no directory).
	Name    string
	ID      [crypt.IDSize]byte
	Seq     uint64 // the archive header's sequence number
	Members uint64 // member count (the footer's; after a scan, one more than the last member seen)
}

// IndexEntry is one archive's claim on a path: where it holds the path.
type IndexEntry struct {
	Archive int // position in Index.Archives
	Member  uint32
	Type    Type
	// Offset is the physical offset of the member's metadata frame; Span
	// the number of bytes from there to the end of its last content
	// frame, record headers included: the byte range to fetch.
	Offset, Span int64
	Size         int64 // logical file size
	Inode        uint64
}

// cand is an IndexEntry in memory.
type cand struct {
	off, span, size int64
	inode           uint64
	arch, member    uint32
	typ             Type
}

// irec is one record: a path and its first (or only) candidate. It is
// kept to 56 bytes and holds no pointers, so a million records cost the
// garbage collector nothing to scan.
type irec struct {
	off, span, size int64
	inode           uint64
	arch, member    uint32
	blk, poff       uint32 // path: blocks[blk][poff : poff+len]
	lt              uint32 // path length (low 24 bits), type (high 8)
	xi              uint32 // 0, or 1 + position in Index.conf of the other candidates
}

func (r *irec) plen() int { return int(r.lt & (1<<24 - 1)) }
func (r *irec) typ() Type { return Type(r.lt >> 24) }
func (r *irec) first() cand {
	return cand{off: r.off, span: r.span, size: r.size, inode: r.inode, arch: r.arch, member: r.member, typ: r.typ()}
}

func (r *irec) setFirst(c cand) {
	r.off, r.span, r.size, r.inode, r.arch, r.member = c.off, c.span, c.size, c.inode, c.arch, c.member
	r.lt = r.lt&(1<<24-1) | uint32(c.typ)<<24
}

// Index is a master index in memory. Records are sorted by path; each
// holds the winning member for its path, or, for a conflict, every
// candidate with the highest sequence number.
type Index struct {
	// HighSeq is the highest sequence number the index has seen (spec
	// "high-seq"): at least every archive's in the table. A writer never
	// takes a sequence number below it, so that a lost or older index is
	// not silently restarted at 1.
	HighSeq  uint64
	Archives []IndexArchive
	recs     []irec
	conf     [][]cand // other candidates of conflicted records, sorted by archive
	blocks   [][]byte // path bytes
	run      *compactRun
}

// Len is the number of records (paths), tombstones included.
func (x *Index) Len() int { x.ensure(); return len(x.recs) }

func (x *Index) path(r *irec) []byte {
	return x.blocks[r.blk][r.poff : int(r.poff)+r.plen()]
}

// Path returns record i's path. The bytes belong to the index.
func (x *Index) Path(i int) []byte { x.ensure(); return x.path(&x.recs[i]) }

// Conflicted reports whether record i holds more than one candidate: two
// archives with the same sequence number both hold the path.
func (x *Index) Conflicted(i int) bool { x.ensure(); return x.recs[i].xi != 0 }

func (x *Index) cands(r *irec, dst []cand) []cand {
	dst = append(dst, r.first())
	if r.xi != 0 {
		dst = append(dst, x.conf[r.xi-1]...)
	}
	return dst
}

// Entries returns record i's candidates: one, or several for a conflict,
// sorted by archive (name, then id).
func (x *Index) Entries(i int) []IndexEntry {
	x.ensure()
	r := &x.recs[i]
	var out []IndexEntry
	for _, c := range x.cands(r, nil) {
		out = append(out, IndexEntry{Archive: int(c.arch), Member: c.member, Type: c.typ,
			Offset: c.off, Span: c.span, Size: c.size, Inode: c.inode})
	}
	return out
}

// Live reports whether record i is a live path: at least one candidate is
// not a tombstone.
func (x *Index) Live(i int) bool {
	x.ensure()
	r := &x.recs[i]
	if r.typ() != TypeTombstone {
		return true
	}
	if r.xi != 0 {
		for _, c := range x.conf[r.xi-1] {
			if c.typ != TypeTombstone {
				return true
			}
		}
	}
	return false
}

// Find returns the position of path's record, and whether it is there.
func (x *Index) Find(path []byte) (int, bool) {
	x.ensure()
	return slices.BinarySearchFunc(x.recs, path, func(r irec, p []byte) int {
		return bytes.Compare(x.path(&r), p)
	})
}

// IndexStats counts an index's records.
type IndexStats struct {
	Records, Live, Tombstones, Conflicts int
}

// Stats counts the records.
func (x *Index) Stats() IndexStats {
	x.ensure()
	s := IndexStats{Records: len(x.recs)}
	for i := range x.recs {
		if x.Live(i) {
			s.Live++
		} else {
			s.Tombstones++
		}
		if x.recs[i].xi != 0 {
			s.Conflicts++
		}
	}
	return s
}

// MaxSeq is the highest sequence number in the archives table, and false
// for an empty table.
func (x *Index) MaxSeq() (uint64, bool) {
	var m uint64
	for _, a := range x.Archives {
		m = max(m, a.Seq)
	}
	return m, len(x.Archives) > 0
}

// checkArchive checks a table row's own fields.
func checkArchive(a *IndexArchive) error {
	n := a.Name
	if len(n) == 0 || len(n) > MaxArchiveNameLen || n == "." || n == ".." || bytes.IndexByte([]byte(n), '/') >= 0 || bytes.IndexByte([]byte(n), 0) >= 0 {
		return fmt.Errorf("archive name %q is not a file name of 1 to %d bytes", n, MaxArchiveNameLen)
	}
	if a.Members > MaxMembers {
		return fmt.Errorf("archive %s: member count %d over the cap %d", n, a.Members, uint64(MaxMembers))
	}
	return nil
}

func compareArchives(a, b *IndexArchive) int {
	if c := cmp.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return bytes.Compare(a.ID[:], b.ID[:])
}

// IndexBuilder collects the members of one archive into a one-archive
// index. Within an archive a later member supersedes an earlier one with
// the same path, as in tar.
type IndexBuilder struct {
	x   Index
	buf []byte
}

// NewIndexBuilder starts the index of one archive. members and pathBytes
// are size hints (zero if not known).
func NewIndexBuilder(a IndexArchive, members, pathBytes int) (*IndexBuilder, error) {
	if err := checkArchive(&a); err != nil {
		return nil, err
	}
	b := &IndexBuilder{x: Index{HighSeq: a.Seq, Archives: []IndexArchive{a}}}
	b.x.recs = make([]irec, 0, min(members, 1<<20))
	b.buf = make([]byte, 0, min(pathBytes, pathBlockCap))
	return b, nil
}

// Reset starts the index of another archive, reusing the builder's
// buffer for paths.
func (b *IndexBuilder) Reset(a IndexArchive, members int) error {
	if err := checkArchive(&a); err != nil {
		return err
	}
	recs := b.x.recs[:0]
	if want := min(members, 1<<20); cap(recs) < want {
		recs = make([]irec, 0, want)
	}
	b.x = Index{HighSeq: a.Seq, Archives: []IndexArchive{a}, recs: recs}
	b.buf = b.buf[:0]
	return nil
}

// Add records one member under the canonical form of its path. Members
// of types the index does not take (see IndexedType), and members whose
// path names the root, are skipped. A member whose path has a ".."
// component is skipped too, and the *CanonicalPathError returned says
// so: the caller reports it and goes on.
func (b *IndexBuilder) Add(path []byte, e IndexEntry) error {
	if len(b.x.Archives) != 1 {
		return errors.New("IndexBuilder.Add after Index without Reset")
	}
	if !IndexedType(e.Type) {
		return nil
	}
	path, err := CanonicalPath(path)
	if err != nil {
		if ce := err.(*CanonicalPathError); ce.Root {
			return nil
		}
		return err
	}
	if len(path) > MaxPathLen {
		return fmt.Errorf("member %d: path of %d bytes over the cap %d", e.Member, len(path), MaxPathLen)
	}
	if e.Offset < 0 || e.Offset > maxIndexValue || e.Span <= 0 || e.Span > maxIndexValue || e.Size < 0 || e.Size > maxIndexValue {
		return fmt.Errorf("member %d (%q): offset %d, span %d or size %d out of range", e.Member, path, e.Offset, e.Span, e.Size)
	}
	if uint64(e.Member) >= b.x.Archives[0].Members {
		return fmt.Errorf("member %d (%q): archive %s has %d members", e.Member, path, b.x.Archives[0].Name, b.x.Archives[0].Members)
	}
	if len(b.buf)+len(path) > pathBlockCap {
		b.x.blocks = append(b.x.blocks, b.buf)
		b.buf = make([]byte, 0, pathBlockCap)
	}
	r := irec{blk: uint32(len(b.x.blocks)), poff: uint32(len(b.buf)), lt: uint32(len(path))}
	r.setFirst(cand{off: e.Offset, span: e.Span, size: e.Size, inode: e.Inode, member: e.Member, typ: e.Type})
	b.buf = append(b.buf, path...)
	b.x.recs = append(b.x.recs, r)
	return nil
}

// sortRecs sorts the records by path and keeps the last member of each.
func (b *IndexBuilder) sortRecs() {
	recs := b.x.recs
	sorted := true
	for i := 1; i < len(recs); i++ {
		if bytes.Compare(b.path(&recs[i-1]), b.path(&recs[i])) >= 0 {
			sorted = false
			break
		}
	}
	if sorted {
		return
	}
	slices.SortFunc(recs, func(p, q irec) int {
		if c := bytes.Compare(b.path(&p), b.path(&q)); c != 0 {
			return c
		}
		return cmp.Compare(q.member, p.member) // the last member first
	})
	out := recs[:0]
	for i := range recs {
		if len(out) > 0 && bytes.Equal(b.path(&out[len(out)-1]), b.path(&recs[i])) {
			continue
		}
		out = append(out, recs[i])
	}
	b.x.recs = out
}

// Index sorts the records, keeps the last member of each path, and
// returns the archive's index. Reset the builder to use it again.
func (b *IndexBuilder) Index() *Index {
	b.sortRecs()
	x := new(Index)
	*x = b.x
	b.x = Index{}
	// Copy the paths to a block of their exact size: the buffer is the
	// builder's, and the block lives as long as the index.
	x.blocks = append(x.blocks, bytes.Clone(b.buf))
	b.buf = b.buf[:0]
	if cap(x.recs) > len(x.recs)+len(x.recs)/8+16 {
		x.recs = slices.Clone(x.recs)
	}
	return x
}

// IndexCopy is an archive seen twice, under the same id: a copy, or the
// same file given twice. It counts once, under the first of its names.
type IndexCopy struct {
	ID    [crypt.IDSize]byte
	Names [2]string
}

// MergeIndex combines two indexes; see MergeIndexes.
func MergeIndex(a, b *Index) (*Index, []IndexCopy, error) {
	return MergeIndexes([]*Index{a, b})
}

// MergeIndexes combines indexes: the union of their archives (an archive
// id present in more than one counts once), and for each path the winner
// over all of them (spec "Winner"). The result does not depend on how the
// archives were grouped into parts or in which order, so merging
// per-archive indexes, or merged parts, gives the same index. The parts
// are spent.
//
// It is one k-way merge: each record is copied once. Large merges are cut
// into ranges of paths merged in parallel.
func MergeIndexes(parts []*Index) (*Index, []IndexCopy, error) {
	out := &Index{}
	for _, x := range parts {
		out.HighSeq = max(out.HighSeq, x.HighSeq)
	}
	maps, copies, err := out.mergeTables(parts)
	if err != nil {
		return nil, nil, err
	}
	shift := make([]uint32, len(parts))
	nblocks, total := 0, 0
	for p, x := range parts {
		shift[p] = uint32(nblocks)
		nblocks += len(x.blocks)
		total += x.size()
	}
	if nblocks > 1<<32-1 {
		return nil, nil, errors.New("index too large: over 2^32 path blocks")
	}
	out.blocks = make([][]byte, 0, nblocks)
	for _, x := range parts {
		out.blocks = append(out.blocks, x.blocks...)
	}
	out.recs = make([]irec, total)
	segs := splitRanges(parts, total)
	done := make([]segResult, len(segs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))
	for i := range segs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			done[i] = mergeRange(parts, segs[i], maps, shift, out.Archives, out.recs[segs[i].at:segs[i].at+segs[i].n])
		}()
	}
	wg.Wait()
	// Close the gaps that merged paths left, and number the conflicts.
	n := 0
	for i, seg := range segs {
		base := uint32(len(out.conf))
		for k := range done[i].n {
			r := out.recs[seg.at+k]
			if r.xi != 0 {
				r.xi += base
			}
			out.recs[n] = r
			n++
		}
		out.conf = append(out.conf, done[i].conf...)
	}
	out.recs = out.recs[:n]
	if n < total-total/8 {
		out.recs = slices.Clone(out.recs)
	}
	return out, copies, nil
}

// segRange is a range of paths: in each part, records [lo[p], hi[p]).
type segRange struct {
	lo, hi []pos
	at, n  int // where its records go in the output, and how many at most
}

type segResult struct {
	n    int
	conf [][]cand
}

// splitRanges cuts the merge into ranges of paths of similar size, by
// splitters sampled from every part.
func splitRanges(parts []*Index, total int) []segRange {
	nseg := 1
	if total >= 1<<16 {
		nseg = 4 * max(1, runtime.GOMAXPROCS(0))
	}
	var samples [][]byte
	if nseg > 1 {
		// About 64 samples per range, from each part in proportion to
		// its size, at least one from each.
		want := 64 * nseg
		for _, x := range parts {
			n, step := x.samplePoints()
			c := min(n, (x.size()*want+total-1)/total)
			for j := range c {
				samples = append(samples, x.pathAt((2*j+1)*n/(2*c)*step))
			}
		}
		slices.SortFunc(samples, bytes.Compare)
	}
	var split [][]byte
	for s := 1; s < nseg && len(samples) > 0; s++ {
		p := samples[s*len(samples)/nseg]
		if len(split) == 0 || bytes.Compare(split[len(split)-1], p) < 0 {
			split = append(split, p)
		}
	}
	segs := make([]segRange, len(split)+1)
	prev := make([]pos, len(parts))
	at := 0
	for s := range segs {
		hi := make([]pos, len(parts))
		for p, x := range parts {
			if s == len(split) {
				hi[p] = pos{i: x.size()}
				if x.run != nil {
					hi[p].off = len(x.run.buf)
				}
				continue
			}
			hi[p] = x.lowerBound(split[s])
		}
		n := 0
		for p := range parts {
			n += hi[p].i - prev[p].i
		}
		segs[s] = segRange{lo: prev, hi: hi, at: at, n: n}
		at += n
		prev = hi
	}
	return segs
}

// mergeRange merges one range of paths of every part into dst.
func mergeRange(parts []*Index, seg segRange, maps [][]uint32, shift []uint32, arch []IndexArchive, dst []irec) segResult {
	var res segResult
	var live []int // parts with records in the range
	for p := range parts {
		if seg.hi[p].i > seg.lo[p].i {
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		return res
	}
	cur := make([]cursor, len(live))
	for i, p := range live {
		x := parts[p]
		cur[i] = cursor{x: x, compact: x.run != nil, i: seg.lo[p].i, end: seg.hi[p].i, off: seg.lo[p].off}
		cur[i].load()
	}
	less := func(a, b int) bool {
		if cur[a].path == nil {
			return false
		}
		if cur[b].path == nil {
			return true
		}
		if c := bytes.Compare(cur[a].path, cur[b].path); c != 0 {
			return c < 0
		}
		return a < b
	}
	lt := newLoserTree(len(live), less)
	advance := func(i int) {
		cur[i].advance()
		lt.replay(i)
	}
	var cs []cand
	n := 0
	for w := lt.winner(); cur[w].path != nil; w = lt.winner() {
		p := live[w]
		cw := &cur[w]
		out := cw.rec(shift[p], maps[p][0])
		path := cw.path
		conflicted := !cw.compact && cw.x.recs[cw.i].xi != 0
		if conflicted {
			cs = remapCands(cw.cands(cs[:0]), maps[p])
		}
		advance(w)
		if next := cur[lt.winner()].path; next == nil || !bytes.Equal(next, path) {
			// The common case: one part holds the path.
			if !conflicted {
				if !cw.compact {
					out.arch = maps[p][out.arch]
				}
				dst[n] = out
				n++
				continue
			}
			// A conflict from one part: a rename of a copy may reorder
			// the table, so sort the candidates again.
			slices.SortFunc(cs, func(a, b cand) int { return cmp.Compare(a.arch, b.arch) })
		} else {
			// The path is in several parts: gather every candidate. The
			// winner's were taken before it advanced (its cursor has
			// moved on), so take them from out.
			if !conflicted {
				c0 := out.first()
				if !cw.compact {
					c0.arch = maps[p][c0.arch]
				}
				cs = append(cs[:0], c0)
			}
			for w2 := lt.winner(); cur[w2].path != nil && bytes.Equal(cur[w2].path, path); w2 = lt.winner() {
				p2 := live[w2]
				k := len(cs)
				cs = cur[w2].cands(cs)
				remapCands(cs[k:], maps[p2])
				advance(w2)
			}
			cs = winners(cs, arch)
		}
		out.setFirst(cs[0])
		out.xi = 0
		if len(cs) > 1 {
			res.conf = append(res.conf, slices.Clone(cs[1:]))
			out.xi = uint32(len(res.conf))
		}
		dst[n] = out
		n++
	}
	res.n = n
	return res
}

// loserTree is a tournament tree over k sorted sequences: the smallest
// head in log2(k) comparisons per step.
type loserTree struct {
	k    int
	tree []int // tree[0] is the winner, tree[1:] the losers of each match
	less func(a, b int) bool
}

func newLoserTree(k int, less func(a, b int) bool) *loserTree {
	t := &loserTree{k: k, tree: make([]int, k), less: less}
	win := make([]int, 2*k)
	for i := range k {
		win[k+i] = i
	}
	for n := k - 1; n >= 1; n-- {
		a, b := win[2*n], win[2*n+1]
		if less(b, a) {
			a, b = b, a
		}
		win[n], t.tree[n] = a, b
	}
	if k > 1 {
		t.tree[0] = win[1]
	}
	return t
}

func (t *loserTree) winner() int { return t.tree[0] }

// replay runs the matches from leaf i up after its head changed.
func (t *loserTree) replay(i int) {
	w := i
	for n := (i + t.k) / 2; n >= 1; n /= 2 {
		if t.less(t.tree[n], w) {
			t.tree[n], w = w, t.tree[n]
		}
	}
	t.tree[0] = w
}

func remapCands(cs []cand, m []uint32) []cand {
	for k := range cs {
		cs[k].arch = m[cs[k].arch]
	}
	return cs
}

// setCands stores a record's candidates, sorted by archive.
func (x *Index) setCands(r *irec, cs []cand) {
	r.setFirst(cs[0])
	r.xi = 0
	if len(cs) > 1 {
		x.conf = append(x.conf, slices.Clone(cs[1:]))
		r.xi = uint32(len(x.conf))
	}
}

// winners applies the winner rule to every candidate for one path: per
// archive the highest member number; then those with the highest
// sequence number. More than one left is a conflict. The result is sorted
// by archive.
func winners(cs []cand, arch []IndexArchive) []cand {
	slices.SortFunc(cs, func(p, q cand) int {
		if c := cmp.Compare(p.arch, q.arch); c != 0 {
			return c
		}
		if c := cmp.Compare(q.member, p.member); c != 0 {
			return c
		}
		// The same member of the same archive seen twice (a copy): the
		// fields agree unless a copy lies; pick one by value, so that the
		// order of merging never matters.
		return cmpCandFields(p, q)
	})
	out := cs[:0]
	var top uint64
	for k, c := range cs {
		if k > 0 && c.arch == cs[k-1].arch {
			continue
		}
		seq := arch[c.arch].Seq
		if len(out) > 0 && seq < top {
			continue
		}
		if len(out) > 0 && seq > top {
			out = out[:0]
		}
		top = seq
		out = append(out, c)
	}
	return out
}

func cmpCandFields(p, q cand) int {
	return cmp.Or(cmp.Compare(p.typ, q.typ), cmp.Compare(p.off, q.off), cmp.Compare(p.span, q.span),
		cmp.Compare(p.size, q.size), cmp.Compare(p.inode, q.inode))
}

// mergeTables sets x.Archives to the union of the parts' tables and
// returns where each row of each part went.
func (x *Index) mergeTables(parts []*Index) ([][]uint32, []IndexCopy, error) {
	type row struct {
		IndexArchive
		from []int32 // part, row pairs
	}
	byID := map[[crypt.IDSize]byte]int{}
	var rows []row
	var copies []IndexCopy
	for p, part := range parts {
		for i := range part.Archives {
			a := &part.Archives[i]
			if k, ok := byID[a.ID]; ok {
				r := &rows[k]
				if r.Seq != a.Seq {
					return nil, nil, fmt.Errorf("archive id %x is %s with sequence %d and %s with sequence %d: the same archive cannot have two sequence numbers",
						a.ID, r.Name, r.Seq, a.Name, a.Seq)
				}
				copies = append(copies, IndexCopy{ID: a.ID, Names: [2]string{min(r.Name, a.Name), max(r.Name, a.Name)}})
				r.Name = min(r.Name, a.Name)
				r.Members = max(r.Members, a.Members)
				r.from = append(r.from, int32(p), int32(i))
				continue
			}
			byID[a.ID] = len(rows)
			rows = append(rows, row{IndexArchive: *a, from: []int32{int32(p), int32(i)}})
		}
	}
	if len(rows) > MaxIndexArchives {
		return nil, nil, fmt.Errorf("index over %d archives", MaxIndexArchives)
	}
	slices.SortFunc(rows, func(p, q row) int { return compareArchives(&p.IndexArchive, &q.IndexArchive) })
	// An index names archives by file name (spec cbfs-index-v1 6.1): two
	// different archives of one name would leave a lookup no way to tell
	// which file holds a path.
	for k := 1; k < len(rows); k++ {
		if rows[k].Name == rows[k-1].Name {
			return nil, nil, fmt.Errorf("two different archives are both named %q (ids %x and %x): an index names archives by file name; rename one",
				rows[k].Name, rows[k-1].ID, rows[k].ID)
		}
	}
	maps := make([][]uint32, len(parts))
	for p, part := range parts {
		maps[p] = make([]uint32, len(part.Archives))
	}
	x.Archives = make([]IndexArchive, len(rows))
	for k, r := range rows {
		x.Archives[k] = r.IndexArchive
		for j := 0; j < len(r.from); j += 2 {
			maps[r.from[j]][r.from[j+1]] = uint32(k)
		}
	}
	return maps, copies, nil
}

// PhysOffset maps a logical offset of the archive's frame stream to its
// byte offset in the archive.
func (h *Header) PhysOffset(l int64) int64 { return physOf(l, int64(h.RecordSize)) }

// PhysSpan is the number of archive bytes that hold the logical range
// [off, off+length), record headers included. It ends at the range's last
// byte, so that a range ending on a record boundary does not take in the
// next record's header.
func (h *Header) PhysSpan(off, length int64) int64 {
	if length <= 0 {
		return 0
	}
	return h.PhysOffset(off+length-1) + 1 - h.PhysOffset(off)
}

// IndexItem is what the master index takes from one member's summary
// entry.
type IndexItem struct {
	Member uint32
	Type   Type
	Path   []byte // valid until the callback returns
	// Offset and Span are physical (see IndexEntry).
	Offset, Span int64
	Size         int64
	Inode        uint64
}

// IndexScratch holds the buffers IndexItems reuses from one archive to
// the next. The zero value is ready; one per goroutine.
type IndexScratch struct {
	phys, logical, plain, lz []byte
}

// IndexItems reads the summary and calls fn with each member's index
// fields, in member order. It is Entries without building a Meta per
// member: the fields the index does not use are walked over, with their
// framing checked (tags in order, lengths in bounds, no unknown critical
// tag) but not decoded. The summary is read with one ReadAt into s's
// buffers. On an error fn may have been called for some members: discard
// what it collected.
func (a *Archive) IndexItems(s *IndexScratch, fn func(*IndexItem) error) error {
	if a.keys == nil {
		return errors.New("the summary cannot be read without the key")
	}
	plain, err := a.summaryPlain(s)
	if err != nil {
		return err
	}
	sumErr := func(format string, args ...any) error {
		return newErr(ClassSummary, a.PhysOffset(int64(a.Footer.SummaryOffset)), -1, format, args...)
	}
	want := a.Footer.Members
	if want > uint64(len(plain))/5+1 {
		return sumErr("footer counts %d members, the summary has room for fewer", want)
	}
	p := plain
	var prevEnd int64
	var it IndexItem
	n := uint64(0)
	for ; len(p) > 0; n++ {
		if n >= want {
			return sumErr("more summary entries than the footer's %d members", want)
		}
		var vals [3]uint64
		for i := range vals {
			v, k := binary.Uvarint(p)
			if k <= 0 || (k > 1 && p[k-1] == 0) {
				return sumErr("entry %d: bad varint", n)
			}
			vals[i], p = v, p[k:]
		}
		if vals[2] > uint64(len(p)) {
			return sumErr("entry %d: metadata past the end", n)
		}
		off, length := int64(vals[0]), int64(vals[1])
		if vals[0] > 1<<62 || vals[1] > 1<<62 || off != prevEnd || length < minMemberLen {
			return sumErr("entry %d: offset %d and length %d do not follow the previous member", n, off, length)
		}
		prevEnd = off + length
		if err := leanMeta(p[:vals[2]], &it); err != nil {
			return sumErr("entry %d: %v", n, err)
		}
		p = p[vals[2]:]
		it.Member = uint32(n)
		it.Offset = a.PhysOffset(off)
		it.Span = a.Header.PhysSpan(off, length)
		if err := fn(&it); err != nil {
			return err
		}
	}
	if n != want {
		return sumErr("summary lists %d members, the footer counts %d", n, want)
	}
	if prevEnd != int64(a.Footer.SummaryOffset) {
		return sumErr("the members listed end at %d, the summary starts at %d", prevEnd, a.Footer.SummaryOffset)
	}
	return nil
}

// summaryPlain reads the summary's frames with one ReadAt and opens
// them, with readStream's checks (checkFrameLen, openChunk), into s's
// buffers.
func (a *Archive) summaryPlain(s *IndexScratch) ([]byte, error) {
	R := int64(a.Header.RecordSize)
	cs := int64(a.Header.ChunkSize)
	start, end := int64(a.Footer.SummaryOffset), int64(a.Footer.StreamLength)
	pstart := physOf(start, R)
	plen := physOf(end-1, R) + 1 - pstart
	// Frames are at least the plaintext they hold: a summary over the
	// cap in frames is over it in plaintext too.
	if end-start > MaxSummarySize+MaxSummarySize/int64(MinChunkSize)*(FrameHeaderSize+summaryFrameLen(cs)-cs) {
		return nil, newErr(ClassSummary, pstart, -1, "summary over %d bytes", int64(MaxSummarySize))
	}
	s.phys = grow(s.phys, int(plen))
	if n, err := a.src.ReadAt(s.phys, pstart); n < len(s.phys) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	// The logical bytes: the physical ones without the record headers,
	// which is the physical bytes themselves when no record starts
	// within the summary.
	logical := s.phys
	if plen != end-start {
		s.logical = s.logical[:0]
		for l := start; l < end; {
			k := min(R-l%R, end-l)
			o := physOf(l, R) - pstart
			s.logical = append(s.logical, s.phys[o:o+k]...)
			l += k
		}
		logical = s.logical
	}
	s.plain = s.plain[:0]
	s.lz = grow(s.lz, int(cs))
	rest := logical
	for index := uint64(0); ; index++ {
		fo := end - int64(len(rest))
		bad := func(what string, args ...any) ([]byte, error) {
			return nil, newErr(ClassSummary, physOf(fo, R), -1, what, args...)
		}
		if len(rest) < FrameHeaderSize {
			return bad("stream ends before its final frame")
		}
		hb := rest[:FrameHeaderSize]
		fh, why := parseFrameHeader(hb)
		if why == "" && fh.Kind != KindSummary {
			why = fmt.Sprintf("%q frame in a summary stream", fh.Kind)
		}
		if why == "" {
			why = checkFrameLen(fh, cs)
		}
		if why == "" && int64(fh.Len) > int64(len(rest)-FrameHeaderSize) {
			why = "frame cut short"
		}
		if why != "" {
			return bad("%s", why)
		}
		payload := rest[FrameHeaderSize : FrameHeaderSize+int(fh.Len)]
		rest = rest[FrameHeaderSize+int(fh.Len):]
		if frame.CRC(hb, payload) != fh.CRC {
			return bad("frame checksum mismatch")
		}
		plain, why := openChunk(a.keys, fh, hb, payload, 0, index, int(cs), s.lz)
		if why != "" {
			return bad("summary frame %d: %s", index, why)
		}
		if int64(len(s.plain))+int64(len(plain)) > MaxSummarySize {
			return bad("summary over %d bytes", int64(MaxSummarySize))
		}
		s.plain = append(s.plain, plain...)
		if fh.Final() {
			if len(rest) != 0 {
				return bad("%d bytes after the final frame", len(rest))
			}
			return s.plain, nil
		}
	}
}

// Trim drops buffers over max bytes, so that one huge summary's do not
// stay for the next archive.
func (s *IndexScratch) Trim(max int) {
	if cap(s.phys)+cap(s.logical)+cap(s.plain) > max {
		*s = IndexScratch{}
	}
}

// grow returns b resized to n, reusing its memory when it is big enough.
func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n, n+n/4)
	}
	return b[:n]
}

// leanMeta takes the type, path, size and inode from a summary-form
// metadata record, checking the record's framing on the way.
func leanMeta(b []byte, it *IndexItem) error {
	*it = IndexItem{}
	last := -1
	seenType, seenPath := false, false
	for len(b) > 0 {
		tag := int(b[0])
		b = b[1:]
		if tag <= last {
			return fmt.Errorf("field %d out of order", tag)
		}
		last = tag
		l, k := binary.Uvarint(b)
		if k <= 0 || (k > 1 && b[k-1] == 0) || l > uint64(len(b)-k) {
			return fmt.Errorf("field %d: bad length", tag)
		}
		v := b[k : k+int(l)]
		b = b[k+int(l):]
		num := func() (uint64, error) {
			x, n := binary.Uvarint(v)
			if n <= 0 || n != len(v) || (n > 1 && v[n-1] == 0) {
				return 0, fmt.Errorf("field %d: bad varint", tag)
			}
			return x, nil
		}
		switch tag {
		case tagType:
			t, err := num()
			if err != nil {
				return err
			}
			if t == 0 || t > uint64(maxType) {
				return fmt.Errorf("unknown member type %d", t)
			}
			it.Type, seenType = Type(t), true
		case tagPath:
			if len(v) > MaxPathLen {
				return fmt.Errorf("path over %d bytes", MaxPathLen)
			}
			it.Path, seenPath = v, true
		case tagSize:
			s, err := num()
			if err != nil {
				return err
			}
			if s > 1<<62 {
				return errors.New("size over 2^62")
			}
			it.Size = int64(s)
		case tagInode:
			x, err := num()
			if err != nil {
				return err
			}
			it.Inode = x
		default:
			if tag < firstOptionalTag && (tag < tagType || tag > tagTarHeader) && tag != tagTypeflag {
				// The fields DecodeMeta knows; any other critical one is refused.
				return fmt.Errorf("unknown critical field %d", tag)
			}
		}
	}
	if !seenType || !seenPath {
		return errors.New("no type or no path field")
	}
	if it.Type == TypeTombstone && len(it.Path) == 0 {
		return errors.New("tombstone without a path")
	}
	return nil
}
