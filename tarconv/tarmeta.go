package tarconv

import (
	"bytes"
	"errors"
	"sort"
	"strconv"
	"strings"

	"github.com/cbfs/cbfs/format"
)

// fillMeta derives a member's metadata from a plain tar entry: the main
// header, then GNU long names, then pax records, each overriding the last,
// as tar readers do. The raw bytes stay authoritative for export; this is
// what ls, cat, extract and the index see. The path and link may be b's
// own bytes: m is valid as long as b is.
func fillMeta(m *format.Meta, b *format.Block, pax map[string]string, longName, longLink []byte, names *ownerNames) error {
	num := func(f []byte) uint64 {
		v, err := format.ParseNumeric(f)
		if err != nil || v < 0 {
			return 0
		}
		return uint64(v)
	}
	name := b.Name()
	switch {
	case b.IsStar():
		if p := b.StarPrefix(); len(p) > 0 {
			name = append(append(bytes.Clone(p), '/'), name...)
		}
	case b.IsUSTAR():
		if p := b.Prefix(); len(p) > 0 {
			name = append(append(bytes.Clone(p), '/'), name...)
		}
	}
	if longName != nil {
		name = longName
	}
	link := b.Linkname()
	if longLink != nil {
		link = longLink
	}
	m.Mode = uint32(num(b.Mode()) & 0o7777)
	m.UID, m.GID = num(b.UID()), num(b.GID())
	if b.IsUSTAR() || b.IsGNU() {
		m.Uname, m.Gname = names.get(b.Uname(), 0), names.get(b.Gname(), 1)
		m.DevMajor, m.DevMinor = num(b.DevMajor()), num(b.DevMinor())
	}
	if mt, err := format.ParseNumeric(b.MTime()); err == nil {
		m.MTime = format.Time{Sec: mt, Set: true}
	}
	if b.IsGNU() {
		if f := b.GNUATime(); f[0] != 0 {
			if t, err := format.ParseNumeric(f); err == nil {
				m.ATime = format.Time{Sec: t, Set: true}
			}
		}
		if f := b.GNUCTime(); f[0] != 0 {
			if t, err := format.ParseNumeric(f); err == nil {
				m.CTime = format.Time{Sec: t, Set: true}
			}
		}
	}
	for k, v := range pax {
		switch k {
		case "path":
			name = []byte(v)
		case "linkpath":
			link = []byte(v)
		case "uid":
			if n, err := strconv.ParseUint(v, 10, 64); err == nil {
				m.UID = n
			}
		case "gid":
			if n, err := strconv.ParseUint(v, 10, 64); err == nil {
				m.GID = n
			}
		case "uname":
			m.Uname = v
		case "gname":
			m.Gname = v
		case "mtime":
			if t, ok := parsePAXTime(v); ok {
				m.MTime = t
			}
		case "atime":
			if t, ok := parsePAXTime(v); ok {
				m.ATime = t
			}
		case "ctime":
			if t, ok := parsePAXTime(v); ok {
				m.CTime = t
			}
		case "GNU.sparse.name":
			name = []byte(v)
		case "GNU.sparse.size", "GNU.sparse.realsize":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
				m.Size = n
			}
		default:
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && x != "" {
				m.Xattrs = append(m.Xattrs, format.Xattr{Name: x, Value: []byte(v)})
			}
		}
	}
	if len(m.Xattrs) > 1 {
		sort.Slice(m.Xattrs, func(i, j int) bool { return m.Xattrs[i].Name < m.Xattrs[j].Name })
	}
	if len(m.Uname) > format.MaxNameLen {
		m.Uname = m.Uname[:format.MaxNameLen]
	}
	if len(m.Gname) > format.MaxNameLen {
		m.Gname = m.Gname[:format.MaxNameLen]
	}
	if len(name) > format.MaxPathLen || len(link) > format.MaxPathLen {
		return errors.New("name or link target over the cap")
	}
	m.Path, m.Link = name, link
	switch tf := b.Typeflag(); tf {
	case '0', '7':
		m.Type = format.TypeRegular
	case 0:
		m.Type = format.TypeRegular
		if bytes.HasSuffix(name, []byte("/")) {
			m.Type = format.TypeDir
		}
	case '1':
		m.Type = format.TypeHardlink
	case '2':
		m.Type = format.TypeSymlink
	case '3':
		m.Type = format.TypeChar
	case '4':
		m.Type = format.TypeBlock
	case '5':
		m.Type = format.TypeDir
	case '6':
		m.Type = format.TypeFifo
	case 'S':
		m.Type = format.TypeRegular
		if b.IsGNU() {
			if n, err := format.ParseNumeric(b.GNURealSize()); err == nil && n >= 0 {
				m.Size = n
			}
		}
	case 'g':
		m.Type = format.TypeTarGlobal
	default:
		m.Type = format.TypeTarOther
		m.Typeflag = tf
	}
	if m.Type != format.TypeChar && m.Type != format.TypeBlock {
		m.DevMajor, m.DevMinor = 0, 0
	}
	// Xattrs beyond the record's caps stay in the raw header only.
	total := 0
	for i, x := range m.Xattrs {
		total += len(x.Name) + len(x.Value)
		if total > format.MaxXattrBytes || i >= format.MaxXattrs {
			m.Xattrs = m.Xattrs[:i]
			break
		}
	}
	return nil
}

// parsePAXTime parses a pax time: decimal seconds with an optional
// fraction, possibly negative.
func parsePAXTime(s string) (format.Time, bool) {
	ss, sn, _ := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(ss, 10, 64)
	if err != nil {
		return format.Time{}, false
	}
	var ns int64
	if sn != "" {
		for len(sn) < 9 {
			sn += "0"
		}
		if ns, err = strconv.ParseInt(sn[:9], 10, 64); err != nil || ns < 0 {
			return format.Time{}, false
		}
		if strings.HasPrefix(ss, "-") && ns != 0 {
			sec--
			ns = 1e9 - ns
		}
	}
	return format.Time{Sec: sec, Nsec: uint32(ns), Set: true}, true
}

// ownerNames keeps the last user and group names seen: the entries of a
// tar mostly share their owner, whose names are then not allocated again
// for each.
type ownerNames [2]string

func (c *ownerNames) get(b []byte, i int) string {
	if string(b) != c[i] {
		c[i] = string(b)
	}
	return c[i]
}
