package format

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/internal/frame"
)

// WriterOptions are the choices a writer makes for one archive.
type WriterOptions struct {
	// Sequence orders the archives of one file system; see the spec.
	Sequence uint64
	// Compress turns LZ4 on; each chunk keeps it only where it shrinks.
	Compress bool
	// ChunkSize and RecordSize default to DefaultChunkSize and
	// DefaultRecordSize.
	ChunkSize, RecordSize int
	// Rand supplies the archive id; crypto/rand when nil. Only the test
	// vector generator sets it.
	Rand io.Reader
	// Workers is the number of sealing goroutines; GOMAXPROCS when 0.
	Workers int
	// Tombstones are paths recorded as deleted: NewWriter writes one
	// tombstone member for each, in order, before any other member, so
	// that members added later with the same path supersede them.
	Tombstones [][]byte
	// OnAdd, when set, is called with each member Add accepts, before its
	// content is read: what tar -v lists. It must not keep m.
	OnAdd func(m *Meta)
	// Replaces, when set, makes a compacted archive (spec 7.7): NewWriter
	// writes a replaces record listing these archives as member 0, and
	// members are then added with CopyMember (or Add). Sorted by id.
	Replaces []Replaced
}

// Entry is where a member lives in an archive: what the summary and the
// master index record.
type Entry struct {
	Number uint32
	// Offset is the logical offset of the member's metadata frame; Length
	// runs from there to the end of its final content frame.
	Offset, Length int64
	Meta           *Meta // summary form: no xattrs, no verbatim tar bytes
}

// Writer writes one CBFS archive. Add members, then Close. Errors in
// writing the archive (its output, a member's content reader) are sticky:
// after one, every call returns it. An Add refused for what it was given
// (metadata that does not validate, content for a type that has none, a
// full archive) writes nothing of that member, and the writer goes on.
type Writer struct {
	seq   memberSeq // imported members and the trailer in order (spec 7.5)
	hdr   Header
	keys  *crypt.ArchiveKeys
	opt   WriterOptions
	rec   *recordWriter
	out   io.Writer
	pipe  *ordered[*batch]
	batch *batch // the batch being filled, not yet handed to the pipeline
	asmWG sync.WaitGroup

	batches *stack[*batch] // batches back from the assembler, their arenas reused
	inCap   int            // a pooled batch's arenas
	pooled  int            // pooled batches made
	outCap  int
	enc     []byte // the metadata record being added, encoded

	mu      sync.Mutex // guards err, open and openBase, shared with the assembler
	summary []byte     // the summary plaintext after the last whole chunk in sumDone (the assembler's until Close)
	// sumDone holds the summary's whole chunks (ChunkSize bytes of
	// plaintext each), LZ4-compressed as soon as they fill when the
	// writer compresses: what the writer keeps per member is then a
	// fraction of its summary entry. Close seals them.
	sumDone []summaryChunk
	sumComp frame.Compressor
	sumBuf  []byte // cutSummary's LZ4 output
	err     error
	// open holds where the members whose frames are still on their way
	// to the archive are, member openBase first, and openMeta their
	// summary-form metadata records, encoded, from openHead on. A member
	// leaves once its summary entry is written: what the writer keeps per
	// member is its summary entry alone, so memory grows with the member
	// count only by the summary's size, never by its metadata as given to
	// Add, and Add keeps nothing of what it is given.
	open      []openEntry // from openFront on
	openFront int
	openBase  int
	openMeta  []byte
	openHead  int

	members uint32
	closed  bool
}

// openEntry is where an open member is, and the length of its encoded
// summary-form metadata record in openMeta.
type openEntry struct {
	offset, length int64
	metaLen        int
}

// sealJob is one frame of a batch: its plaintext in the batch's in arena,
// and once sealed, where its frame is in the batch's out arena.
type sealJob struct {
	kind   byte
	final  bool
	stream uint32
	index  uint64
	plain  []byte
	lz4    bool // compress plain if that shrinks it
	isLZ4  bool // plain is an LZ4 block already (a summary chunk, a copied content frame)
	entry  int  // member's entry to stamp (m: offset; final c: length), -1 for none
	off, n int  // the sealed frame: out[off : off+n]
}

// The sealing pipeline takes frames in batches: a tree of small files has
// two small frames per member, and handing each to a worker and back
// costs more in goroutine switches than sealing it. A batch holds the
// plaintexts of its frames side by side in one arena, which a chunk of
// content is read straight into, and its worker seals them side by side
// into another, compressing in place: no buffer per frame, and a small
// file takes the bytes it has, not a chunk's worth. A batch closes once
// it holds batchBytes of plaintext or batchFrames frames; batchDepth
// batches may be in flight between reading and writing.
const (
	batchFrames = 64
	batchBytes  = 128 << 10
	batchDepth  = 6
)

// A frame's sealed form takes at most its plaintext plus this much: the
// frame header, the tag, and a metadata record's length fields and
// padding (a summary chunk's padding is counted apart).
const frameOverhead = FrameHeaderSize + 8 + MetaPad + crypt.TagSize

type batch struct {
	jobs    []sealJob
	in      []byte // plaintexts, side by side; len is what is taken
	out     []byte // sealed frames, side by side, once sealed
	outNeed int    // the most the sealed frames may take
	pending int    // frames reserved in in whose jobs are not added yet
	w       *Writer
}

// sealedLen is the most the sealed frame of a plaintext of n bytes of
// the given kind takes.
func (w *Writer) sealedLen(kind byte, n int) int {
	switch kind {
	case KindMeta:
		return FrameHeaderSize + (8+n+MetaPad-1)/MetaPad*MetaPad + crypt.TagSize
	case KindSummary:
		return FrameHeaderSize + w.opt.ChunkSize + 4 + crypt.TagSize
	}
	return FrameHeaderSize + n + crypt.TagSize
}

// NewWriter writes the archive header record to w and returns a writer.
func NewWriter(w io.Writer, key *crypt.Key, opt WriterOptions) (*Writer, error) {
	if opt.ChunkSize == 0 {
		opt.ChunkSize = DefaultChunkSize
	}
	if opt.RecordSize == 0 {
		opt.RecordSize = DefaultRecordSize
	}
	if err := checkSizes(uint32(opt.ChunkSize), uint32(opt.RecordSize)); err != nil {
		return nil, err
	}
	if opt.Workers <= 0 {
		opt.Workers = workers()
	}
	rnd := opt.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	wr := &Writer{opt: opt}
	wr.hdr = Header{Major: Major, Minor: Minor, Suite: SuiteAES256GCM,
		ChunkSize: uint32(opt.ChunkSize), RecordSize: uint32(opt.RecordSize), Sequence: opt.Sequence}
	if _, err := io.ReadFull(rnd, wr.hdr.ID[:]); err != nil {
		return nil, fmt.Errorf("archive id: %w", err)
	}
	wr.keys = crypt.DeriveArchiveKeys(key, wr.hdr.ID)
	wr.hdr.Check = wr.keys.Check()
	wr.hdr.MAC = wr.keys.MAC(wr.hdr.encodeNoMAC())
	// A batch takes a new frame while it holds less than batchBytes, so
	// a chunk always fits after that; every frame but a summary chunk
	// seals into at most frameOverhead more than its plaintext, and a
	// summary chunk into a chunk and a frame more.
	wr.inCap = max(batchBytes, opt.ChunkSize) + opt.ChunkSize
	wr.outCap = wr.inCap + batchFrames*frameOverhead + opt.ChunkSize + FrameHeaderSize + 4 + crypt.TagSize
	// Every batch in flight is in the pipeline, being filled or being
	// assembled: this many are all that is ever needed.
	wr.batches = newStack[*batch](batchDepth + 3)

	// Records are whole (1 MiB by default) when written: no buffer in
	// between, which would copy every byte once it is out of step.
	wr.out = w
	wr.rec = newRecordWriter(wr.out, wr.hdr.ID, opt.RecordSize)
	wr.rec.writeHeaderRecord(frame.Append(nil, KindHeader, FlagFinal, wr.hdr.Encode()))

	wr.pipe = newOrdered((*batch).seal, opt.Workers, batchDepth)
	wr.asmWG.Add(1)
	go wr.assemble()
	if opt.Replaces != nil {
		if _, err := wr.Add(&Meta{Type: TypeReplaces, Replaces: opt.Replaces}, nil); err != nil {
			wr.Abort(err)
			return nil, err
		}
	}
	for _, p := range opt.Tombstones {
		if _, err := wr.Add(&Meta{Type: TypeTombstone, Path: p}, nil); err != nil {
			wr.Abort(err)
			return nil, err
		}
	}
	return wr, nil
}

// Header returns the archive header the writer wrote.
func (w *Writer) Header() Header { return w.hdr }

// newBatch returns an empty batch with arenas of at least in and out
// bytes: a pooled one, or for a record larger than those, its own.
func (w *Writer) newBatch(in, out int) *batch {
	if in <= w.inCap && out <= w.outCap {
		if b, ok := w.batches.pop(); ok {
			return b
		}
		w.pooled++
		if w.pooled == 2 {
			// Not a small archive: the rest of the pool's arenas are cut
			// from one slab, whose first touch costs few page faults.
			k := w.batches.n - 1
			arenas := slab(k * (w.inCap + w.outCap))
			bs := make([]batch, k)
			for i := range bs {
				bs[i] = batch{w: w, jobs: make([]sealJob, 0, batchFrames),
					in: arenas[:0:w.inCap], out: arenas[w.inCap : w.inCap : w.inCap+w.outCap]}
				arenas = arenas[w.inCap+w.outCap:]
				if i > 0 {
					w.batches.push(&bs[i])
				}
			}
			return &bs[0]
		}
		in, out = w.inCap, w.outCap
	}
	return &batch{w: w, jobs: make([]sealJob, 0, batchFrames), in: make([]byte, 0, in), out: make([]byte, 0, out)}
}

// release gives a batch back once its frames are written.
func (w *Writer) release(b *batch) {
	clear(b.jobs)
	b.jobs, b.in, b.out, b.outNeed, b.pending = b.jobs[:0], b.in[:0], b.out[:0], 0, 0
	if cap(b.in) == w.inCap && cap(b.out) == w.outCap {
		w.batches.push(b)
	}
}

// fits says whether b takes one more frame of in plaintext bytes sealing
// into at most out bytes.
func (b *batch) fits(in, out int) bool {
	return len(b.jobs)+b.pending < batchFrames && len(b.in) < batchBytes &&
		cap(b.in)-len(b.in) >= in && cap(b.out)-b.outNeed >= out
}

// reserve takes n bytes at the end of b's in arena (it fits) for a frame
// of the kind: the frame's job is added later by add.
func (b *batch) reserve(kind byte, n int) []byte {
	p := b.in[len(b.in) : len(b.in)+n]
	b.in = b.in[:len(b.in)+n]
	b.outNeed += b.w.sealedLen(kind, n)
	b.pending++
	return p
}

// room returns the batch to put a frame of in plaintext bytes of the
// kind in: the open one, or once that is full a new one. The full one is
// handed to the pipeline first, unless a frame reserved in it is still
// pending: the new one is then returned without being opened, and the
// caller opens it (next) once that frame is added.
func (w *Writer) room(kind byte, in int) *batch {
	out := w.sealedLen(kind, in)
	if w.batch == nil {
		w.batch = w.newBatch(in, out)
	}
	if w.batch.fits(in, out) {
		return w.batch
	}
	if w.batch.pending > 0 {
		return w.newBatch(in, out)
	}
	w.flushBatch()
	w.batch = w.newBatch(in, out)
	return w.batch
}

// next hands the open batch to the pipeline and opens nb.
func (w *Writer) next(nb *batch) {
	w.flushBatch()
	w.batch = nb
}

// queueCopy queues a frame whose plaintext is copied into a batch.
func (w *Writer) queueCopy(j sealJob) {
	b := w.room(j.kind, len(j.plain))
	p := b.reserve(j.kind, len(j.plain))
	copy(p, j.plain)
	j.plain = p
	b.add(j)
}

// add adds the job of a frame reserved in b, and hands b to the pipeline
// once it is full and nothing in it is pending.
func (b *batch) add(j sealJob) {
	b.jobs = append(b.jobs, j)
	b.pending--
	if w := b.w; b == w.batch && b.pending == 0 && !b.fits(0, 0) {
		w.flushBatch()
	}
}

// drop gives back the last frame reserved in b, of n bytes, unused.
func (b *batch) drop(kind byte, n int) {
	b.in = b.in[:len(b.in)-n]
	b.outNeed -= b.w.sealedLen(kind, n)
	b.pending--
}

// flushBatch hands the open batch, if any, to the pipeline.
func (w *Writer) flushBatch() {
	if w.batch != nil {
		if len(w.batch.jobs) > 0 {
			w.pipe.submit(w.batch)
		} else {
			w.release(w.batch)
		}
		w.batch = nil
	}
}

// seal seals a batch's frames side by side into its out arena.
func (b *batch) seal() {
	out := b.out[:cap(b.out)]
	pos := 0
	for i := range b.jobs {
		j := &b.jobs[i]
		f := b.w.sealFrame(out[pos:pos], j)
		j.off, j.n = pos, len(f)
		pos += len(f)
	}
	b.out = b.out[:pos]
}

// sealFrame seals j's frame into dst, which has room for it: the
// plaintext is compressed, framed and padded in place, after room for
// the frame header, and sealed there.
func (w *Writer) sealFrame(dst []byte, j *sealJob) []byte {
	flags := byte(0)
	if j.final {
		flags |= FlagFinal
	}
	const h = FrameHeaderSize
	body := dst[h:cap(dst)]
	var sealed []byte // the plaintext sealed: in body when framed here, else j.plain
	switch j.kind {
	case KindContent:
		sealed = j.plain
		if j.isLZ4 {
			flags |= FlagLZ4 // a copied frame's block, as it was stored
		} else if j.lz4 && len(j.plain) > 0 {
			if c := frame.Compress(body[:len(j.plain)], j.plain); c != nil {
				sealed = c
				flags |= FlagLZ4
			}
		}
	case KindMeta:
		// Stored length, raw length, the bytes, zeros up to a multiple
		// of MetaPad: the sealed size tells nothing finer than MetaPad
		// about path lengths.
		stored := j.plain
		if j.lz4 {
			if c := frame.Compress(body[8:8+len(j.plain)], j.plain); c != nil {
				stored = c
				flags |= FlagLZ4
			}
		}
		if flags&FlagLZ4 == 0 {
			copy(body[8:], stored)
		}
		n := 8 + len(stored)
		total := (n + MetaPad - 1) / MetaPad * MetaPad
		binary.LittleEndian.PutUint32(body[0:4], uint32(len(stored)))
		binary.LittleEndian.PutUint32(body[4:8], uint32(len(j.plain)))
		clear(body[n:total])
		sealed = body[:total]
	case KindSummary:
		stored := j.plain
		if j.isLZ4 {
			flags |= FlagLZ4
		} else if j.lz4 && len(j.plain) > 0 {
			if c := frame.Compress(body[4:4+len(j.plain)], j.plain); c != nil {
				stored = c
				flags |= FlagLZ4
			}
		}
		if flags&FlagLZ4 == 0 || j.isLZ4 {
			copy(body[4:], stored)
		}
		binary.LittleEndian.PutUint32(body[0:4], uint32(len(stored)))
		total := 4 + w.opt.ChunkSize
		clear(body[4+len(stored) : total])
		sealed = body[:total]
	}
	return frame.Seal(dst[:0], w.keys, j.kind, flags, j.stream, j.index, sealed)
}

// assemble takes sealed frames in order and writes them into records.
func (w *Writer) assemble() {
	defer w.asmWG.Done()
	for {
		b, ok := w.pipe.next()
		if !ok {
			return
		}
		for i := range b.jobs {
			w.place(b, &b.jobs[i])
		}
		w.release(b)
	}
}

// place writes a sealed frame to the record stream and stamps its
// member's entry.
func (w *Writer) place(b *batch, j *sealJob) {
	off := w.rec.logical
	w.rec.writeFrame(b.out[j.off : j.off+j.n])
	if j.entry >= 0 {
		w.mu.Lock()
		e := &w.open[w.openFront+j.entry-w.openBase]
		if j.kind == KindMeta {
			e.offset = off
		} else {
			// Members complete in order: this one is the first open
			// one. Its summary entry is written, and it leaves open.
			e.length = w.rec.logical - e.offset
			meta := w.openMeta[w.openHead : w.openHead+e.metaLen]
			w.summary = appendSummaryRecord(w.summary, e.offset, e.length, meta)
			w.openHead += e.metaLen
			w.openFront++
			w.openBase++
			// What has left is dropped once it is half of what is held.
			if w.openHead >= len(w.openMeta)/2 {
				w.openMeta = w.openMeta[:copy(w.openMeta, w.openMeta[w.openHead:])]
				w.openHead = 0
			}
			if w.openFront >= len(w.open)/2 {
				w.open = w.open[:copy(w.open, w.open[w.openFront:])]
				w.openFront = 0
			}
		}
		w.mu.Unlock()
		// The summary is the assembler's own until Close.
		for len(w.summary) >= w.opt.ChunkSize {
			w.cutSummary()
		}
	}
	if err := w.rec.error(); err != nil {
		w.setErr(err)
	}
}

func (w *Writer) setErr(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

func (w *Writer) stickyErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Add writes one member: its metadata record, then its content read from
// r to EOF (r may be nil for no content). It returns the number of content
// bytes read.
func (w *Writer) Add(m *Meta, r io.Reader) (int64, error) {
	if err := w.stickyErr(); err != nil {
		return 0, err
	}
	if w.closed {
		return 0, errors.New("cbfs writer: Add after Close")
	}
	if err := m.Validate(); err != nil {
		return 0, fmt.Errorf("member %q: %w", m.Path, err)
	}
	if err := m.checkFull(); err != nil {
		return 0, fmt.Errorf("member %q: %w", m.Path, err)
	}
	if bad := w.seq.next(m); bad != "" {
		return 0, fmt.Errorf("member %q: %s", m.Path, bad)
	}
	if uint64(w.members) >= MaxMembers {
		return 0, fmt.Errorf("archive full: %d members", uint64(MaxMembers))
	}
	if r != nil && !holdsContent(m.Type) {
		// Spec 7.3: these types have no content, imported or not (an
		// imported entry of these types has an empty data area).
		var b [1]byte
		if n, _ := io.ReadFull(r, b[:]); n > 0 {
			return 0, fmt.Errorf("member %q: a %s has no content, and its reader gave some", m.Path, m.Type)
		}
		r = nil
	}
	w.enc = m.Encode(w.enc[:0])
	enc := w.enc
	if len(enc) > MaxMetaSize {
		return 0, fmt.Errorf("member %q: metadata record of %d bytes over the cap %d", m.Path, len(enc), MaxMetaSize)
	}
	num := w.members
	w.members++
	if w.opt.OnAdd != nil {
		w.opt.OnAdd(m)
	}
	ei := w.openMember(m)
	// A record that fits one padding unit stays one unit compressed or
	// not: compress only where it could save a unit.
	compressMeta := w.opt.Compress && len(enc) > MetaPad-8
	w.queueCopy(sealJob{kind: KindMeta, final: true, stream: num, plain: enc, lz4: compressMeta, entry: ei})
	if cap(w.enc) > 1<<20 {
		w.enc = nil // a record of extended tar headers: not kept for the next
	}

	// Each chunk is read straight into a batch, one ahead, so that the
	// last chunk is known to be last.
	cs := w.opt.ChunkSize
	var total int64
	cb := w.room(KindContent, cs)
	cur := cb.reserve(KindContent, cs)
	var err error
	n := 0
	if r != nil {
		n, err = readChunk(r, cur)
	}
	cb.unreserve(cs - n)
	cur = cur[:n]
	total += int64(n)
	for index := uint64(0); ; index++ {
		// cb, holding cur, is the open batch.
		if index >= MaxChunks {
			cb.add(sealJob{kind: KindContent, final: true, stream: num, index: index, plain: cur, entry: ei})
			w.setErr(fmt.Errorf("member %q: over %d chunks", m.Path, uint64(MaxChunks)))
			return total, w.stickyErr()
		}
		var next []byte
		nb, ahead := cb, false
		if err == nil && len(cur) == cs && r != nil {
			nb, ahead = w.room(KindContent, cs), true
			next = nb.reserve(KindContent, cs)
			n, err = readChunk(r, next)
			nb.unreserve(cs - n)
			next = next[:n]
			total += int64(n)
		}
		final := len(next) == 0
		if ahead && (final || err != nil) {
			nb.drop(KindContent, len(next))
		}
		if err != nil {
			w.setErr(fmt.Errorf("member %q: reading content: %w", m.Path, err))
			// Seal what we have as final so the pipeline stays consistent;
			// the sticky error makes the archive unusable anyway.
			final = true
		}
		j := sealJob{kind: KindContent, final: final, stream: num, index: index, plain: cur, lz4: w.opt.Compress, entry: -1}
		if final {
			j.entry = ei
		}
		cb.add(j)
		if nb != cb {
			// The next chunk went to a new batch: this one is full.
			w.next(nb)
		}
		if err != nil {
			return total, w.stickyErr()
		}
		if final {
			break
		}
		cur, cb = next, nb
	}
	// The size a member declares is what readers and plain tar headers go
	// by: it must be what was stored.
	if m.Type == TypeRegular && m.TarHeader == nil {
		want := m.Size
		if m.Sparse != nil {
			want = 0
			for _, e := range m.Sparse {
				want += e.Length
			}
		}
		if total != want {
			w.setErr(fmt.Errorf("member %q: content is %d bytes, its metadata says %d", m.Path, total, want))
		}
	}
	return total, w.stickyErr()
}

// unreserve gives back the last n bytes of the content chunk reserved
// last, which came out shorter.
func (b *batch) unreserve(n int) {
	b.in = b.in[:len(b.in)-n]
	b.outNeed -= n
}

// openMember records a new member among the open ones, with its
// summary-form record, and returns the index of its entry.
func (w *Writer) openMember(m *Meta) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := len(w.openMeta)
	w.openMeta = m.encode(w.openMeta, true)
	w.open = append(w.open, openEntry{metaLen: len(w.openMeta) - k})
	return w.openBase + len(w.open) - w.openFront - 1
}

// CopyMember copies member e of archive src into the archive as its next
// member (spec 7.7): the metadata record as it is (the summary form
// checked against e), and each content frame's stored plaintext re-sealed
// under this archive's keys with the same flags, neither decompressed nor
// compressed again. The chunk sizes must agree. It returns the content
// bytes stored (after compression). An error reading src is the copy's
// and leaves the writer as Add's content-reader errors do: unusable.
func (w *Writer) CopyMember(src *Archive, e Entry) (int64, error) {
	if err := w.stickyErr(); err != nil {
		return 0, err
	}
	if w.closed {
		return 0, errors.New("cbfs writer: CopyMember after Close")
	}
	if int(src.Header.ChunkSize) != w.opt.ChunkSize {
		return 0, fmt.Errorf("member %q: chunk size %d, this archive's is %d", e.Meta.Path, src.Header.ChunkSize, w.opt.ChunkSize)
	}
	m, err := src.Meta(e)
	if err != nil {
		return 0, err
	}
	if err := m.Validate(); err != nil {
		return 0, fmt.Errorf("member %q: %w", m.Path, err)
	}
	if bad := w.seq.next(m); bad != "" {
		return 0, fmt.Errorf("member %q: %s", m.Path, bad)
	}
	if uint64(w.members) >= MaxMembers {
		return 0, fmt.Errorf("archive full: %d members", uint64(MaxMembers))
	}
	w.enc = m.Encode(w.enc[:0])
	num := w.members
	w.members++
	ei := w.openMember(m)
	w.queueCopy(sealJob{kind: KindMeta, final: true, stream: num, plain: w.enc, lz4: len(w.enc) > MetaPad-8, entry: ei})
	var index uint64
	var total int64
	sawFinal := false
	err = src.storedChunks(e, func(stored []byte, lz4, final bool) error {
		sawFinal = final
		j := sealJob{kind: KindContent, final: final, stream: num, index: index, plain: stored, isLZ4: lz4, entry: -1}
		if final {
			j.entry = ei
		}
		w.queueCopy(j)
		index++
		total += int64(len(stored))
		return nil
	})
	if err == nil && index == 0 {
		err = newErr(ClassMember, -1, int64(e.Number), "no content frame")
	}
	if err != nil {
		if !sawFinal {
			// Keep the pipeline's members whole: the sticky error makes
			// the archive unusable anyway.
			w.queueCopy(sealJob{kind: KindContent, final: true, stream: num, index: index, entry: ei})
		}
		w.setErr(fmt.Errorf("copying member %d (%q): %w", e.Number, m.Path, err))
		return total, w.stickyErr()
	}
	return total, w.stickyErr()
}

// holdsContent says whether a member of type t that was not imported
// from a tar may have content (spec 7.3).
func holdsContent(t Type) bool {
	switch t {
	case TypeRegular, TypeTarGlobal, TypeTarOther, TypeTrailer:
		return true
	}
	return false
}

// readChunk fills buf from r; a short read means the end of r.
func readChunk(r io.Reader, buf []byte) (int, error) {
	k, err := io.ReadFull(r, buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil
	}
	return k, err
}

// Abort stops the writer after a failure elsewhere (a bad input, say): it
// waits for the sealing goroutines and makes every later call return err.
// The archive written so far is left without its summary and footer, so
// no reader takes it for a complete archive.
func (w *Writer) Abort(err error) {
	w.setErr(err)
	if !w.closed {
		w.closed = true
		w.flushBatch()
		w.pipe.close()
		w.asmWG.Wait()
		w.rec.stop()
	}
}

// Entries returns where each member was written, as the summary records
// it; nil before Close or after a failure.
func (w *Writer) Entries() []Entry {
	if !w.closed || w.stickyErr() != nil {
		return nil
	}
	var plain []byte
	for _, c := range w.sumDone {
		plain = append(plain, c.plaintext(w.opt.ChunkSize)...)
	}
	es, err := DecodeSummary(append(plain, w.summary...), uint64(w.members))
	if err != nil {
		// The writer encoded it: a failure here is a bug.
		panic("cbfs writer: own summary does not decode: " + err.Error())
	}
	return es
}

// Close writes the summary, the footer and the end-of-archive blocks. It
// does not close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return w.stickyErr()
	}
	if bad := w.seq.end(); bad != "" {
		w.Abort(errors.New("cbfs writer: " + bad))
		return w.stickyErr()
	}
	w.closed = true
	defer w.rec.stop()
	// Drain the members first: the summary needs their offsets.
	w.flushBatch()
	w.pipe.close()
	w.asmWG.Wait()
	if err := w.stickyErr(); err != nil {
		return err
	}
	summaryOffset := w.rec.logical
	w.pipe = newOrdered((*batch).seal, w.opt.Workers, batchDepth)
	w.asmWG.Add(1)
	go w.assemble()
	// The whole chunks, then the rest: the last frame is final, and empty
	// only when the summary is.
	for i, c := range w.sumDone {
		final := i == len(w.sumDone)-1 && len(w.summary) == 0
		w.queueCopy(sealJob{kind: KindSummary, final: final, index: uint64(i), plain: c.stored, isLZ4: c.lz4, entry: -1})
	}
	if len(w.summary) > 0 || len(w.sumDone) == 0 {
		w.queueCopy(sealJob{kind: KindSummary, final: true, index: uint64(len(w.sumDone)), plain: w.summary, lz4: w.opt.Compress, entry: -1})
	}
	w.flushBatch()
	w.pipe.close()
	w.asmWG.Wait()
	if err := w.stickyErr(); err != nil {
		return err
	}
	rw := w.rec
	rw.flushData()
	digest, err := rw.finish()
	if err != nil {
		w.setErr(err)
		return err
	}
	f := Footer{Major: Major, Minor: Minor, ID: w.hdr.ID, Members: uint64(w.members),
		SummaryOffset: uint64(summaryOffset), SummaryLength: uint64(rw.logical - summaryOffset),
		StreamLength: uint64(rw.logical), FooterOffset: uint64(rw.phys), Digest: digest, Header: w.hdr}
	f.MAC = w.keys.MAC(f.encodeNoMAC())
	footer := frame.Append(nil, KindFooter, FlagFinal, f.Encode())
	tail := append(outerHeader(rw.id, rw.next, int64(len(footer)))[:], footer...)
	tail = append(tail, make([]byte, PadLen(int64(len(footer)))+2*BlockSize)...)
	if _, err := w.out.Write(tail); err != nil {
		w.setErr(err)
	}
	return w.stickyErr()
}

// recordWriter cuts the logical frame stream into records of exactly size
// bytes (the last one shorter) and writes each as a ustar member. A record
// is assembled in place, after room for its header; an emitter goroutine
// writes finished records in order, so that writing does not hold up the
// assembly. The footer's digest is taken as frames are assembled.
type recordWriter struct {
	id      [crypt.IDSize]byte
	size    int
	buf     []byte // the record being assembled: BlockSize bytes of room, then the body
	next    uint64 // next record number
	logical int64  // logical bytes written into records or buf
	phys    int64  // physical bytes handed to the emitter
	err     error  // the assembler's own error (too many records)
	digest  *Digest

	emit    chan []byte
	free    *freeList
	emitted chan struct{}
	w       io.Writer
	emitErr error // set by the emitter; read after emitted is closed
	// failed is emitErr for the other goroutines, which must not wait
	// for the emitter to end to learn of it.
	failed  atomic.Pointer[error]
	stopped sync.Once
}

// stop ends the emitter and waits for it; safe to call more than once.
func (rw *recordWriter) stop() {
	rw.stopped.Do(func() { close(rw.emit) })
	<-rw.emitted
}

var zeroBlock [BlockSize]byte

func newRecordWriter(w io.Writer, id [crypt.IDSize]byte, size int) *recordWriter {
	rw := &recordWriter{id: id, size: size, w: w,
		emit: make(chan []byte, 1), emitted: make(chan struct{}),
		// The record in assembly, one queued and one being written.
		free: newSlabList(BlockSize+size+BlockSize, 3)}
	rw.buf = rw.free.get()[:BlockSize]
	go rw.emitter()
	return rw
}

// emitter writes the records in order, then frees them.
func (rw *recordWriter) emitter() {
	defer close(rw.emitted)
	for b := range rw.emit {
		if rw.emitErr == nil {
			if _, err := rw.w.Write(b); err != nil {
				rw.emitErr = &OutputError{Err: err}
				rw.failed.Store(&rw.emitErr)
			}
		}
		rw.free.put(b)
	}
}

// error reports a failure of either side.
func (rw *recordWriter) error() error {
	if rw.err != nil {
		return rw.err
	}
	if p := rw.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// send hands a finished run of physical bytes to the emitter.
func (rw *recordWriter) send(b []byte) {
	rw.phys += int64(len(b))
	rw.emit <- b
}

// writeHeaderRecord writes record 0, whose body is the header frame h;
// the digest starts with it.
func (rw *recordWriter) writeHeaderRecord(h []byte) {
	rw.digest = NewDigest(h)
	oh := outerHeader(rw.id, rw.next, int64(len(h)))
	rw.next++
	b := append(oh[:], h...)
	rw.send(append(b, zeroBlock[:PadLen(int64(len(h)))]...))
}

// sealRecord finishes the record in rw.buf: its header in front, padding
// behind; then starts the next one.
func (rw *recordWriter) sealRecord() {
	n := int64(len(rw.buf) - BlockSize)
	if rw.next >= MaxRecords && rw.err == nil {
		rw.err = fmt.Errorf("archive full: %d records", int64(MaxRecords))
	}
	h := outerHeader(rw.id, rw.next, n)
	rw.next++
	copy(rw.buf, h[:])
	rw.buf = append(rw.buf, zeroBlock[:PadLen(n)]...)
	rw.send(rw.buf)
	rw.buf = rw.free.get()[:BlockSize]
}

// writeFrame appends one whole frame to the logical stream.
func (rw *recordWriter) writeFrame(f []byte) {
	rw.digest.Frame(f[:FrameHeaderSize], f[FrameHeaderSize:])
	rw.logical += int64(len(f))
	for len(f) > 0 {
		n := min(BlockSize+rw.size-len(rw.buf), len(f))
		rw.buf = append(rw.buf, f[:n]...)
		f = f[n:]
		if len(rw.buf) == BlockSize+rw.size {
			rw.sealRecord()
		}
	}
}

func (rw *recordWriter) flushData() {
	if len(rw.buf) > BlockSize {
		rw.sealRecord()
	}
}

// finish waits for the emitter and returns the footer's digest.
func (rw *recordWriter) finish() ([32]byte, error) {
	rw.stop()
	if rw.err != nil {
		return [32]byte{}, rw.err
	}
	if rw.emitErr != nil {
		return [32]byte{}, rw.emitErr
	}
	return rw.digest.Sum(), nil
}

// summaryChunk is one whole chunk of the summary as a frame stores it.
type summaryChunk struct {
	stored []byte
	lz4    bool
}

// plaintext returns the chunk's plaintext, cs bytes.
func (c summaryChunk) plaintext(cs int) []byte {
	if !c.lz4 {
		return c.stored
	}
	out := make([]byte, cs)
	n, err := frame.DecodeLZ4(c.stored, out)
	if err != nil || n != cs {
		panic("cbfs writer: own summary chunk does not decompress")
	}
	return out
}

// cutSummary moves the summary's first whole chunk into sumDone,
// compressed if that shrinks it, and keeps the rest.
func (w *Writer) cutSummary() {
	cs := w.opt.ChunkSize
	c := summaryChunk{}
	if w.opt.Compress {
		if w.sumBuf == nil {
			w.sumBuf = make([]byte, cs)
		}
		if b := w.sumComp.Compress(w.sumBuf, w.summary[:cs]); b != nil {
			c.stored, c.lz4 = bytes.Clone(b), true
		}
	}
	if c.stored == nil {
		c.stored = bytes.Clone(w.summary[:cs])
	}
	w.sumDone = append(w.sumDone, c)
	w.summary = append(w.summary[:0], w.summary[cs:]...)
}

// EncodeSummary is the summary plaintext: for each member in order, its
// offset, length, and summary-form metadata record, each length-prefixed.
func EncodeSummary(entries []Entry) []byte {
	var b []byte
	for i := range entries {
		b = appendSummaryEntry(b, &entries[i])
	}
	return b
}

func appendSummaryEntry(b []byte, e *Entry) []byte {
	b = binary.AppendUvarint(b, uint64(e.Offset))
	b = binary.AppendUvarint(b, uint64(e.Length))
	// The record is encoded in place, after room for the longest length
	// prefix it could need, then moved back: no allocation per member.
	hint := e.Meta.sizeHint()
	pre := len(binary.AppendUvarint(nil, uint64(hint)))
	b = slices.Grow(b, pre+hint)
	start := len(b)
	enc := e.Meta.Encode(b[start+pre : start+pre])
	b = binary.AppendUvarint(b, uint64(len(enc)))
	b = append(b, enc...)
	return b
}

// appendSummaryRecord appends a summary entry whose metadata record is
// encoded already.
func appendSummaryRecord(b []byte, offset, length int64, meta []byte) []byte {
	return append(appendSummaryHead(b, offset, length, len(meta)), meta...)
}

// appendSummaryHead appends what comes before a summary entry's metadata
// record: the member's offset and length, and the record's length.
func appendSummaryHead(b []byte, offset, length int64, metaLen int) []byte {
	b = binary.AppendUvarint(b, uint64(offset))
	b = binary.AppendUvarint(b, uint64(length))
	return binary.AppendUvarint(b, uint64(metaLen))
}
