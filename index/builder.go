package index

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/cbfs/cbfs/format"
)

// Builder collects the members of one archive into a one-archive
// index. Within an archive a later member supersedes an earlier one with
// the same path, as in tar.
type Builder struct {
	x   Index
	buf []byte
}

// NewBuilder starts the index of one archive. members and pathBytes
// are size hints (zero if not known).
func NewBuilder(a Archive, members, pathBytes int) (*Builder, error) {
	if err := checkArchive(&a); err != nil {
		return nil, err
	}
	b := &Builder{x: Index{HighSeq: a.Seq, Archives: []Archive{a}}}
	b.x.recs = make([]irec, 0, min(members, 1<<20))
	b.buf = make([]byte, 0, min(pathBytes, pathBlockCap))
	return b, nil
}

// Reset starts the index of another archive, reusing the builder's
// buffer for paths.
func (b *Builder) Reset(a Archive, members int) error {
	if err := checkArchive(&a); err != nil {
		return err
	}
	recs := b.x.recs[:0]
	if want := min(members, 1<<20); cap(recs) < want {
		recs = make([]irec, 0, want)
	}
	b.x = Index{HighSeq: a.Seq, Archives: []Archive{a}, recs: recs}
	b.buf = b.buf[:0]
	return nil
}

// Add records one member under the canonical form of its path. Members
// of types the index does not take (see Indexed), and members whose
// path names the root, are skipped. A member whose path has a ".."
// component is skipped too, and the *CanonicalPathError returned says
// so: the caller reports it and goes on.
func (b *Builder) Add(path []byte, e Entry) error {
	if len(b.x.Archives) != 1 {
		return errors.New("Builder.Add after Index without Reset")
	}
	path, ok, err := memberRecord(path, e, &b.x.Archives[0])
	if !ok {
		return err
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
func (b *Builder) sortRecs() {
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
func (b *Builder) Index() *Index {
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

// memberRecord is the canonical path under which the index records member
// e of archive a, with the checks both builders make: ok is false for a
// member the index does not take (a type it does not index, a path naming
// the root: err nil) and for one it refuses (err says why; a path with a
// ".." component gives a *CanonicalPathError).
func memberRecord(path []byte, e Entry, a *Archive) (canon []byte, ok bool, err error) {
	if !Indexed(e.Type) {
		return nil, false, nil
	}
	path, err = CanonicalPath(path)
	if err != nil {
		if ce := err.(*CanonicalPathError); ce.Root {
			return nil, false, nil
		}
		return nil, false, err
	}
	if len(path) > format.MaxPathLen {
		return nil, false, fmt.Errorf("member %d: path of %d bytes over the cap %d", e.Member, len(path), format.MaxPathLen)
	}
	if e.Offset < 0 || e.Offset > maxIndexValue || e.Span <= 0 || e.Span > maxIndexValue || e.Size < 0 || e.Size > maxIndexValue {
		return nil, false, fmt.Errorf("member %d (%q): offset %d, span %d or size %d out of range", e.Member, path, e.Offset, e.Span, e.Size)
	}
	if uint64(e.Member) >= a.Members {
		return nil, false, fmt.Errorf("member %d (%q): archive %s has %d members", e.Member, path, a.Name, a.Members)
	}
	return path, true, nil
}
