package index

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/internal/frame"
)

// The sealed, blocked encoding of a master index
// (spec/cbfs-index-v1.md section 4):
//
//	header (32 bytes, clear) | block frame* | directory frame | trailer (32 bytes)
//
// Records, sorted by path, are cut into blocks of about BlockSize bytes of
// plaintext, each sealed on its own; the directory holds the archives
// table and, per block, its first path, record count, frame length and
// synthetic IV; the trailer finds the directory. A lookup reads the
// trailer, the directory and one block.
//
// Every frame seals exactly the bytes "uvarint plaintext length, pinned
// LZ4 block" (lz4pin.go), and its AEAD key is derived from a MAC of
// exactly those bytes: different sealed bytes never share a key, and the
// same index always gives the same bytes, whoever writes it.

// Version of the index encoding written by this code. Readers accept any
// minor version of Major and reject other majors.
const (
	Major uint8 = 1
	Minor uint8 = 0
)

const (
	// HeaderSize is the size of the clear index header.
	HeaderSize = 32
	// TrailerSize is the size of the clear trailer that ends the file.
	TrailerSize = 32
	// BlockKind and DirKind are the frame kinds of record blocks and of
	// the block directory.
	BlockKind = 'i'
	DirKind   = 'd'
	// BlockSize is the block size v1 writes: records are added to a
	// block while its plaintext stays within it.
	BlockSize = 64 << 10
	// MaxBlockPlain caps one block's plaintext (one record over the
	// block size makes a block of its own, up to this).
	MaxBlockPlain = 4 << 20
	// MaxDirPlain caps the directory's plaintext.
	MaxDirPlain = 1 << 30
	// prefixSize is the part of the header every synthetic IV covers.
	prefixSize = 16
)

// ChunkSize is the block size (the name of the header field before
// blocks); kept for callers that print it.
const ChunkSize = BlockSize

var (
	magic        = []byte("CBFSINDX")
	trailerMagic = []byte("CBFSIEND")
)

// HasMagic reports whether b starts with the magic of a master
// index: how a file among archives is told to be an index.
func HasMagic(b []byte) bool { return bytes.HasPrefix(b, magic) }

// EndsLikeIndex reports whether end, the last bytes of a file, end in the
// trailer magic of a master index: what a reader at the end of a file (an
// object store's one range request) sees of an index.
func EndsLikeIndex(end []byte) bool { return bytes.HasSuffix(end, trailerMagic) }

func headerPrefix(bs uint32) []byte {
	b := make([]byte, 0, HeaderSize)
	b = append(b, magic...)
	b = append(b, Major, Minor, format.SuiteAES256GCM, 0)
	return binary.LittleEndian.AppendUint32(b, bs)
}

// sivOf is the synthetic IV of a frame: the first 16 bytes of
// HMAC-SHA-256(K_mac, prefix || kind || [u64le directory offset] ||
// sealed), sealed being exactly the bytes the frame seals.
func sivOf(mac hash.Hash, prefix []byte, kind byte, dirOff int64, sealed []byte) [crypt.SIVSize]byte {
	mac.Reset()
	mac.Write(prefix)
	mac.Write([]byte{kind})
	if kind == DirKind {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(dirOff))
		mac.Write(b[:])
	}
	mac.Write(sealed)
	var siv [crypt.SIVSize]byte
	copy(siv[:], mac.Sum(nil))
	return siv
}

// blockEnt is one block of the directory.
type blockEnt struct {
	first []byte
	n     int    // records
	flen  uint32 // frame payload length
	off   int64  // file offset of the frame (not stored: blocks tile the file)
	siv   [crypt.SIVSize]byte
}

// Writer writes an index from its records, given in path order, with
// memory bounded by one block and the directory. The archives table and
// the highest sequence number are known up front.
type Writer struct {
	w       *bufio.Writer
	key     *crypt.Key
	mac     hash.Hash
	prefix  []byte
	pos     int64
	highSeq uint64
	table   []Archive
	blk     []byte
	blkN    int
	first   []byte
	prev    []byte
	started bool
	dir     []blockEnt
	comp    pinCompressor
	sealed  []byte
	frame   []byte
	err     error
	stats   Stats
}

// NewWriter checks the table and writes the header.
func NewWriter(w io.Writer, key *crypt.Key, highSeq uint64, table []Archive) (*Writer, error) {
	if len(table) > MaxArchives {
		return nil, fmt.Errorf("index over %d archives", MaxArchives)
	}
	for i := range table {
		if err := checkArchive(&table[i]); err != nil {
			return nil, err
		}
		if i > 0 && compareArchives(&table[i-1], &table[i]) >= 0 {
			return nil, errors.New("archives table not sorted")
		}
		if table[i].Seq > highSeq {
			return nil, fmt.Errorf("archive %s has sequence %d, over the index's highest %d", table[i].Name, table[i].Seq, highSeq)
		}
	}
	wr := &Writer{w: bufio.NewWriterSize(w, 256<<10), key: key, mac: crypt.IndexMAC(key), prefix: headerPrefix(BlockSize),
		highSeq: highSeq, table: table, blk: make([]byte, 0, BlockSize+1024)}
	check := crypt.IndexCheck(key)
	hdr := append(bytes.Clone(wr.prefix), check[:]...)
	wr.write(hdr)
	return wr, wr.err
}

func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	_, w.err = w.w.Write(b)
	w.pos += int64(len(b))
}

// Stats counts the records written so far.
func (w *Writer) Stats() Stats { return w.stats }

// Add writes one record: a path (canonical, after the previous one) and
// its candidates (sorted by archive row, one sequence number).
func (w *Writer) Add(path []byte, es []Entry) error {
	cs := make([]cand, len(es))
	for i, e := range es {
		cs[i] = cand{off: e.Offset, span: e.Span, size: e.Size, inode: e.Inode, arch: uint32(e.Archive), member: e.Member, typ: e.Type}
	}
	return w.add(path, cs)
}

func (w *Writer) add(path []byte, cs []cand) error {
	if w.err != nil {
		return w.err
	}
	if err := w.checkRecord(path, cs); err != nil {
		w.err = err
		return err
	}
	shared := 0
	if w.started {
		shared = lcp(w.prev, path)
	}
	mark := len(w.blk)
	w.blk = appendRecord(w.blk, shared, path, cs)
	if w.blkN > 0 && len(w.blk) > BlockSize {
		// The record does not fit: the block ends before it, and it
		// starts the next one, whole.
		w.blk = w.blk[:mark]
		w.flushBlock()
		w.blk = appendRecord(w.blk, 0, path, cs)
	}
	if len(w.blk) > MaxBlockPlain {
		w.err = fmt.Errorf("record %q takes %d bytes, over the cap %d of a block", path, len(w.blk), MaxBlockPlain)
		return w.err
	}
	if w.blkN == 0 {
		w.first = append(w.first[:0], path...)
	}
	w.blkN++
	w.prev = append(w.prev[:0], path...)
	w.started = true
	w.stats.Records++
	live := false
	for _, c := range cs {
		live = live || c.typ != format.TypeTombstone
	}
	if live {
		w.stats.Live++
	} else {
		w.stats.Tombstones++
	}
	if len(cs) > 1 {
		w.stats.Conflicts++
	}
	return w.err
}

func (w *Writer) checkRecord(path []byte, cs []cand) error {
	switch {
	case len(path) > format.MaxPathLen:
		return fmt.Errorf("path of %d bytes over the cap %d", len(path), format.MaxPathLen)
	case !IsCanonicalPath(path):
		return fmt.Errorf("path %q is not in canonical form", path)
	case w.started && bytes.Compare(w.prev, path) >= 0:
		return fmt.Errorf("path %q is out of order or repeated", path)
	case len(cs) == 0 || len(cs) > len(w.table):
		return fmt.Errorf("path %q: %d candidates", path, len(cs))
	}
	for k, c := range cs {
		switch {
		case int(c.arch) >= len(w.table):
			return fmt.Errorf("path %q: archive %d of a table of %d", path, c.arch, len(w.table))
		case k > 0 && c.arch <= cs[k-1].arch:
			return fmt.Errorf("path %q: candidates not sorted by archive", path)
		case k > 0 && w.table[c.arch].Seq != w.table[cs[0].arch].Seq:
			return fmt.Errorf("path %q: candidates of different sequence numbers", path)
		case !Indexed(c.typ):
			return fmt.Errorf("path %q: member type %d is not indexed", path, c.typ)
		case uint64(c.member) >= w.table[c.arch].Members:
			return fmt.Errorf("path %q: member %d of archive %s, which has %d", path, c.member, w.table[c.arch].Name, w.table[c.arch].Members)
		case c.off < 0 || c.off > maxIndexValue || c.span <= 0 || c.span > maxIndexValue || c.size < 0 || c.size > maxIndexValue:
			return fmt.Errorf("path %q: offset %d, span %d or size %d out of range", path, c.off, c.span, c.size)
		}
	}
	return nil
}

func lcp(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for i+8 <= n && binary.LittleEndian.Uint64(a[i:]) == binary.LittleEndian.Uint64(b[i:]) {
		i += 8
	}
	for i < n && a[i] == b[i] {
		i++
	}
	return i
}

// appendRecord appends a record's encoding (spec 4.4): shared prefix
// length, suffix length, suffix, candidate count, candidates.
func appendRecord(b []byte, shared int, path []byte, cs []cand) []byte {
	b = binary.AppendUvarint(b, uint64(shared))
	b = binary.AppendUvarint(b, uint64(len(path)-shared))
	b = append(b, path[shared:]...)
	return appendCands(b, cs)
}

// appendCands appends a candidate count and the candidates, as index
// records and rebuild runs both hold them: per candidate uvarint archive,
// type byte, uvarint member, offset, span, size, inode.
func appendCands(b []byte, cs []cand) []byte {
	b = binary.AppendUvarint(b, uint64(len(cs)))
	for _, c := range cs {
		b = binary.AppendUvarint(b, uint64(c.arch))
		b = append(b, byte(c.typ))
		b = binary.AppendUvarint(b, uint64(c.member))
		b = binary.AppendUvarint(b, uint64(c.off))
		b = binary.AppendUvarint(b, uint64(c.span))
		b = binary.AppendUvarint(b, uint64(c.size))
		b = binary.AppendUvarint(b, c.inode)
	}
	return b
}

// seal appends the frame sealing plain (kind, final for the directory)
// and returns its synthetic IV.
func (w *Writer) seal(kind byte, plain []byte, dirOff int64) [crypt.SIVSize]byte {
	w.sealed = binary.AppendUvarint(w.sealed[:0], uint64(len(plain)))
	w.sealed = w.comp.compress(w.sealed, plain)
	siv := sivOf(w.mac, w.prefix, kind, dirOff, w.sealed)
	ik := crypt.DeriveIndexKeys(w.key, kind == DirKind, siv)
	var flags byte
	if kind == DirKind {
		flags = frame.FlagFinal
	}
	w.frame = frame.Seal(w.frame[:0], ik, kind, flags, 0, 0, w.sealed)
	return siv
}

func (w *Writer) flushBlock() {
	if w.blkN == 0 || w.err != nil {
		return
	}
	siv := w.seal(BlockKind, w.blk, 0)
	w.dir = append(w.dir, blockEnt{first: bytes.Clone(w.first), n: w.blkN, flen: uint32(len(w.frame) - frame.HeaderSize), off: w.pos, siv: siv})
	w.write(w.frame)
	w.blk = w.blk[:0]
	w.blkN = 0
}

// Close writes the last block, the directory and the trailer.
func (w *Writer) Close() error {
	w.flushBlock()
	if w.err != nil {
		return w.err
	}
	d := appendTable(nil, w.highSeq, w.table)
	d = binary.AppendUvarint(d, uint64(len(w.dir)))
	for _, b := range w.dir {
		d = binary.AppendUvarint(d, uint64(len(b.first)))
		d = append(d, b.first...)
		d = binary.AppendUvarint(d, uint64(b.n))
		d = binary.AppendUvarint(d, uint64(b.flen))
		d = append(d, b.siv[:]...)
	}
	if len(d) > MaxDirPlain {
		return fmt.Errorf("index directory of %d bytes over the cap %d", len(d), MaxDirPlain)
	}
	dirOff := w.pos
	siv := w.seal(DirKind, d, dirOff)
	w.write(w.frame)
	tr := binary.LittleEndian.AppendUint64(nil, uint64(dirOff))
	tr = append(append(tr, siv[:]...), trailerMagic...)
	w.write(tr)
	if w.err == nil {
		w.err = w.w.Flush()
	}
	return w.err
}

func appendTable(d []byte, highSeq uint64, table []Archive) []byte {
	d = binary.AppendUvarint(d, highSeq)
	d = binary.AppendUvarint(d, uint64(len(table)))
	for i := range table {
		a := &table[i]
		d = binary.AppendUvarint(d, uint64(len(a.Name)))
		d = append(d, a.Name...)
		d = append(d, a.ID[:]...)
		d = binary.AppendUvarint(d, a.Seq)
		d = binary.AppendUvarint(d, a.Members)
		d = binary.AppendUvarint(d, uint64(len(a.Replaces)))
		for _, r := range a.Replaces {
			d = append(d, r.ID[:]...)
			d = binary.AppendUvarint(d, r.Seq)
		}
	}
	return d
}

// Encode writes the sealed index to w. The same index under the same key
// always gives the same bytes.
func (x *Index) Encode(w io.Writer, key *crypt.Key) error {
	x.ensure()
	iw, err := NewWriter(w, key, x.HighSeq, x.Archives)
	if err != nil {
		return err
	}
	var cs []cand
	for i := range x.recs {
		r := &x.recs[i]
		if err := iw.add(x.path(r), x.cands(r, cs[:0])); err != nil {
			return err
		}
	}
	return iw.Close()
}

// ---- reading ----

// Reader reads an index through an io.ReaderAt: Open reads the header,
// the trailer and the directory; each lookup then reads one block. It is
// safe for concurrent use.
type Reader struct {
	src     io.ReaderAt
	size    int64
	key     *crypt.Key
	prefix  []byte
	HighSeq uint64
	// Archives is the archives table.
	Archives []Archive
	blocks   []blockEnt
	records  int
	dirOff   int64
}

// Len is the number of records, tombstones included.
func (r *Reader) Len() int { return r.records }

// Blocks is the number of record blocks.
func (r *Reader) Blocks() int { return len(r.blocks) }

// readerAt gives random access to r: directly when it has it, else by
// reading it whole.
func readerAt(r io.Reader) (io.ReaderAt, int64, error) {
	switch v := r.(type) {
	case interface {
		io.ReaderAt
		Size() int64
	}:
		return v, v.Size(), nil
	case *os.File:
		st, err := v.Stat()
		if err == nil && st.Mode().IsRegular() {
			return v, st.Size(), nil
		}
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, 0, err
	}
	return bytes.NewReader(b), int64(len(b)), nil
}

func readFull(src io.ReaderAt, b []byte, off int64) error {
	n, err := src.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// readHeader reads and checks the clear header (spec 5.2 steps 1, 2).
func readHeader(src io.ReaderAt, size int64) ([HeaderSize]byte, error) {
	var hdr [HeaderSize]byte
	n := int(min(size, HeaderSize))
	if err := readFull(src, hdr[:n], 0); err != nil {
		return hdr, err
	}
	if n < len(magic) || !bytes.Equal(hdr[:len(magic)], magic) {
		return hdr, ErrNotIndex
	}
	if n >= 10 && hdr[8] != Major {
		return hdr, &VersionError{hdr[8], hdr[9]}
	}
	if n < HeaderSize {
		return hdr, newErr(int64(n), "the index header is cut short (%d of %d bytes)", n, HeaderSize)
	}
	if hdr[10] != format.SuiteAES256GCM {
		return hdr, newErr(10, "unknown cipher suite %d", hdr[10])
	}
	if hdr[11] != 0 {
		return hdr, newErr(11, "reserved header byte is not zero")
	}
	bs := binary.LittleEndian.Uint32(hdr[12:16])
	if bs < frame.MinChunkSize || bs > frame.MaxChunkSize || bs&(bs-1) != 0 {
		return hdr, newErr(12, "block size %d is not a power of two in [%d, %d]", bs, frame.MinChunkSize, frame.MaxChunkSize)
	}
	return hdr, nil
}

// trailer reads the trailer and the directory frame's header (spec 5.2
// step 3): where the directory is, and its synthetic IV.
func readTrailer(src io.ReaderAt, size int64) (dirOff int64, siv [crypt.SIVSize]byte, fh frame.Header, hb [frame.HeaderSize]byte, err error) {
	if size < HeaderSize+frame.HeaderSize+TrailerSize {
		return 0, siv, fh, hb, newErr(size, "the index ends after %d bytes, before its directory and trailer (truncated?)", size)
	}
	var tr [TrailerSize]byte
	if err = readFull(src, tr[:], size-TrailerSize); err != nil {
		return
	}
	if !bytes.Equal(tr[24:], trailerMagic) {
		return 0, siv, fh, hb, newErr(size-8, "the index does not end with its trailer (truncated, or bytes after it?)")
	}
	d := binary.LittleEndian.Uint64(tr[:8])
	copy(siv[:], tr[8:24])
	if d < HeaderSize || d > uint64(size-TrailerSize-frame.HeaderSize) {
		return 0, siv, fh, hb, newErr(size-TrailerSize, "directory offset %d out of range", d)
	}
	dirOff = int64(d)
	if err = readFull(src, hb[:], dirOff); err != nil {
		return
	}
	var perr error
	fh, perr = frame.ParseHeader(hb[:])
	switch {
	case fh.Kind != DirKind:
		err = newErr(dirOff, "the trailer points at a frame of kind %q, not the directory", fh.Kind)
	case perr != nil:
		err = newErr(dirOff, "directory frame: %v", perr)
	case fh.Flags != frame.FlagFinal:
		err = newErr(dirOff, "directory frame: flags %#x, want %#x", fh.Flags, frame.FlagFinal)
	case int64(fh.Len) != size-TrailerSize-frame.HeaderSize-dirOff:
		err = newErr(dirOff, "directory frame of %d bytes does not end at the trailer", fh.Len)
	}
	return
}

// openFrame checks a frame's CRC, opens it under the key its synthetic
// IV derives, checks the IV against the sealed bytes, and returns the
// plaintext, decompressed into dbuf (grown as needed, up to max).
func openFrame(key *crypt.Key, prefix []byte, fh frame.Header, hb, payload []byte, at int64, siv [crypt.SIVSize]byte, max int, dbuf *[]byte) ([]byte, error) {
	what := "block"
	if fh.Kind == DirKind {
		what = "directory"
	}
	if frame.CRC(hb, payload) != fh.CRC {
		return nil, newErr(at, "%s frame: checksum mismatch", what)
	}
	ik := crypt.DeriveIndexKeys(key, fh.Kind == DirKind, siv)
	sealed, err := frame.Open(ik, fh, hb, payload, 0, 0)
	if err != nil {
		return nil, newErr(at, "%s frame failed authentication", what)
	}
	if got := sivOf(crypt.IndexMAC(key), prefix, fh.Kind, at, sealed); !hmac.Equal(got[:], siv[:]) {
		return nil, newErr(at, "%s frame: its synthetic IV is not the MAC of what it seals: the index was changed", what)
	}
	n, k := binary.Uvarint(sealed)
	if k <= 0 || k != uvarintLen(n) {
		return nil, newErr(at, "%s frame: bad plaintext length", what)
	}
	lz := sealed[k:]
	// An LZ4 block decodes to at most 255 bytes per byte of it.
	if n > uint64(max) || n > 255*uint64(len(lz)) {
		return nil, newErr(at, "%s frame: plaintext length %d out of range", what, n)
	}
	if cap(*dbuf) < int(n) {
		*dbuf = make([]byte, n)
	}
	plain := (*dbuf)[:n]
	got, err := frame.DecodeLZ4(lz, plain)
	if err != nil || got != int(n) {
		return nil, newErr(at, "%s frame: bad LZ4 block", what)
	}
	var c pinCompressor
	if re := c.compress(make([]byte, 0, len(lz)), plain); !bytes.Equal(re, lz) {
		return nil, newErr(at, "%s frame: the LZ4 block is not the pinned compressor's", what)
	}
	return plain, nil
}

// Open reads and checks an index's header, trailer and directory. Of
// several keys it takes the one whose key check value the header carries
// (nil keys are skipped). No matching key gives format.ErrWrongKey, an
// index of another major version a *VersionError, anything else that is
// wrong an *Error. Blocks are checked as they are read.
func Open(src io.ReaderAt, size int64, keys ...*crypt.Key) (*Reader, error) {
	hdr, err := readHeader(src, size)
	if err != nil {
		return nil, err
	}
	var key *crypt.Key
	for _, k := range keys {
		if k != nil && crypt.IndexCheckMatches(k, hdr[16:32]) {
			key = k
			break
		}
	}
	dirOff, siv, fh, hb, terr := readTrailer(src, size)
	var payload []byte
	if terr == nil {
		payload = make([]byte, fh.Len)
		if err := readFull(src, payload, dirOff+frame.HeaderSize); err != nil {
			return nil, err
		}
	}
	prefix := bytes.Clone(hdr[:prefixSize])
	if key == nil {
		// Other keys, or a damaged check value: under the right key the
		// directory still opens.
		if terr == nil {
			var dbuf []byte
			for _, k := range keys {
				if k == nil {
					continue
				}
				if _, err := openFrame(k, prefix, fh, hb[:], bytes.Clone(payload), dirOff, siv, MaxDirPlain, &dbuf); err == nil {
					return nil, newErr(16, "key check value does not match, yet the directory opens: the header was changed")
				}
			}
		}
		return nil, errWrongKey{}
	}
	if terr != nil {
		return nil, terr
	}
	var dbuf []byte
	plain, err := openFrame(key, prefix, fh, hb[:], payload, dirOff, siv, MaxDirPlain, &dbuf)
	if err != nil {
		return nil, err
	}
	r := &Reader{src: src, size: size, key: key, prefix: prefix, dirOff: dirOff}
	if err := r.parseDir(plain); err != nil {
		return nil, err
	}
	return r, nil
}

// parseDir parses the directory's plaintext (spec 4.3) and checks it.
func (r *Reader) parseDir(p []byte) error {
	d := &plainDec{p: p}
	var err error
	if r.HighSeq, r.Archives, err = d.table(); err != nil {
		return err
	}
	nb := d.uvarint()
	if d.err == nil && nb > uint64(len(d.p))/19 {
		return newErr(-1, "directory: %d blocks in %d bytes", nb, len(d.p))
	}
	r.blocks = make([]blockEnt, 0, nb)
	off := int64(HeaderSize)
	for i := uint64(0); i < nb && d.err == nil; i++ {
		bad := func(what string, args ...any) error {
			return newErr(-1, "directory: block %d: %s", i, fmt.Sprintf(what, args...))
		}
		fl := d.uvarint()
		if d.err == nil && fl > format.MaxPathLen {
			return bad("first path of %d bytes", fl)
		}
		first := d.take(int(fl))
		n := d.uvarint()
		flen := d.uvarint()
		sv := d.take(crypt.SIVSize)
		if d.err != nil {
			break
		}
		switch {
		case !IsCanonicalPath(first):
			return bad("first path %q is not in canonical form", first)
		case i > 0 && bytes.Compare(r.blocks[i-1].first, first) >= 0:
			return bad("first path %q is out of order", first)
		case n == 0 || n > uint64(MaxBlockPlain):
			return bad("%d records", n)
		case flen < crypt.TagSize+2 || flen > 2*MaxBlockPlain:
			return bad("frame length %d out of range", flen)
		}
		b := blockEnt{first: bytes.Clone(first), n: int(n), flen: uint32(flen), off: off}
		copy(b.siv[:], sv)
		off += frame.HeaderSize + int64(flen)
		r.records += int(n)
		r.blocks = append(r.blocks, b)
	}
	if d.err != nil {
		return d.err
	}
	if len(d.p) != 0 {
		return newErr(-1, "directory: %d bytes after the last block", len(d.p))
	}
	if off != r.dirOff {
		return newErr(r.dirOff, "the blocks end at %d, the directory starts at %d", off, r.dirOff)
	}
	return nil
}

// plainDec decodes a plaintext with minimal uvarints; the first error
// sticks.
type plainDec struct {
	p   []byte
	err error
}

var errPlainShort = newErr(-1, "the index content ends early")

func (d *plainDec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, k := binary.Uvarint(d.p)
	switch {
	case k == 0:
		d.err = errPlainShort
	case k < 0:
		d.err = newErr(-1, "varint overflows 64 bits")
	case k != uvarintLen(v):
		d.err = newErr(-1, "varint not in its shortest form")
	default:
		d.p = d.p[k:]
	}
	return v
}

func (d *plainDec) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.p) {
		d.err = errPlainShort
		return nil
	}
	b := d.p[:n]
	d.p = d.p[n:]
	return b
}

func (d *plainDec) byte() byte {
	b := d.take(1)
	if b == nil {
		return 0
	}
	return b[0]
}

// table decodes high-seq and the archives table and checks them.
func (d *plainDec) table() (uint64, []Archive, error) {
	hs := d.uvarint()
	na := d.uvarint()
	if d.err != nil {
		return 0, nil, d.err
	}
	if na > MaxArchives {
		return 0, nil, newErr(-1, "archive count %d over the cap %d", na, MaxArchives)
	}
	// Each row takes at least 20 bytes: the count is not trusted beyond.
	if na > uint64(len(d.p))/20 {
		return 0, nil, errPlainShort
	}
	arch := make([]Archive, 0, na)
	ids := make(map[[crypt.IDSize]byte]struct{}, na)
	for i := uint64(0); i < na; i++ {
		bad := func(what string, args ...any) error {
			return newErr(-1, "archive %d: %s", i, fmt.Sprintf(what, args...))
		}
		nl := d.uvarint()
		if d.err == nil && (nl == 0 || nl > MaxNameLen) {
			return 0, nil, bad("name of %d bytes", nl)
		}
		a := Archive{Name: string(d.take(int(nl)))}
		copy(a.ID[:], d.take(crypt.IDSize))
		a.Seq = d.uvarint()
		a.Members = d.uvarint()
		nr := d.uvarint()
		if d.err == nil && (nr > format.MaxReplaces || nr > uint64(len(d.p))/17) {
			return 0, nil, bad("replaces %d archives: over the cap or the bytes present", nr)
		}
		for k := uint64(0); k < nr && d.err == nil; k++ {
			var r format.Replaced
			copy(r.ID[:], d.take(crypt.IDSize))
			r.Seq = d.uvarint()
			a.Replaces = append(a.Replaces, r)
		}
		if d.err != nil {
			return 0, nil, d.err
		}
		if err := checkArchive(&a); err != nil {
			return 0, nil, bad("%v", err)
		}
		if a.Seq > hs {
			return 0, nil, bad("sequence %d over the index's highest sequence %d", a.Seq, hs)
		}
		if i > 0 && compareArchives(&arch[i-1], &a) >= 0 {
			return 0, nil, bad("%s is out of order (the table is sorted by name, then id)", a.Name)
		}
		if _, dup := ids[a.ID]; dup {
			return 0, nil, bad("id %x is in the table twice", a.ID)
		}
		ids[a.ID] = struct{}{}
		arch = append(arch, a)
	}
	// A retired archive is left out of the table (spec 2.8).
	for _, a := range arch {
		for _, r := range a.Replaces {
			if _, ok := ids[r.ID]; ok {
				return 0, nil, newErr(-1, "archive %s replaces archive id %x, which is in the table: a retired archive is left out", a.Name, r.ID)
			}
		}
	}
	return hs, arch, nil
}

// scratch is what reading one block needs.
type scratch struct {
	hb      [frame.HeaderSize]byte
	payload []byte
	plain   []byte
}

// block reads, opens and checks block i, and returns its plaintext
// (valid until s is used again).
func (r *Reader) block(i int, s *scratch) ([]byte, error) {
	b := &r.blocks[i]
	n := frame.HeaderSize + int(b.flen)
	if cap(s.payload) < n {
		s.payload = make([]byte, n)
	}
	buf := s.payload[:n]
	if err := readFull(r.src, buf, b.off); err != nil {
		return nil, err
	}
	fh, perr := frame.ParseHeader(buf)
	switch {
	case fh.Kind != BlockKind:
		return nil, newErr(b.off, "block %d: frame kind %q, want %q", i, fh.Kind, BlockKind)
	case perr != nil:
		return nil, newErr(b.off, "block %d: %v", i, perr)
	case fh.Flags != 0:
		return nil, newErr(b.off, "block %d: frame flags %#x, want 0", i, fh.Flags)
	case fh.Len != b.flen:
		return nil, newErr(b.off, "block %d: frame length %d, the directory says %d", i, fh.Len, b.flen)
	}
	return openFrame(r.key, r.prefix, fh, buf[:frame.HeaderSize], buf[frame.HeaderSize:], b.off, b.siv, MaxBlockPlain, &s.plain)
}

// Record is one path and its candidates, as a Reader returns it.
type Record struct {
	Path    []byte
	Entries []Entry
}

// Live reports whether some candidate is not a tombstone.
func (rec *Record) Live() bool {
	for _, e := range rec.Entries {
		if e.Type != format.TypeTombstone {
			return true
		}
	}
	return false
}

// Conflicted reports whether the record holds more than one candidate.
func (rec *Record) Conflicted() bool { return len(rec.Entries) > 1 }

// blockDec decodes the records of one block.
type blockDec struct {
	r     *Reader
	bi    int
	d     plainDec
	left  int
	path  []byte
	cands []cand
	first bool
}

func (bd *blockDec) start(r *Reader, bi int, plain []byte) {
	*bd = blockDec{r: r, bi: bi, d: plainDec{p: plain}, left: r.blocks[bi].n, path: bd.path[:0], cands: bd.cands[:0], first: true}
}

// next decodes the next record of the block; false at its end (with
// the end checked).
func (bd *blockDec) next() (bool, error) {
	r, d := bd.r, &bd.d
	if bd.left == 0 {
		if len(d.p) != 0 {
			return false, newErr(-1, "block %d: %d bytes after its last record", bd.bi, len(d.p))
		}
		return false, nil
	}
	bad := func(what string, args ...any) error {
		return newErr(-1, "block %d, record %d: %s", bd.bi, r.blocks[bd.bi].n-bd.left, fmt.Sprintf(what, args...))
	}
	shared := d.uvarint()
	sl := d.uvarint()
	if d.err != nil {
		return false, d.err
	}
	switch {
	case bd.first && shared != 0:
		return false, bad("the first record of a block shares %d bytes", shared)
	case shared > uint64(len(bd.path)):
		return false, bad("shares %d bytes of a path of %d", shared, len(bd.path))
	case sl == 0 || shared+sl > format.MaxPathLen:
		return false, bad("suffix of %d bytes", sl)
	}
	suf := d.take(int(sl))
	if d.err != nil {
		return false, d.err
	}
	if !bd.first && int(shared) < len(bd.path) && suf[0] <= bd.path[shared] {
		return false, bad("path out of order, or its shared prefix not the longest")
	}
	bd.path = append(bd.path[:shared], suf...)
	if !IsCanonicalPath(bd.path) {
		return false, bad("path %q is not in canonical form", bd.path)
	}
	if bd.first && !bytes.Equal(bd.path, r.blocks[bd.bi].first) {
		return false, bad("first path %q, the directory says %q", bd.path, r.blocks[bd.bi].first)
	}
	if bd.bi+1 < len(r.blocks) && bytes.Compare(bd.path, r.blocks[bd.bi+1].first) >= 0 {
		return false, bad("path %q is not before the next block's first", bd.path)
	}
	bd.first = false
	na := uint64(len(r.Archives))
	nc := d.uvarint()
	if d.err == nil && (nc == 0 || nc > na) {
		return false, bad("%d candidates", nc)
	}
	bd.cands = bd.cands[:0]
	for c := uint64(0); c < nc && d.err == nil; c++ {
		arch := d.uvarint()
		typ := format.Type(d.byte())
		member, off, span, size, inode := d.uvarint(), d.uvarint(), d.uvarint(), d.uvarint(), d.uvarint()
		if d.err != nil {
			break
		}
		switch {
		case arch >= na:
			return false, bad("archive %d of a table of %d", arch, na)
		case c > 0 && arch <= uint64(bd.cands[c-1].arch):
			return false, bad("candidates not sorted by archive")
		case c > 0 && r.Archives[arch].Seq != r.Archives[bd.cands[0].arch].Seq:
			return false, bad("candidates of different sequence numbers")
		case !Indexed(typ):
			return false, bad("member type %d is not indexed", typ)
		case member >= r.Archives[arch].Members:
			return false, bad("member %d of archive %s, which has %d", member, r.Archives[arch].Name, r.Archives[arch].Members)
		case off > maxIndexValue || span == 0 || span > maxIndexValue || size > maxIndexValue:
			return false, bad("offset %d, span %d or size %d out of range", off, span, size)
		}
		bd.cands = append(bd.cands, cand{off: int64(off), span: int64(span), size: int64(size), inode: inode,
			arch: uint32(arch), member: uint32(member), typ: typ})
	}
	if d.err != nil {
		return false, d.err
	}
	bd.left--
	return true, nil
}

func (bd *blockDec) record(rec *Record) {
	rec.Path = append(rec.Path[:0], bd.path...)
	rec.Entries = rec.Entries[:0]
	for _, c := range bd.cands {
		rec.Entries = append(rec.Entries, Entry{Archive: int(c.arch), Member: c.member, Type: c.typ,
			Offset: c.off, Span: c.span, Size: c.size, Inode: c.inode})
	}
}

// findBlock is the block that may hold path: the last whose first path
// is not after it; -1 when path is before every block.
func (r *Reader) findBlock(path []byte) int {
	lo, hi := 0, len(r.blocks)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bytes.Compare(r.blocks[m].first, path) <= 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo - 1
}

// Lookup finds path's record, reading one block. The record's slices
// are its own.
func (r *Reader) Lookup(path []byte) (*Record, bool, error) {
	var out *Record
	err := r.LookupMany([][]byte{path}, func(_ int, rec *Record) error {
		out = &Record{Path: bytes.Clone(rec.Path), Entries: append([]Entry(nil), rec.Entries...)}
		return nil
	})
	return out, out != nil, err
}

// LookupMany looks up paths (sorted or not), reading each block at most
// once, and calls fn for each path found, with its position in paths, in
// path order. rec is valid until fn returns.
func (r *Reader) LookupMany(paths [][]byte, fn func(i int, rec *Record) error) error {
	order := make([]int, len(paths))
	for i := range order {
		order[i] = i
	}
	sortIdx(order, paths)
	var s scratch
	var bd blockDec
	var rec Record
	cur := -1
	for _, i := range order {
		p := paths[i]
		bi := r.findBlock(p)
		if bi < 0 {
			continue
		}
		if bi != cur {
			plain, err := r.block(bi, &s)
			if err != nil {
				return err
			}
			bd.start(r, bi, plain)
			cur = bi
			if _, err := bd.next(); err != nil {
				return err
			}
		}
		// Records are in order: advance to the first not before p.
		for bytes.Compare(bd.path, p) < 0 {
			ok, err := bd.next()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
		}
		if bytes.Equal(bd.path, p) {
			bd.record(&rec)
			if err := fn(i, &rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// Iter walks records in path order, reading one block at a time.
type Iter struct {
	r *Reader
	// The previous block's plaintext length and last path, for the
	// check of the cut (spec 4.6 rule 9), when walking from the start.
	prevLen  int
	prevLast []byte
	whole    bool
	bi       int
	s        scratch
	bd       blockDec
	open     bool
	from     []byte
	rec      Record
	err      error
}

// Records returns an iterator over the records from the first whose path
// is not before from (nil: from the first).
func (r *Reader) Records(from []byte) *Iter {
	it := &Iter{r: r, from: from, whole: from == nil}
	if from != nil {
		it.bi = max(0, r.findBlock(from))
	}
	return it
}

// Next moves to the next record; false at the end or on an error (Err).
func (it *Iter) Next() bool {
	for it.err == nil {
		if !it.open {
			if it.bi >= len(it.r.blocks) {
				return false
			}
			plain, err := it.r.block(it.bi, &it.s)
			if err != nil {
				it.err = err
				return false
			}
			it.bd.start(it.r, it.bi, plain)
			it.open = true
			ok, err := it.bd.next()
			if err == nil && it.whole && it.bi > 0 {
				err = it.checkCut(len(plain) - len(it.bd.d.p))
			}
			if err != nil {
				it.err = err
				return false
			}
			_ = ok // a block holds at least one record
			it.prevLen = len(plain)
			return it.fromOK() || it.Next()
		}
		ok, err := it.bd.next()
		if err != nil {
			it.err = err
			return false
		}
		if !ok {
			it.open = false
			it.prevLast = append(it.prevLast[:0], it.bd.path...)
			it.bi++
			continue
		}
		if !it.fromOK() {
			continue
		}
		return true
	}
	return false
}

// fromOK reports whether the current record is at or after from.
func (it *Iter) fromOK() bool {
	if it.from != nil {
		if bytes.Compare(it.bd.path, it.from) < 0 {
			return false
		}
		it.from = nil
	}
	return true
}

// checkCut checks that the block before ended because the first record
// of this one (n bytes here) would not fit it (spec 4.4).
func (it *Iter) checkCut(n int) error {
	p := it.bd.path
	shared := lcp(it.prevLast, p)
	whole := uvarintLen(0) + uvarintLen(uint64(len(p))) + len(p)
	rel := uvarintLen(uint64(shared)) + uvarintLen(uint64(len(p)-shared)) + len(p) - shared
	bs := int(binary.LittleEndian.Uint32(it.r.prefix[12:16]))
	if it.prevLen+n-whole+rel <= bs {
		return newErr(it.r.blocks[it.bi].off, "block %d: its first record would have fit the block before (the blocks are not cut as the spec says)", it.bi)
	}
	return nil
}

// Path is the current record's path, valid until Next.
func (it *Iter) Path() []byte { return it.bd.path }

// Record is the current record, valid until Next.
func (it *Iter) Record() *Record { it.bd.record(&it.rec); return &it.rec }

// cands are the current record's candidates, valid until Next.
func (it *Iter) cands() []cand { return it.bd.cands }

// Err is what stopped the iteration, if anything did.
func (it *Iter) Err() error { return it.err }

// Read reads and opens a sealed index whole, checking everything: the
// header, the trailer, the directory, every block's checksum, seal,
// synthetic IV and compression, and the canonical form of everything
// they hold. Nothing is returned unless all of it holds. Of several keys
// it takes the one whose key check value the header carries (nil keys
// are skipped). No matching key gives format.ErrWrongKey, an index of
// another major version a *VersionError, anything else that is wrong an
// *Error.
func Read(r io.Reader, keys ...*crypt.Key) (*Index, error) {
	src, size, err := readerAt(r)
	if err != nil {
		return nil, err
	}
	ir, err := Open(src, size, keys...)
	if err != nil {
		return nil, err
	}
	return ir.ReadAll()
}

// ReadAll reads every block into an Index in memory.
func (r *Reader) ReadAll() (*Index, error) {
	x := &Index{HighSeq: r.HighSeq, Archives: r.Archives}
	x.recs = make([]irec, 0, min(r.records, 1<<20))
	arena := &pathArena{x: x}
	it := r.Records(nil)
	for it.Next() {
		p := it.Path()
		rec := irec{lt: uint32(len(p))}
		rec.blk, rec.poff = arena.add(p)
		x.setCands(&rec, it.cands())
		x.recs = append(x.recs, rec)
	}
	if it.Err() != nil {
		return nil, it.Err()
	}
	arena.finish()
	return x, nil
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

// FileInfo is what Check found.
type FileInfo struct {
	Frames int
	// With the key: the index itself.
	Index *Index
}

// Check checks an index file as far as the keys allow: without one (none
// given, or all nil) the header, every frame's framing and checksum, the
// directory's place and the trailer; with one, everything Read checks.
func Check(r io.Reader, keys ...*crypt.Key) (*FileInfo, error) {
	src, size, err := readerAt(r)
	if err != nil {
		return nil, err
	}
	if _, err := readHeader(src, size); err != nil {
		return nil, err
	}
	for _, k := range keys {
		if k != nil {
			ir, err := Open(src, size, keys...)
			if err != nil {
				return nil, err
			}
			x, err := ir.ReadAll()
			if err != nil {
				return nil, err
			}
			return &FileInfo{Frames: ir.Blocks() + 1, Index: x}, nil
		}
	}
	dirOff, _, _, _, err := readTrailer(src, size)
	if err != nil {
		return nil, err
	}
	info := &FileInfo{}
	var hb [frame.HeaderSize]byte
	var payload []byte
	for off := int64(HeaderSize); ; {
		if off+frame.HeaderSize > dirOff+frame.HeaderSize {
			return nil, newErr(off, "a frame crosses the directory at %d", dirOff)
		}
		if err := readFull(src, hb[:], off); err != nil {
			return nil, err
		}
		fh, perr := frame.ParseHeader(hb[:])
		kind := byte(BlockKind)
		if off == dirOff {
			kind = DirKind
		}
		switch {
		case fh.Kind != kind:
			return nil, newErr(off, "frame kind %q, want %q", fh.Kind, kind)
		case perr != nil:
			return nil, newErr(off, "%v", perr)
		case kind == BlockKind && fh.Flags != 0:
			return nil, newErr(off, "block frame flags %#x, want 0", fh.Flags)
		case fh.Len < crypt.TagSize+2 || int64(fh.Len) > size-off:
			return nil, newErr(off, "frame length %d out of range", fh.Len)
		}
		payload = append(payload[:0], make([]byte, fh.Len)...)
		if err := readFull(src, payload, off+frame.HeaderSize); err != nil {
			return nil, err
		}
		if frame.CRC(hb[:], payload) != fh.CRC {
			return nil, newErr(off, "frame: checksum mismatch")
		}
		info.Frames++
		if off == dirOff {
			return info, nil
		}
		off += frame.HeaderSize + int64(fh.Len)
	}
}

// sortIdx sorts positions by the paths they point at.
func sortIdx(order []int, paths [][]byte) {
	slices.SortStableFunc(order, func(a, b int) int { return bytes.Compare(paths[a], paths[b]) })
}
