package format

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cbfs/cbfs/crypt"
)

// Suite is the cipher suite of an archive. v1 defines exactly one.
const SuiteAES256GCM uint8 = 1

var (
	headerMagic = []byte("CBFSARCH")
	footerMagic = []byte("CBFSFOOT")
)

// HeaderSize is the payload size of an archive header frame.
const HeaderSize = 8 + 4 + 4 + 4 + crypt.IDSize + 8 + crypt.CheckSize + crypt.MACSize

// Header is the archive header: everything a reader needs before the
// first member, in clear, authenticated by its MAC.
type Header struct {
	Major, Minor uint8
	Suite        uint8
	ChunkSize    uint32
	RecordSize   uint32
	ID           [crypt.IDSize]byte
	Sequence     uint64
	Check        [crypt.CheckSize]byte
	MAC          [crypt.MACSize]byte
}

// macInput is the header without its MAC.
func (h *Header) encodeNoMAC() []byte {
	b := make([]byte, 0, HeaderSize)
	b = append(b, headerMagic...)
	b = append(b, h.Major, h.Minor, h.Suite, 0)
	b = binary.LittleEndian.AppendUint32(b, h.ChunkSize)
	b = binary.LittleEndian.AppendUint32(b, h.RecordSize)
	b = append(b, h.ID[:]...)
	b = binary.LittleEndian.AppendUint64(b, h.Sequence)
	b = append(b, h.Check[:]...)
	return b
}

// Encode returns the header frame payload.
func (h *Header) Encode() []byte { return append(h.encodeNoMAC(), h.MAC[:]...) }

// DecodeHeader parses a header frame payload. It checks the magic, the
// major version and the ranges of every field; it does not check the MAC,
// which needs the key (see Header.Authenticate).
func DecodeHeader(p []byte) (*Header, error) {
	if len(p) < 10 || !bytes.Equal(p[:8], headerMagic) {
		// Record 0 was recognised as CBFS (spec 6.1 step 1): another
		// magic there is damage.
		return nil, newErr(ClassHeader, -1, -1, "damaged CBFS archive header: the header magic is not CBFSARCH")
	}
	h := &Header{Major: p[8], Minor: p[9]}
	if h.Major != Major {
		return nil, &VersionError{h.Major, h.Minor}
	}
	if len(p) != HeaderSize {
		return nil, newErr(ClassHeader, -1, -1, "header is %d bytes, want %d", len(p), HeaderSize)
	}
	h.Suite = p[10]
	if p[11] != 0 {
		return nil, newErr(ClassHeader, -1, -1, "reserved header byte is not zero")
	}
	if h.Suite != SuiteAES256GCM {
		return nil, newErr(ClassHeader, -1, -1, "unknown cipher suite %d", h.Suite)
	}
	h.ChunkSize = binary.LittleEndian.Uint32(p[12:16])
	h.RecordSize = binary.LittleEndian.Uint32(p[16:20])
	if err := checkSizes(h.ChunkSize, h.RecordSize); err != nil {
		return nil, err
	}
	o := 20
	o += copy(h.ID[:], p[o:])
	h.Sequence = binary.LittleEndian.Uint64(p[o:])
	o += 8
	o += copy(h.Check[:], p[o:])
	copy(h.MAC[:], p[o:])
	return h, nil
}

func checkSizes(chunk, record uint32) error {
	if chunk < MinChunkSize || chunk > MaxChunkSize || chunk&(chunk-1) != 0 {
		return newErr(ClassHeader, -1, -1, "chunk size %d is not a power of two in [%d, %d]", chunk, MinChunkSize, MaxChunkSize)
	}
	if record < MinRecordSize || record > MaxRecordSize || record%BlockSize != 0 {
		return newErr(ClassHeader, -1, -1, "record size %d is not a multiple of %d in [%d, %d]", record, BlockSize, MinRecordSize, MaxRecordSize)
	}
	return nil
}

// pickKeys derives the archive keys of the first of keys whose key check
// value the header carries, as age's Decrypt picks among identities: a
// reader may be handed the keys of several file systems, or an old and a
// new key. Nil keys are skipped; with none left it returns nil keys (read
// without the key), and ErrWrongKey when no key matches.
func (h *Header) pickKeys(keys []*crypt.Key) (*crypt.ArchiveKeys, error) {
	tried := false
	for _, k := range keys {
		if k == nil {
			continue
		}
		tried = true
		if ak := crypt.DeriveArchiveKeys(k, h.ID); ak.CheckMatches(h.Check[:]) {
			return ak, nil
		}
	}
	if tried {
		return nil, ErrWrongKey
	}
	return nil, nil
}

// Authenticate checks the key check value (a wrong key gives ErrWrongKey)
// and then the header MAC (a mismatch is damage).
func (h *Header) Authenticate(ak *crypt.ArchiveKeys) error {
	if !ak.CheckMatches(h.Check[:]) {
		return ErrWrongKey
	}
	if !ak.MACMatches(h.MAC[:], h.encodeNoMAC()) {
		return newErr(ClassHeader, BlockSize, -1, "header MAC mismatch: the header was changed")
	}
	return nil
}

// FooterSize is the payload size of a footer frame: its own fields, a
// copy of the header payload, the MAC.
const FooterSize = footerHeaderAt + HeaderSize + crypt.MACSize

// footerHeaderAt is where the footer's copy of the header payload starts:
// after the magic, versions, archive id, five counts and the digest.
const footerHeaderAt = 8 + 4 + crypt.IDSize + 8*5 + 32

// Footer ends every archive. A reader finds it from the end of the
// archive, then the summary from it.
type Footer struct {
	Major, Minor  uint8
	ID            [crypt.IDSize]byte
	Members       uint64 // number of members
	SummaryOffset uint64 // logical offset of the first summary frame
	SummaryLength uint64 // logical length of the summary frames
	StreamLength  uint64 // logical length of the whole frame stream
	FooterOffset  uint64 // physical offset of the footer record's tar header
	Digest        [32]byte
	// Header is a copy of the archive header (record 0's payload, its
	// MAC included), so that a reader at the end of the archive, such
	// as one range request to an object store, has all it needs
	// without reading record 0 (spec 6.2, 8.2).
	Header Header
	MAC    [crypt.MACSize]byte
}

func (f *Footer) encodeNoMAC() []byte {
	b := make([]byte, 0, FooterSize)
	b = append(b, footerMagic...)
	b = append(b, f.Major, f.Minor, 0, 0)
	b = append(b, f.ID[:]...)
	for _, v := range []uint64{f.Members, f.SummaryOffset, f.SummaryLength, f.StreamLength, f.FooterOffset} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	b = append(b, f.Digest[:]...)
	return append(b, f.Header.Encode()...)
}

// Encode returns the footer frame payload.
func (f *Footer) Encode() []byte { return append(f.encodeNoMAC(), f.MAC[:]...) }

// DecodeFooter parses a footer frame payload and checks that its fields
// are consistent with each other and with the header's record size.
func DecodeFooter(p []byte) (*Footer, error) {
	if len(p) < 10 || !bytes.Equal(p[:8], footerMagic) {
		return nil, newErr(ClassFooter, -1, -1, "bad footer magic")
	}
	f := &Footer{Major: p[8], Minor: p[9]}
	if f.Major != Major {
		// The header decides the version (spec 9): a footer of another
		// major in a version 1 archive is damage.
		return nil, newErr(ClassFooter, -1, -1, "footer major version %d in a version %d archive", f.Major, Major)
	}
	if len(p) != FooterSize {
		return nil, newErr(ClassFooter, -1, -1, "footer is %d bytes, want %d", len(p), FooterSize)
	}
	if p[10] != 0 || p[11] != 0 {
		return nil, newErr(ClassFooter, -1, -1, "reserved footer bytes are not zero")
	}
	o := 12
	o += copy(f.ID[:], p[o:])
	vals := []*uint64{&f.Members, &f.SummaryOffset, &f.SummaryLength, &f.StreamLength, &f.FooterOffset}
	for _, v := range vals {
		*v = binary.LittleEndian.Uint64(p[o:])
		o += 8
	}
	o += copy(f.Digest[:], p[o:])
	h, err := DecodeHeader(p[o : o+HeaderSize])
	if err != nil {
		// Damage or another major in the copy, in a v1 footer.
		what := err.Error()
		var fe *Error
		var ve *VersionError
		if errors.As(err, &fe) {
			what = fe.What
		} else if errors.As(err, &ve) {
			what = fmt.Sprintf("major version %d in a version %d footer", ve.Major, Major)
		}
		return nil, newErr(ClassFooter, -1, -1, "the footer's copy of the archive header: %s", what)
	}
	o += HeaderSize
	f.Header = *h
	copy(f.MAC[:], p[o:])
	switch {
	case h.ID != f.ID:
		return nil, newErr(ClassFooter, -1, -1, "the footer's copy of the archive header names archive %x, the footer %x", h.ID, f.ID)
	case h.Minor != f.Minor:
		return nil, newErr(ClassFooter, -1, -1, "the footer's copy of the archive header is of version 1.%d, the footer of 1.%d", h.Minor, f.Minor)
	}
	if f.Members > MaxMembers {
		return nil, newErr(ClassFooter, -1, -1, "member count %d over the cap %d", f.Members, uint64(MaxMembers))
	}
	if f.SummaryOffset > f.StreamLength || f.SummaryLength != f.StreamLength-f.SummaryOffset || f.SummaryLength < FrameHeaderSize+crypt.TagSize {
		return nil, newErr(ClassFooter, -1, -1, "summary offset %d and length %d do not fit a stream of %d bytes", f.SummaryOffset, f.SummaryLength, f.StreamLength)
	}
	return f, nil
}

// Authenticate checks the footer MAC.
func (f *Footer) Authenticate(ak *crypt.ArchiveKeys) bool {
	return ak.MACMatches(f.MAC[:], f.encodeNoMAC())
}

// KeyOf returns the first of keys whose key check value the header
// carries, or nil: which of several keys an archive was written under.
// It does not authenticate the header.
func (h *Header) KeyOf(keys ...*crypt.Key) *crypt.Key {
	for _, k := range keys {
		if k != nil && crypt.DeriveArchiveKeys(k, h.ID).CheckMatches(h.Check[:]) {
			return k
		}
	}
	return nil
}
