package format

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cbfs/cbfs/crypt"
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
	Archives []IndexArchive
	recs     []irec
	conf     [][]cand // other candidates of conflicted records, sorted by archive
	blocks   [][]byte // path bytes
}

// Len is the number of records (paths), tombstones included.
func (x *Index) Len() int { return len(x.recs) }

func (x *Index) path(r *irec) []byte {
	return x.blocks[r.blk][r.poff : int(r.poff)+r.plen()]
}

// Path returns record i's path. The bytes belong to the index.
func (x *Index) Path(i int) []byte { return x.path(&x.recs[i]) }

// Conflicted reports whether record i holds more than one candidate: two
// archives with the same sequence number both hold the path.
func (x *Index) Conflicted(i int) bool { return x.recs[i].xi != 0 }

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
	b := &IndexBuilder{x: Index{Archives: []IndexArchive{a}}}
	b.x.recs = make([]irec, 0, min(members, 1<<20))
	b.buf = make([]byte, 0, min(pathBytes, pathBlockCap))
	return b, nil
}

// Add records one member. Members of types the index does not take (see
// IndexedType) are skipped.
func (b *IndexBuilder) Add(path []byte, e IndexEntry) error {
	if !IndexedType(e.Type) {
		return nil
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

// Index sorts the records, keeps the last member of each path, and
// returns the archive's index. The builder is spent.
func (b *IndexBuilder) Index() *Index {
	x := &b.x
	// Copy the paths to a block of their exact size: the hint may have
	// been generous, and the block lives as long as the index.
	x.blocks = append(x.blocks, bytes.Clone(b.buf))
	b.buf = nil
	sorted := true
	for i := 1; i < len(x.recs); i++ {
		if bytes.Compare(x.path(&x.recs[i-1]), x.path(&x.recs[i])) >= 0 {
			sorted = false
			break
		}
	}
	if !sorted {
		slices.SortFunc(x.recs, func(p, q irec) int {
			if c := bytes.Compare(x.path(&p), x.path(&q)); c != 0 {
				return c
			}
			return cmp.Compare(q.member, p.member) // the last member first
		})
		out := x.recs[:0]
		for i := range x.recs {
			if len(out) > 0 && bytes.Equal(x.path(&out[len(out)-1]), x.path(&x.recs[i])) {
				continue
			}
			out = append(out, x.recs[i])
		}
		x.recs = out
	}
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

// MergeIndex combines two indexes: the union of their archives (an archive
// id present in both counts once), and for each path the winner over both
// (spec "Winner"). The result does not depend on the order of merging, so
// merging per-archive indexes in any order, or merged parts, gives the
// same index. a and b are spent.
func MergeIndex(a, b *Index) (*Index, []IndexCopy, error) {
	out := &Index{}
	mapA, mapB, copies, err := out.mergeTables(a.Archives, b.Archives)
	if err != nil {
		return nil, nil, err
	}
	out.blocks = make([][]byte, 0, len(a.blocks)+len(b.blocks))
	out.blocks = append(append(out.blocks, a.blocks...), b.blocks...)
	if len(out.blocks) > 1<<32-1 {
		return nil, nil, errors.New("index too large: over 2^32 path blocks")
	}
	shift := uint32(len(a.blocks))
	out.recs = make([]irec, 0, len(a.recs)+len(b.recs))
	var ca, cb []cand
	i, j := 0, 0
	for i < len(a.recs) || j < len(b.recs) {
		c := 0
		switch {
		case i == len(a.recs):
			c = 1
		case j == len(b.recs):
			c = -1
		default:
			c = bytes.Compare(a.path(&a.recs[i]), b.path(&b.recs[j]))
		}
		switch {
		case c < 0:
			out.appendRemapped(a, &a.recs[i], mapA, 0)
			i++
		case c > 0:
			out.appendRemapped(b, &b.recs[j], mapB, shift)
			j++
		default:
			ca = remapCands(a.cands(&a.recs[i], ca[:0]), mapA)
			cb = remapCands(b.cands(&b.recs[j], cb[:0]), mapB)
			r := a.recs[i]
			out.setCands(&r, winners(append(ca, cb...), out.Archives))
			out.recs = append(out.recs, r)
			i++
			j++
		}
	}
	return out, copies, nil
}

func remapCands(cs []cand, m []uint32) []cand {
	for k := range cs {
		cs[k].arch = m[cs[k].arch]
	}
	return cs
}

// appendRemapped copies a record of src whose path has no rival.
func (x *Index) appendRemapped(src *Index, r *irec, m []uint32, shift uint32) {
	n := *r
	n.blk += shift
	if r.xi == 0 {
		n.arch = m[r.arch]
		x.recs = append(x.recs, n)
		return
	}
	cs := remapCands(src.cands(r, nil), m)
	// A rename of a copy may reorder the table: keep candidates sorted.
	slices.SortFunc(cs, func(p, q cand) int { return cmp.Compare(p.arch, q.arch) })
	n.xi = 0
	x.setCands(&n, cs)
	x.recs = append(x.recs, n)
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

// mergeTables sets x.Archives to the union of two tables and returns where
// each row of a and b went.
func (x *Index) mergeTables(a, b []IndexArchive) (mapA, mapB []uint32, copies []IndexCopy, err error) {
	type row struct {
		IndexArchive
		ia, ib int
	}
	byID := make(map[[crypt.IDSize]byte]int, len(b))
	for j := range b {
		byID[b[j].ID] = j
	}
	rows := make([]row, 0, len(a)+len(b))
	usedB := make([]bool, len(b))
	for i := range a {
		r := row{IndexArchive: a[i], ia: i, ib: -1}
		if j, ok := byID[a[i].ID]; ok {
			o := &b[j]
			if o.Seq != r.Seq {
				return nil, nil, nil, fmt.Errorf("archive id %x is %s with sequence %d and %s with sequence %d: the same archive cannot have two sequence numbers",
					r.ID, r.Name, r.Seq, o.Name, o.Seq)
			}
			copies = append(copies, IndexCopy{ID: r.ID, Names: [2]string{min(r.Name, o.Name), max(r.Name, o.Name)}})
			r.Name = min(r.Name, o.Name)
			r.Members = max(r.Members, o.Members)
			r.ib = j
			usedB[j] = true
		}
		rows = append(rows, r)
	}
	for j := range b {
		if !usedB[j] {
			rows = append(rows, row{IndexArchive: b[j], ia: -1, ib: j})
		}
	}
	if len(rows) > MaxIndexArchives {
		return nil, nil, nil, fmt.Errorf("index over %d archives", MaxIndexArchives)
	}
	slices.SortFunc(rows, func(p, q row) int { return compareArchives(&p.IndexArchive, &q.IndexArchive) })
	mapA, mapB = make([]uint32, len(a)), make([]uint32, len(b))
	x.Archives = make([]IndexArchive, len(rows))
	for k, r := range rows {
		x.Archives[k] = r.IndexArchive
		if r.ia >= 0 {
			mapA[r.ia] = uint32(k)
		}
		if r.ib >= 0 {
			mapB[r.ib] = uint32(k)
		}
	}
	return mapA, mapB, copies, nil
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

// IndexItems reads the summary and calls fn with each member's index
// fields. It is Entries without building a Meta per member: the fields
// the index does not use are walked over, with their framing checked
// (tags in order, lengths in bounds, no unknown critical tag) but not
// decoded. buf is scratch space for the summary's plaintext, returned for
// reuse.
func (a *Archive) IndexItems(buf []byte, fn func(*IndexItem) error) ([]byte, error) {
	if a.keys == nil {
		return buf, errors.New("the summary cannot be read without the key")
	}
	plain := buf[:0]
	_, err := a.readStream(int64(a.Footer.SummaryOffset), int64(a.Footer.SummaryLength), KindSummary, 0, func(p []byte) error {
		if int64(len(plain))+int64(len(p)) > 1<<34 {
			return newErr(ClassSummary, -1, -1, "summary too large to hold")
		}
		plain = append(plain, p...)
		return nil
	})
	if err != nil {
		return plain, err
	}
	sumErr := func(format string, args ...any) error {
		return newErr(ClassSummary, a.PhysOffset(int64(a.Footer.SummaryOffset)), -1, format, args...)
	}
	want := a.Footer.Members
	if want > uint64(len(plain))/5+1 {
		return plain, sumErr("footer counts %d members, the summary has room for fewer", want)
	}
	p := plain
	var prevEnd int64
	var it IndexItem
	n := uint64(0)
	for ; len(p) > 0; n++ {
		if n >= want {
			return plain, sumErr("more summary entries than the footer's %d members", want)
		}
		var vals [3]uint64
		for i := range vals {
			v, k := binary.Uvarint(p)
			if k <= 0 {
				return plain, sumErr("entry %d: bad varint", n)
			}
			vals[i], p = v, p[k:]
		}
		if vals[2] > uint64(len(p)) {
			return plain, sumErr("entry %d: metadata past the end", n)
		}
		off, length := int64(vals[0]), int64(vals[1])
		if vals[0] > 1<<62 || vals[1] > 1<<62 || off != prevEnd || length < 2*(FrameHeaderSize+crypt.TagSize) {
			return plain, sumErr("entry %d: offset %d and length %d do not follow the previous member", n, off, length)
		}
		prevEnd = off + length
		if err := leanMeta(p[:vals[2]], &it); err != nil {
			return plain, sumErr("entry %d: %v", n, err)
		}
		p = p[vals[2]:]
		it.Member = uint32(n)
		it.Offset = a.PhysOffset(off)
		it.Span = a.Header.PhysSpan(off, length)
		if err := fn(&it); err != nil {
			return plain, err
		}
	}
	if n != want {
		return plain, sumErr("summary lists %d members, the footer counts %d", n, want)
	}
	return plain, nil
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
