package convert

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"

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
			if errors.As(aerr, &te) {
				return fail(te)
			}
			return fail(aerr)
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
		default:
			if err := writeZeros(bw, pad); err != nil {
				return err
			}
			pad = 0
			if err := writeSynthesized(tw, m, r); err != nil {
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
		for _, x := range m.Xattrs {
			h.PAXRecords["SCHILY.xattr."+x.Name] = string(x.Value)
		}
	}
	return h, nil
}

func writeSynthesized(tw *tar.Writer, m *format.Member, content io.Reader) error {
	if m.Meta.Type == format.TypeTombstone {
		// A deletion is not a file: a plain tar has nothing to say about it.
		_, err := io.Copy(io.Discard, content)
		return err
	}
	if len(m.Meta.Sparse) > 0 {
		return writeSparse(tw, m, content)
	}
	h, err := TarHeader(m.Meta)
	if err != nil {
		return memberErr(m, err)
	}
	if err := tw.WriteHeader(h); err != nil {
		return memberErr(m, err)
	}
	if _, err := io.Copy(tw, content); err != nil {
		return memberErr(m, err)
	}
	return tw.Flush()
}

// writeSparse writes a sparse member in the GNU pax sparse format 1.0,
// which GNU tar and bsdtar extract with holes: the map in front of the
// data, GNU.sparse.* records in the pax header.
func writeSparse(tw *tar.Writer, m *format.Member, content io.Reader) error {
	var mp bytes.Buffer
	mp.WriteString(strconv.Itoa(len(m.Meta.Sparse)) + "\n")
	var data int64
	for _, e := range m.Meta.Sparse {
		mp.WriteString(strconv.FormatInt(e.Offset, 10) + "\n" + strconv.FormatInt(e.Length, 10) + "\n")
		data += e.Length
	}
	if pad := mp.Len() % format.BlockSize; pad != 0 {
		mp.Write(make([]byte, format.BlockSize-pad))
	}
	h, err := TarHeader(m.Meta)
	if err != nil {
		return memberErr(m, err)
	}
	if h.PAXRecords == nil {
		h.PAXRecords = map[string]string{}
	}
	h.PAXRecords["GNU.sparse.major"] = "1"
	h.PAXRecords["GNU.sparse.minor"] = "0"
	h.PAXRecords["GNU.sparse.name"] = h.Name
	h.PAXRecords["GNU.sparse.realsize"] = strconv.FormatInt(m.Meta.Size, 10)
	h.Name = sparseStubName(h.Name)
	h.Size = int64(mp.Len()) + data
	if err := tw.WriteHeader(h); err != nil {
		return memberErr(m, err)
	}
	if _, err := tw.Write(mp.Bytes()); err != nil {
		return memberErr(m, err)
	}
	if _, err := io.Copy(tw, content); err != nil {
		return memberErr(m, err)
	}
	return tw.Flush()
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
