package vecgen

import (
	"archive/tar"
	"bytes"
	"fmt"
	"strings"
	"time"
)

// Plain tars for the import vectors, built in memory: archive/tar for
// what it writes, blocks by hand for what it does not (GNU sparse,
// unknown typeflags).

var tarTime = time.Unix(1700000000, 0)

func mustTar(format tar.Format, entries []tarEntry) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := e.h
		h.Format = format
		if h.ModTime.IsZero() && h.Typeflag != tar.TypeXGlobalHeader {
			h.ModTime = tarTime
		}
		if err := tw.WriteHeader(&h); err != nil {
			panic(fmt.Sprintf("vecgen: tar header %q: %v", h.Name, err))
		}
		if _, err := tw.Write(e.data); err != nil {
			panic(err)
		}
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	return b.Bytes()
}

type tarEntry struct {
	h    tar.Header
	data []byte
}

// padTo appends zero bytes up to a multiple of n, as GNU tar pads to its
// record size.
func padTo(b []byte, n int) []byte {
	return append(b, make([]byte, (n-len(b)%n)%n)...)
}

// gnuTar is what GNU tar writes for long names and links (GNU 'L' and 'K'
// headers), names that are not UTF-8, and the special file types.
func gnuTar(long string) []byte {
	return padTo(mustTar(tar.FormatGNU, []tarEntry{
		{tar.Header{Typeflag: tar.TypeDir, Name: "gnu/", Mode: 0o755, Uname: "alice", Gname: "staff"}, nil},
		{tar.Header{Typeflag: tar.TypeReg, Name: "gnu/" + long, Mode: 0o644, Size: 11}, []byte("long named\n")},
		{tar.Header{Typeflag: tar.TypeSymlink, Name: "gnu/link", Linkname: "gnu/" + long, Mode: 0o777}, nil},
		{tar.Header{Typeflag: tar.TypeReg, Name: "gnu/caf\xe9-\xff\xfe", Mode: 0o600, Size: 5}, []byte("latin")},
		{tar.Header{Typeflag: tar.TypeLink, Name: "gnu/hard", Linkname: "gnu/caf\xe9-\xff\xfe"}, nil},
		{tar.Header{Typeflag: tar.TypeFifo, Name: "gnu/fifo", Mode: 0o644}, nil},
		{tar.Header{Typeflag: tar.TypeChar, Name: "gnu/null", Mode: 0o666, Devmajor: 1, Devminor: 3}, nil},
		{tar.Header{Typeflag: tar.TypeBlock, Name: "gnu/sda", Mode: 0o660, Devmajor: 8}, nil},
	}), 10240)
}

// paxTar is a pax (POSIX.1-2001) tar: long names in 'x' records, xattrs,
// nanosecond times, ids too large for ustar, and a global header.
func paxTar(long string) []byte {
	return mustTar(tar.FormatPAX, []tarEntry{
		{tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "cbfs vectors"}}, nil},
		{tar.Header{Typeflag: tar.TypeReg, Name: long, Mode: 0o640, Size: 6, Uid: 3000000, Gid: 3000001,
			Uname: "user-with-a-rather-long-name", Gname: "g",
			ModTime: time.Unix(1700000000, 123456789), AccessTime: time.Unix(1700000001, 5), ChangeTime: time.Unix(1700000002, 999999999),
			PAXRecords: map[string]string{"SCHILY.xattr.user.mime": "text/plain", "SCHILY.xattr.security.selinux": "system_u:object_r:x:s0\x00"}}, []byte("pax 1\n")},
		{tar.Header{Typeflag: tar.TypeDir, Name: "dir-\u00e9\u00e8/", Mode: 0o700}, nil},
		{tar.Header{Typeflag: tar.TypeReg, Name: "dir-\u00e9\u00e8/empty", Mode: 0o644}, nil},
	})
}

// ustarTar is a plain ustar tar whose long name is split into prefix and
// name.
func ustarTar() []byte {
	name := strings.Repeat("p", 120) + "/" + strings.Repeat("n", 90)
	return mustTar(tar.FormatUSTAR, []tarEntry{
		{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: 513}, bytes.Repeat([]byte{'u'}, 513)},
		{tar.Header{Typeflag: tar.TypeReg, Name: "second", Mode: 0o644, Size: 512}, bytes.Repeat([]byte{'s'}, 512)},
	})
}

// hdrBlock is a tar header block written by hand.
func hdrBlock(name string, size int64, typeflag byte, gnu bool) []byte {
	b := make([]byte, block)
	copy(b[0:100], name)
	copy(b[100:], "0000644\x00")
	copy(b[108:], "0001750\x00")
	copy(b[116:], "0001750\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", size))
	copy(b[136:], fmt.Sprintf("%011o\x00", tarTime.Unix()))
	b[156] = typeflag
	if gnu {
		copy(b[257:], "ustar  \x00")
	} else {
		copy(b[257:], "ustar\x0000")
	}
	copy(b[265:], "user")
	copy(b[297:], "group")
	return b
}

func dataBlocks(d []byte) []byte { return append(bytes.Clone(d), make([]byte, pad(len(d)))...) }

// otherTar holds a pax global header, an entry of a typeflag cbfs does
// not know (GNU 'V', a volume label with data), a regular file, and
// garbage after the end-of-archive blocks.
func otherTar() []byte {
	g := mustTar(tar.FormatPAX, []tarEntry{
		{tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "global", PAXRecords: map[string]string{"comment": "first"}}, nil},
	})
	g = g[:len(g)-2*block]
	v := hdrBlock("volume label", 7, 'V', true)
	setChecksum(v)
	g = append(g, v...)
	g = append(g, dataBlocks([]byte("label\x00\x01"))...)
	r := hdrBlock("after-volume", 3, '0', false)
	setChecksum(r)
	g = append(g, r...)
	g = append(g, dataBlocks([]byte("abc"))...)
	g = append(g, make([]byte, 2*block)...)
	return append(g, "garbage after the end of the archive\n"...)
}

// sparseExtents is the sparse map of the sparse import vectors.
var sparseExtents = [][2]int64{{0, 100}, {10000, 512}, {19999, 1}}

const sparseRealSize = 20000

func sparseData() []byte {
	var d []byte
	for i, e := range sparseExtents {
		d = append(d, bytes.Repeat([]byte{byte('A' + i)}, int(e[1]))...)
	}
	return d
}

// oldGNUSparseTar is an old GNU sparse file (typeflag 'S', the map in the
// header), as GNU tar --sparse --format=gnu writes it.
func oldGNUSparseTar() []byte {
	d := sparseData()
	h := hdrBlock("sparse-old", int64(len(d)), 'S', true)
	for i, e := range sparseExtents {
		o := 386 + 24*i
		copy(h[o:], fmt.Sprintf("%011o\x00", e[0]))
		copy(h[o+12:], fmt.Sprintf("%011o\x00", e[1]))
	}
	copy(h[483:], fmt.Sprintf("%011o\x00", sparseRealSize))
	setChecksum(h)
	out := append(h, dataBlocks(d)...)
	return padTo(append(out, make([]byte, 2*block)...), 10240)
}

func paxRecord(k, v string) string {
	n := len(k) + len(v) + 3
	for {
		s := fmt.Sprintf("%d %s=%s\n", n, k, v)
		if len(s) == n {
			return s
		}
		n = len(s)
	}
}

// paxSparseTar is a GNU pax sparse 1.0 file: the map at the start of the
// data, as GNU tar --sparse --format=pax writes it.
func paxSparseTar() []byte {
	recs := paxRecord("GNU.sparse.major", "1") + paxRecord("GNU.sparse.minor", "0") +
		paxRecord("GNU.sparse.name", "sparse-pax") + paxRecord("GNU.sparse.realsize", fmt.Sprint(sparseRealSize))
	x := hdrBlock("./PaxHeaders/sparse-pax", int64(len(recs)), 'x', false)
	setChecksum(x)
	m := fmt.Sprintf("%d\n", len(sparseExtents))
	for _, e := range sparseExtents {
		m += fmt.Sprintf("%d\n%d\n", e[0], e[1])
	}
	data := append(dataBlocks([]byte(m)), sparseData()...)
	h := hdrBlock("./GNUSparseFile.0/sparse-pax", int64(len(data)), '0', false)
	setChecksum(h)
	out := append(x, dataBlocks([]byte(recs))...)
	out = append(out, h...)
	out = append(out, dataBlocks(data)...)
	return padTo(append(out, make([]byte, 2*block)...), 10240)
}

func tarHdr(name string, size int64) tar.Header {
	return tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size}
}
