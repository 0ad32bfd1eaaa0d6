package index

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/internal/parallel"
)

// Copy is an archive seen twice, under the same id: a copy, or the
// same file given twice. It counts once, under the first of its names.
type Copy struct {
	ID    [crypt.IDSize]byte
	Names [2]string
}

// Merge combines indexes: the union of their archives (an archive
// id present in more than one counts once), and for each path the winner
// over all of them (spec "Winner"). The result does not depend on how the
// archives were grouped into parts or in which order, so merging
// per-archive indexes, or merged parts, gives the same index. The parts
// are spent.
//
// It is one k-way merge: each record is copied once. Large merges are cut
// into ranges of paths merged in parallel.
func Merge(parts ...*Index) (*Index, []Copy, error) {
	out := &Index{}
	for _, x := range parts {
		out.HighSeq = max(out.HighSeq, x.HighSeq)
	}
	maps, copies, filter, err := out.mergeTables(parts)
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
	// A merge runs to its end: it is memory-bound work of seconds at most.
	parallel.Do(context.Background(), len(segs), runtime.GOMAXPROCS(0), func(_ context.Context, i int) {
		done[i] = mergeRange(parts, segs[i], maps, shift, out.Archives, out.recs[segs[i].at:segs[i].at+segs[i].n], filter)
	})
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

// mergeRange merges one range of paths of every part into dst. With
// filter, some rows map to noRow (retired archives): every record then
// takes the general path, which drops their candidates first.
func mergeRange(parts []*Index, seg segRange, maps [][]uint32, shift []uint32, arch []Archive, dst []irec, filter bool) segResult {
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
		if next := cur[lt.winner()].path; !filter && (next == nil || !bytes.Equal(next, path)) {
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
			if filter {
				cs = slices.DeleteFunc(cs, func(c cand) bool { return c.arch == noRow })
				if len(cs) == 0 {
					continue
				}
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
func winners(cs []cand, arch []Archive) []cand {
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

// mergeTables sets x.Archives to the union of the parts' tables less
// the retired archives (spec 2.8), and returns where each row of each
// part went (noRow for a retired one) and whether any was retired.
func (x *Index) mergeTables(parts []*Index) ([][]uint32, []Copy, bool, error) {
	type row struct {
		Archive
		from []int32 // part, row pairs
	}
	byID := map[[crypt.IDSize]byte]int{}
	var rows []row
	var copies []Copy
	for p, part := range parts {
		for i := range part.Archives {
			a := &part.Archives[i]
			if k, ok := byID[a.ID]; ok {
				r := &rows[k]
				if r.Seq != a.Seq {
					return nil, nil, false, fmt.Errorf("archive id %x is %s with sequence %d and %s with sequence %d: the same archive cannot have two sequence numbers",
						a.ID, r.Name, r.Seq, a.Name, a.Seq)
				}
				if !sameReplaces(r.Replaces, a.Replaces) {
					return nil, nil, false, fmt.Errorf("archive id %x is %s and %s with different replaces records: one of them was forged or damaged", a.ID, r.Name, a.Name)
				}
				copies = append(copies, Copy{ID: a.ID, Names: [2]string{min(r.Name, a.Name), max(r.Name, a.Name)}})
				r.Name = min(r.Name, a.Name)
				r.Members = max(r.Members, a.Members)
				r.from = append(r.from, int32(p), int32(i))
				continue
			}
			byID[a.ID] = len(rows)
			rows = append(rows, row{Archive: *a, from: []int32{int32(p), int32(i)}})
		}
	}
	all := make([]Archive, len(rows))
	for i := range rows {
		all[i] = rows[i].Archive
	}
	ret := retiredSet(all)
	var gone []row
	rows = slices.DeleteFunc(rows, func(r row) bool {
		if _, ok := ret[r.ID]; ok {
			gone = append(gone, r)
			return true
		}
		return false
	})
	for i := range gone {
		if err := checkRetired(&gone[i].Archive, ret); err != nil {
			return nil, nil, false, err
		}
	}
	if len(rows) > MaxArchives {
		return nil, nil, false, fmt.Errorf("index over %d archives", MaxArchives)
	}
	slices.SortFunc(rows, func(p, q row) int { return compareArchives(&p.Archive, &q.Archive) })
	// An index names archives by file name (spec cbfs-index-v1 6.1): two
	// different archives of one name would leave a lookup no way to tell
	// which file holds a path.
	for k := 1; k < len(rows); k++ {
		if rows[k].Name == rows[k-1].Name {
			return nil, nil, false, fmt.Errorf("two different archives are both named %q (ids %x and %x): an index names archives by file name; rename one",
				rows[k].Name, rows[k-1].ID, rows[k].ID)
		}
	}
	maps := make([][]uint32, len(parts))
	for p, part := range parts {
		maps[p] = make([]uint32, len(part.Archives))
	}
	x.Archives = make([]Archive, len(rows))
	for k, r := range rows {
		x.Archives[k] = r.Archive
		for j := 0; j < len(r.from); j += 2 {
			maps[r.from[j]][r.from[j+1]] = uint32(k)
		}
	}
	for _, r := range gone {
		for j := 0; j < len(r.from); j += 2 {
			maps[r.from[j]][r.from[j+1]] = noRow
		}
	}
	return maps, copies, len(gone) > 0, nil
}
