package format

import (
	"errors"
	"io"
	"sync"

	"github.com/cbfs/cbfs/internal/frame"
)

// StreamItem is a member to read: an archive opened with the key, and
// the member's entry in its summary.
type StreamItem struct {
	Archive *Archive
	Entry   Entry
}

// MemberStream reads members of archives opened for random access, in an
// order given up front, as one stream: a goroutine reads each member's
// frames in turn, front to back (through the archive's Source: a block
// cache makes the reads of consecutive members of one archive one
// sequential read), workers authenticate and decode them, several at a
// time, and Next and Read return the members in the order given. It
// checks what Archive.Meta and Archive.Content check, member by member.
// Memory is bounded by a window of frames, whatever the members' sizes.
type MemberStream struct {
	items []StreamItem
	pipe  *ordered[*streamBatch]
	stop  chan struct{}
	once  sync.Once
	batch *streamBatch // the batch being delivered
	next  int          // its next frame

	err     error
	cur     int // the current item; -1 before the first
	inBody  bool
	chunk   []byte
	lastFin bool
	held    *streamJob

	payloads, dbufs *freeList
}

type streamJob struct {
	item    int
	fh      frame.Header
	hdr     [8]byte
	payload []byte
	index   uint64
	phys    int64

	plain []byte
	dbuf  []byte
	meta  *Meta
	err   error
}

// streamBatch is frames handed to a worker at once: up to batchFrames
// frames or batchBytes of payload (members of a few KiB are two frames,
// and a job per frame cost as much as opening it).
type streamBatch struct {
	jobs  []streamJob
	bytes int
}

// streamDepth is how many batches may be in flight between reading and
// delivering: two for each of two workers (more were no faster), so at
// most about 6*batchFrames frames are held.
const streamDepth = 4

// NewMemberStream starts reading items, whose archives must have been
// opened with a key. Close it when it is not read to the end.
func NewMemberStream(items []StreamItem) *MemberStream {
	cs := int64(MinChunkSize)
	for _, it := range items {
		cs = max(cs, int64(it.Archive.Header.ChunkSize))
	}
	n := (streamDepth+2)*batchFrames + 2
	s := &MemberStream{items: items, stop: make(chan struct{}), cur: -1,
		payloads: newFreeList(int(cs)+FrameHeaderSize+64, n), dbufs: newFreeList(int(cs), n)}
	s.pipe = newOrdered(func(b *streamBatch) {
		for i := range b.jobs {
			s.open(&b.jobs[i])
		}
	}, workers(), streamDepth)
	go s.produce()
	return s
}

// Close stops the stream's goroutines. It is safe to call more than once.
func (s *MemberStream) Close() error {
	s.once.Do(func() {
		close(s.stop)
		go func() {
			for {
				if _, ok := s.pipe.next(); !ok {
					return
				}
			}
		}()
	})
	return nil
}

// produce reads every item's frames in order and queues them.
func (s *MemberStream) produce() {
	defer s.pipe.close()
	b := &streamBatch{}
	flush := func() bool {
		select {
		case <-s.stop:
			return false
		default:
		}
		if len(b.jobs) > 0 {
			s.pipe.submit(b)
			b = &streamBatch{jobs: make([]streamJob, 0, batchFrames)}
		}
		return true
	}
	// send queues a frame; an error is the last thing sent.
	send := func(j *streamJob) bool {
		b.jobs = append(b.jobs, *j)
		b.bytes += len(j.payload)
		if j.err != nil || len(b.jobs) >= batchFrames || b.bytes >= batchBytes {
			return flush()
		}
		return true
	}
	defer flush()
	for i, it := range s.items {
		a, e := it.Archive, it.Entry
		R, cs := int64(a.Header.RecordSize), int64(a.Header.ChunkSize)
		if a.keys == nil || e.Meta == nil {
			send(&streamJob{item: i, err: errors.New("a member stream needs archives opened with the key, and their summaries")})
			return
		}
		lr := &logicalReader{src: a.src, R: R, off: e.Offset, end: e.Offset + e.Length}
		for index, n := uint64(0), 0; ; n++ {
			j := &streamJob{item: i, index: index, phys: physOf(lr.off, R)}
			var hb [FrameHeaderSize]byte
			if _, err := io.ReadFull(lr, hb[:]); err != nil {
				j.err = newErr(ClassMember, j.phys, int64(e.Number), "stream ends before its final frame")
				send(j)
				return
			}
			fh, bad := parseFrameHeader(hb[:])
			want := byte(KindContent)
			if n == 0 {
				want = KindMeta
			}
			if bad == "" && fh.Kind != want {
				bad = "not a " + frameName(want) + " frame"
			}
			if bad == "" {
				bad = checkFrameLen(fh, cs)
			}
			if bad != "" {
				j.err = newErr(ClassMember, j.phys, int64(e.Number), "%s", bad)
				send(j)
				return
			}
			j.fh = fh
			copy(j.hdr[:], hb[:8])
			if n == 0 {
				// The decoded record may keep slices of it: its own.
				j.payload = make([]byte, fh.Len)
			} else {
				j.payload = s.payloads.get()[:fh.Len]
			}
			if _, err := io.ReadFull(lr, j.payload); err != nil {
				j.err = newErr(ClassMember, j.phys, int64(e.Number), "frame cut short")
				send(j)
				return
			}
			if frame.CRC(hb[:], j.payload) != fh.CRC {
				j.err = newErr(ClassMember, j.phys, int64(e.Number), "frame checksum mismatch")
				send(j)
				return
			}
			if !send(j) {
				return
			}
			if n > 0 {
				if fh.Final() {
					if rest := lr.end - lr.off; rest != 0 {
						send(&streamJob{item: i, phys: physOf(lr.off, R),
							err: newErr(ClassMember, physOf(lr.off, R), int64(e.Number), "%d bytes after the final frame", rest)})
						return
					}
					break
				}
				index++
			}
		}
	}
}

// open authenticates and decodes one frame, as Archive.Meta and
// Archive.Content do. It runs on a worker.
func (s *MemberStream) open(j *streamJob) {
	if j.err != nil {
		return
	}
	it := &s.items[j.item]
	a, e := it.Archive, &it.Entry
	if j.fh.Kind == KindMeta {
		plain, err := frame.Open(a.keys, j.fh, j.hdr[:], j.payload, e.Number, 0)
		if err != nil {
			j.err = newErr(ClassMember, j.phys, int64(e.Number), "metadata frame failed authentication")
			return
		}
		m, err := decodeMetaFrame(plain, j.fh.LZ4())
		if err != nil {
			j.err = newErr(ClassMember, j.phys, int64(e.Number), "metadata record: %v", err)
			return
		}
		if !m.sameSummary(e.Meta) {
			j.err = newErr(ClassSummary, j.phys, int64(e.Number), "summary entry does not match the member")
			return
		}
		j.meta = m
		return
	}
	if j.fh.LZ4() {
		j.dbuf = s.dbufs.get()
	}
	plain, bad := openChunk(a.keys, j.fh, j.hdr[:], j.payload, e.Number, j.index, int(a.Header.ChunkSize), j.dbuf)
	if bad != "" {
		j.err = newErr(ClassMember, j.phys, int64(e.Number), "content frame %d: %s", j.index, bad)
		return
	}
	if len(plain) > 0 && emptyContent(e.Meta.Type) {
		j.err = newErr(ClassMember, j.phys, int64(e.Number), "a %s has content: a member of this type has none", e.Meta.Type)
		return
	}
	j.plain = plain
}

func (s *MemberStream) fail(err error) error {
	if s.err == nil {
		s.err = err
		s.Close()
	}
	return s.err
}

// take returns the next frame, opened, or the error it met, with the
// member's path.
func (s *MemberStream) take() (*streamJob, error) {
	if s.batch == nil || s.next == len(s.batch.jobs) {
		b, ok := s.pipe.next()
		if !ok {
			return nil, s.fail(errors.New("member stream stopped"))
		}
		s.batch, s.next = b, 0
	}
	j := &s.batch.jobs[s.next]
	s.next++
	if j.err != nil {
		var fe *Error
		if errors.As(j.err, &fe) && fe.Path == "" {
			if m := s.items[j.item].Entry.Meta; m != nil {
				fe.Path = string(m.Path)
			}
		}
		return nil, s.fail(j.err)
	}
	return j, nil
}

// Next moves to the next item and returns it with its full metadata
// record (checked against its summary entry); io.EOF after the last.
func (s *MemberStream) Next() (*Member, error) {
	if s.err != nil {
		return nil, s.err
	}
	for s.inBody {
		if _, err := s.nextChunk(); err != nil && err != io.EOF {
			return nil, err
		}
	}
	if s.cur+1 >= len(s.items) {
		return nil, io.EOF
	}
	j, err := s.take()
	if err != nil {
		return nil, err
	}
	s.cur = j.item
	s.inBody, s.chunk, s.lastFin = true, nil, false
	e := s.items[j.item].Entry
	return &Member{Number: e.Number, Offset: e.Offset, PhysOffset: j.phys, Meta: j.meta}, nil
}

// nextChunk loads the current member's next chunk; io.EOF at its end.
func (s *MemberStream) nextChunk() ([]byte, error) {
	s.release()
	if s.lastFin {
		s.inBody = false
		return nil, io.EOF
	}
	j, err := s.take()
	if err != nil {
		return nil, err
	}
	s.held = j
	s.lastFin = j.fh.Final()
	return j.plain, nil
}

// release returns the buffers of the chunk just read to the pools.
func (s *MemberStream) release() {
	j := s.held
	if j == nil {
		return
	}
	s.held = nil
	if j.payload != nil {
		s.payloads.put(j.payload[:cap(j.payload)])
	}
	if j.dbuf != nil {
		s.dbufs.put(j.dbuf)
	}
	j.payload, j.plain, j.dbuf = nil, nil, nil
}

// Read reads the current member's content.
func (s *MemberStream) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	for len(s.chunk) == 0 {
		if !s.inBody {
			return 0, io.EOF
		}
		c, err := s.nextChunk()
		if err != nil {
			return 0, err
		}
		s.chunk = c
	}
	n := copy(p, s.chunk)
	s.chunk = s.chunk[n:]
	return n, nil
}

// WriteTo writes the rest of the current member's content to w, a chunk
// at a time, without copying it first.
func (s *MemberStream) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for {
		if s.err != nil {
			return n, s.err
		}
		if len(s.chunk) > 0 {
			k, err := w.Write(s.chunk)
			n += int64(k)
			s.chunk = s.chunk[k:]
			if err != nil {
				return n, err
			}
			continue
		}
		if !s.inBody {
			return n, nil
		}
		c, err := s.nextChunk()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		s.chunk = c
	}
}
