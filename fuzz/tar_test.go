package fuzz

import (
	"archive/tar"
	"bytes"
	"compress/bzip2"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/tarconv"
)

// maxSeedTar caps the size of a tar taken from Go's testdata as a seed:
// the fuzzer mutates large inputs slowly, and the big ones there are
// mostly zeros.
const maxSeedTar = 256 << 10

// goTarTestdata returns the tars of Go's own archive/tar tests (present
// wherever Go is installed): plain, base64 and bzip2 ones.
func goTarTestdata(tb testing.TB) map[string][]byte {
	tb.Helper()
	dir := filepath.Join(runtime.GOROOT(), "src", "archive", "tar", "testdata")
	ents, err := os.ReadDir(dir)
	if err != nil {
		tb.Logf("no Go tar testdata: %v", err)
		return nil
	}
	out := map[string][]byte{}
	for _, e := range ents {
		name := e.Name()
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			tb.Fatal(err)
		}
		var b []byte
		switch {
		case strings.HasSuffix(name, ".tar"):
			b = raw
		case strings.HasSuffix(name, ".tar.base64"):
			b, err = base64.StdEncoding.DecodeString(string(raw))
		case strings.HasSuffix(name, ".tar.bz2"):
			b, err = io.ReadAll(io.LimitReader(bzip2.NewReader(bytes.NewReader(raw)), maxSeedTar+1))
		default:
			continue
		}
		if err != nil || len(b) > maxSeedTar {
			continue
		}
		out[name] = b
	}
	return out
}

// madeTars are small tars written with archive/tar in each of its
// formats, with the endings tar writers produce.
func madeTars(tb testing.TB) [][]byte {
	tb.Helper()
	long := strings.Repeat("long-directory-name/", 12) + "file"
	mt := time.Unix(1700000000, 123456789)
	type ent struct {
		h    tar.Header
		data string
	}
	sets := [][]ent{
		{{h: tar.Header{Name: "a.txt", Mode: 0o644, Size: 5, ModTime: mt, Format: tar.FormatUSTAR}, data: "hello"}},
		{
			{h: tar.Header{Typeflag: tar.TypeDir, Name: "dir/", Mode: 0o755, ModTime: mt, Format: tar.FormatPAX}},
			{h: tar.Header{Name: long, Mode: 0o600, Size: 600, ModTime: mt, Uname: "root", Gname: "wheel", Format: tar.FormatPAX,
				PAXRecords: map[string]string{"SCHILY.xattr.user.k": "v", "comment": "x"}}, data: strings.Repeat("z", 600)},
			{h: tar.Header{Typeflag: tar.TypeSymlink, Name: "dir/ln", Linkname: long, ModTime: mt, Format: tar.FormatPAX}},
		},
		{
			{h: tar.Header{Name: long, Mode: 0o644, Size: 3, ModTime: mt, Format: tar.FormatGNU}, data: "abc"},
			{h: tar.Header{Typeflag: tar.TypeLink, Name: "hard", Linkname: long, ModTime: mt, Format: tar.FormatGNU}},
			{h: tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3, ModTime: mt, Format: tar.FormatGNU}},
		},
		{
			{h: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "global", PAXRecords: map[string]string{"comment": "g"}, Format: tar.FormatPAX}},
			{h: tar.Header{Name: "n\xffon-utf8", Mode: 0o644, Size: 5000, ModTime: mt, Uid: 1 << 22, Format: tar.FormatGNU}, data: strings.Repeat("0123456789", 500)},
			{h: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", ModTime: mt, Format: tar.FormatUSTAR}},
		},
	}
	var out [][]byte
	for i, set := range sets {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range set {
			if err := tw.WriteHeader(&e.h); err != nil {
				tb.Fatalf("set %d %q: %v", i, e.h.Name, err)
			}
			if _, err := tw.Write([]byte(e.data)); err != nil {
				tb.Fatal(err)
			}
		}
		if err := tw.Flush(); err != nil {
			tb.Fatal(err)
		}
		unclosed := bytes.Clone(buf.Bytes())
		if err := tw.Close(); err != nil {
			tb.Fatal(err)
		}
		closed := buf.Bytes()
		padded := append(bytes.Clone(closed), make([]byte, 10240-len(closed)%10240)...)
		garbage := append(bytes.Clone(closed), "trailing garbage"...)
		out = append(out, closed, unclosed, padded, garbage)
	}
	// The empty tar, a single end block, and an entry cut in its data.
	out = append(out, make([]byte, 1024), make([]byte, 512), out[0][:512+3])
	return out
}

// FuzzTarImport feeds arbitrary bytes to the importer as a plain tar.
// Whatever it accepts must export back byte for byte; whatever it refuses
// must be refused with a typed bad-input error, and input refused as "not
// a tar" must leave no output at all.
func FuzzTarImport(f *testing.F) {
	for _, b := range goTarTestdata(f) {
		f.Add(b)
	}
	for _, b := range madeTars(f) {
		f.Add(b)
	}
	for _, v := range loadVectors(f) {
		if v.name == "plain-tar" {
			f.Add(v.data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		_, err := tarconv.ImportTar(context.Background(), &out, bytes.NewReader(data), fuzzKey, smallOpts(len(data)%2 == 0))
		if err != nil {
			if !isInputError(err) {
				t.Fatalf("import failed with an untyped error: %v", err)
			}
			if errors.Is(err, tarconv.ErrNotTar) && out.Len() != 0 {
				t.Fatalf("input refused as not a tar, yet %d bytes were written", out.Len())
			}
			return
		}
		checkExport(t, out.Bytes(), data)
	})
}

// checkExport exports archive and requires exactly want back.
func checkExport(t *testing.T, archive, want []byte) {
	t.Helper()
	var back bytes.Buffer
	if err := tarconv.ExportTar(context.Background(), &back, bytes.NewReader(archive), fuzzKey, tarconv.ExportOptions{}); err != nil {
		t.Fatalf("export of an imported tar failed: %v", err)
	}
	if got := back.Bytes(); !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("export is not the input: %d bytes back for %d in, first difference at offset %d", len(got), len(want), i)
	}
}

// byteSource hands out the fuzz input a piece at a time; past its end it
// gives zeros, so that every input describes some tar.
type byteSource struct{ b []byte }

func (s *byteSource) byte() byte {
	if len(s.b) == 0 {
		return 0
	}
	c := s.b[0]
	s.b = s.b[1:]
	return c
}

func (s *byteSource) take(n int) []byte {
	n = min(n, len(s.b))
	out := s.b[:n]
	s.b = s.b[n:]
	return out
}

func (s *byteSource) u16() int { return int(s.byte()) | int(s.byte())<<8 }

// repeatTo repeats pattern to n bytes (zeros for an empty pattern).
func repeatTo(pattern []byte, n int) []byte {
	out := make([]byte, n)
	if len(pattern) > 0 {
		for i := 0; i < n; i += len(pattern) {
			copy(out[i:], pattern)
		}
	}
	return out
}

var rtTypes = []byte{tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar,
	tar.TypeBlock, tar.TypeFifo, tar.TypeXGlobalHeader, tar.TypeReg, tar.TypeReg}

var rtFormats = []tar.Format{tar.FormatUnknown, tar.FormatUSTAR, tar.FormatPAX, tar.FormatGNU}

// buildTar turns fuzz bytes into a tar written by archive/tar: a few
// entries of every type and format, with names, link targets, contents,
// owners, times and pax records taken from the bytes (repeated into long
// names when asked), and one of the endings tar writers produce.
func buildTar(data []byte) []byte {
	s := &byteSource{data}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for n := 0; n < 12 && len(s.b) > 0; n++ {
		op := s.byte()
		h := &tar.Header{
			Typeflag: rtTypes[int(op>>2)%len(rtTypes)],
			Format:   rtFormats[op&3],
			Name:     string(s.take(int(s.byte() % 40))),
			Mode:     int64(s.u16()) & 0o7777,
			ModTime:  time.Unix(int64(s.u16())<<16|int64(s.u16()), int64(s.u16())*15259),
		}
		if op&0x40 != 0 {
			h.Name = string(repeatTo([]byte(h.Name+"/"), 90+int(s.byte())*2))
		}
		switch h.Typeflag {
		case tar.TypeSymlink, tar.TypeLink:
			h.Linkname = string(s.take(int(s.byte() % 40)))
			if op&0x40 != 0 {
				h.Linkname = string(repeatTo([]byte(h.Linkname+"x"), 120))
			}
		case tar.TypeChar, tar.TypeBlock:
			h.Devmajor, h.Devminor = int64(s.byte()), int64(s.u16())
		}
		if op&0x80 != 0 {
			h.Uid, h.Gid = s.u16()<<int(s.byte()%24), s.u16()
			h.Uname, h.Gname = string(s.take(int(s.byte()%12))), "g"
			h.PAXRecords = map[string]string{}
			for k := s.byte() % 4; k > 0; k-- {
				key := string(s.take(int(s.byte()%8) + 1))
				h.PAXRecords["SCHILY.xattr.user."+key] = string(s.take(int(s.byte() % 16)))
			}
			if len(h.PAXRecords) == 0 {
				h.PAXRecords["comment"] = string(s.take(int(s.byte() % 16)))
			}
		}
		var content []byte
		if h.Typeflag == tar.TypeReg {
			content = repeatTo(s.take(int(s.byte()%32)+1), s.u16()%20000)
			h.Size = int64(len(content))
		}
		if tw.WriteHeader(h) != nil {
			continue // a combination this format cannot say: not written
		}
		if _, err := tw.Write(content); err != nil {
			panic(err) // the size is the header's own
		}
	}
	switch s.byte() % 4 {
	case 0:
		tw.Close()
	case 1:
		tw.Flush() // no end-of-archive blocks
	case 2:
		tw.Close()
		buf.Write(make([]byte, 10240-buf.Len()%10240)) // GNU tar's record padding
	case 3:
		tw.Close()
		buf.Write(s.take(100)) // bytes after the end
	}
	return buf.Bytes()
}

// tarEntry is what Go's tar reader says an entry is.
type tarEntry struct {
	hdr  *tar.Header
	sum  [32]byte
	size int64
}

func readGoTar(t *testing.T, b []byte) []tarEntry {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out []tarEntry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Go's tar reader rejects the tar Go's tar writer made: %v", err)
		}
		hs := sha256.New()
		n, err := io.Copy(hs, tr)
		if err != nil {
			t.Fatal(err)
		}
		e := tarEntry{hdr: h, size: n}
		hs.Sum(e.sum[:0])
		out = append(out, e)
	}
}

var typeOf = map[byte]format.Type{tar.TypeReg: format.TypeRegular, tar.TypeDir: format.TypeDir,
	tar.TypeSymlink: format.TypeSymlink, tar.TypeLink: format.TypeHardlink, tar.TypeChar: format.TypeChar,
	tar.TypeBlock: format.TypeBlock, tar.TypeFifo: format.TypeFifo, tar.TypeXGlobalHeader: format.TypeTarGlobal}

// FuzzRoundTrip builds a tar with archive/tar from the fuzz input, imports
// it, and requires the export to give it back byte for byte. It also
// requires every member to say what Go's tar reader says of its entry:
// path, link target, type, owners, mode, time and content.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x00\x05hello\xa4\x01\x00\x00\x00\x00\x00\x00\x00\x04abcd\x10\x27"))
	f.Add([]byte("\x42\x03dir\xed\x01\x01\x00\x02\x00\x00\x00\x4a\x04link\x00\x00\x00\x00\x00\x00\x00\x00\x03abc\x02"))
	f.Add([]byte("\xc2\x08file.txt\xa4\x01\x10\x00\x20\x00\x30\x00\xe8\x03\x05\x02\x04user\x02\x03key\x05value\x01\x01\x02hi\x88\x13\x03"))
	f.Add([]byte("\x93\x02\xff\xfe\xa4\x01\x00\x00\x00\x00\x00\x00\xff\xff\x17\x00\x00\x02\x01a\x01b\x01\x00\x2a\x10\x00\x01"))
	f.Add([]byte("\x1e\x01g\x00\x00\x00\x00\x00\x00\x00\x00\x80\x00\x80\x00\x00\x00\x00\x00\x10\x06cbfs=1\x03"))
	// Random inputs reach combinations the hand-written seeds above do not.
	x := uint32(7)
	for i := range 16 {
		b := make([]byte, 64+i*24)
		for j := range b {
			x = x*1664525 + 1013904223
			b[j] = byte(x >> 24)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := buildTar(data)
		want := readGoTar(t, in)
		var out bytes.Buffer
		if _, err := tarconv.ImportTar(context.Background(), &out, bytes.NewReader(in), fuzzKey, smallOpts(len(data)%2 == 1)); err != nil {
			if len(in) == 0 && errors.Is(err, tarconv.ErrNotTar) {
				return // no entries and no end blocks: zero bytes are not a tar
			}
			t.Fatalf("import of a tar written by archive/tar failed: %v", err)
		}
		checkExport(t, out.Bytes(), in)

		r, err := format.NewReader(bytes.NewReader(out.Bytes()), fuzzKey, format.ReaderOptions{Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for i := 0; ; i++ {
			m, err := r.Next()
			if err == io.EOF {
				if i != len(want)+1 {
					t.Fatalf("%d members for %d tar entries and a trailer", i, len(want))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			hs := sha256.New()
			n, err := io.Copy(hs, r)
			if err != nil {
				t.Fatal(err)
			}
			if i == len(want) {
				if m.Meta.Type != format.TypeTrailer {
					t.Fatalf("member %d is a %s, want the trailer", i, m.Meta.Type)
				}
				continue
			}
			if i > len(want) {
				t.Fatalf("more members than tar entries")
			}
			if d := metaDiff(want[i].hdr, m.Meta); d != "" {
				t.Fatalf("member %d (%q): %s", i, want[i].hdr.Name, d)
			}
			if want[i].hdr.Typeflag == tar.TypeReg && (n != want[i].size || !bytes.Equal(hs.Sum(nil), want[i].sum[:])) {
				t.Fatalf("member %d (%q): content differs from Go's reader (%d bytes, want %d)", i, want[i].hdr.Name, n, want[i].size)
			}
		}
	})
}

// metaDiff compares a member's metadata with Go's reading of the entry.
func metaDiff(h *tar.Header, m *format.Meta) string {
	if h.Typeflag == tar.TypeXGlobalHeader {
		if m.Type != format.TypeTarGlobal {
			return fmt.Sprintf("type %s, want %s", m.Type, format.TypeTarGlobal)
		}
		return ""
	}
	type view struct {
		Path, Link, Uname, Gname string
		Type                     format.Type
		Mode, UID, GID, MTime    int64
		Size                     int64
	}
	got := view{string(m.Path), string(m.Link), m.Uname, m.Gname, m.Type, int64(m.Mode), int64(m.UID), int64(m.GID), m.MTime.Sec, m.Size}
	want := view{h.Name, h.Linkname, h.Uname, h.Gname, typeOf[h.Typeflag], h.Mode & 0o7777, int64(h.Uid), int64(h.Gid), h.ModTime.Unix(), 0}
	if h.Typeflag == tar.TypeReg {
		want.Size = h.Size
	}
	if got != want {
		return fmt.Sprintf("member says %+v, Go's tar reader %+v", got, want)
	}
	return ""
}
