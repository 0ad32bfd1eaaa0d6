// Package tarconv converts between plain tar streams and CBFS archives,
// losslessly: import keeps every byte of the tar, export gives it back
// (and writes a plain tar for members that were not imported, as the
// archive spec's section 7.6 says). It also reads a member's content the
// way tar would extract it (WriteContent) and recognises compressed input.
package tarconv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/cbfs/cbfs/format"
)

// Caps on what a plain tar may make the scanner hold in memory.
const (
	// maxSpecialSize caps the data of one GNU long-name or long-link
	// header; Go's archive/tar and bsdtar use the same 1 MiB bound.
	maxSpecialSize = 1 << 20
	// maxPAXSize caps the data of one pax header. GNU tar's sparse
	// formats 0.0 and 0.1 keep a file's whole sparse map in its pax
	// header: 4.7 MB for 80,000 data extents in 0.0. The header is held
	// in memory (about three times its size while parsing) and kept
	// verbatim in the member's metadata record (format.MaxTarHeaderLen).
	maxPAXSize = 64 << 20
	// maxSparseBlocks caps old GNU sparse extension blocks of one entry.
	maxSparseBlocks = 1 << 12
)

// TarError is a problem in an input tar, with the offset of the header
// it was found in.
type TarError struct {
	Offset int64
	Entry  string // the entry's name when known
	What   string
}

func (e *TarError) Error() string {
	if e.Entry != "" {
		return fmt.Sprintf("offset %d, entry %q: %s", e.Offset, e.Entry, e.What)
	}
	return fmt.Sprintf("offset %d: %s", e.Offset, e.What)
}

// ErrNotTar is returned when the input does not start with a tar header.
var ErrNotTar = errors.New("not a tar archive")

// tarEntry is one entry of a plain tar as the scanner found it.
type tarEntry struct {
	offset   int64 // of the first byte of raw
	raw      []byte
	dataSize int64
	meta     format.Meta
}

// tarScanner splits a plain tar into entries without interpreting more
// than it must: it keeps every byte, so that the entries' raw bytes, data
// and the trailer concatenate back to the input exactly.
type tarScanner struct {
	r    *tarInput
	off  int64
	lead []byte // the previous entry's padding, read but not yet owned
	pad  int64  // padding still to read after the current entry's data
	n    int    // entries so far
	// entry and rawBuf are reused: an entry and its raw bytes are valid
	// until the next call of next.
	entry  tarEntry
	rawBuf []byte
	dr     dataReader
	names  ownerNames
}

// maxKeptRaw is the largest raw buffer kept for the next entry: a few
// blocks of headers is the common case; a big pax header is not kept.
const maxKeptRaw = 64 << 10

func newTarScanner(r io.Reader) *tarScanner {
	return &tarScanner{r: &tarInput{src: r, buf: make([]byte, tarBufSize)}}
}

// tarBufSize is the scanner's buffer: headers, small entries and the
// ends of large ones are read through it.
const tarBufSize = 256 << 10

// directMin is the smallest read of entry data that goes straight from
// the input into the caller's buffer when nothing is buffered: a chunk of
// a large file is read into the archive writer's batch, not copied there
// from a buffer.
const directMin = 32 << 10

// tarInput is a buffered reader that reads large blocks directly.
type tarInput struct {
	src  io.Reader
	buf  []byte
	r, w int
	err  error
}

func (t *tarInput) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if t.r == t.w {
		if t.err != nil {
			err := t.err
			t.err = nil
			return 0, err
		}
		if len(p) >= directMin {
			return t.src.Read(p)
		}
		t.r, t.w = 0, 0
		n, err := t.src.Read(t.buf)
		t.w, t.err = n, err
		if n == 0 {
			t.err = nil
			return 0, err
		}
	}
	n := copy(p, t.buf[t.r:t.w])
	t.r += n
	return n, nil
}

// readFull reads len(p) bytes; fewer is truncation.
func (s *tarScanner) readFull(p []byte, what string) error {
	n, err := io.ReadFull(s.r, p)
	s.off += int64(n)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return &TarError{Offset: s.off, What: "truncated in " + what}
	}
	return err
}

// data returns a reader over the current entry's data. It must be read to
// the end before next is called.
func (s *tarScanner) data(e *tarEntry) io.Reader {
	s.dr = dataReader{s: s, left: e.dataSize, entry: e}
	return &s.dr
}

type dataReader struct {
	s     *tarScanner
	left  int64
	entry *tarEntry
}

func (d *dataReader) Read(p []byte) (int, error) {
	if d.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > d.left {
		p = p[:d.left]
	}
	n, err := d.s.r.Read(p)
	d.s.off += int64(n)
	d.left -= int64(n)
	if err == io.EOF {
		if d.left > 0 {
			return n, &TarError{Offset: d.s.off, Entry: string(d.entry.meta.Path), What: fmt.Sprintf("truncated: %d bytes of data missing (the tar was cut short, or is one volume of a multi-volume tar, tar -M, which cbfs does not join)", d.left)}
		}
		err = nil
	}
	return n, err
}

// next returns the next entry, or io.EOF when the entries end (at a zero
// block or at the end of input); trailer then returns what remains. The
// entry, its raw bytes included, is valid until the next call.
func (s *tarScanner) next() (*tarEntry, error) {
	// raw collects the entry's bytes as they are read: the previous
	// entry's padding, then every header block, read in place.
	raw := s.rawBuf[:0]
	if s.lead != nil {
		raw = nil // the lead is in rawBuf
	}
	raw = slices.Grow(raw, len(s.lead)+int(s.pad)+format.BlockSize)
	if s.pad > 0 {
		raw = raw[:s.pad]
		if err := s.readFull(raw, "padding"); err != nil {
			return nil, err
		}
		s.pad = 0
	} else {
		raw = append(raw, s.lead...)
	}
	e := &s.entry
	*e = tarEntry{offset: s.off - int64(len(raw))}
	var pax map[string]string
	var longName, longLink []byte
	for {
		hoff := s.off
		start := len(raw)
		raw = slices.Grow(raw, format.BlockSize)[:start+format.BlockSize]
		blk := (*format.Block)(raw[start:])
		n, err := io.ReadFull(s.r, blk[:])
		s.off += int64(n)
		if n == 0 && err == io.EOF {
			if s.n == 0 && hoff == 0 {
				return nil, ErrNotTar
			}
			// Extended headers with no entry after them end the entries,
			// as in Go's reader and GNU tar: they go to the trailer.
			s.lead = raw[:start]
			return nil, io.EOF
		}
		if err != nil {
			if err != io.ErrUnexpectedEOF {
				return nil, err // the input's own error: a read or a decompression failed
			}
			if s.n == 0 && hoff == 0 {
				return nil, ErrNotTar
			}
			return nil, &TarError{Offset: s.off, What: "truncated in a header block"}
		}
		if blk.IsZero() {
			// Hand the block back to the trailer, with any extended
			// headers before it (Go's reader and GNU tar ignore those).
			// An archive with no entries is just the trailer.
			s.lead = raw
			return nil, io.EOF
		}
		if err := blk.VerifyChecksum(); err != nil {
			if hoff == 0 {
				return nil, ErrNotTar
			}
			return nil, &TarError{Offset: hoff, What: "not a tar header (checksum mismatch)"}
		}
		if len(raw) > format.MaxTarHeaderLen {
			return nil, &TarError{Offset: hoff, Entry: string(blk.Name()),
				What: fmt.Sprintf("extended headers over the %d-byte cap", format.MaxTarHeaderLen)}
		}
		size, err := format.ParseNumeric(blk.Size())
		if err != nil || size < 0 {
			return nil, &TarError{Offset: hoff, What: "invalid size field"}
		}
		switch tf := blk.Typeflag(); tf {
		case 'x', 'L', 'K':
			limit := int64(maxSpecialSize)
			if tf == 'x' {
				limit = maxPAXSize
			}
			padded := size + format.PadLen(size)
			switch {
			case size > limit:
				return nil, s.refuse(hoff, padded, pax, longName, fmt.Sprintf("%q header of %d bytes over the %d-byte cap", tf, size, limit))
			case int64(len(raw))+padded > format.MaxTarHeaderLen:
				return nil, s.refuse(hoff, padded, pax, longName, fmt.Sprintf("extended headers of %d bytes over the %d-byte cap", int64(len(raw))+padded, format.MaxTarHeaderLen))
			}
			// Read in place, at the end of raw: a big pax header is not
			// copied again.
			start := len(raw)
			raw = slices.Grow(raw, int(padded))[:start+int(padded)]
			body := raw[start:]
			if err := s.readFull(body, "an extended header"); err != nil {
				return nil, err
			}
			switch tf {
			case 'x':
				recs, err := parsePAX(body[:size])
				if err != nil {
					return nil, &TarError{Offset: hoff, What: "pax header: " + err.Error()}
				}
				// Records of several 'x' headers before one entry merge, the
				// later winning, as in Go's reader and GNU tar.
				if pax == nil {
					pax = recs
				} else {
					for k, v := range recs {
						pax[k] = v
					}
				}
			case 'L':
				longName = cstring(body[:size])
			case 'K':
				longLink = cstring(body[:size])
			}
			continue
		}
		// A main header.
		if blk.Typeflag() == 'S' && blk.IsGNU() {
			ext := blk.GNUIsExtended()
			for i := 0; ext; i++ {
				if i >= maxSparseBlocks {
					return nil, &TarError{Offset: hoff, What: "too many sparse extension blocks"}
				}
				var xb format.Block
				if err := s.readFull(xb[:], "a sparse extension block"); err != nil {
					return nil, err
				}
				raw = append(raw, xb[:]...)
				ext = xb[504] != 0
			}
		}
		e.raw = raw
		if err := fillMeta(&e.meta, blk, pax, longName, longLink, &s.names); err != nil {
			return nil, &TarError{Offset: hoff, What: err.Error()}
		}
		if len(raw) > format.MaxTarHeaderLen {
			return nil, &TarError{Offset: hoff, Entry: string(e.meta.Path),
				What: fmt.Sprintf("headers and sparse extension blocks of %d bytes over the %d-byte cap", len(raw), format.MaxTarHeaderLen)}
		}
		e.dataSize = size
		if v, ok := pax["size"]; ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return nil, &TarError{Offset: hoff, Entry: string(e.meta.Path), What: "invalid pax size"}
			}
			e.dataSize = n
		}
		if headerOnly(blk, e.meta.Path) {
			e.dataSize = 0
		}
		if e.meta.Type == format.TypeRegular && len(e.meta.Sparse) == 0 && e.meta.Size == 0 {
			e.meta.Size = e.dataSize
		}
		s.pad = (format.BlockSize - e.dataSize%format.BlockSize) % format.BlockSize
		s.lead = nil
		s.n++
		if cap(raw) <= maxKeptRaw {
			s.rawBuf = raw[:0]
		}
		return e, nil
	}
}

// refuse builds the error for an extended header over its cap, whose
// padded data of n bytes follows. To name the entry it streams through
// that data, keeping only a path or GNU.sparse.name record (a pax header
// names its entry inside), else the name an earlier header gave, else the
// name in the next header block. Memory stays small whatever n is.
func (s *tarScanner) refuse(hoff, n int64, pax map[string]string, longName []byte, what string) error {
	name := paxRecordName(io.LimitReader(s.r, n))
	if name == "" {
		switch {
		case pax["GNU.sparse.name"] != "":
			name = pax["GNU.sparse.name"]
		case pax["path"] != "":
			name = pax["path"]
		case longName != nil:
			name = string(longName)
		default:
			var b format.Block
			if _, err := io.ReadFull(s.r, b[:]); err == nil && b.VerifyChecksum() == nil {
				name = string(b.Name())
				if p := b.Prefix(); b.IsUSTAR() && len(p) > 0 {
					name = string(p) + "/" + name
				}
			}
		}
	}
	return &TarError{Offset: hoff, Entry: name, What: what}
}

// paxRecordName reads pax records from r to its end and returns the last
// GNU.sparse.name, else path, value: the name tar gives the entry. It
// holds one record key and a value of at most format.MaxPathLen bytes at
// a time; anything else is skipped. Malformed records end the search.
func paxRecordName(r io.Reader) string {
	br := bufio.NewReaderSize(r, 64<<10)
	defer io.Copy(io.Discard, br)
	var path, sparseName string
	for {
		num, err := br.ReadSlice(' ')
		if err != nil {
			break
		}
		n, err := strconv.ParseInt(string(num[:len(num)-1]), 10, 64)
		if err != nil || n <= int64(len(num))+2 {
			break
		}
		rest := n - int64(len(num)) // key, '=', value, '\n'
		key, err := br.ReadSlice('=')
		if err != nil || int64(len(key)) >= rest {
			break
		}
		k := string(key[:len(key)-1])
		vlen := rest - int64(len(key)) // value and '\n'
		if (k == "path" || k == "GNU.sparse.name") && vlen-1 <= format.MaxPathLen {
			v := make([]byte, vlen)
			if _, err := io.ReadFull(br, v); err != nil {
				break
			}
			if k == "path" {
				path = string(v[:vlen-1])
			} else {
				sparseName = string(v[:vlen-1])
			}
		} else if _, err := br.Discard(int(vlen)); err != nil {
			break
		}
	}
	if sparseName != "" {
		return sparseName
	}
	return path
}

// trailer returns everything after the last entry: its padding, the
// end-of-archive blocks and whatever follows them, byte for byte.
func (s *tarScanner) trailer() io.Reader {
	return io.MultiReader(bytes.NewReader(s.lead), s.r)
}

// headerOnly reports whether a main header has no data whatever its size
// field says: the rule of Go's archive/tar, which GNU tar and bsdtar
// follow for these types.
func headerOnly(b *format.Block, name []byte) bool {
	switch b.Typeflag() {
	case '1', '2', '3', '4', '5', '6':
		return true
	case 0:
		return bytes.HasSuffix(name, []byte("/"))
	}
	return false
}

func cstring(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return bytes.Clone(b)
}

// parsePAX parses pax records: "<len> <key>=<value>\n", as Go's reader does.
func parsePAX(b []byte) (map[string]string, error) {
	recs := make(map[string]string)
	s := string(b)
	for len(s) > 0 {
		nStr, rest, ok := strings.Cut(s, " ")
		if !ok {
			return nil, errors.New("record without a length")
		}
		n, err := strconv.ParseInt(nStr, 10, 0)
		if err != nil || n < 5 || n > int64(len(s)) {
			return nil, errors.New("bad record length")
		}
		n -= int64(len(nStr) + 1)
		if n <= 0 {
			return nil, errors.New("bad record length")
		}
		rec, nl, rem := rest[:n-1], rest[n-1:n], rest[n:]
		if nl != "\n" {
			return nil, errors.New("record does not end in a newline")
		}
		k, v, ok := strings.Cut(rec, "=")
		if !ok || k == "" || strings.IndexByte(k, 0) >= 0 {
			return nil, errors.New("bad record key")
		}
		// GNU sparse 0.0 repeats offset and numbytes keys; their order
		// matters only to a sparse reader, which reads the raw bytes anyway.
		recs[k] = v
		s = rem
	}
	return recs, nil
}
