package vecgen

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/tarconv"
)

// Seed is the fixed seed of every vector. Each vector draws its archive
// id and content from its own ChaCha8 stream, seeded from Seed and the
// vector's name, so adding a vector changes no other.
const Seed = "cbfs spec vectors v1"

func stream(name string) *rand.ChaCha8 {
	return rand.NewChaCha8(sha256.Sum256([]byte(Seed + "\x00" + name)))
}

func randBytes(name string, n int) []byte {
	b := make([]byte, n)
	stream("bytes " + name).Read(b)
	return b
}

// text is n bytes of compressible text.
func text(name string, n int) []byte {
	r := rand.New(stream("text " + name))
	words := []string{"archive ", "member ", "chunk ", "record ", "footer ", "summary ", "key ", "tar ", "\n"}
	var b []byte
	for len(b) < n {
		b = append(b, words[r.IntN(len(words))]...)
	}
	return b[:n]
}

// Outcome classes. notCBFS is the spec's "not a CBFS archive".
const (
	success = "success"
	notCBFS = "not-cbfs"
	cTar    = "tar"
	cHeader = "header"
	cVer    = "version"
	cKey    = "key"
	cFrame  = "frame"
	cMember = "member"
	cSum    = "summary"
	cFooter = "footer"
	cIndex  = "index"
	cKeyf   = "keyfile"
	// notIndex is an input that is not a master index at all.
	notIndex = "not-index"
	fail     = "fail"
)

type gen struct {
	keyA, keyB *crypt.Key
	rawA, rawB []byte
	out        []*Vector
	names      map[string]bool
}

func (g *gen) add(v *Vector) {
	if g.names[v.Name] {
		panic("vecgen: duplicate vector " + v.Name)
	}
	if strings.ContainsAny(v.Desc, "\n\r") {
		panic("vecgen: description of " + v.Name + " is not one line")
	}
	g.names[v.Name] = true
	g.out = append(g.out, v)
}

type mem struct {
	m    *format.Meta
	data []byte
}

// small are the writer options of most vectors: the smallest chunk and
// record sizes keep the files small.
var small = format.WriterOptions{ChunkSize: format.MinChunkSize, RecordSize: format.MinRecordSize}

// write writes an archive with the reference writer under key A.
func (g *gen) write(name string, opt format.WriterOptions, ms []mem) []byte {
	return g.writeKey(name, g.keyA, opt, ms)
}

func (g *gen) writeKey(name string, key *crypt.Key, opt format.WriterOptions, ms []mem) []byte {
	if opt.Rand == nil {
		opt.Rand = stream("id " + name)
	}
	opt.Workers = 1
	var b bytes.Buffer
	w, err := format.NewWriter(&b, key, opt)
	if err != nil {
		panic(err)
	}
	for _, m := range ms {
		if _, err := w.Add(m.m, bytes.NewReader(m.data)); err != nil {
			panic(fmt.Sprintf("vecgen: %s: %v", name, err))
		}
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return b.Bytes()
}

func (g *gen) importTar(name string, opt format.WriterOptions, t []byte) []byte {
	opt.Rand = stream("id " + name)
	opt.Workers = 1
	var b bytes.Buffer
	if _, err := tarconv.ImportTar(context.Background(), &b, bytes.NewReader(t), g.keyA, opt); err != nil {
		panic(fmt.Sprintf("vecgen: %s: import: %v", name, err))
	}
	return b.Bytes()
}

// membersDigest is members-sha256 (see README.md): for each member, its
// metadata record and its content, each after a u64le length.
func membersDigest(ms []mem) string {
	h := sha256.New()
	for _, m := range ms {
		writeMember(h, m.m.Encode(nil), m.data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func writeMember(w io.Writer, rec, content []byte) {
	w.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(rec))))
	w.Write(rec)
	w.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(content))))
	w.Write(content)
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// readAll reads an archive with the reference streaming reader: its
// members as (record, content), and their digest.
func readAll(data []byte, key *crypt.Key) ([]mem, string) {
	r, err := format.NewReader(bytes.NewReader(data), key, format.ReaderOptions{Workers: 1})
	if err != nil {
		panic(err)
	}
	defer r.Close()
	var ms []mem
	h := sha256.New()
	for {
		m, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		c, err := io.ReadAll(r)
		if err != nil {
			panic(err)
		}
		writeMember(h, m.Meta.Encode(nil), c)
		ms = append(ms, mem{m.Meta, c})
	}
	return ms, hex.EncodeToString(h.Sum(nil))
}

// ok adds a success vector. ms are the members written (nil for imported
// archives, whose members come from the tar); imported is the tar.
func (g *gen) ok(name, desc string, data []byte, key *crypt.Key, ms []mem, imported []byte) {
	var plain bytes.Buffer
	if err := tarconv.ExportTar(context.Background(), &plain, bytes.NewReader(data), key, tarconv.ExportOptions{}); err != nil {
		panic(fmt.Sprintf("vecgen: %s: export: %v", name, err))
	}
	got, digest := readAll(data, key)
	if ms != nil && membersDigest(ms) != digest {
		panic("vecgen: " + name + ": members read back differ from those written")
	}
	v := &Vector{Name: name, Expect: success, Kind: "archive", Desc: desc,
		Members: len(got), PlainSHA: sum(plain.Bytes()), MembersSHA: digest, Data: data}
	if imported != nil {
		if !bytes.Equal(plain.Bytes(), imported) {
			panic("vecgen: " + name + ": export does not give back the imported tar")
		}
		v.ImportedSHA = sum(imported)
	}
	// The frame-level writer must rebuild what the reference wrote.
	l, err := parse(data, key)
	if err != nil {
		panic(fmt.Sprintf("vecgen: %s: parse: %v", name, err))
	}
	if !bytes.Equal(l.build(), data) {
		panic("vecgen: " + name + ": the frame-level writer does not rebuild the archive")
	}
	g.add(v)
}

// bad adds a failure vector. keyless and ra are the outcomes without the
// key and of random access ("" when they fail too).
func (g *gen) bad(name, expect, keyless, ra, desc string, data []byte) {
	g.badKey(name, expect, keyless, ra, desc, data, g.rawA)
}

func (g *gen) badKey(name, expect, keyless, ra, desc string, data, key []byte) {
	if keyless == "" {
		keyless = fail
	}
	if ra == "" {
		ra = fail
	}
	g.add(&Vector{Name: name, Expect: expect, Kind: "archive", Key: key, Desc: desc,
		Keyless: keyless, RandomAccess: ra, Data: data})
}

// Generate returns every vector, in a fixed order.
func Generate() []*Vector {
	g := &gen{names: map[string]bool{}}
	g.rawA, g.rawB = randBytes("key A", 32), randBytes("key B", 32)
	g.keyA, _ = crypt.KeyFromBytes(g.rawA)
	g.keyB, _ = crypt.KeyFromBytes(g.rawB)
	g.valid()
	g.invalidOuter()
	g.crossedHeader()
	g.invalidFrames()
	g.invalidMembers()
	g.invalidSequence()
	g.invalidSummary()
	g.invalidFooter()
	g.compaction()
	g.index()
	g.paths()
	g.keyfiles()
	for _, v := range g.out {
		if v.Kind == "archive" && v.Key == nil {
			v.Key = g.rawA
		}
	}
	return g.out
}

func reg(path string, size int) *format.Meta {
	return &format.Meta{Type: format.TypeRegular, Path: []byte(path), Mode: 0o644, Size: int64(size),
		MTime: format.Time{Sec: 1700000000, Set: true}}
}

func fileMem(path string, data []byte) mem { return mem{reg(path, len(data)), data} }

func (g *gen) valid() {
	t0 := format.Time{Sec: 1700000000, Set: true}

	g.ok("valid-empty", "an archive with no members: one empty summary chunk", g.write("valid-empty", small, nil), g.keyA, []mem{}, nil)
	g.ok("valid-empty-default-sizes", "an archive with no members, default chunk (64 KiB) and record (1 MiB) sizes",
		g.write("valid-empty-default-sizes", format.WriterOptions{}, nil), g.keyA, []mem{}, nil)

	// Appendix B's example archive, under its own key.
	{
		kb := bytes.Repeat([]byte{0x42}, 32)
		k, _ := crypt.KeyFromBytes(kb)
		ms := []mem{{&format.Meta{Type: format.TypeRegular, Path: []byte("hello.txt"), Mode: 0o644, MTime: t0, Size: 6}, []byte("hello\n")}}
		opt := format.WriterOptions{Sequence: 7, Rand: bytes.NewReader([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})}
		data := g.writeKey("valid-appendix-b", k, opt, ms)
		g.ok("valid-appendix-b", "the example archive of spec Appendix B (key 32 x 0x42, id 000102..0f, sequence 7)", data, k, ms, nil)
		g.out[len(g.out)-1].Key = kb
	}

	types := []struct {
		name string
		m    format.Meta
	}{
		{"regular", format.Meta{Type: format.TypeRegular, Path: []byte("r.txt"), Mode: 0o644, UID: 1000, GID: 100, MTime: t0, Size: 6}},
		{"dir", format.Meta{Type: format.TypeDir, Path: []byte("d"), Mode: 0o755, MTime: t0}},
		{"symlink", format.Meta{Type: format.TypeSymlink, Path: []byte("s"), Link: []byte("../target"), Mode: 0o777, MTime: t0}},
		{"hardlink", format.Meta{Type: format.TypeHardlink, Path: []byte("h"), Link: []byte("r.txt"), Mode: 0o644, MTime: t0}},
		{"char", format.Meta{Type: format.TypeChar, Path: []byte("dev/null"), Mode: 0o666, DevMajor: 1, DevMinor: 3, MTime: t0}},
		{"block", format.Meta{Type: format.TypeBlock, Path: []byte("dev/sda"), Mode: 0o660, DevMajor: 8, DevMinor: 0, MTime: t0}},
		{"fifo", format.Meta{Type: format.TypeFifo, Path: []byte("p"), Mode: 0o600, MTime: t0}},
		{"tombstone", format.Meta{Type: format.TypeTombstone, Path: []byte("deleted/file")}},
	}
	for _, tc := range types {
		m := tc.m
		var data []byte
		if m.Type == format.TypeRegular {
			data = []byte("hello\n")
		}
		ms := []mem{{&m, data}}
		name := "valid-type-" + tc.name
		g.ok(name, "one member of type "+tc.name, g.write(name, small, ms), g.keyA, ms, nil)
	}

	long := strings.Repeat("long-name-", 409) + "abcdef" // 4096 bytes
	imports := []struct {
		name, desc string
		t          []byte
		compress   bool
	}{
		{"valid-import-tar-global-other", "an imported tar: pax global header (tar-global), GNU volume label 'V' (tar-other), a file, garbage after the end blocks (trailer)", otherTar(), false},
		{"valid-import-gnu", "an imported GNU tar: 'L' and 'K' long names, a non-UTF-8 name, hard link, fifo, devices, padded to 10240 bytes", gnuTar(long[:300]), true},
		{"valid-import-pax", "an imported pax tar: a 4096-byte name, xattrs, nanosecond times, large ids, a global header", paxTar(long), true},
		{"valid-import-ustar", "an imported ustar tar with a name split into prefix and name", ustarTar(), false},
		{"valid-import-gnu-sparse-old", "an imported old GNU sparse file (typeflag 'S')", oldGNUSparseTar(), false},
		{"valid-import-pax-sparse", "an imported GNU pax sparse 1.0 file", paxSparseTar(), true},
		{"valid-import-empty-tar", "an imported tar with no entries: only end blocks, held by the trailer", make([]byte, 10240), false},
	}
	for _, im := range imports {
		opt := small
		opt.Compress = im.compress
		g.ok(im.name, im.desc, g.importTar(im.name, opt, im.t), g.keyA, nil, im.t)
	}

	// A tombstone among imported members (spec 7.5): export skips it and
	// keeps the padding accounting.
	{
		t := mustTar(tar.FormatUSTAR, []tarEntry{
			{tarHdr("a", 100), bytes.Repeat([]byte{'a'}, 100)},
			{tarHdr("b", 200), bytes.Repeat([]byte{'b'}, 200)},
		})
		imp := g.importTar("tmp-import-ab", small, t)
		got, _ := readAll(imp, g.keyA)
		ms := []mem{got[0], {&format.Meta{Type: format.TypeTombstone, Path: []byte("old")}, nil}, got[1], got[2]}
		g.ok("valid-import-tombstone", "imported members with a tombstone between them", g.write("valid-import-tombstone", small, ms), g.keyA, ms, t)
	}

	{
		opt := small
		opt.Compress = true
		var ms []mem
		ms = append(ms, fileMem("text.txt", text("lz4-a", 3*format.MinChunkSize+1000)))
		ms = append(ms, fileMem("random.bin", randBytes("lz4-b", 2*format.MinChunkSize+7)))
		for i := range 40 {
			ms = append(ms, fileMem(fmt.Sprintf("dir/subdir/some-file-%03d.txt", i), text(fmt.Sprint("lz4-", i), 10+i)))
		}
		g.ok("valid-compress-lz4", "LZ4 on: compressible and incompressible chunks, a compressed summary over several chunks", g.write("valid-compress-lz4", opt, ms), g.keyA, ms, nil)
	}
	{
		var ms []mem
		for i := range 60 {
			ms = append(ms, fileMem(fmt.Sprintf("f%03d", i), text(fmt.Sprint("none-", i), i*7)))
		}
		g.ok("valid-compress-none-many", "60 members, no compression: a stored summary over several chunks", g.write("valid-compress-none-many", small, ms), g.keyA, ms, nil)
	}
	{
		opt := small
		opt.Compress = true
		ms := []mem{{&format.Meta{Type: format.TypeRegular, Path: append(bytes.Repeat([]byte("aaaa/"), 800), "end"...), Mode: 0o644}, nil}}
		g.ok("valid-compress-meta", "a compressible 4000-byte path: the metadata record is stored as LZ4", g.write("valid-compress-meta", opt, ms), g.keyA, ms, nil)
	}
	{
		ms := []mem{
			{&format.Meta{Type: format.TypeRegular, Path: []byte(long), Mode: 0o644, Size: 3, MTime: t0}, []byte("abc")},
			{&format.Meta{Type: format.TypeSymlink, Path: []byte(long[:4000] + "-link"), Link: []byte(long), MTime: t0}, nil},
		}
		g.ok("valid-long-names", "a 4096-byte path and a 4096-byte symlink target", g.write("valid-long-names", small, ms), g.keyA, ms, nil)
	}
	{
		p := append(bytes.Repeat([]byte("0123456789abcde/"), format.MaxPathLen/16-1), "0123456789abcdef"...)
		ms := []mem{{&format.Meta{Type: format.TypeRegular, Path: p, Mode: 0o644}, nil}}
		g.ok("valid-max-path", "a path of exactly 65536 bytes (MaxPathLen)", g.write("valid-max-path", small, ms), g.keyA, ms, nil)
	}
	{
		ms := []mem{
			{&format.Meta{Type: format.TypeRegular, Path: []byte("caf\xe9/\xff\xfe-bin"), Mode: 0o644, Uname: "\xc3\x28", Gname: "\x80", Size: 2, MTime: t0}, []byte("hi")},
			{&format.Meta{Type: format.TypeSymlink, Path: []byte("l\xff"), Link: []byte("\xfe\xff/../x"), MTime: t0}, nil},
		}
		g.ok("valid-non-utf8", "paths, link target and owner names that are not UTF-8 (a plain tar cannot hold a NUL in a path, so none here)", g.write("valid-non-utf8", small, ms), g.keyA, ms, nil)
	}
	{
		ext := []format.Extent{{Offset: 0, Length: 4096}, {Offset: 524288, Length: 100}, {Offset: 600000, Length: 0}, {Offset: 1<<20 - 10, Length: 10}}
		var data []byte
		for i, e := range ext {
			data = append(data, bytes.Repeat([]byte{byte('a' + i)}, int(e.Length))...)
		}
		ms := []mem{
			{&format.Meta{Type: format.TypeRegular, Path: []byte("sparse"), Mode: 0o644, Size: 1 << 20, Sparse: ext, MTime: t0}, data},
			{&format.Meta{Type: format.TypeRegular, Path: []byte("all-hole"), Mode: 0o644, Size: 5000, Sparse: []format.Extent{}, MTime: t0}, nil},
		}
		g.ok("valid-sparse", "sparse members: extents with a zero-length one, and a file that is all hole (count 0)", g.write("valid-sparse", small, ms), g.keyA, ms, nil)
	}
	{
		ms := []mem{{&format.Meta{Type: format.TypeRegular, Path: []byte("x"), Mode: 0o644, MTime: t0, Size: 1,
			Xattrs: []format.Xattr{{Name: "security.selinux", Value: []byte("u:r:x:s0\x00")}, {Name: "user.bin", Value: []byte{0, 1, 2, 0xff}}, {Name: "user.empty", Value: nil}}}, []byte("x")}}
		g.ok("valid-xattrs", "extended attributes, with binary and empty values (left out of the summary)", g.write("valid-xattrs", small, ms), g.keyA, ms, nil)
	}
	{
		// The edges of spec 7.6 (export of members that were not imported).
		path := strings.Repeat("d", 99) + "/" + strings.Repeat("f", 30)
		ms := []mem{
			{&format.Meta{Type: format.TypeRegular, Path: []byte(path), Mode: 0o640, UID: 1<<63 + 5, GID: 1 << 21,
				Uname: strings.Repeat("u", 33), Gname: "grüppe", MTime: format.Time{Sec: -2, Nsec: 750000000, Set: true}, Size: 3,
				Xattrs: []format.Xattr{{Name: "user.a", Value: []byte("v")}}}, []byte("abc")},
			{&format.Meta{Type: format.TypeChar, Path: []byte("dev/x"), Mode: 0o600, DevMajor: 4095, DevMinor: 1048575, MTime: format.Time{Sec: 1 << 33, Set: true}}, nil},
			{&format.Meta{Type: format.TypeSymlink, Path: []byte("l"), Link: []byte(strings.Repeat("é", 60)), MTime: t0}, nil},
		}
		g.ok("valid-export-edges", "export edges (spec 7.6): a 130-byte path whose 100th byte is /, uid 2^63+5, gid 2^21, a 33-byte uname, a non-ASCII gname, mtime -1.25 s, mtime 2^33 s, device 4095,1048575, a non-ASCII 120-byte link", g.write("valid-export-edges", small, ms), g.keyA, ms, nil)
	}
	{
		// An access ACL of user::rw-, user:1000:r--, group::r-x, mask::r-x,
		// other::---, and a default ACL whose version is not 2 (no text
		// record: spec 7.6).
		acl := []byte{2, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 2, 0, 4, 0, 0xe8, 3, 0, 0, 4, 0, 5, 0, 0, 0, 0, 0,
			0x10, 0, 5, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0}
		m := reg("acl", 3)
		m.Xattrs = []format.Xattr{{Name: "system.posix_acl_access", Value: acl},
			{Name: "system.posix_acl_default", Value: []byte{3, 0, 0, 0}}, {Name: "user.z", Value: []byte("z")}}
		ms := []mem{{m, []byte("acl")}}
		g.ok("valid-export-acl", "export of ACL xattrs (spec 7.6): SCHILY.acl.access text beside SCHILY.xattr records; none for a default ACL of version 3", g.write("valid-export-acl", small, ms), g.keyA, ms, nil)
	}
	{
		m := &format.Meta{Type: format.TypeRegular, Path: []byte("all/fields"), Link: nil, Mode: 0o7777, UID: 1 << 40, GID: 1<<31 + 7,
			Uname: strings.Repeat("u", format.MaxNameLen), Gname: strings.Repeat("g", format.MaxNameLen),
			MTime: format.Time{Sec: -1, Nsec: 999999999, Set: true}, ATime: format.Time{Sec: 0, Nsec: 0, Set: true},
			CTime: format.Time{Sec: 1 << 40, Nsec: 1, Set: true}, Size: 4, Inode: 1<<64 - 1}
		ms := []mem{{m, []byte("full")}}
		g.ok("valid-all-fields", "every field set: mode 07777, large ids and inode, negative and zero times, 256-byte names", g.write("valid-all-fields", small, ms), g.keyA, ms, nil)
	}
	{
		m := reg("future", 0)
		m.Optional = []format.Field{{Tag: 64, Value: []byte("a v1.1 field")}, {Tag: 200, Value: nil}, {Tag: 255, Value: []byte{0, 1}}}
		ms := []mem{{m, nil}}
		g.ok("valid-optional-tags", "unknown optional metadata tags 64, 200 (empty) and 255: accepted and kept, in the summary too", g.write("valid-optional-tags", small, ms), g.keyA, ms, nil)
	}
	{
		ms := []mem{fileMem("big.bin", randBytes("multi", 150000)), fileMem("after", []byte("after\n"))}
		g.ok("valid-multi-record", "smallest chunk (4096) and record (65536) sizes: a member spanning three records", g.write("valid-multi-record", small, ms), g.keyA, ms, nil)
	}
	{
		opt := format.WriterOptions{ChunkSize: format.MaxChunkSize, RecordSize: format.MaxRecordSize}
		ms := []mem{fileMem("x", []byte("largest chunk and record sizes\n"))}
		g.ok("valid-max-sizes", "largest chunk (4 MiB) and record (64 MiB) sizes: every summary frame is 4 MiB + 32 bytes", g.write("valid-max-sizes", opt, ms), g.keyA, ms, nil)
	}
	{
		opt := format.WriterOptions{ChunkSize: format.MinChunkSize, RecordSize: format.MaxRecordSize}
		ms := []mem{fileMem("x", text("maxrec", 9000))}
		g.ok("valid-max-record-min-chunk", "largest record size (64 MiB) with the smallest chunk size: one short data record", g.write("valid-max-record-min-chunk", opt, ms), g.keyA, ms, nil)
	}
	{
		ms := []mem{fileMem("one-chunk", text("exact1", format.MinChunkSize)), fileMem("two-chunks", text("exact2", 2*format.MinChunkSize))}
		g.ok("valid-content-exact-chunks", "content of exactly one and two chunks: the final chunk is full", g.write("valid-content-exact-chunks", small, ms), g.keyA, ms, nil)
	}
	for _, extra := range []int{0, 1} {
		name := []string{"valid-summary-exact-chunk", "valid-summary-chunk-plus-one"}[extra]
		ms := summaryOfSize(format.MinChunkSize + extra)
		desc := []string{"a summary of exactly one chunk (4096 bytes)", "a summary of one chunk and one byte: the final summary chunk holds 1 byte"}[extra]
		data := g.write(name, small, ms)
		if n := summaryLen(data, g.keyA); n != format.MinChunkSize+extra {
			panic(fmt.Sprintf("vecgen: %s: summary of %d bytes", name, n))
		}
		g.ok(name, desc, data, g.keyA, ms, nil)
	}
	{
		opt := small
		opt.Sequence = 1<<64 - 1
		ms := []mem{fileMem("x", []byte("x"))}
		g.ok("valid-sequence-max", "sequence number 2^64-1", g.write("valid-sequence-max", opt, ms), g.keyA, ms, nil)
	}
	{
		ms := g.baseMembers()
		data := g.write("valid-repadded-10240", small, ms)
		data = padTo(data, 10240)
		g.ok("valid-repadded-10240", "re-padded with zero blocks to a multiple of 10240 bytes, as GNU tar copies it", data, g.keyA, ms, nil)
		data = g.write("valid-repadded-65536", small, ms)
		data = padTo(append(data, make([]byte, 32<<10)...), 65536)
		g.ok("valid-repadded-65536", "re-padded to a multiple of 65536 bytes (tar -b 128): over 32 KiB of trailing zeros", data, g.keyA, ms, nil)
	}
}

// summaryOfSize returns members whose summary is exactly n bytes.
func summaryOfSize(n int) []mem {
	// One entry per member: offset, length, record length (uvarints) and
	// the record. Fill with members whose records are 200 bytes or so,
	// then fix the last path's length.
	var ms []mem
	size := func() int {
		s, off := 0, 0
		for _, m := range ms {
			rec := m.m.Encode(nil)
			mlen := hdrSize + (8+len(rec)+metaPad-1)/metaPad*metaPad + tagSize
			length := mlen + hdrSize + tagSize
			s += len(summaryEntry(off, length, rec))
			off += length
		}
		return s
	}
	for i := 0; size() < n-300; i++ {
		ms = append(ms, mem{&format.Meta{Type: format.TypeDir, Path: []byte(fmt.Sprintf("%03d-", i) + strings.Repeat("d", 180))}, nil})
	}
	last := &format.Meta{Type: format.TypeDir}
	ms = append(ms, mem{last, nil})
	for p := 1; p < 600; p++ {
		last.Path = bytes.Repeat([]byte{'z'}, p)
		if size() == n {
			return ms
		}
	}
	panic(fmt.Sprintf("vecgen: no summary of %d bytes", n))
}

func summaryLen(data []byte, key *crypt.Key) int {
	_, es := openEntries(data, key)
	return len(format.EncodeSummary(es))
}

// openEntries opens an archive the generator wrote, by random access,
// and reads its summary's entries.
func openEntries(data []byte, key *crypt.Key) (*format.Archive, []format.Entry) {
	a, err := format.OpenArchive(format.NewSource(bytes.NewReader(data), int64(len(data))), key)
	if err != nil {
		panic(err)
	}
	es, err := a.Entries()
	if err != nil {
		panic(err)
	}
	return a, es
}

// baseMembers are the members of the archive most invalid vectors start
// from: a file of three chunks, a directory, a small file.
func (g *gen) baseMembers() []mem {
	return []mem{
		fileMem("docs/a.txt", text("base-a", 10000)),
		{&format.Meta{Type: format.TypeDir, Path: []byte("docs"), Mode: 0o755, MTime: format.Time{Sec: 1700000000, Set: true}}, nil},
		fileMem("b", []byte("hi\n")),
	}
}

// base returns a fresh layout of the base archive (written under name,
// so that each vector has its own archive id).
func (g *gen) base(name string, compress bool) *layout {
	opt := small
	opt.Compress = compress
	data := g.write(name, opt, g.baseMembers())
	l, err := parse(data, g.keyA)
	if err != nil {
		panic(err)
	}
	if !bytes.Equal(l.build(), data) {
		panic("vecgen: " + name + ": the frame-level writer does not rebuild the archive")
	}
	return l
}
