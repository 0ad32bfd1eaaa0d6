package format

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/internal/frame"
)

// Member is a member as a reader returns it.
type Member struct {
	Number uint32
	// Offset is the logical offset of the member's metadata frame.
	Offset int64
	// PhysOffset is the same place as a byte offset in the archive.
	PhysOffset int64
	// Meta is nil when the archive is read without the key.
	Meta *Meta
}

// Reader reads a CBFS archive as a stream, front to back: every member's
// metadata and content, then the summary and footer, which it checks
// against what it read. Next returns io.EOF only once the whole archive
// has been verified; any other error is sticky.
//
// With a nil key it checks what can be checked without one: framing,
// checksums, the layout and the footer's digest; Meta is then nil and
// Read fails.
type Reader struct {
	hdr  *Header
	keys *crypt.ArchiveKeys
	pipe *ordered[*openJob]
	stop chan struct{}
	once sync.Once

	err     error
	cur     *Member
	inBody  bool   // the current member's content is not yet read to its end
	chunk   []byte // unread plaintext of the current chunk
	lastFin bool   // the chunk in hand is the member's final one

	held *openJob // the chunk being read; its buffers go back to the pools after
	// payloads and dbufs recycle chunk buffers: export would otherwise
	// allocate, and the runtime clear, two chunk-sized buffers per chunk.
	payloads, dbufs *freeList
	jobs            *stack[*openJob] // jobs done with, for the producer to reuse

	// decode is whether opened frames are decoded (with the key, unless
	// ReaderOptions.PlainSum); sums, whether their plaintext is summed.
	decode, sums bool
	plainSum     PlainSum

	members  uint32
	seq      memberSeq // the order of imported members and the trailer
	sumWant  hash.Hash // summary plaintext as the members say it must be
	sumGot   hash.Hash // summary plaintext as read
	curEntry Entry     // its Meta is the member's full record
	sumBuf   []byte    // the current member's summary-form record
	sumHead  [30]byte  // and the entry's head in front of it
}

type openJob struct {
	fh      frame.Header
	hdr     [8]byte
	payload []byte
	member  uint32
	index   uint64
	logical int64
	phys    int64

	plain []byte
	dbuf  []byte // recycled decompression buffer holding plain, if any
	meta  *Meta
	crc   uint32 // the opened plaintext's CRC-32C and length (PlainSum)
	plen  int
	err   error // set by the worker (or the producer, with no work to do)

	footer *Footer // set on the last job
}

// ReaderOptions adjusts a streaming reader.
type ReaderOptions struct {
	Workers int
	// Keys are more keys to try beside NewReader's key: the reader takes
	// the one whose key check value the header carries.
	Keys []*crypt.Key
	// PlainSum, with a key, opens every sealed frame (every tag, as a
	// keyed read does) and sums its plaintext as sealed (PlainSum), but
	// decodes nothing: no metadata record, LZ4 block or summary is
	// decoded or checked, Meta is nil and Read fails. The framing, the
	// layout, the digest and both MACs are checked as always. It checks
	// an archive that holds another's plaintext frame for frame (a
	// rekeyed one): the sums of the two show it.
	PlainSum bool
}

// readDepth is how many frames may be in flight between reading and
// delivering: enough to keep every core busy when members are small (two
// frames each), at a bound of readDepth chunk buffers.
const readDepth = 32

// NewReader reads the archive header from r and checks it: the version,
// and with keys (key and opt.Keys; nil ones are skipped) the key check
// value, which picks the key (ErrWrongKey when none matches), and the
// header MAC. It reads nothing past the header record before returning.
func NewReader(r io.Reader, key *crypt.Key, opt ReaderOptions) (*Reader, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	pr := &physReader{r: br}
	hdr, err := pr.readHeaderRecord()
	if err != nil {
		return nil, err
	}
	rd := &Reader{hdr: hdr, stop: make(chan struct{}), sumWant: sha256.New(), sumGot: sha256.New()}
	if rd.keys, err = hdr.pickKeys(append([]*crypt.Key{key}, opt.Keys...)); err != nil {
		return nil, err
	}
	if rd.keys != nil {
		if err := hdr.Authenticate(rd.keys); err != nil {
			return nil, err
		}
		rd.sums = opt.PlainSum
		rd.decode = !opt.PlainSum
	}
	pr.size = int64(hdr.RecordSize)
	cs := int(hdr.ChunkSize)
	rd.payloads = newFreeList(int(summaryFrameLen(int64(cs))), readDepth+4)
	rd.dbufs = newFreeList(cs, readDepth+4)
	rd.jobs = newStack[*openJob](readDepth + 4)
	n := opt.Workers
	if n <= 0 {
		n = workers()
	}
	rd.pipe = newOrdered(func(j *openJob) { rd.open(j) }, n, readDepth)
	go rd.produce(pr)
	return rd, nil
}

// Header is the archive's header.
func (rd *Reader) Header() *Header { return rd.hdr }

// Close stops the reader's goroutines. It is safe to call more than once
// and needed only when the archive is not read to the end.
func (rd *Reader) Close() error {
	rd.once.Do(func() {
		close(rd.stop)
		// Drain so the producer and workers can exit.
		go func() {
			for {
				if _, ok := rd.pipe.next(); !ok {
					return
				}
			}
		}()
	})
	return nil
}

// produce reads frames in order, checks their framing and the grammar of
// the stream, and queues them for opening. It runs in its own goroutine.
func (rd *Reader) produce(pr *physReader) {
	defer rd.pipe.close()
	send := func(j *openJob) bool {
		select {
		case <-rd.stop:
			return false
		default:
		}
		rd.pipe.submit(j)
		return true
	}
	fail := func(j *openJob, err error) {
		j.err = err
		send(j)
	}
	cs := int64(rd.hdr.ChunkSize)
	var member uint32
	var index uint64
	var state byte = KindMeta // expecting: KindMeta (m or s), KindContent, KindSummary
	summaryOffset := int64(-1)
	for {
		j, ok := rd.jobs.pop()
		if !ok {
			j = new(openJob)
		}
		*j = openJob{logical: pr.logical, phys: pr.physOf(pr.logical), member: member}
		var hb [FrameHeaderSize]byte
		if err := pr.readLogical(hb[:]); err != nil {
			fail(j, err)
			return
		}
		fh, bad := parseFrameHeader(hb[:])
		if bad != "" {
			fail(j, newErr(ClassFrame, j.phys, memberOr(state, member), "%s", bad))
			return
		}
		if bad := checkFrameLen(fh, cs); bad != "" {
			fail(j, newErr(ClassFrame, j.phys, memberOr(state, member), "%s", bad))
			return
		}
		// Grammar: (m c* c_final)* s* s_final.
		switch {
		case state == KindMeta && fh.Kind == KindMeta:
			if !fh.Final() {
				fail(j, newErr(ClassFrame, j.phys, int64(member), "metadata frame without the final flag"))
				return
			}
			if uint64(member) >= MaxMembers {
				fail(j, newErr(ClassFrame, j.phys, -1, "over %d members", uint64(MaxMembers)))
				return
			}
			state, index = KindContent, 0
		case state == KindContent && fh.Kind == KindContent:
		case (state == KindMeta || state == KindSummary) && fh.Kind == KindSummary:
			if state == KindMeta {
				summaryOffset = j.logical
				state, index = KindSummary, 0
			}
		default:
			fail(j, newErr(ClassFrame, j.phys, memberOr(state, member), "%q frame where a %q frame belongs", fh.Kind, state))
			return
		}
		if index >= MaxChunks {
			fail(j, newErr(ClassFrame, j.phys, int64(member), "over %d frames in one stream", uint64(MaxChunks)))
			return
		}
		j.fh = fh
		copy(j.hdr[:], hb[:8])
		j.index = index
		if int(fh.Len) > rd.payloads.size { // a metadata record larger than a chunk
			j.payload = make([]byte, fh.Len)
		} else {
			j.payload = rd.payloads.get()[:fh.Len]
		}
		if err := pr.readLogical(j.payload); err != nil {
			fail(j, err)
			return
		}
		if crc := frame.CRC(hb[:], j.payload); crc != fh.CRC {
			fail(j, newErr(ClassFrame, j.phys, memberOr(state, member), "frame checksum mismatch"))
			return
		}
		pr.digest.Frame(hb[:], j.payload)
		if !send(j) {
			return
		}
		if fh.Kind == KindMeta {
			index = 0 // the member's content stream starts
		} else {
			index++
		}
		if fh.Kind == KindContent && fh.Final() {
			member++
			state = KindMeta
		}
		if fh.Kind == KindSummary && fh.Final() {
			break
		}
	}
	// The summary is the end of the frame stream: the footer record follows.
	j := &openJob{logical: pr.logical, phys: -1, member: member}
	f, err := pr.readFooterRecord()
	if err != nil {
		fail(j, err)
		return
	}
	j.phys = int64(f.FooterOffset)
	digest := pr.digest.Sum()
	switch {
	case f.ID != rd.hdr.ID:
		err = newErr(ClassFooter, j.phys, -1, "footer belongs to archive %x, not %x", f.ID, rd.hdr.ID)
	case f.Header != *rd.hdr:
		err = newErr(ClassFooter, j.phys, -1, "the footer's copy of the archive header differs from record 0")
	case f.Members != uint64(member):
		err = newErr(ClassFooter, j.phys, -1, "footer counts %d members, the archive holds %d", f.Members, member)
	case f.SummaryOffset != uint64(summaryOffset) || f.StreamLength != uint64(pr.logical):
		err = newErr(ClassFooter, j.phys, -1, "footer's summary offset or stream length does not match the archive")
	case subtle.ConstantTimeCompare(f.Digest[:], digest[:]) != 1:
		err = newErr(ClassFooter, j.phys, -1, "archive digest mismatch: a frame header or tag, or the header frame, was changed")
	case rd.keys != nil && !f.Authenticate(rd.keys):
		err = newErr(ClassFooter, j.phys, -1, "footer MAC mismatch")
	}
	if err != nil {
		fail(j, err)
		return
	}
	j.footer = f
	send(j)
}

func memberOr(state byte, member uint32) int64 {
	if state == KindContent {
		return int64(member)
	}
	return -1
}

// dropPayload gives a job's payload back to the pool.
func (rd *Reader) dropPayload(j *openJob) {
	if j.payload != nil {
		rd.payloads.put(j.payload[:cap(j.payload)])
		j.payload = nil
	}
}

// open authenticates and decompresses one frame. It runs on a worker.
func (rd *Reader) open(j *openJob) {
	if j.err != nil || j.footer != nil || rd.keys == nil {
		return
	}
	kind := j.fh.Kind
	stream := j.member
	if kind == KindSummary {
		stream = 0
	}
	class := ClassMember
	member := int64(j.member)
	if kind == KindSummary {
		class, member = ClassSummary, -1
	}
	if !rd.decode {
		plain, err := frame.Open(rd.keys, j.fh, j.hdr[:], j.payload, stream, j.index)
		if err != nil {
			j.err = newErr(class, j.phys, member, "%s frame %d failed authentication", frameName(kind), j.index)
			return
		}
		j.plen, j.crc = len(plain), plainCRC(plain)
		return
	}
	if kind == KindMeta {
		// The record is decoded into a Meta of its own: the payload goes
		// back to the pool at once.
		defer rd.dropPayload(j)
		plain, err := frame.Open(rd.keys, j.fh, j.hdr[:], j.payload, stream, j.index)
		if err != nil {
			j.err = newErr(class, j.phys, member, "metadata frame failed authentication")
			return
		}
		j.meta, err = decodeMetaFrame(plain, j.fh.LZ4())
		if err != nil {
			j.err = newErr(ClassMember, j.phys, member, "metadata record: %v", err)
		}
		return
	}
	if j.fh.LZ4() {
		j.dbuf = rd.dbufs.get()
	}
	plain, bad := openChunk(rd.keys, j.fh, j.hdr[:], j.payload, stream, j.index, int(rd.hdr.ChunkSize), j.dbuf)
	if bad != "" {
		j.err = newErr(class, j.phys, member, "%s frame %d: %s", frameName(kind), j.index, bad)
		return
	}
	j.plain = plain
}

func frameName(kind byte) string {
	switch kind {
	case KindMeta:
		return "metadata"
	case KindContent:
		return "content"
	case KindSummary:
		return "summary"
	}
	return fmt.Sprintf("%q", kind)
}

// decodeMetaFrame undoes the metadata frame's padding (spec 5.6) and the optional LZ4, then decodes.
func decodeMetaFrame(p []byte, compressed bool) (*Meta, error) {
	if len(p) < 8 || len(p)%MetaPad != 0 {
		return nil, errors.New("padded record is not a multiple of the padding unit")
	}
	stored := binary.LittleEndian.Uint32(p[0:4])
	raw := binary.LittleEndian.Uint32(p[4:8])
	if raw > MaxMetaSize || uint64(stored)+8 > uint64(len(p)) || (uint64(stored)+8+MetaPad-1)/MetaPad*MetaPad != uint64(len(p)) {
		return nil, errors.New("lengths do not fit the record")
	}
	body := p[8 : 8+stored]
	if !frame.AllZero(p[8+stored:]) {
		return nil, errors.New("padding is not zero")
	}
	if compressed {
		// An LZ4 block gives at most 255 bytes per byte it holds: a
		// larger raw length is refused before it is allocated.
		if uint64(raw) > 255*uint64(stored)+MetaPad {
			return nil, errors.New("raw length more than its LZ4 block can hold")
		}
		out := make([]byte, raw)
		n, err := frame.DecodeLZ4(body, out)
		if err == frame.ErrLZ4End {
			return nil, err
		}
		if err != nil || n != int(raw) || int(stored) >= n {
			return nil, errors.New("bad LZ4 block")
		}
		body = out
	} else if stored != raw {
		return nil, errors.New("stored and raw lengths differ in an uncompressed record")
	}
	m, err := DecodeMeta(body)
	if err == nil {
		err = m.checkFull()
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (rd *Reader) fail(err error) error {
	if rd.err == nil {
		rd.err = err
		rd.Close()
	}
	return rd.err
}

// take returns the next opened frame, or an error.
func (rd *Reader) take() (*openJob, error) {
	j, ok := rd.pipe.next()
	if !ok {
		return nil, rd.fail(errors.New("archive reader stopped"))
	}
	if j.err != nil {
		// Frames are checked before their member's metadata is opened, so
		// the error knows only the member's number: add its path.
		var fe *Error
		if errors.As(j.err, &fe) && fe.Path == "" && rd.inBody && rd.cur != nil && rd.cur.Meta != nil && fe.Member == int64(rd.cur.Number) {
			fe.Path = string(rd.cur.Meta.Path)
		}
		return nil, rd.fail(j.err)
	}
	if rd.sums && j.footer == nil {
		rd.plainSum.add(j.fh.Kind, j.fh.Flags, j.plen, j.crc)
	}
	return j, nil
}

// PlainSum is the sum of the plaintexts of the frames read so far
// (ReaderOptions.PlainSum): of the whole archive once Next returned
// io.EOF.
func (rd *Reader) PlainSum() PlainSum { return rd.plainSum }

// Next moves to the next member. After the last one it reads and checks
// the summary and footer and returns io.EOF if all is well.
func (rd *Reader) Next() (*Member, error) {
	if rd.err != nil {
		return nil, rd.err
	}
	for rd.inBody {
		if _, err := rd.nextChunk(); err != nil && err != io.EOF {
			return nil, err
		}
	}
	j, err := rd.take()
	if err != nil {
		return nil, err
	}
	if j.fh.Kind == KindSummary {
		if rd.decode {
			if bad := rd.seq.end(); bad != "" {
				return nil, rd.fail(newErr(ClassMember, j.phys, -1, "%s", bad))
			}
		}
		return nil, rd.finish(j)
	}
	m := &Member{Number: j.member, Offset: j.logical, PhysOffset: j.phys, Meta: j.meta}
	rd.recycle(j)
	if m.Meta != nil {
		if bad := rd.seq.next(m.Meta); bad != "" {
			e := newErr(ClassMember, m.PhysOffset, int64(m.Number), "%s", bad)
			e.Path = string(m.Meta.Path)
			return nil, rd.fail(e)
		}
	}
	rd.cur = m
	rd.inBody = true
	rd.chunk = nil
	rd.lastFin = false
	rd.members++
	rd.curEntry = Entry{Number: m.Number, Offset: m.Offset, Meta: m.Meta}
	return m, nil
}

// nextChunk loads the current member's next chunk; io.EOF at its end.
func (rd *Reader) nextChunk() ([]byte, error) {
	rd.release()
	if rd.lastFin {
		rd.inBody = false
		return nil, io.EOF
	}
	j, err := rd.take()
	if err != nil {
		return nil, err
	}
	if j.fh.Kind != KindContent {
		return nil, rd.fail(newErr(ClassFrame, j.phys, int64(rd.cur.Number), "content frame expected"))
	}
	rd.held = j
	if m := rd.cur.Meta; m != nil && emptyContent(m.Type) && len(j.plain) > 0 {
		e := newErr(ClassMember, j.phys, int64(rd.cur.Number), "a %s has content: a member of this type has none", m.Type)
		e.Path = string(m.Path)
		return nil, rd.fail(e)
	}
	if j.fh.Final() {
		rd.lastFin = true
		rd.curEntry.Length = j.logical + FrameHeaderSize + int64(j.fh.Len) - rd.curEntry.Offset
		if e := &rd.curEntry; e.Meta != nil {
			// The entry the summary must hold for this member.
			rd.sumBuf = e.Meta.encode(rd.sumBuf[:0], true)
			rd.sumWant.Write(appendSummaryHead(rd.sumHead[:0], e.Offset, e.Length, len(rd.sumBuf)))
			rd.sumWant.Write(rd.sumBuf)
		}
	}
	return j.plain, nil
}

// release returns the buffers of the chunk just read to the pools.
func (rd *Reader) release() {
	j := rd.held
	if j == nil {
		return
	}
	rd.held = nil
	rd.recycle(j)
}

// recycle returns a job the consumer is done with, and its buffers, for
// reuse.
func (rd *Reader) recycle(j *openJob) {
	rd.dropPayload(j)
	if j.dbuf != nil {
		rd.dbufs.put(j.dbuf)
	}
	*j = openJob{}
	rd.jobs.push(j)
}

// Read reads the current member's content.
func (rd *Reader) Read(p []byte) (int, error) {
	if rd.err != nil {
		return 0, rd.err
	}
	if rd.keys == nil {
		return 0, errors.New("content cannot be read without the key")
	}
	if !rd.decode {
		return 0, errors.New("content is not decoded by a reader that sums plaintext")
	}
	for len(rd.chunk) == 0 {
		if !rd.inBody {
			return 0, io.EOF
		}
		c, err := rd.nextChunk()
		if err != nil {
			return 0, err
		}
		rd.chunk = c
	}
	n := copy(p, rd.chunk)
	rd.chunk = rd.chunk[n:]
	return n, nil
}

// WriteTo writes the rest of the current member's content to w, each
// chunk as it is opened: io.Copy from the reader copies no byte through a
// buffer of its own.
func (rd *Reader) WriteTo(w io.Writer) (int64, error) {
	if rd.err != nil {
		return 0, rd.err
	}
	if rd.keys == nil {
		return 0, errors.New("content cannot be read without the key")
	}
	var total int64
	for {
		if len(rd.chunk) > 0 {
			n, err := w.Write(rd.chunk)
			total += int64(n)
			rd.chunk = rd.chunk[n:]
			if err != nil {
				return total, err
			}
		}
		if !rd.inBody {
			return total, nil
		}
		c, err := rd.nextChunk()
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		rd.chunk = c
	}
}

// finish reads the summary frames and the footer job.
func (rd *Reader) finish(j *openJob) error {
	for {
		if rd.decode {
			rd.sumGot.Write(j.plain)
		}
		final := j.fh.Kind == KindSummary && j.fh.Final()
		rd.recycle(j)
		if final {
			break
		}
		var err error
		if j, err = rd.take(); err != nil {
			return err
		}
	}
	j, err := rd.take()
	if err != nil {
		return err
	}
	if j.footer == nil {
		return rd.fail(newErr(ClassFooter, j.phys, -1, "footer expected"))
	}
	if rd.decode && !bytes.Equal(rd.sumWant.Sum(nil), rd.sumGot.Sum(nil)) {
		return rd.fail(newErr(ClassSummary, -1, -1, "the summary does not match the members"))
	}
	rd.err = io.EOF
	return io.EOF
}
