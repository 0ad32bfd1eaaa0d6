package convert

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"

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
func ImportTar(dst io.Writer, src io.Reader, key *crypt.Key, opt format.WriterOptions) (*ImportStats, error) {
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
			switch {
			case errors.As(aerr, &te):
				return fail(te)
			case errors.As(aerr, &oe):
				return fail(aerr)
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

// ExportTar writes a CBFS archive read from src to dst as a plain tar. An
// imported member's header bytes come back verbatim; a member written by
// pack or the Go API gets a pax header. The archive is verified to its
// last byte: ExportTar returns nil only when everything checked out, so a
// caller writing to a file must discard the file on error.
func ExportTar(dst io.Writer, src io.Reader, key *crypt.Key) error {
	r, err := format.NewReader(src, key, format.ReaderOptions{})
	if err != nil {
		return err
	}
	defer r.Close()
	bw := bufio.NewWriterSize(dst, 1<<20)
	tw := tar.NewWriter(bw)
	var pad int64 // zero padding owed by the last imported entry
	trailer := false
	for {
		m, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		meta := m.Meta
		switch {
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
			if err := writeSynthesized(tw, bw, m, r); err != nil {
				return err
			}
		}
	}
	if !trailer {
		if err := writeZeros(bw, pad); err != nil {
			return err
		}
		if err := tw.Close(); err != nil {
			return err
		}
	}
	return bw.Flush()
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

// TarHeader builds the pax header of a member that was not imported.
func TarHeader(m *format.Meta) (*tar.Header, error) {
	h := &tar.Header{
		Name:     string(m.Path),
		Linkname: string(m.Link),
		Mode:     int64(m.Mode),
		Uid:      int(m.UID),
		Gid:      int(m.GID),
		Uname:    m.Uname,
		Gname:    m.Gname,
		ModTime:  m.MTime.Go(),
		Devmajor: int64(m.DevMajor),
		Devminor: int64(m.DevMinor),
		Format:   tar.FormatPAX,
	}
	if m.ATime.Set {
		h.AccessTime = m.ATime.Go()
	}
	if m.CTime.Set {
		h.ChangeTime = m.CTime.Go()
	}
	switch m.Type {
	case format.TypeRegular:
		h.Typeflag, h.Size = tar.TypeReg, m.Size
	case format.TypeDir:
		h.Typeflag = tar.TypeDir
	case format.TypeSymlink:
		h.Typeflag = tar.TypeSymlink
	case format.TypeHardlink:
		h.Typeflag = tar.TypeLink
	case format.TypeChar:
		h.Typeflag = tar.TypeChar
	case format.TypeBlock:
		h.Typeflag = tar.TypeBlock
	case format.TypeFifo:
		h.Typeflag = tar.TypeFifo
	default:
		return nil, fmt.Errorf("a %s member has no plain tar form", m.Type)
	}
	if len(m.Xattrs) > 0 {
		h.PAXRecords = make(map[string]string, len(m.Xattrs))
		for _, r := range xattrRecords(m.Xattrs) {
			h.PAXRecords[r[0]] = r[1]
		}
	}
	return h, nil
}

// xattrRecords are the pax records of a member's xattrs, as GNU tar
// writes them with --xattrs --acls: SCHILY.xattr.<name> for each, and
// for a POSIX ACL also its text in SCHILY.acl.access or .default, from
// which GNU tar --acls restores it.
func xattrRecords(xs []format.Xattr) [][2]string {
	var out [][2]string
	for _, x := range xs {
		if k, ok := aclRecords[x.Name]; ok {
			if text, ok := aclText(x.Value); ok {
				out = append(out, [2]string{k, text})
			}
		}
		out = append(out, [2]string{"SCHILY.xattr." + x.Name, string(x.Value)})
	}
	return out
}

func writeSynthesized(tw *tar.Writer, raw io.Writer, m *format.Member, content io.Reader) error {
	if m.Meta.Sparse != nil {
		if err := tw.Flush(); err != nil {
			return err
		}
		return writeSparse(raw, m, content)
	}
	h, err := TarHeader(m.Meta)
	if err != nil {
		return plainTarErr(m, err)
	}
	if err := tw.WriteHeader(h); err != nil {
		return plainTarErr(m, err)
	}
	if _, err := io.Copy(tw, content); err != nil {
		return plainTarErr(m, err)
	}
	if err := tw.Flush(); err != nil {
		return plainTarErr(m, err)
	}
	return nil
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
// which GNU tar, bsdtar and Go extract with holes: GNU.sparse.* records in
// the pax header, the map in front of the data. Go's tar.Writer drops
// GNU.sparse.* records, so the pax header and the main header are built
// here and written to w directly; tw has no entry open at this point.
func writeSparse(w io.Writer, m *format.Member, content io.Reader) error {
	meta := m.Meta
	if meta.Type != format.TypeRegular {
		return memberErr(m, fmt.Errorf("a sparse %s", meta.Type))
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
	mp.Write(make([]byte, padLen(int64(mp.Len()))))
	size := int64(mp.Len()) + data

	name := string(meta.Path)
	stub := sparseStubName(name)
	var recs []string
	hdr := ustarBlock('0')
	if !putName(hdr, stub) {
		recs = append(recs, paxRecord("path", stub))
	}
	copy(hdr[100:108], octal(int64(meta.Mode), 8))
	for i, id := range []uint64{meta.UID, meta.GID} {
		if id > 0o7777777 {
			recs = append(recs, paxRecord([]string{"uid", "gid"}[i], strconv.FormatUint(id, 10)))
			id = 0
		}
		copy(hdr[108+8*i:116+8*i], octal(int64(id), 8))
	}
	if size > 0o77777777777 {
		recs = append(recs, paxRecord("size", strconv.FormatInt(size, 10)))
		copy(hdr[124:136], octal(0, 12))
	} else {
		copy(hdr[124:136], octal(size, 12))
	}
	mtime := int64(0)
	if meta.MTime.Set && meta.MTime.Sec >= 0 && meta.MTime.Sec <= 0o77777777777 {
		mtime = meta.MTime.Sec
	}
	copy(hdr[136:148], octal(mtime, 12))
	for i, t := range []format.Time{meta.MTime, meta.ATime, meta.CTime} {
		if t.Set {
			recs = append(recs, paxRecord([]string{"mtime", "atime", "ctime"}[i], paxTime(t)))
		}
	}
	for i, n := range []string{meta.Uname, meta.Gname} {
		if len(n) > 31 {
			recs = append(recs, paxRecord([]string{"uname", "gname"}[i], n))
			n = n[:31]
		}
		copy(hdr[265+32*i:297+32*i], n)
	}
	for _, r := range xattrRecords(meta.Xattrs) {
		recs = append(recs, paxRecord(r[0], r[1]))
	}
	// The sparse records come last: GNU tar applies records in order,
	// and GNU.sparse.name must win over path.
	recs = append(recs, paxRecord("GNU.sparse.major", "1"), paxRecord("GNU.sparse.minor", "0"),
		paxRecord("GNU.sparse.name", name), paxRecord("GNU.sparse.realsize", strconv.FormatInt(meta.Size, 10)))
	hdr.SetChecksum()
	pax := strings.Join(recs, "")

	dir, base := path.Split(name)
	xh := ustarBlock('x')
	putName(xh, truncate(dir+"PaxHeaders.0/"+base, 100))
	copy(xh[100:108], octal(0o644, 8))
	copy(xh[108:116], octal(0, 8))
	copy(xh[116:124], octal(0, 8))
	copy(xh[124:136], octal(int64(len(pax)), 12))
	copy(xh[136:148], octal(mtime, 12))
	xh.SetChecksum()

	out := make([]byte, 0, 3*format.BlockSize+len(pax)+mp.Len())
	out = append(out, xh[:]...)
	out = append(out, pax...)
	out = append(out, make([]byte, padLen(int64(len(pax))))...)
	out = append(out, hdr[:]...)
	out = append(out, mp.Bytes()...)
	if _, err := w.Write(out); err != nil {
		return err
	}
	n, err := io.Copy(w, content)
	if err != nil {
		return memberErr(m, err)
	}
	if n != data {
		return memberErr(m, fmt.Errorf("sparse content of %d bytes, its extents hold %d", n, data))
	}
	_, err = w.Write(make([]byte, padLen(size)))
	return err
}

func padLen(n int64) int64 { return (format.BlockSize - n%format.BlockSize) % format.BlockSize }

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

// putName stores name in the name field, or split over the prefix and
// name fields; false if it fits neither way.
func putName(b *format.Block, name string) bool {
	if len(name) <= 100 {
		copy(b[0:100], name)
		return true
	}
	for i := min(len(name)-1, 155); i > 0; i-- {
		if name[i] == '/' && len(name)-i-1 <= 100 && i < len(name)-1 {
			copy(b[345:500], name[:i])
			copy(b[0:100], name[i+1:])
			return true
		}
	}
	copy(b[0:100], name[:100])
	return false
}

func truncate(s string, n int) string { return s[:min(len(s), n)] }

// octal formats a numeric field: zero-padded octal digits and a NUL.
func octal(v int64, width int) string { return fmt.Sprintf("%0*o\x00", width-1, v) }

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
