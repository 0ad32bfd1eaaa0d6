package index

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/internal/frame"
)

// The sealed encoding of a master index (spec/cbfs-index-v1.md):
//
//	header (HeaderSize bytes, clear) | frame* (kind 'i', the last final)
//
// The plaintext carried by the frames is the archives table and the
// records. The synthetic IV in the header is a MAC of the header's first
// 16 bytes and the plaintext: equal content gives equal bytes, and the
// reader checks it after decrypting.

// Version of the index encoding written by this code. Readers accept any
// minor version of Major and reject other majors.
const (
	Major uint8 = 1
	Minor uint8 = 0
)

const (
	// HeaderSize is the size of the clear index header.
	HeaderSize = 48
	// FrameKind is the frame kind of index chunks.
	FrameKind = 'i'
	// ChunkSize is the plaintext chunk size v1 writes.
	ChunkSize = format.DefaultChunkSize
	// prefixSize is the part of the header the IV covers.
	prefixSize = 16
)

var magic = []byte("CBFSINDX")

// HasMagic reports whether b starts with the magic of a master
// index: how a file among archives is told to be an index.
func HasMagic(b []byte) bool { return bytes.HasPrefix(b, magic) }

func headerPrefix(chunk uint32) []byte {
	b := make([]byte, 0, HeaderSize)
	b = append(b, magic...)
	b = append(b, Major, Minor, format.SuiteAES256GCM, 0)
	return binary.LittleEndian.AppendUint32(b, chunk)
}

// plainSink batches the plaintext for a consumer.
type plainSink struct {
	buf  []byte
	emit func([]byte) error
	err  error
}

func (s *plainSink) flush() {
	if s.err == nil && len(s.buf) > 0 {
		s.err = s.emit(s.buf)
	}
	s.buf = s.buf[:0]
}

func (s *plainSink) maybeFlush() {
	if len(s.buf) >= 256<<10 {
		s.flush()
	}
}

// serialize produces the plaintext (spec "Plaintext").
func (x *Index) serialize(emit func([]byte) error) error {
	x.ensure()
	if len(x.Archives) > MaxArchives {
		return fmt.Errorf("index over %d archives", MaxArchives)
	}
	for i := range x.Archives {
		if err := checkArchive(&x.Archives[i]); err != nil {
			return err
		}
		if i > 0 && compareArchives(&x.Archives[i-1], &x.Archives[i]) >= 0 {
			return errors.New("archives table not sorted")
		}
	}
	for i := range x.Archives {
		if x.Archives[i].Seq > x.HighSeq {
			return fmt.Errorf("archive %s has sequence %d, over the index's highest %d", x.Archives[i].Name, x.Archives[i].Seq, x.HighSeq)
		}
	}
	s := &plainSink{buf: make([]byte, 0, 320<<10), emit: emit}
	s.buf = binary.AppendUvarint(s.buf, x.HighSeq)
	s.buf = binary.AppendUvarint(s.buf, uint64(len(x.Archives)))
	for i := range x.Archives {
		a := &x.Archives[i]
		s.buf = binary.AppendUvarint(s.buf, uint64(len(a.Name)))
		s.buf = append(s.buf, a.Name...)
		s.buf = append(s.buf, a.ID[:]...)
		s.buf = binary.AppendUvarint(s.buf, a.Seq)
		s.buf = binary.AppendUvarint(s.buf, a.Members)
		s.maybeFlush()
	}
	s.buf = binary.AppendUvarint(s.buf, uint64(len(x.recs)))
	var cs []cand
	for i := range x.recs {
		r := &x.recs[i]
		p := x.path(r)
		s.buf = binary.AppendUvarint(s.buf, uint64(len(p)))
		s.buf = append(s.buf, p...)
		cs = x.cands(r, cs[:0])
		s.buf = binary.AppendUvarint(s.buf, uint64(len(cs)))
		for _, c := range cs {
			s.buf = binary.AppendUvarint(s.buf, uint64(c.arch))
			s.buf = append(s.buf, byte(c.typ))
			s.buf = binary.AppendUvarint(s.buf, uint64(c.member))
			s.buf = binary.AppendUvarint(s.buf, uint64(c.off))
			s.buf = binary.AppendUvarint(s.buf, uint64(c.span))
			s.buf = binary.AppendUvarint(s.buf, uint64(c.size))
			s.buf = binary.AppendUvarint(s.buf, c.inode)
		}
		s.maybeFlush()
	}
	s.flush()
	return s.err
}

// Encode writes the sealed index to w. The same index under the same key
// always gives the same bytes.
func (x *Index) Encode(w io.Writer, key *crypt.Key) error {
	return encode(w, key, x.serialize)
}

// encode seals the plaintext that gen produces; gen runs twice, once
// for the synthetic IV and once to seal.
func encode(w io.Writer, key *crypt.Key, gen func(emit func([]byte) error) error) error {
	prefix := headerPrefix(ChunkSize)
	mac := crypt.IndexMAC(key)
	mac.Write(prefix)
	if err := gen(func(p []byte) error { mac.Write(p); return nil }); err != nil {
		return err
	}
	var siv [crypt.SIVSize]byte
	copy(siv[:], mac.Sum(nil))
	ik := crypt.DeriveIndexKeys(key, siv)
	check := ik.Check()
	hdr := append(append(prefix, siv[:]...), check[:]...)
	bw := bufio.NewWriterSize(w, 1<<20)
	if _, err := bw.Write(hdr); err != nil {
		return err
	}
	s := &sealer{w: bw, ik: ik, cs: ChunkSize, pend: make([]byte, 0, ChunkSize),
		cbuf: make([]byte, ChunkSize)}
	if err := gen(s.write); err != nil {
		return err
	}
	if err := s.close(); err != nil {
		return err
	}
	return bw.Flush()
}

// sealer cuts the plaintext into chunks of exactly cs bytes (the
// last one shorter, and empty only if it is the only one) and seals each
// as a frame, as archive content is sealed.
type sealer struct {
	w     io.Writer
	ik    *crypt.IndexKeys
	cs    int
	pend  []byte
	index uint64
	comp  frame.Compressor
	cbuf  []byte
	frame []byte
	err   error
}

func (s *sealer) write(p []byte) error {
	for len(p) > 0 && s.err == nil {
		// A full chunk is sealed only once more bytes follow: the last
		// chunk must carry the final flag.
		if len(s.pend) == s.cs {
			s.seal(false)
			s.pend = s.pend[:0]
		}
		n := copy(s.pend[len(s.pend):s.cs], p)
		s.pend = s.pend[:len(s.pend)+n]
		p = p[n:]
	}
	return s.err
}

func (s *sealer) close() error {
	s.seal(true)
	return s.err
}

func (s *sealer) seal(final bool) {
	if s.err != nil {
		return
	}
	if s.index >= frame.MaxChunks {
		s.err = errors.New("index too large: over 2^48 chunks")
		return
	}
	plain := s.pend
	var flags byte
	if final {
		flags |= frame.FlagFinal
	}
	if len(plain) > 0 {
		if b := s.comp.Compress(s.cbuf, plain); b != nil {
			plain = b
			flags |= frame.FlagLZ4
		}
	}
	s.frame = frame.Seal(s.frame[:0], s.ik, FrameKind, flags, 0, s.index, plain)
	_, s.err = s.w.Write(s.frame)
	s.index++
}

// frameReader reads and opens the frames of an index one at a time.
type frameReader struct {
	r       *bufio.Reader
	ik      *crypt.IndexKeys
	cs      int
	pos     int64 // file offset of the next frame
	index   uint64
	final   bool
	mac     interface{ Write([]byte) (int, error) }
	payload []byte
	plain   []byte
	fh      frame.Header // the last frame's header
	hb      [frame.HeaderSize]byte
}

// next returns the next chunk's plaintext (valid until the next call), or
// io.EOF after the final frame.
func (f *frameReader) next() ([]byte, error) {
	if f.final {
		return nil, io.EOF
	}
	at := f.pos
	var hb [frame.HeaderSize]byte
	if _, err := io.ReadFull(f.r, hb[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, newErr(at, "the index ends before its final frame (truncated?)")
		}
		return nil, err
	}
	fh, perr := frame.ParseHeader(hb[:])
	f.fh, f.hb = fh, hb
	if fh.Kind != FrameKind {
		return nil, newErr(at, "frame %d: kind %q, want %q", f.index, fh.Kind, FrameKind)
	}
	switch perr {
	case frame.ErrReserved:
		return nil, newErr(at, "frame %d: reserved frame header bytes are not zero", f.index)
	case frame.ErrFlags:
		return nil, newErr(at, "frame %d: unknown frame flags %#x", f.index, fh.Flags)
	}
	switch frame.CheckChunkLen(fh, int64(f.cs)) {
	case frame.ErrLen:
		return nil, newErr(at, "frame %d: length %d out of range", f.index, fh.Len)
	case frame.ErrLZ4Len:
		return nil, newErr(at, "frame %d: compressed frame length %d out of range", f.index, fh.Len)
	case frame.ErrStoredLen:
		return nil, newErr(at, "frame %d: length %d; a stored frame that is not the last holds exactly %d", f.index, fh.Len, f.cs+crypt.TagSize)
	}
	if f.index >= frame.MaxChunks {
		return nil, newErr(at, "over 2^48 frames")
	}
	if cap(f.payload) < int(fh.Len) {
		f.payload = make([]byte, f.cs+crypt.TagSize)
	}
	payload := f.payload[:fh.Len]
	if _, err := io.ReadFull(f.r, payload); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, newErr(at, "frame %d cut short (truncated?)", f.index)
		}
		return nil, err
	}
	if frame.CRC(hb[:], payload) != fh.CRC {
		return nil, newErr(at, "frame %d: checksum mismatch", f.index)
	}
	if f.ik == nil {
		// Without the key: the framing and checksums only.
		f.pos += frame.HeaderSize + int64(fh.Len)
		f.index++
		f.final = fh.Final()
		return payload, nil
	}
	if cap(f.plain) < f.cs {
		f.plain = make([]byte, f.cs)
	}
	plain, err := frame.OpenChunk(f.ik, fh, hb[:], payload, 0, f.index, f.cs, false, f.plain)
	var se *frame.ChunkSizeError
	switch {
	case err == frame.ErrAuth:
		return nil, newErr(at, "frame %d failed authentication", f.index)
	case errors.Is(err, frame.ErrLZ4):
		return nil, newErr(at, "frame %d: bad LZ4 block", f.index)
	case errors.As(err, &se):
		return nil, newErr(at, "frame %d has the wrong size (%d bytes)", f.index, se.Len)
	case err != nil:
		return nil, newErr(at, "frame %d: %v", f.index, err)
	}
	f.mac.Write(plain)
	f.pos += frame.HeaderSize + int64(fh.Len)
	f.index++
	f.final = fh.Final()
	return plain, nil
}

// plainReader parses the plaintext as it is opened, chunk by chunk, so
// that decoding never holds the whole plaintext.
type plainReader struct {
	f       *frameReader
	cur     []byte
	scratch []byte
}

var errPlainShort = newErr(-1, "the index content ends early")

func (p *plainReader) more() error {
	for len(p.cur) == 0 {
		b, err := p.f.next()
		if err == io.EOF {
			return errPlainShort
		}
		if err != nil {
			return err
		}
		p.cur = b
	}
	return nil
}

func (p *plainReader) byte() (byte, error) {
	if err := p.more(); err != nil {
		return 0, err
	}
	c := p.cur[0]
	p.cur = p.cur[1:]
	return c, nil
}

// uvarint reads a varint in its shortest form.
func (p *plainReader) uvarint() (uint64, error) {
	var x uint64
	var s uint
	for i := 0; ; i++ {
		c, err := p.byte()
		if err != nil {
			return 0, err
		}
		if i == binary.MaxVarintLen64-1 && c > 1 {
			return 0, newErr(-1, "varint overflows 64 bits")
		}
		if c < 0x80 {
			if i > 0 && c == 0 {
				return 0, newErr(-1, "varint not in its shortest form")
			}
			return x | uint64(c)<<s, nil
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
}

// take returns the next n bytes, valid until the next call.
func (p *plainReader) take(n int) ([]byte, error) {
	if len(p.cur) >= n {
		b := p.cur[:n]
		p.cur = p.cur[n:]
		return b, nil
	}
	p.scratch = p.scratch[:0]
	for len(p.scratch) < n {
		if err := p.more(); err != nil {
			return nil, err
		}
		k := min(n-len(p.scratch), len(p.cur))
		p.scratch = append(p.scratch, p.cur[:k]...)
		p.cur = p.cur[k:]
	}
	return p.scratch, nil
}

// pathArena appends paths to an index's blocks.
type pathArena struct {
	x   *Index
	cur []byte
}

func (a *pathArena) add(p []byte) (blk, off uint32) {
	if len(a.cur)+len(p) > cap(a.cur) || len(a.x.blocks) == 0 {
		if len(a.x.blocks) > 0 {
			a.x.blocks[len(a.x.blocks)-1] = a.cur
		}
		size := min(max(64<<10, 2*cap(a.cur)), 64<<20)
		a.cur = make([]byte, 0, max(size, len(p)))
		a.x.blocks = append(a.x.blocks, a.cur)
	}
	blk, off = uint32(len(a.x.blocks)-1), uint32(len(a.cur))
	a.cur = append(a.cur, p...)
	a.x.blocks[blk] = a.cur
	return blk, off
}

// finish trims the last block to its size.
func (a *pathArena) finish() {
	if len(a.x.blocks) > 0 {
		a.x.blocks[len(a.x.blocks)-1] = bytes.Clone(a.cur)
	}
}

// Read reads and opens a sealed index, checking everything: the
// header, every frame's checksum and seal, the canonical form of the
// plaintext, and the synthetic IV. Nothing is returned unless all of it
// holds. Of several keys it takes the one whose key check value the
// header carries (nil keys are skipped). No matching key gives
// format.ErrWrongKey, an index of another major version a *VersionError,
// anything else that is wrong an *Error.
func Read(r io.Reader, keys ...*crypt.Key) (*Index, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	hdr, cs, err := readHeader(br)
	if err != nil {
		return nil, err
	}
	return readBody(br, hdr, cs, keys)
}

// FileInfo is what Check found.
type FileInfo struct {
	Frames int
	// With the key: the index itself.
	Index *Index
}

// Check checks an index file as far as the keys allow: without one (none
// given, or all nil) the header, every frame's framing and checksum, and
// that nothing follows the final frame; with one, everything Read checks.
func Check(r io.Reader, keys ...*crypt.Key) (*FileInfo, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	hdr, cs, err := readHeader(br)
	if err != nil {
		return nil, err
	}
	if slices.ContainsFunc(keys, func(k *crypt.Key) bool { return k != nil }) {
		x, err := readBody(br, hdr, cs, keys)
		if err != nil {
			return nil, err
		}
		return &FileInfo{Index: x}, nil
	}
	f := &frameReader{r: br, cs: int(cs), pos: HeaderSize}
	info := &FileInfo{}
	for {
		if _, err := f.next(); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
		info.Frames++
	}
	if _, err := br.ReadByte(); err != io.EOF {
		if err != nil {
			return nil, err
		}
		return nil, newErr(f.pos, "bytes after the final frame")
	}
	return info, nil
}

// readHeader reads and checks the clear header (spec 5.2 steps 1
// and 2).
func readHeader(br *bufio.Reader) ([HeaderSize]byte, uint32, error) {
	var hdr [HeaderSize]byte
	n, err := io.ReadFull(br, hdr[:])
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return hdr, 0, err
	}
	if n < len(magic) || !bytes.Equal(hdr[:len(magic)], magic) {
		return hdr, 0, ErrNotIndex
	}
	if n >= 10 && hdr[8] != Major {
		return hdr, 0, &VersionError{hdr[8], hdr[9]}
	}
	if n < HeaderSize {
		return hdr, 0, newErr(int64(n), "the index header is cut short (%d of %d bytes)", n, HeaderSize)
	}
	if hdr[10] != format.SuiteAES256GCM {
		return hdr, 0, newErr(10, "unknown cipher suite %d", hdr[10])
	}
	if hdr[11] != 0 {
		return hdr, 0, newErr(11, "reserved header byte is not zero")
	}
	cs := binary.LittleEndian.Uint32(hdr[12:16])
	if cs < frame.MinChunkSize || cs > frame.MaxChunkSize || cs&(cs-1) != 0 {
		return hdr, 0, newErr(12, "chunk size %d is not a power of two in [%d, %d]", cs, frame.MinChunkSize, frame.MaxChunkSize)
	}
	return hdr, cs, nil
}

// readBody reads and opens the frames after the header and parses
// the plaintext (spec 5.2 steps 3 to 7).
func readBody(br *bufio.Reader, hdr [HeaderSize]byte, cs uint32, keys []*crypt.Key) (*Index, error) {
	var siv [crypt.SIVSize]byte
	copy(siv[:], hdr[16:32])
	var key *crypt.Key
	var ik *crypt.IndexKeys
	var tried []*crypt.IndexKeys
	for _, k := range keys {
		if k == nil {
			continue
		}
		kk := crypt.DeriveIndexKeys(k, siv)
		if kk.CheckMatches(hdr[32:48]) {
			key, ik = k, kk
			break
		}
		tried = append(tried, kk)
	}
	if ik == nil {
		// Other keys, or a damaged check value: under the right key the
		// content still opens.
		f := &frameReader{r: br, cs: int(cs), pos: HeaderSize}
		if payload, err := f.next(); err == nil {
			for _, kk := range tried {
				if _, err := frame.OpenChunk(kk, f.fh, f.hb[:], bytes.Clone(payload), 0, 0, f.cs, false, make([]byte, f.cs)); err == nil {
					return nil, newErr(32, "key check value does not match, yet the content opens: the header was changed")
				}
			}
		}
		return nil, errWrongKey{}
	}
	mac := crypt.IndexMAC(key)
	mac.Write(hdr[:prefixSize])
	f := &frameReader{r: br, ik: ik, cs: int(cs), pos: HeaderSize, mac: mac}
	p := &plainReader{f: f}
	x, err := decodePlain(p)
	if err != nil {
		return nil, err
	}
	if len(p.cur) != 0 {
		return nil, newErr(-1, "%d bytes after the last record", len(p.cur))
	}
	if b, err := f.next(); err != io.EOF {
		if err != nil {
			return nil, err
		}
		return nil, newErr(f.pos, "%d bytes after the last record", len(b))
	}
	if _, err := br.ReadByte(); err != io.EOF {
		if err != nil {
			return nil, err
		}
		return nil, newErr(f.pos, "bytes after the final frame")
	}
	if !hmac.Equal(mac.Sum(nil)[:crypt.SIVSize], siv[:]) {
		return nil, newErr(16, "the content does not match the synthetic IV: the index was changed")
	}
	return x, nil
}

// decodePlain parses the plaintext and checks its canonical form: the
// table sorted by name then id with no id twice, the records sorted by
// path with no path twice, each record's candidates sorted by archive and
// of one sequence number.
func decodePlain(p *plainReader) (*Index, error) {
	x := &Index{}
	var err error
	if x.HighSeq, err = p.uvarint(); err != nil {
		return nil, err
	}
	na, err := p.uvarint()
	if err != nil {
		return nil, err
	}
	if na > MaxArchives {
		return nil, newErr(-1, "archive count %d over the cap %d", na, MaxArchives)
	}
	// Counts are not trusted for memory: a few bytes may claim any count,
	// so the hints stay small and the slices grow with what is read.
	x.Archives = make([]Archive, 0, min(na, 1<<10))
	ids := make(map[[crypt.IDSize]byte]struct{}, min(na, 1<<10))
	for i := uint64(0); i < na; i++ {
		bad := func(what string, args ...any) error {
			return newErr(-1, "archive %d: %s", i, fmt.Sprintf(what, args...))
		}
		nl, err := p.uvarint()
		if err != nil {
			return nil, err
		}
		if nl == 0 || nl > MaxNameLen {
			return nil, bad("name of %d bytes", nl)
		}
		name, err := p.take(int(nl))
		if err != nil {
			return nil, err
		}
		a := Archive{Name: string(name)}
		id, err := p.take(crypt.IDSize)
		if err != nil {
			return nil, err
		}
		copy(a.ID[:], id)
		if a.Seq, err = p.uvarint(); err != nil {
			return nil, err
		}
		if a.Members, err = p.uvarint(); err != nil {
			return nil, err
		}
		if err := checkArchive(&a); err != nil {
			return nil, bad("%v", err)
		}
		if a.Seq > x.HighSeq {
			return nil, bad("sequence %d over the index's highest sequence %d", a.Seq, x.HighSeq)
		}
		if i > 0 && compareArchives(&x.Archives[i-1], &a) >= 0 {
			return nil, bad("%s is out of order (the table is sorted by name, then id)", a.Name)
		}
		if _, dup := ids[a.ID]; dup {
			return nil, bad("id %x is in the table twice", a.ID)
		}
		ids[a.ID] = struct{}{}
		x.Archives = append(x.Archives, a)
	}
	nr, err := p.uvarint()
	if err != nil {
		return nil, err
	}
	// The count is not trusted for memory: records are read one by one
	// and a count beyond the bytes present fails at the end of them.
	x.recs = make([]irec, 0, min(nr, 1<<12))
	arena := &pathArena{x: x}
	var cs []cand
	for k := uint64(0); k < nr; k++ {
		bad := func(what string, args ...any) error {
			return newErr(-1, "record %d: %s", k, fmt.Sprintf(what, args...))
		}
		pl, err := p.uvarint()
		if err != nil {
			return nil, err
		}
		if pl > format.MaxPathLen {
			return nil, bad("path of %d bytes over the cap %d", pl, format.MaxPathLen)
		}
		path, err := p.take(int(pl))
		if err != nil {
			return nil, err
		}
		if !IsCanonicalPath(path) {
			return nil, bad("path %q is not in canonical form", path)
		}
		if k > 0 && bytes.Compare(x.path(&x.recs[k-1]), path) >= 0 {
			return nil, bad("path %q is out of order or repeated (records are sorted by path)", path)
		}
		r := irec{lt: uint32(pl)}
		r.blk, r.poff = arena.add(path)
		nc, err := p.uvarint()
		if err != nil {
			return nil, err
		}
		if nc == 0 || nc > na {
			return nil, bad("%d candidates", nc)
		}
		cs = cs[:0]
		for c := uint64(0); c < nc; c++ {
			var v [7]uint64
			for f := range v {
				if f == 1 {
					b, err := p.byte()
					if err != nil {
						return nil, err
					}
					v[f] = uint64(b)
					continue
				}
				if v[f], err = p.uvarint(); err != nil {
					return nil, err
				}
			}
			arch, typ, member, off, span, size := v[0], format.Type(v[1]), v[2], v[3], v[4], v[5]
			switch {
			case arch >= na:
				return nil, bad("archive %d of a table of %d", arch, na)
			case c > 0 && arch <= uint64(cs[c-1].arch):
				return nil, bad("candidates not sorted by archive")
			case c > 0 && x.Archives[arch].Seq != x.Archives[cs[0].arch].Seq:
				return nil, bad("candidates of different sequence numbers")
			case !Indexed(typ):
				return nil, bad("member type %d is not indexed", typ)
			case member >= x.Archives[arch].Members:
				return nil, bad("member %d of archive %s, which has %d", member, x.Archives[arch].Name, x.Archives[arch].Members)
			case off > maxIndexValue || span == 0 || span > maxIndexValue || size > maxIndexValue:
				return nil, bad("offset %d, span %d or size %d out of range", off, span, size)
			}
			cs = append(cs, cand{off: int64(off), span: int64(span), size: int64(size), inode: v[6],
				arch: uint32(arch), member: uint32(member), typ: typ})
		}
		x.setCands(&r, cs)
		if len(x.recs) == cap(x.recs) {
			// Double, up to the count: fewer copies than append's growth.
			x.recs = slices.Grow(x.recs, int(min(nr-k, uint64(len(x.recs)))))
		}
		x.recs = append(x.recs, r)
	}
	arena.finish()
	return x, nil
}
