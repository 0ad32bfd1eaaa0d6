package format

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
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
	batch *batch // frames not yet handed to the pipeline
	asmWG sync.WaitGroup

	frames *freeList // sealed frame buffers of content chunks
	cbufs  *freeList // LZ4 output buffers

	mu      sync.Mutex // guards err, open and openBase, shared with the assembler
	summary []byte     // the summary plaintext after the last whole chunk in sumDone (the assembler's until Close)
	// sumDone holds the summary's whole chunks (ChunkSize bytes of
	// plaintext each), LZ4-compressed as soon as they fill when the
	// writer compresses: what the writer keeps per member is then a
	// fraction of its summary entry. Close seals them.
	sumDone []summaryChunk
	sumComp frame.Compressor
	err     error
	// open holds the entries of members whose frames are still on their
	// way to the archive, member openBase first. A member leaves once its
	// summary entry is written: what the writer keeps per member is its
	// summary entry alone, so memory grows with the member count only by
	// the summary's size, never by its metadata as given to Add.
	open     []Entry
	openBase int

	members uint32
	closed  bool
	bufs    *freeList // plaintext chunk buffers
}

type sealJob struct {
	kind   byte
	final  bool
	stream uint32
	index  uint64
	plain  []byte // owned; returned to the pool after sealing
	lz4    bool   // compress plain if that shrinks it
	isLZ4  bool   // plain is an LZ4 block already
	frame  []byte // result: the whole frame
	entry  int    // member's entry to stamp (m: offset; final c: length), -1 for none
	w      *Writer
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
	// Every buffer in flight is in a batch, in the pipeline or being
	// filled, so this many of each kind is all that is ever needed.
	inFlight := (batchDepth+2)*batchFrames + 2
	wr.bufs = newFreeList(opt.ChunkSize, inFlight)
	wr.frames = newFreeList(FrameHeaderSize+opt.ChunkSize+crypt.TagSize, inFlight)
	wr.cbufs = newFreeList(opt.ChunkSize, opt.Workers+2)

	// Records are whole (1 MiB by default) when written: no buffer in
	// between, which would copy every byte once it is out of step.
	wr.out = w
	wr.rec = newRecordWriter(wr.out, wr.hdr.ID, opt.RecordSize)
	wr.rec.writeRecord(frame.Append(nil, KindHeader, FlagFinal, wr.hdr.Encode()))

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

func (j *sealJob) seal() {
	w := j.w
	flags := byte(0)
	if j.final {
		flags |= FlagFinal
	}
	plain := j.plain
	var cbuf []byte
	if j.isLZ4 {
		flags |= FlagLZ4
	} else if j.lz4 && len(plain) > 0 {
		if len(plain) <= w.cbufs.size {
			cbuf = w.cbufs.get()
		} else {
			cbuf = make([]byte, len(plain)) // a metadata record larger than a chunk
		}
		if b := frame.Compress(cbuf, plain); b != nil {
			plain = b
			flags |= FlagLZ4
		}
	}
	switch j.kind {
	case KindMeta:
		plain = padMeta(plain, len(j.plain))
	case KindSummary:
		plain = frame.Pad(plain, w.opt.ChunkSize)
	}
	var buf []byte
	if j.kind != KindContent {
		buf = make([]byte, 0, FrameHeaderSize+len(plain)+crypt.TagSize)
	} else {
		buf = w.frames.get()[:0]
	}
	j.frame = frame.Seal(buf, w.keys, j.kind, flags, j.stream, j.index, plain)
	if cbuf != nil {
		w.cbufs.put(cbuf)
	}
	if j.kind != KindMeta {
		w.bufs.put(j.plain)
	}
	j.plain = nil
}

// The sealing pipeline takes frames in batches: a tree of small files
// has two small frames per member, and handing each to a worker and back
// costs more in goroutine switches than sealing it. A batch closes at
// batchFrames frames or batchBytes of plaintext, whichever comes first;
// batchDepth batches may be in flight between reading and writing, so at
// most about batchDepth*batchFrames chunk buffers are.
const (
	batchFrames = 8
	batchBytes  = 128 << 10
	batchDepth  = 12
)

type batch struct {
	jobs  []sealJob
	bytes int
}

var batches = sync.Pool{New: func() any { return &batch{jobs: make([]sealJob, 0, batchFrames)} }}

func (b *batch) seal() {
	for i := range b.jobs {
		b.jobs[i].seal()
	}
}

// queue adds a frame to the open batch, and hands the batch to the
// pipeline once it is full.
func (w *Writer) queue(j sealJob) {
	if w.batch == nil {
		w.batch = batches.Get().(*batch)
	}
	b := w.batch
	b.jobs = append(b.jobs, j)
	b.bytes += len(j.plain)
	if len(b.jobs) >= batchFrames || b.bytes >= batchBytes {
		w.flushBatch()
	}
}

// flushBatch hands the open batch, if any, to the pipeline.
func (w *Writer) flushBatch() {
	if w.batch != nil {
		w.pipe.submit(w.batch)
		w.batch = nil
	}
}

// padMeta frames a metadata record's stored bytes: stored length, raw
// length, the bytes, and zeros up to a multiple of MetaPad, so that the
// sealed size tells nothing finer than MetaPad about path lengths.
func padMeta(stored []byte, rawLen int) []byte {
	n := 8 + len(stored)
	total := (n + MetaPad - 1) / MetaPad * MetaPad
	out := make([]byte, total)
	binary.LittleEndian.PutUint32(out[0:4], uint32(len(stored)))
	binary.LittleEndian.PutUint32(out[4:8], uint32(rawLen))
	copy(out[8:], stored)
	return out
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
			w.place(&b.jobs[i])
		}
		clear(b.jobs)
		b.jobs, b.bytes = b.jobs[:0], 0
		batches.Put(b)
	}
}

// place writes a sealed frame to the record stream and stamps its
// member's entry.
func (w *Writer) place(j *sealJob) {
	off := w.rec.logical
	w.rec.writeFrame(j.frame)
	if j.kind == KindContent {
		w.frames.put(j.frame)
	}
	j.frame = nil
	if j.entry >= 0 {
		w.mu.Lock()
		e := &w.open[j.entry-w.openBase]
		if j.kind == KindMeta {
			e.Offset = off
			w.mu.Unlock()
		} else {
			e.Length = w.rec.logical - e.Offset
			// Members complete in order: the member leaves open, and
			// the summary grows here, off the path of Close and outside
			// the lock that Add takes.
			done := *e
			if j.entry == w.openBase {
				w.open[0] = Entry{}
				w.open = w.open[1:]
				w.openBase++
			}
			w.mu.Unlock()
			w.summary = appendSummaryEntry(w.summary, &done)
			for len(w.summary) >= w.opt.ChunkSize {
				w.cutSummary()
			}
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

func (w *Writer) getBuf() []byte { return w.bufs.get()[:0] }

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
	enc := m.Encode(nil)
	if len(enc) > MaxMetaSize {
		return 0, fmt.Errorf("member %q: metadata record of %d bytes over the cap %d", m.Path, len(enc), MaxMetaSize)
	}
	num := w.members
	w.members++
	if w.opt.OnAdd != nil {
		w.opt.OnAdd(m)
	}
	w.mu.Lock()
	w.open = append(w.open, Entry{Number: num, Meta: m.summaryOnly()})
	ei := w.openBase + len(w.open) - 1
	w.mu.Unlock()
	// A record that fits one padding unit stays one unit compressed or
	// not: compress only where it could save a unit.
	compressMeta := w.opt.Compress && len(enc) > MetaPad-8
	w.queue(sealJob{w: w, kind: KindMeta, final: true, stream: num, plain: enc, lz4: compressMeta, entry: ei})

	// Read one chunk ahead so that the last chunk is known to be last.
	var total int64
	cur := w.getBuf()
	var err error
	if r != nil {
		cur, err = readChunk(r, cur, w.opt.ChunkSize)
	}
	total += int64(len(cur))
	for index := uint64(0); ; index++ {
		if index >= MaxChunks {
			return total, fmt.Errorf("member %q: over %d chunks", m.Path, uint64(MaxChunks))
		}
		var next []byte
		if err == nil && len(cur) == w.opt.ChunkSize && r != nil {
			next, err = readChunk(r, w.getBuf(), w.opt.ChunkSize)
			total += int64(len(next))
		}
		if err != nil {
			w.setErr(fmt.Errorf("member %q: reading content: %w", m.Path, err))
			// Seal what we have as final so the pipeline stays consistent;
			// the sticky error makes the archive unusable anyway.
			w.queue(sealJob{w: w, kind: KindContent, final: true, stream: num, index: index, plain: cur, entry: ei})
			return total, w.stickyErr()
		}
		final := len(next) == 0
		j := sealJob{w: w, kind: KindContent, final: final, stream: num, index: index, plain: cur, lz4: w.opt.Compress, entry: -1}
		if final {
			j.entry = ei
		}
		w.queue(j)
		if final {
			if next != nil {
				w.bufs.put(next)
			}
			break
		}
		cur = next
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
	enc := m.Encode(nil)
	num := w.members
	w.members++
	w.mu.Lock()
	w.open = append(w.open, Entry{Number: num, Meta: m.summaryOnly()})
	ei := w.openBase + len(w.open) - 1
	w.mu.Unlock()
	w.queue(sealJob{w: w, kind: KindMeta, final: true, stream: num, plain: enc, lz4: len(enc) > MetaPad-8, entry: ei})
	var index uint64
	var total int64
	sawFinal := false
	err = src.storedChunks(e, func(stored []byte, lz4, final bool) error {
		sawFinal = final
		j := sealJob{w: w, kind: KindContent, final: final, stream: num, index: index, plain: append(w.getBuf(), stored...), isLZ4: lz4, entry: -1}
		if final {
			j.entry = ei
		}
		w.queue(j)
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
			w.queue(sealJob{w: w, kind: KindContent, final: true, stream: num, index: index, plain: w.getBuf(), entry: ei})
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

// readChunk reads up to n bytes; a short read means the end of r.
func readChunk(r io.Reader, buf []byte, n int) ([]byte, error) {
	buf = buf[:n]
	k, err := io.ReadFull(r, buf)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil
	}
	return buf[:k], err
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
		buf := append(w.getBuf()[:0:w.opt.ChunkSize], c.stored...)
		w.queue(sealJob{w: w, kind: KindSummary, final: final, index: uint64(i), plain: buf, isLZ4: c.lz4, entry: -1})
	}
	if len(w.summary) > 0 || len(w.sumDone) == 0 {
		buf := append(w.getBuf(), w.summary...)
		w.queue(sealJob{w: w, kind: KindSummary, final: true, index: uint64(len(w.sumDone)), plain: buf, lz4: w.opt.Compress, entry: -1})
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
		StreamLength: uint64(rw.logical), FooterOffset: uint64(rw.phys), Digest: digest}
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
// writes finished records in order and a hasher goroutine hashes them
// after it (for the footer's digest), so that none of the three holds up
// the others: the digest is serial by nature, and on 2 cores hashing and
// writing the whole archive on one goroutine was the longest serial path
// of an uncompressed import.
type recordWriter struct {
	id      [crypt.IDSize]byte
	size    int
	buf     []byte // the record being assembled: BlockSize bytes of room, then the body
	next    uint64 // next record number
	logical int64  // logical bytes written into records or buf
	phys    int64  // physical bytes handed to the emitter
	err     error  // the assembler's own error (too many records)

	emit    chan []byte
	hashq   chan []byte
	free    *freeList
	emitted chan struct{}
	hashed  chan struct{}
	w       io.Writer
	hash    hash.Hash
	emitErr error // set by the emitter; read after emitted is closed
	// failed is emitErr for the other goroutines, which must not wait
	// for the emitter to end to learn of it.
	failed  atomic.Pointer[error]
	stopped sync.Once
}

// stop ends the emitter and the hasher and waits for them; safe to call
// more than once.
func (rw *recordWriter) stop() {
	rw.stopped.Do(func() { close(rw.emit) })
	<-rw.emitted
	<-rw.hashed
}

var zeroBlock [BlockSize]byte

func newRecordWriter(w io.Writer, id [crypt.IDSize]byte, size int) *recordWriter {
	rw := &recordWriter{id: id, size: size, w: w, hash: sha256.New(),
		emit: make(chan []byte, 2), hashq: make(chan []byte, 2),
		emitted: make(chan struct{}), hashed: make(chan struct{}),
		// The record in assembly, two queued and one being written, two
		// queued and one being hashed.
		free: newFreeList(BlockSize+size+BlockSize, 7)}
	rw.buf = rw.free.get()[:BlockSize]
	go rw.emitter()
	go rw.hasher()
	return rw
}

func (rw *recordWriter) emitter() {
	defer close(rw.emitted)
	defer close(rw.hashq)
	for b := range rw.emit {
		if rw.emitErr == nil {
			if _, err := rw.w.Write(b); err != nil {
				rw.emitErr = &OutputError{Err: err}
				rw.failed.Store(&rw.emitErr)
			}
		}
		rw.hashq <- b
	}
}

// hasher hashes the records in the order written, then frees them.
func (rw *recordWriter) hasher() {
	defer close(rw.hashed)
	for b := range rw.hashq {
		rw.hash.Write(b)
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

// writeRecord writes a record whose body is not in rw.buf (the header
// record).
func (rw *recordWriter) writeRecord(body []byte) {
	h := outerHeader(rw.id, rw.next, int64(len(body)))
	rw.next++
	b := append(h[:], body...)
	rw.send(append(b, zeroBlock[:PadLen(int64(len(body)))]...))
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

func (rw *recordWriter) writeFrame(f []byte) {
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

// finish waits for the emitter and returns the digest of every byte it
// wrote: all of the archive before the footer record.
func (rw *recordWriter) finish() ([32]byte, error) {
	var d [32]byte
	rw.stop()
	if rw.err != nil {
		return d, rw.err
	}
	if rw.emitErr != nil {
		return d, rw.emitErr
	}
	rw.hash.Sum(d[:0])
	return d, nil
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
		cbuf := w.cbufs.get()
		if b := w.sumComp.Compress(cbuf, w.summary[:cs]); b != nil {
			c.stored, c.lz4 = bytes.Clone(b), true
		}
		w.cbufs.put(cbuf)
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
