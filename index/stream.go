package index

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
)

// Building and merging in bounded memory. Every input is a stream of
// records sorted by path whose candidates name their archive by a
// "source" number: a position in one list of archives (Sources) that may
// hold an archive more than once (copies). A run is such a stream as
// bytes; a Spiller keeps runs in memory up to a budget and spills them,
// merged, to encrypted temporary files past it. Combine merges streams by
// the winner rule and writes the index with a Writer: memory is one
// record per stream, one block, and the directory.

// runRecord appends one record to a run: uvarint path length, path,
// uvarint candidate count, then per candidate uvarint source, type byte,
// uvarint member, offset, span, size, inode.
func runRecord(b, path []byte, cs []cand) []byte {
	b = binary.AppendUvarint(b, uint64(len(path)))
	b = append(b, path...)
	return appendCands(b, cs)
}

// stream is a sorted source of records.
type stream interface {
	// next moves to the next record; false at the end or on an error.
	next() bool
	path() []byte
	// cands are the record's candidates, arch holding source numbers.
	cands() []cand
	err() error
}

// byteReader is what a run is decoded from.
type byteReader interface {
	io.ByteReader
	io.Reader
}

// runStream decodes a run from memory or from a spill file.
type runStream struct {
	mem  []byte // in memory: the rest of the run
	r    byteReader
	p    []byte
	pb   []byte // the path read from a file
	cs   []cand
	e    error
	done func()
}

func (s *runStream) uvarint() uint64 {
	if s.r == nil {
		v, k := binary.Uvarint(s.mem)
		if k <= 0 {
			s.e = errors.New("index run: bad varint")
			return 0
		}
		s.mem = s.mem[k:]
		return v
	}
	v, err := binary.ReadUvarint(s.r)
	if err != nil {
		s.e = fmt.Errorf("index run: %w", err)
	}
	return v
}

func (s *runStream) bytes(n int) []byte {
	if s.r == nil {
		if n > len(s.mem) {
			s.e = errors.New("index run: cut short")
			return nil
		}
		b := s.mem[:n]
		s.mem = s.mem[n:]
		return b
	}
	if cap(s.pb) < n {
		s.pb = make([]byte, n, max(n, 256))
	}
	b := s.pb[:n]
	if _, err := io.ReadFull(s.r, b); err != nil {
		s.e = fmt.Errorf("index run: %w", err)
	}
	return b
}

func (s *runStream) next() bool {
	if s.e != nil {
		return false
	}
	if s.r == nil && len(s.mem) == 0 {
		return s.end()
	}
	if s.r != nil {
		if _, err := s.r.ReadByte(); err == io.EOF {
			return s.end()
		} else if err != nil {
			s.e = err
			return false
		}
		if br, ok := s.r.(interface{ UnreadByte() error }); ok {
			br.UnreadByte()
		}
	}
	n := s.uvarint()
	if s.e == nil && n > format.MaxPathLen {
		s.e = errors.New("index run: path too long")
	}
	if s.e != nil {
		return false
	}
	s.p = s.bytes(int(n))
	nc := s.uvarint()
	s.cs = s.cs[:0]
	for range nc {
		if s.e != nil {
			return false
		}
		c := cand{arch: uint32(s.uvarint())}
		c.typ = format.Type(s.byte1())
		c.member = uint32(s.uvarint())
		c.off, c.span, c.size = int64(s.uvarint()), int64(s.uvarint()), int64(s.uvarint())
		c.inode = s.uvarint()
		s.cs = append(s.cs, c)
	}
	return s.e == nil
}

func (s *runStream) byte1() byte {
	if s.r == nil {
		if len(s.mem) == 0 {
			s.e = errors.New("index run: cut short")
			return 0
		}
		b := s.mem[0]
		s.mem = s.mem[1:]
		return b
	}
	b, err := s.r.ReadByte()
	if err != nil {
		s.e = fmt.Errorf("index run: %w", err)
	}
	return b
}

func (s *runStream) end() bool {
	if s.done != nil {
		s.done()
		s.done = nil
	}
	return false
}

func (s *runStream) path() []byte  { return s.p }
func (s *runStream) cands() []cand { return s.cs }
func (s *runStream) err() error    { return s.e }

// readerStream walks an index file's records, its archive rows mapped to
// source numbers.
type readerStream struct {
	it  *Iter
	m   []uint32
	cs  []cand
	cur []byte
}

func (s *readerStream) next() bool {
	if !s.it.Next() {
		return false
	}
	s.cur = s.it.Path()
	s.cs = append(s.cs[:0], s.it.cands()...)
	for i := range s.cs {
		s.cs[i].arch = s.m[s.cs[i].arch]
	}
	return true
}
func (s *readerStream) path() []byte  { return s.cur }
func (s *readerStream) cands() []cand { return s.cs }
func (s *readerStream) err() error    { return s.it.Err() }

// mergeStreams merges sorted streams by path and calls emit with each
// path and its candidates after the winner rule (sources' sequence
// numbers from srcs); cs is valid until emit returns. Candidates of the
// sources retired says are dropped before the rule, and a path left
// without any is not emitted (retired nil: none).
func mergeStreams(ss []stream, srcs []Archive, retired []bool, emit func(path []byte, cs []cand) error) error {
	live := make([]bool, len(ss))
	for i, s := range ss {
		live[i] = s.next()
		if err := s.err(); err != nil {
			return err
		}
	}
	less := func(a, b int) bool {
		if !live[a] {
			return false
		}
		if !live[b] {
			return true
		}
		if c := bytes.Compare(ss[a].path(), ss[b].path()); c != 0 {
			return c < 0
		}
		return a < b
	}
	if len(ss) == 0 {
		return nil
	}
	lt := newLoserTree(len(ss), less)
	var cs []cand
	var path []byte
	for w := lt.winner(); live[w]; w = lt.winner() {
		path = append(path[:0], ss[w].path()...)
		cs = cs[:0]
		for w2 := w; live[w2] && bytes.Equal(ss[w2].path(), path); w2 = lt.winner() {
			cs = append(cs, ss[w2].cands()...)
			live[w2] = ss[w2].next()
			if err := ss[w2].err(); err != nil {
				return err
			}
			lt.replay(w2)
		}
		if retired != nil {
			cs = slices.DeleteFunc(cs, func(c cand) bool { return retired[c.arch] })
			if len(cs) == 0 {
				continue
			}
		}
		if len(cs) > 1 {
			cs = winners(cs, srcs)
		}
		if err := emit(path, cs); err != nil {
			return err
		}
	}
	return nil
}

// Conflict is a record of more than one candidate, as Combine found it.
type Conflict struct {
	Path    []byte
	Entries []Entry
}

// CombineResult is what Combine wrote.
type CombineResult struct {
	HighSeq   uint64
	Archives  []Archive
	Stats     Stats
	Conflicts []Conflict
	Copies    []Copy
}

// table makes the archives table of sources: one row per id (the
// smaller name, the larger member count), sorted by name then id, and
// each source's row; a retired source (spec 2.8) has no row, and its
// entry in retired is true. Sources dropped (dropped[i], when dropped is
// not nil: archives given up while read) have no row either, and count
// for nothing: nothing of them is in the index.
func table(srcs []Archive, dropped []bool) (_ []Archive, _ []uint32, retired []bool, _ []Copy, _ error) {
	byID := map[[crypt.IDSize]byte]int{}
	var rows []Archive
	var copies []Copy
	first := make([]int, len(srcs))
	for i, a := range srcs {
		if dropped != nil && dropped[i] {
			continue
		}
		if k, ok := byID[a.ID]; ok {
			r := &rows[k]
			if r.Seq != a.Seq {
				return nil, nil, nil, nil, fmt.Errorf("archive id %x is %s with sequence %d and %s with sequence %d: the same archive cannot have two sequence numbers",
					a.ID, r.Name, r.Seq, a.Name, a.Seq)
			}
			if !sameReplaces(r.Replaces, a.Replaces) {
				return nil, nil, nil, nil, fmt.Errorf("archive id %x is %s and %s with different replaces records: one of them was forged or damaged", a.ID, r.Name, a.Name)
			}
			copies = append(copies, Copy{ID: a.ID, Names: [2]string{min(r.Name, a.Name), max(r.Name, a.Name)}})
			r.Name = min(r.Name, a.Name)
			r.Members = max(r.Members, a.Members)
			first[i] = k
			continue
		}
		byID[a.ID] = len(rows)
		first[i] = len(rows)
		rows = append(rows, a)
	}
	ret := retiredSet(rows)
	gone := make([]bool, len(rows))
	live := 0
	for i := range rows {
		if err := checkRetired(&rows[i], ret); err != nil {
			return nil, nil, nil, nil, err
		}
		_, gone[i] = ret[rows[i].ID]
		if !gone[i] {
			live++
		}
	}
	if live > MaxArchives {
		return nil, nil, nil, nil, fmt.Errorf("index over %d archives", MaxArchives)
	}
	order := make([]int, 0, live)
	for i := range rows {
		if !gone[i] {
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(p, q int) int { return compareArchives(&rows[p], &rows[q]) })
	pos := make([]uint32, len(rows))
	for i := range pos {
		pos[i] = noRow
	}
	out := make([]Archive, len(order))
	for k, i := range order {
		pos[i] = uint32(k)
		out[k] = rows[i]
	}
	for k := 1; k < len(out); k++ {
		if out[k].Name == out[k-1].Name {
			return nil, nil, nil, nil, fmt.Errorf("two different archives are both named %q (ids %x and %x): an index names archives by file name; rename one",
				out[k].Name, out[k-1].ID, out[k].ID)
		}
	}
	rowOf := make([]uint32, len(srcs))
	for i := range srcs {
		if dropped != nil && dropped[i] {
			rowOf[i] = noRow
		} else {
			rowOf[i] = pos[first[i]]
		}
		if rowOf[i] == noRow {
			if retired == nil {
				retired = make([]bool, len(srcs))
			}
			retired[i] = true
		}
	}
	return out, rowOf, retired, copies, nil
}

// combine merges streams over srcs and writes the index to out. The
// sources dropped (see table) count for nothing, their sequence numbers
// included; no stream may hold a candidate of theirs.
func combine(out io.Writer, key *crypt.Key, highSeq uint64, srcs []Archive, dropped []bool, ss []stream) (*CombineResult, error) {
	tab, rowOf, retired, copies, err := table(srcs, dropped)
	if err != nil {
		return nil, err
	}
	for i, a := range srcs {
		if dropped == nil || !dropped[i] {
			highSeq = max(highSeq, a.Seq)
		}
	}
	w, err := NewWriter(out, key, highSeq, tab)
	if err != nil {
		return nil, err
	}
	res := &CombineResult{HighSeq: highSeq, Archives: tab, Copies: copies}
	err = mergeStreams(ss, srcs, retired, func(path []byte, cs []cand) error {
		for i := range cs {
			cs[i].arch = rowOf[cs[i].arch]
		}
		if len(cs) > 1 {
			cs = winners(cs, tab)
		}
		if len(cs) > 1 {
			c := Conflict{Path: bytes.Clone(path)}
			for _, x := range cs {
				c.Entries = append(c.Entries, Entry{Archive: int(x.arch), Member: x.member, Type: x.typ, Offset: x.off, Span: x.span, Size: x.size, Inode: x.inode})
			}
			res.Conflicts = append(res.Conflicts, c)
		}
		return w.add(path, cs)
	})
	if err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	res.Stats = w.Stats()
	return res, nil
}

// MergeReaders merges open indexes (parts) into out: a k-way merge, one
// block of each part in memory at a time.
func MergeReaders(out io.Writer, key *crypt.Key, parts ...*Reader) (*CombineResult, error) {
	var srcs []Archive
	var ss []stream
	var hs uint64
	for _, r := range parts {
		m := make([]uint32, len(r.Archives))
		for i := range r.Archives {
			m[i] = uint32(len(srcs))
			srcs = append(srcs, r.Archives[i])
		}
		hs = max(hs, r.HighSeq)
		ss = append(ss, &readerStream{it: r.Records(nil), m: m})
	}
	return combine(out, key, hs, srcs, nil, ss)
}

// Rekey writes the index r under key with the archive ids of its table
// replaced: newIDs[i] for the row r.Archives[i] (archive spec 10.6: a
// rekeyed archive keeps its name, sequence number, members and offsets,
// and gets a new id). Records are copied one block at a time; the table
// is re-sorted and copies merged as a merge would, so the result is the
// index a rebuild of the rekeyed archives writes. The index's highest
// sequence number is kept.
func Rekey(out io.Writer, key *crypt.Key, r *Reader, newIDs [][crypt.IDSize]byte) (*CombineResult, error) {
	if len(newIDs) != len(r.Archives) {
		return nil, fmt.Errorf("rekey: %d new archive ids for a table of %d", len(newIDs), len(r.Archives))
	}
	srcs := slices.Clone(r.Archives)
	m := make([]uint32, len(srcs))
	for i := range srcs {
		srcs[i].ID = newIDs[i]
		m[i] = uint32(i)
	}
	return combine(out, key, r.HighSeq, srcs, nil, []stream{&readerStream{it: r.Records(nil), m: m}})
}

// ---- building runs ----

// Spiller collects the runs of a rebuild within a memory budget: past it,
// the runs in memory are merged into one spill file (encrypted under a
// key of its own, in dir, removed at once) and freed. It is safe for use
// from several goroutines.
type Spiller struct {
	// Budget is the bytes of runs kept in memory before they spill.
	Budget int
	// Dir is where spill files go (beside the output).
	Dir string

	mu      sync.Mutex
	srcs    []Archive
	dropped []bool // by source: an archive given up (RunBuilder.Abort)
	mem     [][]byte
	memSize int
	files   []*spillFile
	// Spills counts the spill files written: the spiller's, and those a
	// large archive's RunBuilder writes of its own runs.
	Spills int
}

// AddSource registers an archive and returns its source number.
func (sp *Spiller) AddSource(a Archive) (uint32, error) {
	if err := checkArchive(&a); err != nil {
		return 0, err
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.srcs = append(sp.srcs, a)
	sp.dropped = append(sp.dropped, false)
	return uint32(len(sp.srcs) - 1), nil
}

// Sources are the archives registered, by source number.
func (sp *Spiller) Sources() []Archive { return sp.srcsCopy() }

// addRun takes a sorted run.
func (sp *Spiller) addRun(run []byte) error {
	if len(run) == 0 {
		return nil
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.mem = append(sp.mem, run)
	sp.memSize += len(run)
	if sp.memSize > sp.Budget {
		return sp.spill()
	}
	return nil
}

// spill merges the runs in memory into one spill file.
func (sp *Spiller) spill() error {
	f, err := spillRuns(sp.Dir, sp.mem, sp.srcs)
	if err != nil {
		return err
	}
	sp.files = append(sp.files, f)
	sp.mem, sp.memSize = nil, 0
	sp.Spills++
	return sp.compactLocked()
}

// compactLocked merges the spill files into one when there are too many
// (see maxSpillFiles). sp.mu is held.
func (sp *Spiller) compactLocked() error {
	files, merged, err := compactFiles(sp.Dir, sp.files, sp.srcs)
	sp.files = files
	if merged {
		sp.Spills++
	}
	return err
}

// streams are every run, spilled or not, as streams; extra ones may be
// added by the caller.
func (sp *Spiller) streams() ([]stream, error) {
	var ss []stream
	for _, f := range sp.files {
		r, err := f.reader()
		if err != nil {
			return nil, err
		}
		ss = append(ss, &runStream{r: r})
	}
	for _, m := range sp.mem {
		ss = append(ss, &runStream{mem: m})
	}
	return ss, nil
}

// Close removes the spill files.
func (sp *Spiller) Close() {
	for _, f := range sp.files {
		f.close()
	}
	sp.files = nil
}

// Combine writes the index of every run added, merged with the records
// of base (an index to add to; nil for none), to out.
func (sp *Spiller) Combine(out io.Writer, key *crypt.Key, base *Reader) (*CombineResult, error) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	ss, err := sp.streams()
	if err != nil {
		return nil, err
	}
	srcs, dropped := sp.srcs, sp.dropped
	var hs uint64
	if base != nil {
		m := make([]uint32, len(base.Archives))
		srcs = slices.Clone(srcs)
		for i := range base.Archives {
			m[i] = uint32(len(srcs))
			srcs = append(srcs, base.Archives[i])
		}
		dropped = append(slices.Clone(dropped), make([]bool, len(base.Archives))...)
		hs = base.HighSeq
		ss = append(ss, &readerStream{it: base.Records(nil), m: m})
	}
	return combine(out, key, hs, srcs, dropped, ss)
}

// RunBuilder turns one archive's members into sorted runs (path order;
// of one path the last member), handing the spiller a run whenever its
// buffer passes limit bytes: memory stays bounded whatever the archive's
// size.
type RunBuilder struct {
	sp     *Spiller
	runs   [][]byte
	size   int
	files  []*spillFile
	src    uint32
	limit  int
	buf    []byte
	offs   []uint32
	sorted bool
	last   []byte
	lastM  uint32
	out    []byte
	srcArc Archive
	// members is one more than the highest member number added.
	members uint64
}

// NewRunBuilder starts the runs of archive a, registered with sp.
func (sp *Spiller) NewRunBuilder(a Archive, limit int) (*RunBuilder, error) {
	src, err := sp.AddSource(a)
	if err != nil {
		return nil, err
	}
	return &RunBuilder{sp: sp, src: src, limit: max(limit, 1<<12), sorted: true, srcArc: a}, nil
}

// SetReplaces records the archive's replaces record (archive spec 7.7),
// met as its member 0, in its table row.
func (b *RunBuilder) SetReplaces(rs []format.Replaced) error {
	a := b.srcArc
	a.Replaces = slices.Clone(rs)
	if err := checkArchive(&a); err != nil {
		return err
	}
	b.srcArc = a
	b.sp.mu.Lock()
	b.sp.srcs[b.src].Replaces = a.Replaces
	b.sp.mu.Unlock()
	return nil
}

// Add records one member as Builder.Add does: members of types the
// index does not take, and paths naming the root, are skipped; a path
// with a ".." component gives a *CanonicalPathError, and is skipped.
func (b *RunBuilder) Add(path []byte, e Entry) error {
	path, ok, err := memberRecord(path, e, &b.srcArc)
	if !ok {
		return err
	}
	if b.sorted && len(b.offs) > 0 && (bytes.Compare(b.last, path) >= 0 || e.Member <= b.lastM) {
		b.sorted = false
	}
	b.last = append(b.last[:0], path...)
	b.lastM = e.Member
	b.members = max(b.members, uint64(e.Member)+1)
	b.offs = append(b.offs, uint32(len(b.buf)))
	b.buf = runRecord(b.buf, path, []cand{{off: e.Offset, span: e.Span, size: e.Size, inode: e.Inode, arch: b.src, member: e.Member, typ: e.Type}})
	if len(b.buf) >= b.limit {
		return b.Flush()
	}
	return nil
}

// SetMembers sets the member count of the builder's archive where it is
// known only once its members were read (a member scan): the builder was
// started with a count no member number reaches, and every member added
// must be below n.
func (b *RunBuilder) SetMembers(n uint64) error {
	a := b.srcArc
	a.Members = n
	if err := checkArchive(&a); err != nil {
		return err
	}
	if n < b.members {
		return fmt.Errorf("archive %s: %d members, member %d was added", a.Name, n, b.members-1)
	}
	b.srcArc = a
	b.sp.mu.Lock()
	b.sp.srcs[b.src].Members = n
	b.sp.mu.Unlock()
	return nil
}

// Flush hands what was added as one sorted run to the spiller.
func (b *RunBuilder) Flush() error {
	if len(b.offs) == 0 {
		return nil
	}
	run := b.buf
	if !b.sorted {
		pathAt := func(o uint32) ([]byte, uint32, int) {
			l, k := binary.Uvarint(b.buf[o:])
			p := b.buf[int(o)+k : int(o)+k+int(l)]
			// member: after the count (1 byte: one candidate), the
			// source and the type.
			q := int(o) + k + int(l) + 1
			_, k2 := binary.Uvarint(b.buf[q:])
			q += k2 + 1
			m, _ := binary.Uvarint(b.buf[q:])
			return p, uint32(m), 0
		}
		slices.SortFunc(b.offs, func(x, y uint32) int {
			px, mx, _ := pathAt(x)
			py, my, _ := pathAt(y)
			if c := bytes.Compare(px, py); c != 0 {
				return c
			}
			return cmp.Compare(my, mx) // the last member first
		})
		out := make([]byte, 0, len(b.buf))
		var prev []byte
		for k, o := range b.offs {
			p, _, _ := pathAt(o)
			if k > 0 && bytes.Equal(p, prev) {
				continue
			}
			prev = p
			end := len(b.buf)
			// The record's end: decode it.
			s := runStream{mem: b.buf[o:]}
			s.next()
			end = len(b.buf) - len(s.mem)
			out = append(out, b.buf[o:end]...)
		}
		run = out
	} else {
		run = bytes.Clone(run)
	}
	b.buf, b.offs, b.sorted = b.buf[:0], b.offs[:0], true
	b.runs = append(b.runs, run)
	b.size += len(run)
	if b.size > 2*b.limit {
		// A large archive: its own runs spill, merged, to a file of
		// its own (they join the others only once the archive read
		// whole).
		f, err := spillRuns(b.sp.Dir, b.runs, b.sp.srcsCopy())
		if err != nil {
			return err
		}
		b.files = append(b.files, f)
		b.runs, b.size = nil, 0
		files, merged, err := compactFiles(b.sp.Dir, b.files, b.sp.srcsCopy())
		b.files = files
		b.sp.mu.Lock()
		b.sp.Spills += 1 + btoi(merged)
		b.sp.mu.Unlock()
		return err
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Commit hands the archive's runs to the spiller: call it once the
// archive was read whole.
func (b *RunBuilder) Commit() error {
	if err := b.Flush(); err != nil {
		return err
	}
	sp := b.sp
	sp.mu.Lock()
	sp.files = append(sp.files, b.files...)
	b.files = nil
	err := sp.compactLocked()
	sp.mu.Unlock()
	if err != nil {
		return err
	}
	for _, r := range b.runs {
		if err := sp.addRun(r); err != nil {
			return err
		}
	}
	b.runs = nil
	return nil
}

// Abort drops what was added, and the archive's source: the archive
// could not be read after all, and nothing of it goes into the index,
// not even its row in the archives table or its sequence number. The
// builder is spent.
func (b *RunBuilder) Abort() {
	for _, f := range b.files {
		f.close()
	}
	b.files, b.runs, b.buf, b.offs = nil, nil, b.buf[:0], b.offs[:0]
	b.sp.mu.Lock()
	b.sp.dropped[b.src] = true
	b.sp.mu.Unlock()
}

func (sp *Spiller) srcsCopy() []Archive {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return slices.Clone(sp.srcs)
}

// maxSpillFiles caps the spill files kept: at that many, they are merged
// into one, so that a merge of them (and its memory, a read buffer per
// file) stays bounded whatever the size of the data.
const maxSpillFiles = 64

// compactFiles merges files into one new spill file when there are
// maxSpillFiles or more (merged says so), closing them; on an error the
// files are returned as they were, for the caller to close.
func compactFiles(dir string, files []*spillFile, srcs []Archive) (out []*spillFile, merged bool, err error) {
	if len(files) < maxSpillFiles {
		return files, false, nil
	}
	ss := make([]stream, len(files))
	for i, f := range files {
		r, err := f.reader()
		if err != nil {
			return files, false, err
		}
		ss[i] = &runStream{r: r}
	}
	f, err := spillStreams(dir, ss, srcs)
	if err != nil {
		return files, false, err
	}
	for _, old := range files {
		old.close()
	}
	return []*spillFile{f}, true, nil
}

// spillRuns merges runs into a new spill file.
func spillRuns(dir string, runs [][]byte, srcs []Archive) (*spillFile, error) {
	ss := make([]stream, len(runs))
	for i, m := range runs {
		ss[i] = &runStream{mem: m}
	}
	return spillStreams(dir, ss, srcs)
}

// spillStreams merges sorted streams into a new spill file.
func spillStreams(dir string, ss []stream, srcs []Archive) (*spillFile, error) {
	f, err := newSpillFile(dir)
	if err != nil {
		return nil, err
	}
	var rec []byte
	err = mergeStreams(ss, srcs, nil, func(path []byte, cs []cand) error {
		rec = runRecord(rec[:0], path, cs)
		return f.write(rec)
	})
	if err == nil {
		err = f.finish()
	}
	if err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// ---- spill files ----

// spillFile is a temporary file of records, sealed in 64 KiB chunks
// under a random key of its own (the records are paths and locations:
// they never reach the disk in clear). It is removed as soon as it is
// created, and lives as long as its descriptor.
type spillFile struct {
	f     *os.File
	name  string
	aead  cipher.AEAD
	buf   []byte
	seq   uint64
	bw    *bufio.Writer
	sealB []byte
}

const spillChunk = 64 << 10

func newSpillFile(dir string) (*spillFile, error) {
	f, err := os.CreateTemp(dir, ".cbfs-index-run-*")
	if err != nil {
		return nil, err
	}
	s := &spillFile{f: f, name: f.Name(), bw: bufio.NewWriterSize(f, 256<<10)}
	if os.Remove(f.Name()) == nil {
		s.name = ""
	}
	var k [32]byte
	rand.Read(k[:])
	blk, _ := aes.NewCipher(k[:])
	s.aead, _ = cipher.NewGCM(blk)
	return s, nil
}

func (s *spillFile) nonce(seq uint64) []byte {
	n := make([]byte, 12)
	binary.BigEndian.PutUint64(n[4:], seq)
	return n
}

func (s *spillFile) write(p []byte) error {
	s.buf = append(s.buf, p...)
	for len(s.buf) >= spillChunk {
		if err := s.sealChunk(s.buf[:spillChunk]); err != nil {
			return err
		}
		s.buf = s.buf[:copy(s.buf, s.buf[spillChunk:])]
	}
	return nil
}

func (s *spillFile) sealChunk(p []byte) error {
	s.sealB = s.aead.Seal(binary.LittleEndian.AppendUint32(s.sealB[:0], uint32(len(p))), s.nonce(s.seq), p, nil)
	s.seq++
	_, err := s.bw.Write(s.sealB)
	return err
}

func (s *spillFile) finish() error {
	if len(s.buf) > 0 {
		if err := s.sealChunk(s.buf); err != nil {
			return err
		}
	}
	s.buf = nil
	return s.bw.Flush()
}

// reader reads the records back from the start.
func (s *spillFile) reader() (byteReader, error) {
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return bufio.NewReaderSize(&spillReader{s: s, r: bufio.NewReaderSize(s.f, 64<<10)}, 16<<10), nil
}

func (s *spillFile) close() {
	s.f.Close()
	if s.name != "" {
		os.Remove(s.name)
	}
}

// spillReader opens a spill file's chunks in order.
type spillReader struct {
	s     *spillFile
	r     *bufio.Reader
	seq   uint64
	plain []byte
	ct    []byte
}

func (r *spillReader) Read(p []byte) (int, error) {
	for len(r.plain) == 0 {
		var lb [4]byte
		if _, err := io.ReadFull(r.r, lb[:]); err != nil {
			if err == io.ErrUnexpectedEOF {
				return 0, errors.New("index spill file cut short")
			}
			return 0, err
		}
		n := int(binary.LittleEndian.Uint32(lb[:]))
		if n > spillChunk {
			return 0, errors.New("index spill file damaged")
		}
		if cap(r.ct) < n+16 {
			r.ct = make([]byte, n+16)
		}
		ct := r.ct[:n+16]
		if _, err := io.ReadFull(r.r, ct); err != nil {
			return 0, errors.New("index spill file cut short")
		}
		pl, err := r.s.aead.Open(ct[:0], r.s.nonce(r.seq), ct, nil)
		if err != nil {
			return 0, errors.New("index spill file damaged")
		}
		r.seq++
		r.plain = pl
	}
	n := copy(p, r.plain)
	r.plain = r.plain[n:]
	return n, nil
}
