package format

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Type is a member's type (spec "Member types").
type Type uint8

const (
	TypeRegular   Type = 1
	TypeDir       Type = 2
	TypeSymlink   Type = 3
	TypeHardlink  Type = 4
	TypeChar      Type = 5
	TypeBlock     Type = 6
	TypeFifo      Type = 7
	TypeTombstone Type = 8  // a deletion: the path is no longer live
	TypeTarGlobal Type = 9  // an imported pax global header ('g')
	TypeTarOther  Type = 10 // an imported entry of another tar type
	TypeTrailer   Type = 11 // the bytes after an imported tar's last entry
	// TypeReplaces is a compacted archive's first member: the archives
	// whose current members it holds copies of (spec 7.7).
	TypeReplaces Type = 12
	maxType           = TypeReplaces
)

var typeNames = [...]string{"", "file", "dir", "symlink", "hardlink", "char", "block", "fifo", "tombstone", "tar-global", "tar-other", "tar-trailer", "replaces"}

func (t Type) String() string {
	if int(t) < len(typeNames) && t != 0 {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Field tags of a metadata record (spec "Metadata record"). Tags appear in
// increasing order, each at most once. Tags below 64 are critical: a
// reader that does not know one rejects the record; tags from 64 up may
// be skipped.
const (
	tagType      = 1
	tagPath      = 2
	tagLink      = 3
	tagMode      = 4
	tagUID       = 5
	tagGID       = 6
	tagUname     = 7
	tagGname     = 8
	tagMTime     = 9
	tagATime     = 10
	tagCTime     = 11
	tagDevMajor  = 12
	tagDevMinor  = 13
	tagSize      = 14
	tagInode     = 15
	tagSparse    = 16
	tagXattrs    = 17
	tagTarHeader = 18
	// Tag 19 is reserved: never written, rejected by readers.
	tagTypeflag      = 20
	tagReplaces      = 21
	firstOptionalTag = 64
)

// Caps on metadata fields.
const (
	MaxPathLen       = 64 << 10
	MaxNameLen       = 256 // uname, gname
	MaxXattrs        = 1 << 16
	MaxXattrBytes    = 1 << 20
	MaxSparseExtents = 1 << 20
	// MaxTarHeaderLen caps an imported entry's raw header bytes: a pax
	// header of up to 64 MiB (GNU tar's sparse formats 0.0 and 0.1 keep
	// the sparse map there: 4.7 MB for 80,000 extents in 0.0) and 4 MiB
	// for the rest (long names, sparse extension blocks).
	MaxTarHeaderLen = 68 << 20
	// MaxReplaces caps the archives one replaces record lists (spec 7.7):
	// at 17 to 26 bytes each, well within MaxMetaSize.
	MaxReplaces = 1 << 20
)

// Replaced is one archive a compacted archive replaces: its id and its
// sequence number.
type Replaced struct {
	ID  [16]byte
	Seq uint64
}

// Time is a timestamp with nanoseconds. The zero value means "absent".
type Time struct {
	Sec  int64
	Nsec uint32
	Set  bool
}

// TimeOf converts a time.Time.
func TimeOf(t time.Time) Time {
	return Time{Sec: t.Unix(), Nsec: uint32(t.Nanosecond()), Set: true}
}

// Go returns the time as a time.Time (zero if absent).
func (t Time) Go() time.Time {
	if !t.Set {
		return time.Time{}
	}
	return time.Unix(t.Sec, int64(t.Nsec))
}

// Extent is one data segment of a sparse member.
type Extent struct {
	Offset, Length int64
}

// Xattr is one extended attribute.
type Xattr struct {
	Name  string
	Value []byte
}

// Meta is a member's metadata record.
type Meta struct {
	Type     Type
	Path     []byte
	Link     []byte
	Mode     uint32 // permission and set-id/sticky bits (07777)
	UID, GID uint64
	Uname    string
	Gname    string
	MTime    Time
	ATime    Time
	CTime    Time
	DevMajor uint64
	DevMinor uint64
	// Size is the logical size of the file: for a sparse member its
	// apparent size, otherwise the length of its content.
	Size  int64
	Inode uint64
	// Sparse lists the data extents of a sparse member; the content is
	// their bytes, concatenated.
	Sparse []Extent
	Xattrs []Xattr
	// TarHeader holds an imported entry's bytes verbatim from the end of
	// the previous entry's data (so the previous entry's padding, whatever
	// it held) through its own main header block and any sparse extension
	// blocks, so that export writes them back byte for byte.
	TarHeader []byte
	// Typeflag is the tar typeflag of a TypeTarOther member.
	Typeflag byte
	// Replaces lists, on a TypeReplaces member, the archives a compacted
	// archive replaces, sorted by id.
	Replaces []Replaced
	// Optional holds fields with optional tags (64 and up) that this
	// version does not know, verbatim and in tag order, so that a record
	// from a later minor version re-encodes identically.
	Optional []Field
}

// Field is one raw metadata field.
type Field struct {
	Tag   byte
	Value []byte
}

// summaryOnly drops what the summary does not carry: xattrs and the
// verbatim tar bytes.
func (m *Meta) summaryOnly() *Meta {
	s := *m
	s.Xattrs, s.TarHeader = nil, nil
	return &s
}

// sameSummary reports whether m's summary form (summaryOnly) encodes as
// s does. Field by field first: when every field is equal, so are the
// encodings; when one differs, the encodings decide (a nil and an empty
// link, or a time that is not set, encode alike).
func (m *Meta) sameSummary(s *Meta) bool {
	if m.Type == s.Type && bytes.Equal(m.Path, s.Path) && bytes.Equal(m.Link, s.Link) && m.Mode == s.Mode && m.UID == s.UID &&
		m.GID == s.GID && m.Uname == s.Uname && m.Gname == s.Gname && m.MTime == s.MTime && m.ATime == s.ATime && m.CTime == s.CTime &&
		m.DevMajor == s.DevMajor && m.DevMinor == s.DevMinor && m.Size == s.Size && m.Inode == s.Inode &&
		(m.Sparse == nil) == (s.Sparse == nil) && slices.Equal(m.Sparse, s.Sparse) && len(s.Xattrs) == 0 && len(s.TarHeader) == 0 &&
		m.Typeflag == s.Typeflag && slices.Equal(m.Replaces, s.Replaces) &&
		slices.EqualFunc(m.Optional, s.Optional, func(a, b Field) bool { return a.Tag == b.Tag && bytes.Equal(a.Value, b.Value) }) {
		return true
	}
	return bytes.Equal(m.summaryOnly().Encode(nil), s.Encode(nil))
}

func appendField(b []byte, tag byte, val []byte) []byte {
	b = append(b, tag)
	b = binary.AppendUvarint(b, uint64(len(val)))
	return append(b, val...)
}

func appendUint(b []byte, tag byte, v uint64) []byte {
	var tmp [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(tmp[:], v)
	return appendField(b, tag, tmp[:n])
}

func appendTime(b []byte, tag byte, t Time) []byte {
	var tmp [2 * binary.MaxVarintLen64]byte
	n := binary.PutVarint(tmp[:], t.Sec)
	n += binary.PutUvarint(tmp[n:], uint64(t.Nsec))
	return appendField(b, tag, tmp[:n])
}

// Encode appends the canonical TLV encoding of m. Zero-valued fields are
// omitted, except the type and path.
func (m *Meta) Encode(b []byte) []byte { return m.encode(b, false) }

// encode appends m's encoding, or with summary set its summary form's
// (no xattrs, no verbatim tar bytes: summaryOnly's).
func (m *Meta) encode(b []byte, summary bool) []byte {
	if b == nil {
		b = make([]byte, 0, m.sizeHint())
	}
	b = appendUint(b, tagType, uint64(m.Type))
	b = appendField(b, tagPath, m.Path)
	if len(m.Link) > 0 {
		b = appendField(b, tagLink, m.Link)
	}
	if m.Mode != 0 {
		b = appendUint(b, tagMode, uint64(m.Mode))
	}
	if m.UID != 0 {
		b = appendUint(b, tagUID, m.UID)
	}
	if m.GID != 0 {
		b = appendUint(b, tagGID, m.GID)
	}
	if m.Uname != "" {
		b = appendField(b, tagUname, []byte(m.Uname))
	}
	if m.Gname != "" {
		b = appendField(b, tagGname, []byte(m.Gname))
	}
	if m.MTime.Set {
		b = appendTime(b, tagMTime, m.MTime)
	}
	if m.ATime.Set {
		b = appendTime(b, tagATime, m.ATime)
	}
	if m.CTime.Set {
		b = appendTime(b, tagCTime, m.CTime)
	}
	if m.DevMajor != 0 {
		b = appendUint(b, tagDevMajor, m.DevMajor)
	}
	if m.DevMinor != 0 {
		b = appendUint(b, tagDevMinor, m.DevMinor)
	}
	if m.Size != 0 {
		b = appendUint(b, tagSize, uint64(m.Size))
	}
	if m.Inode != 0 {
		b = appendUint(b, tagInode, m.Inode)
	}
	if m.Sparse != nil {
		v := binary.AppendUvarint(nil, uint64(len(m.Sparse)))
		for _, e := range m.Sparse {
			v = binary.AppendUvarint(v, uint64(e.Offset))
			v = binary.AppendUvarint(v, uint64(e.Length))
		}
		b = appendField(b, tagSparse, v)
	}
	if len(m.Xattrs) > 0 && !summary {
		v := binary.AppendUvarint(nil, uint64(len(m.Xattrs)))
		for _, x := range m.Xattrs {
			v = binary.AppendUvarint(v, uint64(len(x.Name)))
			v = append(v, x.Name...)
			v = binary.AppendUvarint(v, uint64(len(x.Value)))
			v = append(v, x.Value...)
		}
		b = appendField(b, tagXattrs, v)
	}
	if len(m.TarHeader) > 0 && !summary {
		b = appendField(b, tagTarHeader, m.TarHeader)
	}
	if m.Typeflag != 0 {
		b = appendField(b, tagTypeflag, []byte{m.Typeflag})
	}
	if len(m.Replaces) > 0 {
		b = appendField(b, tagReplaces, AppendReplaces(nil, m.Replaces))
	}
	for _, f := range m.Optional {
		b = appendField(b, f.Tag, f.Value)
	}
	return b
}

// sizeHint is at least the encoded size of m in the common case, so that
// Encode(nil) allocates once: fixed fields take at most 11 bytes each.
func (m *Meta) sizeHint() int {
	n := 16*11 + len(m.Path) + len(m.Link) + len(m.Uname) + len(m.Gname) + len(m.TarHeader) + 20*len(m.Sparse) + 27*len(m.Replaces)
	for _, x := range m.Xattrs {
		n += len(x.Name) + len(x.Value) + 20
	}
	for _, f := range m.Optional {
		n += len(f.Value) + 11
	}
	return n
}

// Validate checks the invariants a writer must keep and a reader enforces.
// maxValue caps sizes, offsets and lengths in metadata and the summary
// (spec 7.2), so that sums of two never overflow an int64.
const maxValue = 1 << 62

func (m *Meta) Validate() error {
	if m.Type == 0 || m.Type > maxType {
		return fmt.Errorf("unknown member type %d", m.Type)
	}
	if len(m.Path) > MaxPathLen || len(m.Link) > MaxPathLen {
		return fmt.Errorf("path or link target over %d bytes", MaxPathLen)
	}
	if len(m.Path) == 0 && m.Type == TypeTombstone {
		return errors.New("tombstone without a path")
	}
	if m.Mode > 0o7777 {
		return fmt.Errorf("mode %o has bits beyond 07777", m.Mode)
	}
	if len(m.Uname) > MaxNameLen || len(m.Gname) > MaxNameLen {
		return fmt.Errorf("user or group name over %d bytes", MaxNameLen)
	}
	for _, t := range []Time{m.MTime, m.ATime, m.CTime} {
		if t.Nsec >= 1e9 {
			return errors.New("nanoseconds out of range")
		}
	}
	if m.Size < 0 || m.Size > maxValue {
		return fmt.Errorf("size %d outside 0..2^62", m.Size)
	}
	if len(m.Sparse) > MaxSparseExtents {
		return fmt.Errorf("sparse map over %d extents", MaxSparseExtents)
	}
	var end int64
	for _, e := range m.Sparse {
		// Within the size, so within 2^62.
		if e.Offset < end || e.Length < 0 || e.Offset > m.Size || e.Length > m.Size-e.Offset {
			return errors.New("sparse extents overlap, are out of order, or pass the size")
		}
		end = e.Offset + e.Length
	}
	if len(m.Xattrs) > MaxXattrs {
		return fmt.Errorf("over %d xattrs", MaxXattrs)
	}
	total := 0
	for i, x := range m.Xattrs {
		if x.Name == "" {
			return errors.New("an xattr with an empty name")
		}
		if i > 0 && m.Xattrs[i-1].Name >= x.Name {
			return errors.New("xattrs not sorted by name, or a name repeats")
		}
		total += len(x.Name) + len(x.Value)
	}
	if total > MaxXattrBytes {
		return fmt.Errorf("xattrs over %d bytes", MaxXattrBytes)
	}
	if m.Typeflag != 0 && m.Type != TypeTarOther {
		return errors.New("typeflag on a member that is not tar-other")
	}
	if m.Type == TypeTarOther && m.Typeflag == 0 {
		return errors.New("a tar-other member without its typeflag")
	}
	for i, f := range m.Optional {
		if f.Tag < firstOptionalTag || (i > 0 && m.Optional[i-1].Tag >= f.Tag) {
			return errors.New("optional fields out of order or with critical tags")
		}
	}
	if len(m.TarHeader) > MaxTarHeaderLen {
		return fmt.Errorf("tar header bytes over the cap %d", MaxTarHeaderLen)
	}
	return m.checkReplaces()
}

// checkReplaces checks the rules of spec 7.7: a replaces record is that
// list and nothing else, and only it has one.
func (m *Meta) checkReplaces() error {
	if m.Type != TypeReplaces {
		if m.Replaces != nil {
			return errors.New("a replaces list on a member that is not a replaces record")
		}
		return nil
	}
	if len(m.Replaces) == 0 {
		return errors.New("a replaces record without its list")
	}
	if len(m.Replaces) > MaxReplaces {
		return fmt.Errorf("a replaces record of over %d archives", MaxReplaces)
	}
	for i := 1; i < len(m.Replaces); i++ {
		if bytes.Compare(m.Replaces[i-1].ID[:], m.Replaces[i].ID[:]) >= 0 {
			return errors.New("replaced archives not sorted by id, or an id repeats")
		}
	}
	z := Meta{Type: TypeReplaces, Replaces: m.Replaces}
	if len(m.Path) != 0 || len(m.Encode(nil)) != len(z.Encode(nil)) {
		return errors.New("a replaces record with fields besides its list")
	}
	return nil
}

// AppendReplaces appends the value of a replaces field (spec 7.7): the
// count, then each archive's id and sequence number.
func AppendReplaces(b []byte, rs []Replaced) []byte {
	b = binary.AppendUvarint(b, uint64(len(rs)))
	for _, r := range rs {
		b = append(b, r.ID[:]...)
		b = binary.AppendUvarint(b, r.Seq)
	}
	return b
}

// decodeReplaces parses a replaces field's value; order and the cap are
// Validate's.
func decodeReplaces(v []byte) ([]Replaced, error) {
	n, k := binary.Uvarint(v)
	if k <= 0 || (k > 1 && v[k-1] == 0) {
		return nil, errors.New("replaces: bad varint")
	}
	v = v[k:]
	// An entry takes at least 17 bytes: the count is not trusted beyond.
	if n == 0 || n > MaxReplaces || n > uint64(len(v))/17 {
		return nil, fmt.Errorf("replaces: count %d zero, over the cap or over the bytes present", n)
	}
	out := make([]Replaced, n)
	for i := range out {
		if len(v) < 17 {
			return nil, errors.New("replaces: entry cut short")
		}
		copy(out[i].ID[:], v)
		s, k := binary.Uvarint(v[16:])
		if k <= 0 || (k > 1 && v[16+k-1] == 0) {
			return nil, errors.New("replaces: bad varint")
		}
		out[i].Seq = s
		v = v[16+k:]
	}
	if len(v) != 0 {
		return nil, errors.New("replaces: bytes after the last entry")
	}
	return out, nil
}

type metaDecoder struct {
	b   []byte
	err error
}

func (d *metaDecoder) uvarint(v []byte) uint64 {
	x, n := binary.Uvarint(v)
	if n <= 0 || n != len(v) || (n > 1 && v[n-1] == 0) {
		d.fail("bad varint")
		return 0
	}
	return x
}

func (d *metaDecoder) fail(s string) {
	if d.err == nil {
		d.err = errors.New(s)
	}
}

func (d *metaDecoder) time(v []byte) Time {
	s, n := binary.Varint(v)
	if n <= 0 || (n > 1 && v[n-1] == 0) {
		d.fail("bad time")
		return Time{}
	}
	ns := d.uvarint(v[n:])
	if ns >= 1e9 {
		d.fail("nanoseconds out of range")
	}
	return Time{Sec: s, Nsec: uint32(ns), Set: true}
}

// next reads one uvarint from the front of *v.
func (d *metaDecoder) next(v *[]byte) uint64 {
	x, n := binary.Uvarint(*v)
	if n <= 0 || (n > 1 && (*v)[n-1] == 0) {
		d.fail("bad varint")
		*v = nil
		return 0
	}
	*v = (*v)[n:]
	return x
}

func (d *metaDecoder) take(v *[]byte, n uint64) []byte {
	if n > uint64(len(*v)) {
		d.fail("length past the end of the field")
		*v = nil
		return nil
	}
	out := (*v)[:n]
	*v = (*v)[n:]
	return out
}

// knownTag reports whether a critical tag is one this version decodes.
func knownTag(tag int) bool {
	return tag >= tagType && tag <= tagTarHeader || tag == tagTypeflag || tag == tagReplaces
}

// metaFields walks a metadata record's fields, the one parser of its
// framing that DecodeMeta and the summary's lean reader share: tags in
// increasing order, each length a minimal uvarint within the record, no
// critical tag this version does not know (19 is reserved). fn gets each
// field's tag and value; an error from it stops the walk.
func metaFields(b []byte, fn func(tag int, v []byte) error) error {
	last := -1
	for len(b) > 0 {
		tag := int(b[0])
		b = b[1:]
		if tag <= last {
			return fmt.Errorf("field %d out of order", tag)
		}
		last = tag
		l, k := binary.Uvarint(b)
		if k <= 0 || (k > 1 && b[k-1] == 0) {
			return errors.New("bad varint")
		}
		if l > uint64(len(b)-k) {
			return errors.New("length past the end of the field")
		}
		if tag < firstOptionalTag && !knownTag(tag) {
			return fmt.Errorf("unknown critical field %d", tag)
		}
		if err := fn(tag, b[k:k+int(l)]); err != nil {
			return err
		}
		b = b[k+int(l):]
	}
	return nil
}

// DecodeMeta parses a metadata record. It accepts exactly what Encode
// writes: fields in order, canonical varints, and no zero-valued optional
// fields, so that what it accepts re-encodes to the same bytes.
func DecodeMeta(b []byte) (*Meta, error) { return decodeMeta(b, nil) }

// metaAlloc is what decodeMeta shares when many records are decoded at
// once (a summary): owner names interned, one buffer for the
// canonical-form check. (Records and paths in shared slabs were tried
// too: a little faster, but a live record kept its slab's superseded
// records alive, 2-4 MB more for export --index.)
type metaAlloc struct {
	names map[string]string
	enc   []byte
}

func (a *metaAlloc) str(v []byte) string {
	if a == nil {
		return string(v)
	}
	if s, ok := a.names[string(v)]; ok {
		return s
	}
	s := string(v)
	if a.names == nil {
		a.names = map[string]string{}
	}
	if len(a.names) < 256 {
		a.names[s] = s
	}
	return s
}

func decodeMeta(b []byte, a *metaAlloc) (*Meta, error) {
	if len(b) > MaxMetaSize {
		return nil, fmt.Errorf("metadata record of %d bytes over the cap %d", len(b), MaxMetaSize)
	}
	orig := b
	// The fields that are bytes point into one copy of the record, so
	// that a record costs two allocations, not one per field; each is cut
	// to its own length, so that appending to one leaves the rest alone.
	own := bytes.Clone(b)
	bytesOf := func(v []byte) []byte {
		if len(v) == 0 {
			return bytes.Clone(v) // nil stays nil, empty stays empty
		}
		i := cap(b) - cap(v) // v is within b, up to b's end
		return own[i : i+len(v) : i+len(v)]
	}
	m := new(Meta)
	d := &metaDecoder{}
	seenPath := false
	err := metaFields(b, func(tag int, v []byte) error {
		switch tag {
		case tagType:
			m.Type = Type(d.uvarint(v))
		case tagPath:
			m.Path = bytesOf(v)
			seenPath = true
		case tagLink:
			m.Link = bytesOf(v)
		case tagMode:
			m.Mode = uint32(min(d.uvarint(v), 1<<32-1))
		case tagUID:
			m.UID = d.uvarint(v)
		case tagGID:
			m.GID = d.uvarint(v)
		case tagUname:
			m.Uname = a.str(v)
		case tagGname:
			m.Gname = a.str(v)
		case tagMTime:
			m.MTime = d.time(v)
		case tagATime:
			m.ATime = d.time(v)
		case tagCTime:
			m.CTime = d.time(v)
		case tagDevMajor:
			m.DevMajor = d.uvarint(v)
		case tagDevMinor:
			m.DevMinor = d.uvarint(v)
		case tagSize:
			s := d.uvarint(v)
			if s > 1<<62 {
				d.fail("size over 2^62")
			}
			m.Size = int64(s)
		case tagInode:
			m.Inode = d.uvarint(v)
		case tagSparse:
			cnt := d.next(&v)
			if cnt > MaxSparseExtents || cnt > uint64(len(v)) {
				d.fail("sparse extent count over the cap or the bytes present")
				break
			}
			m.Sparse = make([]Extent, 0, cnt)
			for i := uint64(0); i < cnt && d.err == nil; i++ {
				o, l := d.next(&v), d.next(&v)
				if o > 1<<62 || l > 1<<62 {
					d.fail("sparse extent over 2^62")
				}
				m.Sparse = append(m.Sparse, Extent{int64(o), int64(l)})
			}
			if len(v) != 0 {
				d.fail("bytes after the sparse map")
			}
		case tagXattrs:
			cnt := d.next(&v)
			if cnt == 0 || cnt > MaxXattrs || cnt > uint64(len(v)) {
				d.fail("xattr count zero, over the cap or over the bytes present")
				break
			}
			m.Xattrs = make([]Xattr, 0, cnt)
			for i := uint64(0); i < cnt && d.err == nil; i++ {
				name := d.take(&v, d.next(&v))
				val := d.take(&v, d.next(&v))
				m.Xattrs = append(m.Xattrs, Xattr{Name: string(name), Value: bytesOf(val)})
			}
			if len(v) != 0 {
				d.fail("bytes after the xattrs")
			}
		case tagTarHeader:
			m.TarHeader = bytesOf(v)
		case tagTypeflag:
			if len(v) != 1 {
				d.fail("typeflag is not one byte")
			} else {
				m.Typeflag = v[0]
			}
		case tagReplaces:
			rs, err := decodeReplaces(v)
			if err != nil {
				d.fail(err.Error())
			}
			m.Replaces = rs
		default:
			m.Optional = append(m.Optional, Field{Tag: byte(tag), Value: bytesOf(v)})
		}
		return d.err
	})
	if err != nil {
		return nil, err
	}
	if !seenPath {
		return nil, errors.New("no path field")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	// Canonical form: re-encoding must give the same bytes (no zero-valued
	// optional fields, no skipped optional tags), so that what a reader
	// accepts re-encodes identically.
	var ok bool
	if a != nil {
		a.enc = m.Encode(a.enc[:0])
		ok = bytes.Equal(a.enc, orig)
	} else {
		ok = canonical(m, orig)
	}
	if !ok {
		return nil, errors.New("metadata record is not in canonical form")
	}
	return m, nil
}

// canonical reports whether enc is what Encode writes for m.
func canonical(m *Meta, enc []byte) bool {
	bp := encBufs.Get().(*[]byte)
	*bp = m.Encode((*bp)[:0])
	ok := bytes.Equal(*bp, enc)
	if cap(*bp) <= 64<<10 {
		encBufs.Put(bp)
	}
	return ok
}

// encBufs are canonical's buffers: a reader checks every record it
// decodes, and would otherwise allocate its encoding again for each.
var encBufs = sync.Pool{New: func() any { return new([]byte) }}

// checkFull checks the rules of spec 7.2 that need the full record, not
// its summary form: a tar-global or tar-other member exists only as an
// imported entry, so it carries its tar header bytes.
func (m *Meta) checkFull() error {
	if (m.Type == TypeTarGlobal || m.Type == TypeTarOther) && len(m.TarHeader) == 0 {
		return fmt.Errorf("a %s member without its tar header bytes (tag 18)", m.Type)
	}
	return nil
}

// emptyContent reports whether members of type t MUST have empty content
// (spec 7.3): directories, links, devices, fifos and tombstones, imported
// or not.
func emptyContent(t Type) bool { return t >= TypeDir && t <= TypeTombstone || t == TypeReplaces }

// memberSeq checks the order of an archive's members (spec 7.5, 7.7): an
// imported archive is imported entries and tombstones, then exactly one
// trailer, last; a compacted archive is its replaces record, then members
// of the indexed types, imported or not, in any mix; any other archive
// has no imported entry, no trailer and no replaces record.
type memberSeq struct{ imported, plain, trailer, compacted, started bool }

// next takes the next member's full record; it says what is wrong, or "".
func (s *memberSeq) next(m *Meta) string {
	first := !s.started
	s.started = true
	if m.Type == TypeReplaces {
		if !first {
			return "a replaces record that is not the first member"
		}
		s.compacted = true
		return ""
	}
	if s.compacted {
		if m.Type > TypeTombstone {
			return fmt.Sprintf("a %s member in a compacted archive (it holds only members the index takes)", m.Type)
		}
		return ""
	}
	if s.trailer {
		return "a member after the trailer (the trailer is the last member)"
	}
	switch {
	case m.Type == TypeTrailer:
		s.trailer = true
		if s.plain {
			return "a trailer in an archive with members that were not imported"
		}
	case len(m.TarHeader) > 0:
		s.imported = true
		if s.plain {
			return "an imported member in an archive with members that were not imported"
		}
	case m.Type == TypeTombstone:
	default:
		s.plain = true
		if s.imported {
			return "a member that was not imported in an imported archive"
		}
	}
	return ""
}

// end says what is wrong once every member has been seen, or "".
func (s *memberSeq) end() string {
	if s.imported && !s.trailer {
		return "an imported archive without its trailer"
	}
	return ""
}
