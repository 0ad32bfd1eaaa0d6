package tarconv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
)

// ImportStats says what an import wrote.
type ImportStats struct {
	Entries     int   // tar entries, not counting the trailer
	InputBytes  int64 // bytes of the plain tar
	TrailerSize int64
}

// ImportTar reads a plain tar from src and writes it to dst as a CBFS
// archive. Every byte of src is kept: each entry's header bytes verbatim,
// its data as the member's content, and what follows the last entry (end
// blocks, record padding, anything else) as a trailer member, so that
// ExportTar gives src back exactly. Memory does not grow with src.
func ImportTar(ctx context.Context, dst io.Writer, src io.Reader, key *crypt.Key, opt format.WriterOptions) (*ImportStats, error) {
	src = ctxReader{ctx, src}
	s := newTarScanner(src)
	// Read the first header before writing anything, so that input that
	// is not a tar leaves no output at all.
	e, err := s.next()
	if err != nil && err != io.EOF {
		return nil, err
	}
	w, werr := format.NewWriter(dst, key, opt)
	if werr != nil {
		return nil, werr
	}
	st := &ImportStats{}
	fail := func(err error) (*ImportStats, error) {
		// No summary and footer: what was written is not a whole archive.
		w.Abort(err)
		return nil, err
	}
	for ; err == nil; e, err = s.next() {
		st.Entries++
		e.meta.TarHeader = e.raw
		n, aerr := w.Add(&e.meta, s.data(e))
		if aerr != nil {
			var te *TarError
			var oe *format.OutputError
			var de *DecompressError
			switch {
			case errors.As(aerr, &te):
				return fail(te)
			case errors.As(aerr, &oe), context.Cause(ctx) != nil:
				return fail(aerr)
			case errors.As(aerr, &de):
				return fail(fmt.Errorf("entry %q at offset %d: %w", e.meta.Path, e.offset, de))
			}
			// Anything else Add refuses is in what the entry says (a size
			// over 2^62, say): the input's fault.
			return fail(&TarError{Offset: e.offset, Entry: string(e.meta.Path), What: aerr.Error()})
		}
		if n != e.dataSize {
			return fail(&TarError{Offset: e.offset, Entry: string(e.meta.Path), What: "truncated data"})
		}
	}
	if err != io.EOF {
		return fail(err)
	}
	cr := &countReader{r: s.trailer()}
	if _, err := w.Add(&format.Meta{Type: format.TypeTrailer}, cr); err != nil {
		var de *DecompressError
		if errors.As(err, &de) {
			err = fmt.Errorf("after the last entry: %w", de)
		}
		return fail(err)
	}
	st.TrailerSize = cr.n
	st.InputBytes = s.off + cr.n - int64(len(s.lead))
	return st, w.Close()
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ExportOptions configure ExportTar.
type ExportOptions struct {
	// OnMember, when set, is called with each member that becomes a tar
	// entry, before its bytes are written: what tar -v lists.
	OnMember func(m *format.Meta)
	// Keys are more keys beside ExportTar's: the archive is read with the
	// one it was written under.
	Keys []*crypt.Key
}

// ExportTar writes a CBFS archive read from src to dst as a plain tar. An
// imported member's header bytes come back verbatim; a member written by
// pack or the Go API gets a pax header (archive spec 7.6). The archive is
// verified to its last byte: ExportTar returns nil only when everything
// checked out, so a caller writing to a file must discard the file on
// error. It stops at the next read once ctx is cancelled.
func ExportTar(ctx context.Context, dst io.Writer, src io.Reader, key *crypt.Key, opt ExportOptions) error {
	src = ctxReader{ctx, src}
	r, err := format.NewReader(src, key, format.ReaderOptions{Keys: opt.Keys})
	if err != nil {
		return err
	}
	defer r.Close()
	bw := newTarWriter(dst)
	var pad int64 // zero padding owed by the last imported entry
	trailer, compacted := false, false
	for {
		m, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		meta := m.Meta
		if opt.OnMember != nil {
			switch meta.Type {
			case format.TypeTrailer, format.TypeTombstone, format.TypeTarGlobal, format.TypeReplaces:
			default:
				opt.OnMember(meta)
			}
		}
		switch {
		case meta.Type == format.TypeReplaces:
			// A compacted archive (archive spec 7.7): its members are
			// exported one by one, each a whole entry.
			compacted = true
		case compacted && meta.TarHeader != nil:
			// An imported member's header bytes start with padding owed
			// to a neighbour it no longer has: leave it out, and pad its
			// data here, as a member read alone is written.
			if _, err := bw.Write(meta.TarHeader[len(meta.TarHeader)%format.BlockSize:]); err != nil {
				return err
			}
			n, err := io.Copy(bw, r)
			if err != nil {
				return memberErr(m, err)
			}
			if err := writeZeros(bw, format.PadLen(n)); err != nil {
				return err
			}
		case meta.Type == format.TypeTrailer:
			// The trailer starts with the last entry's padding.
			pad = 0
			trailer = true
			if _, err := io.Copy(bw, r); err != nil {
				return memberErr(m, err)
			}
		case meta.TarHeader != nil:
			// The header bytes start with the previous entry's padding.
			pad = 0
			if _, err := bw.Write(meta.TarHeader); err != nil {
				return err
			}
			n, err := io.Copy(bw, r)
			if err != nil {
				return memberErr(m, err)
			}
			pad = (format.BlockSize - n%format.BlockSize) % format.BlockSize
		case meta.Type == format.TypeTombstone:
			// A deletion is not a file: a plain tar has nothing to say
			// about it, and the padding still owed stays owed.
			if _, err := io.Copy(io.Discard, r); err != nil {
				return memberErr(m, err)
			}
		default:
			if err := writeZeros(bw, pad); err != nil {
				return err
			}
			pad = 0
			if err := writeSynthesized(bw, m, r); err != nil {
				return err
			}
		}
	}
	if !trailer {
		// The end of a plain tar: two zero blocks, no record padding
		// (spec 7.6).
		if err := writeZeros(bw, pad+2*format.BlockSize); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// tarWriter gathers the small writes of an export (headers, padding,
// small members) into large ones, and passes a large one (a chunk of
// content) through as it is, after what it gathered: a byte of content is
// not copied once more on its way out.
type tarWriter struct {
	w   io.Writer
	buf []byte
	err error
}

// tarGather is how much tarWriter gathers; writes of at least
// tarDirect bytes are passed through.
const (
	tarGather = 256 << 10
	tarDirect = 32 << 10
)

func newTarWriter(w io.Writer) *tarWriter {
	return &tarWriter{w: w, buf: make([]byte, 0, tarGather)}
}

func (t *tarWriter) Write(p []byte) (int, error) {
	if t.err != nil {
		return 0, t.err
	}
	if len(p) >= tarDirect {
		if err := t.Flush(); err != nil {
			return 0, err
		}
		n, err := t.w.Write(p)
		t.err = err
		return n, err
	}
	if len(t.buf)+len(p) > cap(t.buf) {
		if err := t.Flush(); err != nil {
			return 0, err
		}
	}
	t.buf = append(t.buf, p...)
	return len(p), nil
}

// Flush writes what was gathered.
func (t *tarWriter) Flush() error {
	if t.err == nil && len(t.buf) > 0 {
		_, t.err = t.w.Write(t.buf)
		t.buf = t.buf[:0]
	}
	return t.err
}

func memberErr(m *format.Member, err error) error {
	var fe *format.Error
	if errors.As(err, &fe) {
		return err
	}
	return fmt.Errorf("member %d (%q): %w", m.Number, m.Meta.Path, err)
}

var zeros [64 << 10]byte

func writeZeros(w io.Writer, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := w.Write(zeros[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// Export of a member that was not imported (spec 7.6): a pax extended
// header when any record is needed, a ustar header block, the content,
// and zero padding to a whole block. Every byte of it is a function of
// the metadata record, so that every exporter writes the same plain tar.

// Limits of the ustar numeric fields: 7 octal digits and 11 octal digits.
const (
	max7  = 1<<21 - 1
	max11 = 1<<33 - 1
)

// ascii is s without its bytes of 0x80 and above.
func ascii(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] < 0x80 {
			b = append(b, s[i])
		}
	}
	return string(b)
}

func isASCII(s string) bool { return ascii(s) == s }

// field copies s into f, cut to f's length. When s is cut and the field
// ends in '/', the first byte of that final run of '/' becomes NUL, so
// that no reader takes a cut name for a directory's.
func field(f []byte, s string) {
	copy(f, s)
	if len(s) > len(f) && f[len(f)-1] == '/' {
		f[len(strings.TrimRight(string(f), "/"))] = 0
	}
}

// tarTypeflag is the ustar typeflag of a member type that has a plain tar
// form of its own.
func tarTypeflag(t format.Type) (byte, bool) {
	switch t {
	case format.TypeRegular:
		return '0', true
	case format.TypeDir:
		return '5', true
	case format.TypeSymlink:
		return '2', true
	case format.TypeHardlink:
		return '1', true
	case format.TypeChar:
		return '3', true
	case format.TypeBlock:
		return '4', true
	case format.TypeFifo:
		return '6', true
	}
	return 0, false
}

type paxRec struct{ k, v string }

// synthHeader returns the header bytes of a member that was not imported:
// the pax extended header (if any) and the ustar block. name is the
// ustar name (the path, or a sparse file's stub name), size the data
// area's size, and last the records that follow the sorted ones.
func synthHeader(m *format.Meta, name string, size int64, last []paxRec) ([]byte, error) {
	tf, ok := tarTypeflag(m.Type)
	if !ok {
		return nil, fmt.Errorf("a %s member has no plain tar form", m.Type)
	}
	path, link := string(m.Path), string(m.Link)
	for _, s := range []string{path, link, m.Uname, m.Gname} {
		if strings.IndexByte(s, 0) >= 0 {
			return nil, errors.New("a NUL byte in its path, link target, user or group name")
		}
	}
	if m.DevMajor > max7 || m.DevMinor > max7 {
		return nil, fmt.Errorf("device number %d,%d over the ustar field's %d", m.DevMajor, m.DevMinor, max7)
	}
	var recs []paxRec
	if len(name) > 100 || !isASCII(name) {
		recs = append(recs, paxRec{"path", name})
	}
	if len(link) > 100 || !isASCII(link) {
		recs = append(recs, paxRec{"linkpath", link})
	}
	if m.UID > max7 {
		recs = append(recs, paxRec{"uid", strconv.FormatUint(m.UID, 10)})
	}
	if m.GID > max7 {
		recs = append(recs, paxRec{"gid", strconv.FormatUint(m.GID, 10)})
	}
	if len(m.Uname) > 32 || !isASCII(m.Uname) {
		recs = append(recs, paxRec{"uname", m.Uname})
	}
	if len(m.Gname) > 32 || !isASCII(m.Gname) {
		recs = append(recs, paxRec{"gname", m.Gname})
	}
	if size > max11 {
		recs = append(recs, paxRec{"size", strconv.FormatInt(size, 10)})
	}
	mt := m.MTime
	if mt.Set && (mt.Nsec != 0 || mt.Sec < 0 || mt.Sec > max11) {
		recs = append(recs, paxRec{"mtime", paxTime(mt)})
	}
	if m.ATime.Set {
		recs = append(recs, paxRec{"atime", paxTime(m.ATime)})
	}
	if m.CTime.Set {
		recs = append(recs, paxRec{"ctime", paxTime(m.CTime)})
	}
	for _, x := range m.Xattrs {
		if strings.ContainsAny(x.Name, "=\x00") {
			return nil, fmt.Errorf("xattr name %q holds '=' or NUL, which a pax record key cannot", x.Name)
		}
		recs = append(recs, paxRec{"SCHILY.xattr." + x.Name, string(x.Value)})
		// GNU tar --acls restores ACLs from its own text records only.
		if k, ok := aclRecords[x.Name]; ok {
			if text, ok := aclText(x.Value); ok {
				recs = append(recs, paxRec{k, text})
			}
		}
	}
	// POSIX pax values are UTF-8 unless hdrcharset=BINARY says otherwise:
	// without it bsdtar refuses a name that is not (GNU tar ignores the
	// record, with a warning, and takes the bytes as they are).
	for _, s := range []string{name, link, m.Uname, m.Gname, string(m.Path)} {
		if !utf8.ValidString(s) {
			recs = append(recs, paxRec{"hdrcharset", "BINARY"})
			break
		}
	}
	slices.SortFunc(recs, func(a, b paxRec) int { return strings.Compare(a.k, b.k) })
	recs = append(recs, last...)

	num := func(v uint64, max uint64) uint64 {
		if v > max {
			return 0
		}
		return v
	}
	mtime := uint64(0)
	if mt.Set && mt.Sec >= 0 && mt.Sec <= max11 {
		mtime = uint64(mt.Sec)
	}
	hdr := ustarBlock(tf)
	field(hdr[0:100], ascii(name))
	field(hdr[100:108], octal(uint64(m.Mode), 8))
	field(hdr[108:116], octal(num(m.UID, max7), 8))
	field(hdr[116:124], octal(num(m.GID, max7), 8))
	field(hdr[124:136], octal(num(uint64(size), max11), 12))
	field(hdr[136:148], octal(mtime, 12))
	field(hdr[157:257], ascii(link))
	field(hdr[265:297], ascii(m.Uname))
	field(hdr[297:329], ascii(m.Gname))
	field(hdr[329:337], octal(m.DevMajor, 8))
	field(hdr[337:345], octal(m.DevMinor, 8))
	hdr.SetChecksum()
	if len(recs) == 0 {
		return hdr[:], nil
	}

	var pax strings.Builder
	for _, r := range recs {
		pax.WriteString(paxRecord(r.k, r.v))
	}
	// The pax header is named after the path, even for a sparse file's
	// stub name: GNU tar does not read some sparse files whose pax
	// header is named inside GNUSparseFile.0/.
	dir, base := "", path
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		dir, base = path[:i+1], path[i+1:]
	}
	var xh format.Block
	xh[156] = 'x'
	copy(xh[257:265], "ustar\x0000")
	field(xh[0:100], strings.TrimRight(truncate(ascii(dir+"PaxHeaders.0/"+base), 100), "/"))
	field(xh[100:108], octal(0, 8))
	field(xh[108:116], octal(0, 8))
	field(xh[116:124], octal(0, 8))
	field(xh[124:136], octal(uint64(pax.Len()), 12))
	field(xh[136:148], octal(0, 12))
	xh.SetChecksum()
	out := make([]byte, 0, 2*format.BlockSize+pax.Len()+format.BlockSize)
	out = append(out, xh[:]...)
	out = append(out, pax.String()...)
	out = append(out, make([]byte, format.PadLen(int64(pax.Len())))...)
	return append(out, hdr[:]...), nil
}

func writeSynthesized(w io.Writer, m *format.Member, content io.Reader) error {
	if m.Meta.Sparse != nil {
		return writeSparse(w, m, content)
	}
	meta := m.Meta
	size := int64(0)
	if meta.Type == format.TypeRegular {
		size = meta.Size
	}
	h, err := synthHeader(meta, string(meta.Path), size, nil)
	if err != nil {
		return plainTarErr(m, err)
	}
	if _, err := w.Write(h); err != nil {
		return err
	}
	n, err := io.Copy(w, content)
	if err != nil {
		return memberErr(m, err)
	}
	if n != size {
		return plainTarErr(m, fmt.Errorf("content of %d bytes, its size field says %d", n, size))
	}
	return writeZeros(w, format.PadLen(size))
}

// plainTarErr classifies a member that has no plain tar form (a size that
// disagrees with its content, a name tar cannot hold) as a member
// problem, unless the error is already the archive reader's.
func plainTarErr(m *format.Member, err error) error {
	var fe *format.Error
	if errors.As(err, &fe) {
		return err
	}
	return &format.Error{Class: format.ClassMember, Offset: m.PhysOffset, Member: int64(m.Number),
		Path: string(m.Meta.Path), What: "cannot be written as a plain tar entry", Err: err}
}

// writeSparse writes a sparse member in the GNU pax sparse format 1.0,
// which GNU tar, bsdtar and Go extract with holes: GNU.sparse.* records
// after the other pax records, the map in front of the data.
func writeSparse(w io.Writer, m *format.Member, content io.Reader) error {
	meta := m.Meta
	if meta.Type != format.TypeRegular {
		return plainTarErr(m, fmt.Errorf("a sparse %s", meta.Type))
	}
	ext := meta.Sparse
	// A map that stops short of the size ends with a zero-length extent
	// at the size, as GNU tar writes it: GNU tar extends the file to the
	// last extent's end, so without it a trailing hole would be lost.
	if n := len(ext); n == 0 || ext[n-1].Offset+ext[n-1].Length < meta.Size {
		ext = append(slices.Clip(ext), format.Extent{Offset: meta.Size})
	}
	var mp bytes.Buffer
	mp.WriteString(strconv.Itoa(len(ext)) + "\n")
	var data int64
	for _, e := range ext {
		mp.WriteString(strconv.FormatInt(e.Offset, 10) + "\n" + strconv.FormatInt(e.Length, 10) + "\n")
		data += e.Length
	}
	mp.Write(make([]byte, format.PadLen(int64(mp.Len()))))
	size := int64(mp.Len()) + data
	name := string(meta.Path)
	// The sparse records come last: GNU tar applies records in order,
	// and GNU.sparse.name must win over path.
	h, err := synthHeader(meta, sparseStubName(name), size, []paxRec{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"},
		{"GNU.sparse.name", name}, {"GNU.sparse.realsize", strconv.FormatInt(meta.Size, 10)}})
	if err != nil {
		return plainTarErr(m, err)
	}
	if _, err := w.Write(h); err != nil {
		return err
	}
	if _, err := w.Write(mp.Bytes()); err != nil {
		return err
	}
	n, err := io.Copy(w, content)
	if err != nil {
		return memberErr(m, err)
	}
	if n != data {
		return plainTarErr(m, fmt.Errorf("sparse content of %d bytes, its extents hold %d", n, data))
	}
	return writeZeros(w, format.PadLen(size))
}

// ustarBlock starts a POSIX ustar header block.
func ustarBlock(typeflag byte) *format.Block {
	var b format.Block
	b[156] = typeflag
	copy(b[257:263], "ustar\x00")
	copy(b[263:265], "00")
	copy(b[329:337], octal(0, 8))
	copy(b[337:345], octal(0, 8))
	return &b
}

func truncate(s string, n int) string { return s[:min(len(s), n)] }

// octal formats a numeric field: zero-padded octal digits and a NUL.
func octal(v uint64, width int) string { return fmt.Sprintf("%0*o\x00", width-1, v) }

// paxRecord formats one pax record, "<length> <key>=<value>\n", where the
// length counts the whole record, its own digits included.
func paxRecord(k, v string) string {
	n := len(k) + len(v) + 3
	n += len(strconv.Itoa(n))
	r := strconv.Itoa(n) + " " + k + "=" + v + "\n"
	if len(r) != n {
		r = strconv.Itoa(len(r)) + " " + k + "=" + v + "\n"
	}
	return r
}

// paxTime formats a time as pax does: seconds, and a fraction when there
// are nanoseconds.
func paxTime(t format.Time) string {
	sec, ns := t.Sec, int64(t.Nsec)
	if ns == 0 {
		return strconv.FormatInt(sec, 10)
	}
	sign := ""
	if sec < 0 {
		// -1.25 is 1.25 seconds before the epoch: sec -2, ns 0.75e9.
		sign, sec, ns = "-", -(sec + 1), 1e9-ns
	}
	return strings.TrimRight(fmt.Sprintf("%s%d.%09d", sign, sec, ns), "0")
}

// sparseStubName is the name GNU tar gives the header of a pax sparse
// file, for readers that do not know the format: dir/GNUSparseFile.0/base.
func sparseStubName(name string) string {
	dir, base := "", name
	if i := bytes.LastIndexByte([]byte(name), '/'); i >= 0 {
		dir, base = name[:i+1], name[i+1:]
	}
	return dir + "GNUSparseFile.0/" + base
}

// ctxReader stops a conversion at the next read once ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := context.Cause(c.ctx); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
