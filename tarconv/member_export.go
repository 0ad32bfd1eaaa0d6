package tarconv

import (
	"io"

	"github.com/cbfs/cbfs/format"
)

// WriteMember writes member e of a, read by random access, as one whole
// plain tar entry: the bytes export writes for it, less what belongs to
// its neighbours. An imported member's header bytes start with the
// padding owed by the entry before it in its own tar; that is left out,
// and its data is padded here to a whole block. A member that was not
// imported gets the header of archive spec 7.6. Every byte read is
// authenticated; on an error the entry written so far is incomplete.
func WriteMember(w io.Writer, a *format.Archive, e format.Entry) error {
	m, err := a.Meta(e)
	if err != nil {
		return err
	}
	if m.TarHeader == nil {
		return writeSynthesizedAt(w, a, e, m)
	}
	raw := m.TarHeader[len(m.TarHeader)%format.BlockSize:]
	if _, err := w.Write(raw); err != nil {
		return err
	}
	cw := &countWriter{w: w}
	if err := a.Content(e, cw); err != nil {
		return err
	}
	return writeZeros(w, format.PadLen(cw.n))
}

// WriteStreamMember writes member m, whose content is read from content,
// as WriteMember writes it: an imported member's header bytes and
// content, anything else as export synthesises it.
func WriteStreamMember(w io.Writer, m *format.Member, content io.Reader) error {
	if m.Meta.TarHeader == nil {
		return writeSynthesized(w, m, content)
	}
	raw := m.Meta.TarHeader[len(m.Meta.TarHeader)%format.BlockSize:]
	if _, err := w.Write(raw); err != nil {
		return err
	}
	n, err := io.Copy(w, content)
	if err != nil {
		return memberErr(m, err)
	}
	return writeZeros(w, format.PadLen(n))
}

// WriteMemberAs writes the regular file member e of a as a regular file
// entry named path, with a header of archive spec 7.6 and the file's
// content as tar would extract it: what a hard link becomes when the
// file it linked to is not in the output.
func WriteMemberAs(w io.Writer, a *format.Archive, e format.Entry, path []byte) error {
	m, err := a.Meta(e)
	if err != nil {
		return err
	}
	fm := *m
	fm.Path, fm.TarHeader, fm.Sparse, fm.Link = path, nil, nil, nil
	fm.Type, fm.Typeflag = format.TypeRegular, 0
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(WriteContent(a, e, pw)) }()
	defer pr.Close()
	return writeSynthesized(w, &format.Member{Number: e.Number, Meta: &fm}, pr)
}

// writeSynthesizedAt is writeSynthesized for a member read by random
// access.
func writeSynthesizedAt(w io.Writer, a *format.Archive, e format.Entry, m *format.Meta) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(a.Content(e, pw)) }()
	defer pr.Close()
	return writeSynthesized(w, &format.Member{Number: e.Number, Meta: m}, pr)
}
