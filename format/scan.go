package format

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/internal/frame"
)

// ScanOptions says how much ScanArchive checks.
type ScanOptions struct {
	// Key opens the seals; without it only what is public is checked.
	// Keys are more keys to try: the scan takes the one whose key check
	// value the header carries.
	Key  *crypt.Key
	Keys []*crypt.Key
	// Content opens every content chunk. Without it a content frame is
	// only checked for its checksum, which finds accidents, not tampering.
	Content bool
	// Digest checks the footer's digest over the frames read and every
	// outer header and padding byte (a few small reads more).
	Digest bool
	// Header, when set, is called with the header (as the report holds
	// it: damage to it is among the problems) before any member is
	// handed to fn; an error from it ends the scan.
	Header func(*Header) error
}

// ScanReport is what ScanArchive found.
type ScanReport struct {
	Header *Header
	Footer *Footer // nil when the footer could not be read
	// FooterAuthenticated is set when the footer passed the checks of
	// spec 6.2 1-7, its MAC included (the end-of-archive blocks after it
	// may still be missing or cut): its member count can be trusted.
	FooterAuthenticated bool
	// HeaderAuthenticated is set when the header the scan went by
	// (record 0's, or the footer's copy when record 0 was damaged)
	// passed its MAC under the key.
	HeaderAuthenticated bool
	// Members is the number of complete members found (fn was called for
	// each); Damaged the number found incomplete or unreadable.
	Members, Damaged int
	// SummaryChecked is set when the summary was opened and matched the
	// members.
	SummaryChecked bool
	Problems       []*Error
}

// Intact reports whether the scan found nothing wrong.
func (r *ScanReport) Intact() bool { return len(r.Problems) == 0 }

// scanner holds the state of one ScanArchive.
type scanner struct {
	sumBuf  []byte   // a member's summary-form record
	sumHead [30]byte // and its entry's head
	src     Source
	opt     ScanOptions
	hdr     *Header
	keys    *crypt.ArchiveKeys
	R, cs   int64
	end     int64 // logical length of the frame stream
	rep     *ScanReport
	sumWant hash.Hash
	seq     memberSeq // the order of imported members and the trailer
	buf     []byte
	scratch []byte // the payload of the frame last read
	win     []byte // a window of the logical stream, at winOff
	winOff  int64
	// digest is the footer's digest of the frames read in stream order
	// from the start; digestAt is where the next one must start to be
	// added: a frame skipped (damage) leaves the chain short of the end.
	digest   *Digest
	digestAt int64
	hdrNext  int64 // with opt.Digest: the next data record whose outer header is unchecked
}

// minMemberLen is the smallest logical size of a member: a metadata frame
// of one padding unit and an empty final content frame.
const minMemberLen = 2*FrameHeaderSize + MetaPad + 2*crypt.TagSize

// ScanArchive checks an archive front to back and reports every problem it
// finds, with the member and byte offset of each. It returns an error only
// when it cannot go on at all: an unreadable header, a wrong key, an
// unsupported version, an I/O error, or an error from fn.
func ScanArchive(src Source, opt ScanOptions, fn func(Entry) error) (*ScanReport, error) {
	s := &scanner{src: src, opt: opt, rep: &ScanReport{}, sumWant: sha256.New()}
	if err := s.openHeader(); err != nil {
		return s.rep, err
	}
	if opt.Header != nil {
		if err := opt.Header(s.hdr); err != nil {
			return s.rep, err
		}
	}
	a := &Archive{src: src, Header: s.hdr}
	f, ferr := a.findFooter()
	if ferr != nil {
		s.problem(ferr)
	}
	if f != nil {
		s.rep.FooterAuthenticated = s.keys != nil && f.Authenticate(s.keys)
		if s.keys != nil && !s.rep.FooterAuthenticated {
			s.problem(newErr(ClassFooter, int64(f.FooterOffset), -1, "footer MAC mismatch"))
		}
		s.rep.Footer = f
	}
	s.end = s.streamEnd()
	s.hdrNext = 1
	if err := s.frames(fn); err != nil {
		return s.rep, err
	}
	if opt.Digest && f != nil {
		return s.rep, s.physical()
	}
	return s.rep, nil
}

func (s *scanner) problem(err error) {
	var fe *Error
	if !errors.As(err, &fe) {
		fe = &Error{Class: ClassTar, Offset: -1, Member: -1, What: err.Error()}
	}
	s.rep.Problems = append(s.rep.Problems, fe)
}

// openHeader reads the header record. Damage to it is reported and the
// scan goes on with the footer's copy of the header when the footer is
// found (with the key, when the copy authenticates), else with record
// 0's fields if they still parse. A record 0 that is not a CBFS header at
// all, in an input whose end is a CBFS footer, is damage too.
func (s *scanner) openHeader() error {
	head, h, err := readRecordZero(s.src)
	if head == nil {
		return err
	}
	s.digest = NewDigest(head[min(len(head), BlockSize):min(len(head), BlockSize+FrameHeaderSize+HeaderSize)])
	keys := append([]*crypt.Key{s.opt.Key}, s.opt.Keys...)
	if err != nil {
		var fe *Error
		switch {
		case errors.Is(err, ErrNotCBFS):
			c, cerr := s.footerCopy(keys)
			if cerr != nil {
				return cerr
			}
			if h = c; h == nil {
				return err
			}
			err = newErr(ClassHeader, 0, -1, "record 0 is not a CBFS header record, but the archive ends in a CBFS footer: its copy of the header is used")
		case !errors.As(err, &fe):
			return err
		default:
			c, cerr := s.footerCopy(keys)
			if cerr != nil {
				return cerr
			}
			if h = c; h == nil && len(head) >= BlockSize+FrameHeaderSize+HeaderSize {
				// A damaged header record: take its fields if they
				// still parse. A key check that fails on them is not
				// a wrong key: the record is damaged (spec 10.3).
				h, _ = DecodeHeader(head[BlockSize+FrameHeaderSize : BlockSize+FrameHeaderSize+HeaderSize])
				if h != nil {
					if _, kerr := h.pickKeys(keys); errors.Is(kerr, ErrWrongKey) {
						return err
					}
				}
			}
			if h == nil {
				return err
			}
		}
		s.problem(err)
	}
	ak, err := h.pickKeys(keys)
	if err != nil {
		return err
	}
	if ak != nil {
		if err := h.Authenticate(ak); err != nil {
			if errors.Is(err, ErrWrongKey) {
				return err
			}
			s.problem(err)
			// Record 0 changed after its MAC: the footer's copy, when
			// it authenticates, is the header.
			if c, _ := s.footerCopy(keys); c != nil {
				h = c
			}
		}
		s.rep.HeaderAuthenticated = h.Authenticate(ak) == nil
	}
	s.keys, s.hdr, s.rep.Header = ak, h, h
	s.R, s.cs = int64(h.RecordSize), int64(h.ChunkSize)
	return nil
}

// footerCopy is the footer's copy of the header when the footer is found
// and passes its checks (spec 8.2 step 2) and, given keys, the copy's
// MAC; else nil. A copy whose key check no key matches is ErrWrongKey:
// an intact copy says who wrote the archive.
func (s *scanner) footerCopy(keys []*crypt.Key) (*Header, error) {
	f, err := (&Archive{src: s.src}).findFooter()
	if err != nil {
		return nil, nil
	}
	h := f.Header
	ak, err := h.pickKeys(keys)
	if err != nil {
		return nil, err
	}
	if ak != nil && h.Authenticate(ak) != nil {
		return nil, nil
	}
	return &h, nil
}

// streamEnd is the logical length of the frame stream: the footer's when
// it was read, else as much as the archive's size can hold.
func (s *scanner) streamEnd() int64 {
	if f := s.rep.Footer; f != nil {
		return int64(f.StreamLength)
	}
	size := s.src.Size() - 2*BlockSize
	if size <= 0 {
		return 0
	}
	full := size / (s.R + BlockSize)
	rest := size % (s.R + BlockSize)
	return full*s.R + max(0, min(rest-BlockSize, s.R))
}

var errShort = errors.New("past the end of the archive")

// scanWindow is how much of the logical stream the scanner reads at once:
// it walks the stream in order, two small reads per frame, and each read
// of the source has a fixed cost (a system call, or a request to an
// object store). It is under the 4 MiB an object-store reader fetches
// and keeps, so that the window is read through those blocks, which the
// reads of the outer headers then find (a read of 4 MiB or more goes
// around them).
const scanWindow = 2 << 20

// readAt reads the logical stream at off, through a window of the stream.
func (s *scanner) readAt(p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > s.end {
		return errShort
	}
	if len(p) > scanWindow/2 {
		return s.readDirect(p, off)
	}
	if off < s.winOff || off+int64(len(p)) > s.winOff+int64(len(s.win)) {
		if s.win == nil {
			s.win = make([]byte, min(scanWindow, s.end))
		}
		s.win = s.win[:min(int64(cap(s.win)), s.end-off)]
		if err := s.readDirect(s.win, off); err != nil {
			s.win = s.win[:0]
			return err
		}
		s.winOff = off
	}
	copy(p, s.win[off-s.winOff:])
	return nil
}

// readDirect reads the logical stream at off from the source. With
// opt.Digest, a read that starts a data record checks its outer header
// first: it is next to the bytes read, in the same block of an object
// store's reader.
func (s *scanner) readDirect(p []byte, off int64) error {
	for len(p) > 0 {
		n := min(int64(len(p)), s.R-off%s.R)
		if off%s.R == 0 && off/s.R+1 == s.hdrNext && s.opt.Digest && s.rep.Footer != nil {
			if err := s.checkRecordHeader(s.hdrNext); err != nil {
				return err
			}
			s.hdrNext++
		}
		k, err := s.src.ReadAt(p[:n], physOf(off, s.R))
		if int64(k) < n {
			if err == nil || err == io.EOF {
				err = errShort
			}
			return err
		}
		p, off = p[n:], off+n
	}
	return nil
}

// scanFrame is one frame read from the logical stream.
type scanFrame struct {
	off     int64
	fh      frame.Header
	hb      [FrameHeaderSize]byte
	payload []byte
}

func (f *scanFrame) next() int64 { return f.off + FrameHeaderSize + int64(f.fh.Len) }

// frameAt reads and checks the framing of the frame at off. A non-empty
// string says what is wrong; lenOK says the length field is usable to skip
// over the frame.
func (s *scanner) frameAt(off int64) (fr *scanFrame, bad string, lenOK bool) {
	fr = &scanFrame{off: off}
	if err := s.readAt(fr.hb[:], off); err != nil {
		return fr, "frame header cut short: the archive is truncated", false
	}
	fh, bad := parseFrameHeader(fr.hb[:])
	fr.fh = fh
	if bad != "" {
		return fr, bad, false
	}
	if bad := checkFrameLen(fh, s.cs); bad != "" {
		// A wrong length is no guide to where the next frame starts.
		return fr, bad, false
	}
	if off+FrameHeaderSize+int64(fh.Len) > s.end {
		return fr, "frame runs past the end of the stream: the archive is truncated", false
	}
	// One buffer serves every frame: a frame's payload is used up before
	// the next frame is read.
	if cap(s.scratch) < int(fh.Len) {
		s.scratch = make([]byte, fh.Len)
	}
	fr.payload = s.scratch[:fh.Len]
	if err := s.readAt(fr.payload, off+FrameHeaderSize); err != nil {
		return fr, "frame cut short", false
	}
	if frame.CRC(fr.hb[:], fr.payload) != fh.CRC {
		return fr, "frame checksum mismatch", true
	}
	if off == s.digestAt {
		s.digest.Frame(fr.hb[:], fr.payload)
		s.digestAt = fr.next()
	}
	return fr, "", true
}

// candidate reports whether b (at least FrameHeaderSize bytes) could start
// a metadata frame: cheap tests before the checksum.
func candidate(b []byte) bool {
	if b[0] != KindMeta || b[1]&^frame.FlagsKnown != 0 || b[1]&FlagFinal == 0 || b[2] != 0 || b[3] != 0 {
		return false
	}
	n := int64(b[4]) | int64(b[5])<<8 | int64(b[6])<<16 | int64(b[7])<<24
	return n >= MetaPad+crypt.TagSize && (n-crypt.TagSize)%MetaPad == 0 && n <= metaFrameMax
}

// resync finds the next metadata frame at or after from whose checksum
// holds, or the summary when the footer says where it is. It returns the
// stream end when there is none.
func (s *scanner) resync(from int64) int64 {
	sumOff := int64(-1)
	if f := s.rep.Footer; f != nil {
		sumOff = int64(f.SummaryOffset)
	}
	const window = 1 << 20
	for pos := from; pos < s.end; pos += window - FrameHeaderSize {
		n := min(window, s.end-pos)
		buf := make([]byte, n)
		if err := s.readAt(buf, pos); err != nil {
			return s.end
		}
		for i := int64(0); i+FrameHeaderSize <= n; i++ {
			if pos+i == sumOff {
				return sumOff
			}
			if candidate(buf[i:]) {
				if _, bad, _ := s.frameAt(pos + i); bad == "" {
					return pos + i
				}
			}
		}
		if n < window {
			break
		}
	}
	if sumOff >= from {
		return sumOff
	}
	return s.end
}

// frames walks the frame stream.
func (s *scanner) frames(fn func(Entry) error) error {
	var num uint32       // number of the next member
	uncertain := false   // num is a guess after a resync
	var lost uint32      // with uncertain: the first member number that may be lost
	lastGood := int64(0) // end of the last good member, for the guess range
	off := int64(0)
	for off < s.end {
		fr, bad, _ := s.frameAt(off)
		if bad != "" {
			// A metadata frame belongs here: the damage most likely hit
			// member num. Without the key that guess is what numbers the
			// members after it; with the key, member() tries from num on.
			if f := s.rep.Footer; f != nil && int64(f.SummaryOffset) == off {
				// The footer says the summary starts here.
				s.problem(newErr(ClassSummary, physOf(off, s.R), -1, "summary frame 0: %s", bad))
				return nil
			}
			s.problem(newErr(ClassFrame, physOf(off, s.R), int64(num), "%s", bad))
			s.rep.Damaged++
			off = s.resync(off + 1)
			if !uncertain {
				lost = num
			}
			uncertain = true
			num++
			continue
		}
		switch fr.fh.Kind {
		case KindMeta:
			from := num
			if uncertain {
				from = lost
			}
			next, n, err := s.member(fr, num, from, uncertain, lastGood, fn)
			if err != nil {
				return err
			}
			num, off, uncertain, lastGood = n, next, false, next
		case KindSummary:
			s.summary(fr, num)
			return nil
		default:
			s.problem(newErr(ClassFrame, physOf(off, s.R), int64(num), "%q frame where a metadata or summary frame belongs", fr.fh.Kind))
			s.rep.Damaged++
			off = s.resync(off + 1)
			if !uncertain {
				lost = num
			}
			uncertain = true
			num++
		}
	}
	s.problem(newErr(ClassSummary, -1, -1, "no summary found"))
	return nil
}

// member reads one member from its metadata frame on. It returns the
// offset after it and the number of the member after it.
//
// Without the key, guess numbers the member; with it, numbers from `from`
// on are tried until the metadata frame opens.
func (s *scanner) member(fr *scanFrame, guess, from uint32, uncertain bool, lastGood int64, fn func(Entry) error) (int64, uint32, error) {
	var meta *Meta
	num := guess
	if s.keys != nil {
		num = from
		tries := uint32(1)
		if uncertain {
			// Members lost in the damage shift the numbering: try each
			// number the lost bytes could account for.
			tries = uint32(min((fr.off-lastGood)/minMemberLen+2, 1<<16)) + guess - from
		}
		var err error
		for t := uint32(0); t < tries; t++ {
			var plain []byte
			// Open into a copy: a failed try must leave the payload for the next.
			plain, err = frame.Open(s.keys, fr.fh, fr.hb[:], bytes.Clone(fr.payload), num+t, 0)
			if err == nil {
				if lostN := int64(num+t) - int64(guess); lostN > 0 {
					s.problem(newErr(ClassFrame, physOf(fr.off, s.R), int64(guess), "%d more members lost before offset %d", lostN, physOf(fr.off, s.R)))
					s.rep.Damaged += int(lostN)
				}
				num += t
				meta, err = decodeMetaFrame(plain, fr.fh.LZ4())
				if err != nil {
					s.problem(newErr(ClassMember, physOf(fr.off, s.R), int64(num), "metadata record: %v", err))
				}
				break
			}
		}
		if err != nil {
			if !uncertain {
				s.problem(newErr(ClassMember, physOf(fr.off, s.R), int64(num), "metadata frame failed authentication"))
			} else {
				s.problem(newErr(ClassMember, physOf(fr.off, s.R), int64(num), "metadata frame of an unknown member failed authentication"))
			}
		}
	}
	complete := s.keys == nil || meta != nil
	path := ""
	if meta != nil {
		path = string(meta.Path)
	}
	memberErr := func(off int64, what string, args ...any) {
		e := newErr(ClassMember, physOf(off, s.R), int64(num), what, args...)
		e.Path = path
		s.problem(e)
		complete = false
	}
	if meta != nil {
		if bad := s.seq.next(meta); bad != "" {
			memberErr(fr.off, "%s", bad)
		}
	}
	off := fr.next()
	for index := uint64(0); ; index++ {
		c, bad, lenOK := s.frameAt(off)
		if bad == "" && c.fh.Kind != KindContent {
			bad, lenOK = fmt.Sprintf("%q frame where content frame %d belongs", c.fh.Kind, index), false
		}
		if bad != "" {
			memberErr(off, "content frame %d: %s", index, bad)
			// If the frame's length still leads to a good frame, only the
			// payload was hit: go on with the member.
			if lenOK {
				if nx, bad2, _ := s.frameAt(c.next()); bad2 == "" && !(c.fh.Final() && nx.fh.Kind == KindContent) {
					if c.fh.Final() {
						s.rep.Damaged++
						return c.next(), num + 1, nil
					}
					off = c.next()
					continue
				}
			}
			s.rep.Damaged++
			return s.resync(off + 1), num + 1, nil
		}
		if meta != nil && emptyContent(meta.Type) && c.fh.Len > crypt.TagSize {
			memberErr(off, "a %s has content: a member of this type has none", meta.Type)
		}
		if s.keys != nil && s.opt.Content {
			if what := s.openChunk(c, num, index); what != "" {
				memberErr(off, "content frame %d: %s", index, what)
			}
		}
		off = c.next()
		if c.fh.Final() {
			break
		}
	}
	if !complete {
		s.rep.Damaged++
		return off, num + 1, nil
	}
	s.rep.Members++
	e := Entry{Number: num, Offset: fr.off, Length: off - fr.off}
	if meta != nil {
		s.sumBuf = meta.encode(s.sumBuf[:0], true)
		s.sumWant.Write(appendSummaryHead(s.sumHead[:0], e.Offset, e.Length, len(s.sumBuf)))
		s.sumWant.Write(s.sumBuf)
	}
	if fn != nil {
		if meta != nil {
			e.Meta = meta.summaryOnly()
		}
		if err := fn(e); err != nil {
			return 0, 0, err
		}
	}
	return off, num + 1, nil
}

// openChunk authenticates and decompresses one content or summary chunk
// and checks its size; it returns what is wrong, or "".
func (s *scanner) openChunk(c *scanFrame, stream uint32, index uint64) string {
	if cap(s.buf) < int(s.cs) {
		s.buf = make([]byte, s.cs)
	}
	plain, bad := openChunk(s.keys, c.fh, c.hb[:], c.payload, stream, index, int(s.cs), s.buf)
	if bad != "" {
		return bad
	}
	c.payload = plain
	return ""
}

// summary reads the summary frames, and with the key checks them against
// the members found; it uses the summary to name damaged members.
func (s *scanner) summary(fr *scanFrame, members uint32) {
	start := fr.off
	if bad := s.seq.end(); bad != "" && s.keys != nil && s.rep.Damaged == 0 {
		s.problem(newErr(ClassMember, physOf(start, s.R), -1, "%s", bad))
	}
	if f := s.rep.Footer; f != nil && int64(f.SummaryOffset) != start {
		s.problem(newErr(ClassFooter, int64(f.FooterOffset), -1, "footer puts the summary at %d, it is at %d", physOf(int64(f.SummaryOffset), s.R), physOf(start, s.R)))
	}
	count := uint64(members)
	if f := s.rep.Footer; f != nil {
		count = f.Members
	}
	// The summary is walked as its chunks are opened, and hashed, not
	// kept: memory does not grow with it. Damaged members are named by
	// their paths from it, once the whole summary was found good.
	unnamed := map[int64][]*Error{}
	for _, p := range s.rep.Problems {
		if p.Member >= 0 && p.Path == "" {
			unnamed[p.Member] = append(unnamed[p.Member], p)
		}
	}
	names := map[int64]string{}
	var walk *summaryWalker
	var walkErr error
	got := sha256.New()
	if s.keys != nil {
		walk, walkErr = newSummaryWalker(count, MaxSummarySize, nil, func(n uint32, off, length int64, meta []byte) error {
			m, err := DecodeMeta(meta)
			if err != nil {
				return &summaryError{fmt.Sprintf("entry %d: %v", n, err)}
			}
			if unnamed[int64(n)] != nil {
				names[int64(n)] = string(m.Path)
			}
			return nil
		})
	}
	var total int64
	ok := true
	for index := uint64(0); ; index++ {
		if index > 0 {
			var bad string
			fr, bad, _ = s.frameAt(fr.next())
			if bad == "" && fr.fh.Kind != KindSummary {
				bad = fmt.Sprintf("%q frame in the summary", fr.fh.Kind)
			}
			if bad != "" {
				s.problem(newErr(ClassSummary, physOf(fr.off, s.R), -1, "summary frame %d: %s", index, bad))
				return
			}
		}
		if s.keys != nil {
			if what := s.openChunk(fr, 0, index); what != "" {
				s.problem(newErr(ClassSummary, physOf(fr.off, s.R), -1, "summary frame %d: %s", index, what))
				ok = false
			} else if ok {
				if total += int64(len(fr.payload)); total > MaxSummarySize {
					s.problem(newErr(ClassSummary, physOf(fr.off, s.R), -1, "summary over %d bytes", int64(MaxSummarySize)))
					ok = false
				} else {
					got.Write(fr.payload)
					if walkErr == nil {
						walkErr = walk.feed(fr.payload, fr.fh.Final())
					}
				}
			}
		}
		if fr.fh.Final() {
			break
		}
	}
	// Without the footer, s.end is a guess from the archive's size that
	// counts the footer record's bytes too: the footer's problem is
	// reported already.
	if after := fr.next(); s.rep.Footer != nil && after != s.end {
		s.problem(newErr(ClassFrame, physOf(after, s.R), -1, "%d bytes after the summary", s.end-after))
	}
	f := s.rep.Footer
	if f != nil && f.Members != uint64(s.rep.Members+s.rep.Damaged) && s.rep.Damaged == 0 {
		s.problem(newErr(ClassFooter, int64(f.FooterOffset), -1, "footer counts %d members, the archive holds %d", f.Members, s.rep.Members))
	}
	if s.keys == nil || !ok {
		return
	}
	if walkErr == nil {
		walkErr = summaryEnds(walk.prevEnd, start)
	}
	if walkErr != nil {
		s.problem(newErr(ClassSummary, physOf(start, s.R), -1, "%v", walkErr))
		return
	}
	for n, ps := range unnamed {
		for _, p := range ps {
			p.Path = names[n]
		}
	}
	if s.rep.Damaged == 0 {
		if !bytes.Equal(got.Sum(nil), s.sumWant.Sum(nil)) {
			s.problem(newErr(ClassSummary, physOf(start, s.R), -1, "the summary does not match the members"))
			return
		}
		s.rep.SummaryChecked = true
	}
}

// checkRecordHeader checks the outer header of data record k (1-based):
// canonical for its number and size (spec 4.2). Only an I/O error is
// returned; what is wrong is a problem.
func (s *scanner) checkRecordHeader(k int64) error {
	f := s.rep.Footer
	size := min(s.R, int64(f.StreamLength)-(k-1)*s.R)
	at := physOf((k-1)*s.R, s.R) - BlockSize
	var b Block
	if n, err := s.src.ReadAt(b[:], at); n < BlockSize {
		if err == nil || err == io.EOF {
			s.problem(newErr(ClassTar, at, -1, "record %d header cut short: the archive is truncated", k))
			return nil
		}
		return err
	}
	if got, err := parseOuterHeader(&b, s.hdr.ID, uint64(k)); err != nil {
		s.problem(newErr(ClassTar, at, -1, "%v", err))
	} else if got != size {
		s.problem(newErr(ClassTar, at, -1, "record %d header: body of %d bytes, the footer's layout says %d", k, got, size))
	}
	return nil
}

// physical ends a scan with opt.Digest and a footer: the outer headers
// the frame walk did not pass (it skipped damage), the last data
// record's padding, then the digest, when the walk added every frame to
// it (else the damage that broke the chain is reported already).
func (s *scanner) physical() error {
	f := s.rep.Footer
	records := (int64(f.StreamLength) + s.R - 1) / s.R
	for ; s.hdrNext <= records; s.hdrNext++ {
		if err := s.checkRecordHeader(s.hdrNext); err != nil {
			return err
		}
	}
	last := int64(f.StreamLength) - (records-1)*s.R
	if pad := PadLen(last); pad > 0 {
		at := physOf(int64(f.StreamLength)-1, s.R) + 1
		p := make([]byte, pad)
		if n, err := s.src.ReadAt(p, at); n < len(p) && err != nil && err != io.EOF {
			return err
		}
		if !frame.AllZero(p) {
			s.problem(newErr(ClassTar, at, -1, "record %d padding is not zero", records))
		}
	}
	if s.digestAt != int64(f.StreamLength) {
		return nil
	}
	if d := s.digest.Sum(); !bytes.Equal(d[:], f.Digest[:]) {
		s.problem(newErr(ClassFooter, int64(f.FooterOffset), -1, "archive digest mismatch: a frame header or tag, or the header frame, was changed"))
	}
	return nil
}

func bufioOf(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
