package index

import (
	"bytes"
	"encoding/binary"
	"slices"
	"sync"

	"github.com/cbfs/cbfs/format"
)

// A compact index holds one archive's records as bytes, for merging: per
// record, uvarint path length, path, type byte, then uvarint member,
// offset, span, size and inode. At about 15 bytes plus the path per
// record, against 56 plus the path for a record in memory, the records of
// every archive fit beside the merged index while a rebuild merges them,
// and the merged index keeps its paths where they are.
type compactRun struct {
	buf   []byte
	n     int
	marks []uint32 // byte offset of every markEvery-th record, for seeking
	// expand makes the usual form, once: an index may be read from
	// several goroutines, and the first read must not race the others.
	// Both forms stay valid after it, so a merge may still take the
	// compact one.
	expand sync.Once
}

const markEvery = 32

// Compact sorts the records as Index does and returns the archive's index
// in compact form. It is meant for Merge; the first other use of it
// expands it to the usual form (once, whatever the goroutines). Unlike
// Index, it leaves the builder's buffers to the builder for the next
// archive.
func (b *Builder) Compact() *Index {
	b.sortRecs()
	recs := b.x.recs
	size := 0
	for i := range recs {
		r := &recs[i]
		size += uvarintLen(uint64(r.plen())) + r.plen() + 1 + uvarintLen(uint64(r.member)) + uvarintLen(uint64(r.off)) +
			uvarintLen(uint64(r.span)) + uvarintLen(uint64(r.size)) + uvarintLen(r.inode)
	}
	run := &compactRun{buf: make([]byte, 0, size), n: len(recs), marks: make([]uint32, 0, (len(recs)+markEvery-1)/markEvery)}
	for i := range recs {
		r := &recs[i]
		if i%markEvery == 0 {
			run.marks = append(run.marks, uint32(len(run.buf)))
		}
		p := b.path(r)
		run.buf = binary.AppendUvarint(run.buf, uint64(len(p)))
		run.buf = append(run.buf, p...)
		run.buf = append(run.buf, byte(r.typ()))
		for _, v := range [...]uint64{uint64(r.member), uint64(r.off), uint64(r.span), uint64(r.size), r.inode} {
			run.buf = binary.AppendUvarint(run.buf, v)
		}
	}
	x := &Index{HighSeq: b.x.HighSeq, Archives: b.x.Archives, blocks: [][]byte{run.buf}, run: run}
	b.x = Index{recs: recs[:0]}
	b.buf = b.buf[:0]
	return x
}

// path is the path of a record of the builder's unfinished index, whose
// last block is still b.buf.
func (b *Builder) path(r *irec) []byte {
	if int(r.blk) == len(b.x.blocks) {
		return b.buf[r.poff : int(r.poff)+r.plen()]
	}
	return b.x.path(r)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// ensure expands a compact index to the usual form; it is safe to call
// from several goroutines.
func (x *Index) ensure() {
	if x.run == nil {
		return
	}
	x.run.expand.Do(func() {
		c := cursor{x: x, compact: true, end: x.run.n}
		c.load()
		recs := make([]irec, 0, x.run.n)
		for ; c.valid(); c.advance() {
			recs = append(recs, c.rec(0, 0))
		}
		x.recs = recs
	})
}

// cursor walks the records of one part of a merge, of either form.
type cursor struct {
	x       *Index
	compact bool
	i, end  int // record number, and the end of the range
	off     int // compact: byte offset of record i
	next    int // compact: byte offset of record i+1
	path    []byte
	poff    uint32 // compact: offset of the path in the run's bytes
	c       cand   // compact: the record's candidate (archive 0)
}

// pos is a position in a part: a record number and, for a compact part,
// its byte offset.
type pos struct{ i, off int }

func (c *cursor) valid() bool { return c.i < c.end }

// load decodes record i, or sets path nil at the end of the range.
func (c *cursor) load() {
	if !c.valid() {
		c.path = nil
		return
	}
	if !c.compact {
		c.path = c.x.path(&c.x.recs[c.i])
		return
	}
	b := c.x.run.buf
	o := c.off
	l, k := binary.Uvarint(b[o:])
	o += k
	c.poff = uint32(o)
	c.path = b[o : o+int(l)]
	o += int(l)
	c.c = cand{typ: format.Type(b[o])}
	o++
	var v [5]uint64
	for j := range v {
		v[j], k = binary.Uvarint(b[o:])
		o += k
	}
	c.c.member, c.c.off, c.c.span, c.c.size, c.c.inode = uint32(v[0]), int64(v[1]), int64(v[2]), int64(v[3]), v[4]
	c.next = o
}

func (c *cursor) advance() {
	c.i++
	c.off = c.next
	c.load()
}

// rec is the current record for the merged index: its path stays in the
// part's blocks, shifted to where they are in the merged index's; arch is
// the merged table's row of a compact part's archive.
func (c *cursor) rec(shift, arch uint32) irec {
	if !c.compact {
		r := c.x.recs[c.i]
		r.blk += shift
		return r
	}
	r := irec{blk: shift, poff: c.poff, lt: uint32(len(c.path))}
	cc := c.c
	cc.arch = arch
	r.setFirst(cc)
	return r
}

// cands appends the current record's candidates, with the part's archive
// numbers.
func (c *cursor) cands(dst []cand) []cand {
	if !c.compact {
		return c.x.cands(&c.x.recs[c.i], dst)
	}
	return append(dst, c.c)
}

// size is the number of records of an index of either form.
func (x *Index) size() int {
	if x.run != nil {
		return x.run.n
	}
	return len(x.recs)
}

// pathAt is the path of record i; for a compact index i must be a mark.
func (x *Index) pathAt(i int) []byte {
	if x.run == nil {
		return x.path(&x.recs[i])
	}
	c := cursor{x: x, compact: true, i: i, end: x.run.n, off: int(x.run.marks[i/markEvery])}
	c.load()
	return c.path
}

// samplePoints are the record numbers a range splitter may sample: every
// record, or every mark of a compact index.
func (x *Index) samplePoints() (n, step int) {
	if x.run == nil {
		return len(x.recs), 1
	}
	return len(x.run.marks), markEvery
}

// lowerBound is the position of the first record whose path is not less
// than t.
func (x *Index) lowerBound(t []byte) pos {
	if x.run == nil {
		i, _ := slices.BinarySearchFunc(x.recs, t, func(r irec, t []byte) int { return bytes.Compare(x.path(&r), t) })
		return pos{i: i}
	}
	// The last mark before t, then record by record.
	k, _ := slices.BinarySearchFunc(x.run.marks, t, func(off uint32, t []byte) int {
		c := cursor{x: x, compact: true, end: x.run.n, off: int(off)}
		c.load()
		return bytes.Compare(c.path, t)
	})
	if k > 0 {
		k--
	}
	c := cursor{x: x, compact: true, i: k * markEvery, end: x.run.n}
	if len(x.run.marks) > 0 {
		c.off = int(x.run.marks[k])
	}
	for c.load(); c.valid() && bytes.Compare(c.path, t) < 0; c.advance() {
	}
	return pos{i: c.i, off: c.off}
}
