// Package index is the master index of a file system kept in CBFS
// archives (spec/cbfs-index-v1.md): for every path, the member that holds
// its current state. It holds the model (index.go), one archive's records
// (builder.go, compact.go), merging by the winner rule (merge.go), the
// sealed encoding (codec.go) and the canonical form of paths. It reads
// archives through package format, never the other way round.
package index

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
)

// Caps of the master index.
const (
	// MaxArchives caps the archives table of one index.
	MaxArchives = 1 << 26
	// MaxNameLen caps an archive's file name (NAME_MAX).
	MaxNameLen = 255
	// maxIndexValue caps offsets and sizes, as in the summary.
	maxIndexValue = 1 << 62
	// pathBlockCap caps one block of the path store: record offsets into
	// a block are 32 bits.
	pathBlockCap = 1 << 30
)

// Indexed reports whether members of type t take part in the index:
// the file types and tombstones. Imported pax globals, other tar entries
// and trailers hold no path of the file system.
func Indexed(t format.Type) bool { return t >= format.TypeRegular && t <= format.TypeTombstone }

// Archive is one row of an index's archives table.
type Archive struct {
	// Name is the archive's file name (a base name, no directory).
	Name    string
	ID      [crypt.IDSize]byte
	Seq     uint64 // the archive header's sequence number
	Members uint64 // member count (the footer's; after a scan, one more than the last member seen)
	// Replaces lists the archives a compacted archive replaces (its
	// replaces record, archive spec 7.7), sorted by id; nil for others.
	// An archive listed by a row of an index is retired: the index leaves
	// it out (spec 2.8).
	Replaces []format.Replaced
}

// noRow maps a retired archive's rows in a merge: its candidates are
// dropped before the winner rule.
const noRow = ^uint32(0)

// retiredSet is the ids the rows replace, with their sequence numbers.
func retiredSet(rows []Archive) map[[crypt.IDSize]byte]uint64 {
	var m map[[crypt.IDSize]byte]uint64
	for i := range rows {
		for _, r := range rows[i].Replaces {
			if m == nil {
				m = map[[crypt.IDSize]byte]uint64{}
			}
			m[r.ID] = r.Seq
		}
	}
	return m
}

// checkRetired checks that a retired archive met as a row has the
// sequence number its replacer lists, as two copies must agree.
func checkRetired(a *Archive, ret map[[crypt.IDSize]byte]uint64) error {
	if s, ok := ret[a.ID]; ok && s != a.Seq {
		return fmt.Errorf("archive %s (id %x) has sequence %d, and a compacted archive that replaces it says %d: one of them was forged or damaged",
			a.Name, a.ID, a.Seq, s)
	}
	return nil
}

func sameReplaces(a, b []format.Replaced) bool { return slices.Equal(a, b) }

// Equal reports whether two rows say the same.
func (a *Archive) Equal(b *Archive) bool {
	return a.Name == b.Name && a.ID == b.ID && a.Seq == b.Seq && a.Members == b.Members && sameReplaces(a.Replaces, b.Replaces)
}

// Entry is one archive's claim on a path: where it holds the path.
type Entry struct {
	Archive int // position in Index.Archives
	Member  uint32
	Type    format.Type
	// Offset is the physical offset of the member's metadata frame; Span
	// the number of bytes from there to the end of its last content
	// frame, record headers included: the byte range to fetch.
	Offset, Span int64
	Size         int64 // logical file size
	Inode        uint64
}

// cand is an Entry in memory.
type cand struct {
	off, span, size int64
	inode           uint64
	arch, member    uint32
	typ             format.Type
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

func (r *irec) plen() int        { return int(r.lt & (1<<24 - 1)) }
func (r *irec) typ() format.Type { return format.Type(r.lt >> 24) }
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
	Archives []Archive
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
func (x *Index) Entries(i int) []Entry {
	x.ensure()
	r := &x.recs[i]
	var out []Entry
	for _, c := range x.cands(r, nil) {
		out = append(out, Entry{Archive: int(c.arch), Member: c.member, Type: c.typ,
			Offset: c.off, Span: c.span, Size: c.size, Inode: c.inode})
	}
	return out
}

// Live reports whether record i is a live path: at least one candidate is
// not a tombstone.
func (x *Index) Live(i int) bool {
	x.ensure()
	r := &x.recs[i]
	if r.typ() != format.TypeTombstone {
		return true
	}
	if r.xi != 0 {
		for _, c := range x.conf[r.xi-1] {
			if c.typ != format.TypeTombstone {
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

// Stats counts an index's records.
type Stats struct {
	Records, Live, Tombstones, Conflicts int
}

// Stats counts the records.
func (x *Index) Stats() Stats {
	x.ensure()
	s := Stats{Records: len(x.recs)}
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
func checkArchive(a *Archive) error {
	n := a.Name
	if len(n) == 0 || len(n) > MaxNameLen || n == "." || n == ".." || bytes.IndexByte([]byte(n), '/') >= 0 || bytes.IndexByte([]byte(n), 0) >= 0 {
		return fmt.Errorf("archive name %q is not a file name of 1 to %d bytes", n, MaxNameLen)
	}
	if a.Members > format.MaxMembers {
		return fmt.Errorf("archive %s: member count %d over the cap %d", n, a.Members, uint64(format.MaxMembers))
	}
	if len(a.Replaces) > format.MaxReplaces {
		return fmt.Errorf("archive %s: replaces over %d archives", n, format.MaxReplaces)
	}
	for i := range a.Replaces {
		if i > 0 && bytes.Compare(a.Replaces[i-1].ID[:], a.Replaces[i].ID[:]) >= 0 {
			return fmt.Errorf("archive %s: replaced archives not sorted by id, or an id repeats", n)
		}
		if a.Replaces[i].ID == a.ID {
			return fmt.Errorf("archive %s replaces itself", n)
		}
		if a.Replaces[i].Seq > a.Seq {
			return fmt.Errorf("archive %s (sequence %d) replaces an archive of sequence %d: compaction never raises a sequence number", n, a.Seq, a.Replaces[i].Seq)
		}
	}
	return nil
}

func compareArchives(a, b *Archive) int {
	if c := cmp.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return bytes.Compare(a.ID[:], b.ID[:])
}
