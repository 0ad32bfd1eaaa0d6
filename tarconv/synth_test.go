package tarconv

import (
	"archive/tar"
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cbfs/cbfs/format"
)

// goTarHeader is the header Go's archive/tar writes in the pax format for
// m, which is what export wrote before spec 7.6 fixed it byte for byte.
func goTarHeader(t *testing.T, m *format.Meta) []byte {
	tf, _ := tarTypeflag(m.Type)
	h := &tar.Header{Typeflag: tf, Name: string(m.Path), Linkname: string(m.Link), Mode: int64(m.Mode),
		Uid: int(m.UID), Gid: int(m.GID), Uname: m.Uname, Gname: m.Gname, ModTime: m.MTime.Go(),
		Devmajor: int64(m.DevMajor), Devminor: int64(m.DevMinor), Format: tar.FormatPAX}
	if m.Type == format.TypeRegular {
		h.Size = m.Size
	}
	if m.ATime.Set {
		h.AccessTime = m.ATime.Go()
	}
	if m.CTime.Set {
		h.ChangeTime = m.CTime.Go()
	}
	if len(m.Xattrs) > 0 {
		h.PAXRecords = map[string]string{}
		for _, x := range m.Xattrs {
			h.PAXRecords["SCHILY.xattr."+x.Name] = string(x.Value)
		}
	}
	// Spec 7.6 adds hdrcharset=BINARY where a name is not UTF-8, which
	// Go's writer does not.
	for _, s := range []string{string(m.Path), string(m.Link), m.Uname, m.Gname} {
		if !utf8.ValidString(s) {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["hdrcharset"] = "BINARY"
		}
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(h); err != nil {
		t.Fatalf("%+v: %v", h, err)
	}
	return b.Bytes()
}

// TestSynthHeaderMatchesGo: the synthesized header (spec 7.6) is the one
// Go's tar writer gives, for clean paths without NUL bytes and ids below
// 2^63, where spec 7.6 keeps its choices.
func TestSynthHeaderMatchesGo(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	str := func(max int) string {
		const alpha = "ab/é\xffcd-_.xyz"
		var b strings.Builder
		for n := r.IntN(max + 1); b.Len() < n; {
			b.WriteByte(alpha[r.IntN(len(alpha))])
		}
		// A clean path: no empty, "." or ".." element.
		el := strings.Split(b.String(), "/")
		for i, e := range el {
			if e == "" || e == "." || e == ".." {
				el[i] = "x"
			}
		}
		return strings.Join(el, "/")
	}
	num := func() uint64 {
		switch r.IntN(4) {
		case 0:
			return 0
		case 1:
			return uint64(r.IntN(1 << 21))
		case 2:
			return 1<<21 - 1 + uint64(r.IntN(3))
		}
		return r.Uint64N(1 << 62)
	}
	tm := func() format.Time {
		if r.IntN(3) == 0 {
			return format.Time{}
		}
		sec := int64(r.IntN(1 << 34))
		if r.IntN(4) == 0 {
			sec = -sec
		}
		ns := uint32(0)
		if r.IntN(2) == 0 {
			ns = uint32(r.IntN(1e9))
		}
		return format.Time{Sec: sec, Nsec: ns, Set: true}
	}
	for i := 0; i < 3000; i++ {
		m := &format.Meta{Type: format.Type(1 + r.IntN(7)), Path: []byte(str(300)), Link: []byte(str(150)),
			Mode: uint32(r.IntN(0o10000)), UID: num(), GID: num(), Uname: str(40), Gname: str(40),
			MTime: tm(), ATime: tm(), CTime: tm(), DevMajor: uint64(r.IntN(1 << 21)), DevMinor: uint64(r.IntN(1 << 21))}
		if m.Type == format.TypeRegular {
			m.Size = int64(r.Uint64N(1 << 40))
		}
		for n := r.IntN(3); n > 0; n-- {
			m.Xattrs = append(m.Xattrs, format.Xattr{Name: "user." + str(10) + string(rune('a'+n)), Value: []byte(str(20))})
		}
		size := int64(0)
		if m.Type == format.TypeRegular {
			size = m.Size
		}
		got, err := synthHeader(m, string(m.Path), size, nil)
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if want := goTarHeader(t, m); !bytes.Equal(got, want) {
			t.Fatalf("member %d %+v:\n got %q\nwant %q", i, m, got, want)
		}
	}
}
