package vecgen

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/repo"
)

// IndexListing is the text whose SHA-256 an index vector gives
// (entries-sha256; see README.md): the archives table, then every record
// with its candidates.
func IndexListing(x *index.Index) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "high-seq %d\n", x.HighSeq)
	for _, a := range x.Archives {
		fmt.Fprintf(&b, "archive %s %x %d %d\n", hex.EncodeToString([]byte(a.Name)), a.ID, a.Seq, a.Members)
		for _, r := range a.Replaces {
			fmt.Fprintf(&b, "replaces %x %d\n", r.ID, r.Seq)
		}
	}
	for i := range x.Len() {
		state := "dead"
		if x.Live(i) {
			state = "live"
		}
		es := x.Entries(i)
		fmt.Fprintf(&b, "path %s %s %d\n", hex.EncodeToString(x.Path(i)), state, len(es))
		for _, e := range es {
			fmt.Fprintf(&b, "entry %d %d %d %d %d %d %d\n", e.Archive, e.Member, e.Type, e.Offset, e.Span, e.Size, e.Inode)
		}
	}
	return b.Bytes()
}

// archiveIndex writes an archive and returns its one-archive index.
func (g *gen) archiveIndex(name string, seq uint64, ms []mem) *index.Index {
	opt := small
	opt.Sequence = seq
	return g.archiveIndexOpt(name, opt, ms)
}

func (g *gen) archiveIndexOpt(name string, opt format.WriterOptions, ms []mem) *index.Index {
	data := g.write("index "+name, opt, ms)
	a, es := openEntries(data, g.keyA)
	x, err := repo.ArchiveIndex(name, a.Header, es)
	if err != nil {
		panic(err)
	}
	return x
}

// compactedIndex writes a compacted archive holding ms and returns its
// one-archive index.
func (g *gen) compactedIndex(name string, seq uint64, reps []format.Replaced, ms []mem) *index.Index {
	opt := small
	opt.Sequence = seq
	opt.Replaces = reps
	return g.archiveIndexOpt(name, opt, ms)
}

func merge(xs ...*index.Index) *index.Index {
	out := &index.Index{}
	for _, x := range xs {
		var err error
		if out, _, err = index.Merge(out, x); err != nil {
			panic(err)
		}
	}
	return out
}

func (g *gen) encodeIndex(x *index.Index) []byte {
	var b bytes.Buffer
	if err := x.Encode(&b, g.keyA); err != nil {
		panic(err)
	}
	return b.Bytes()
}

func (g *gen) index() {
	t := format.TypeTombstone
	x1 := g.archiveIndex("a-1.cbfs", 1, []mem{fileMem("etc/x", []byte("x1")), fileMem("etc/y", []byte("y1")), fileMem("home/u/f", text("f", 5000))})
	x2 := g.archiveIndex("b-2.cbfs", 2, []mem{fileMem("etc/x", []byte("x2, newer")),
		{&format.Meta{Type: format.TypeDir, Path: []byte("z"), Mode: 0o755}, nil}})
	c1 := g.archiveIndex("c-3.cbfs", 3, []mem{fileMem("etc/x", []byte("one"))})
	c2 := g.archiveIndex("d-3.cbfs", 3, []mem{fileMem("etc/x", []byte("other"))})
	ts := g.archiveIndex("e-4.cbfs", 4, []mem{{&format.Meta{Type: t, Path: []byte("etc/y")}, nil}, {&format.Meta{Type: t, Path: []byte("never/existed")}, nil}})

	ok := func(name, desc string, x *index.Index) []byte {
		data := g.encodeIndex(x)
		s := sha256.Sum256(IndexListing(x))
		g.add(&Vector{Name: name, Expect: success, Kind: "index", Key: g.rawA, Desc: desc,
			Records: x.Len(), EntriesSHA: hex.EncodeToString(s[:]), Data: data})
		return data
	}
	ok("index-empty", "a master index of no archives", &index.Index{})
	valid := ok("index-valid", "two archives, sequence 1 and 2: the later one wins etc/x", merge(x1, x2))
	ok("index-conflict", "two archives of the same sequence number both hold etc/x: a conflict with two candidates", merge(x1, c1, c2))
	ok("index-tombstones", "a later archive deletes etc/y and a path no archive held: tombstone records", merge(x1, x2, ts))
	// a-1 compacted: its members b-2 did not supersede, copied into an
	// archive of its sequence number that replaces it (spec 2.8).
	xc := g.compactedIndex("a-1.c00000001.cbfs", 1, []format.Replaced{{ID: x1.Archives[0].ID, Seq: 1}},
		[]mem{fileMem("etc/y", []byte("y1")), fileMem("home/u/f", text("f", 5000))})
	ok("index-compacted", "a-1 (sequence 1) replaced by a compacted archive of sequence 1 holding its live members: a-1 is left out of the table and the records, which are the same paths", merge(x1, x2, xc))
	blocks := ok("index-blocks", "4,000 paths of one archive: records in several blocks, paths sharing prefixes within each", g.bigIndex())

	bad := func(name, expect, desc string, data, key []byte) {
		g.add(&Vector{Name: name, Expect: expect, Kind: "index", Key: key, Desc: desc, Data: data})
	}
	bad("index-wrong-key", cKey, "a valid index read with another key", valid, g.rawB)
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(valid)) }
	bad("index-version", cVer, "index major version 2", mut(func(b []byte) []byte { b[8] = 2; return b }), g.rawA)
	bad("index-suite", cIndex, "index cipher suite 2", mut(func(b []byte) []byte { b[10] = 2; return b }), g.rawA)
	bad("index-flipped", cIndex, "a bit of the first frame's payload flipped, CRC not updated", mut(func(b []byte) []byte { b[index.HeaderSize+20] ^= 1; return b }), g.rawA)
	bad("index-aead", cIndex, "a bit of the first frame's payload flipped, CRC recomputed", mut(func(b []byte) []byte {
		h := index.HeaderSize
		b[h+20] ^= 1
		n := int(binary.LittleEndian.Uint32(b[h+4:]))
		binary.LittleEndian.PutUint32(b[h+8:], crc(b[h:h+8], b[h+hdrSize:h+hdrSize+n]))
		return b
	}), g.rawA)
	bad("index-check-damaged", cIndex, "a bit of the key check value flipped: the directory still opens, so damage and not a wrong key", mut(func(b []byte) []byte { b[20] ^= 1; return b }), g.rawA)
	bad("index-siv-flipped", cIndex, "a bit of the directory's synthetic IV (in the trailer) flipped: the directory does not open", mut(func(b []byte) []byte { b[len(b)-24] ^= 1; return b }), g.rawA)
	bad("index-dir-offset", cIndex, "the trailer's directory offset moved by one", mut(func(b []byte) []byte { b[len(b)-32]++; return b }), g.rawA)
	bad("index-trailer-magic", cIndex, "the trailer's magic damaged", mut(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), g.rawA)
	bad("index-block-size", cIndex, "the header's block size changed to 32768: every synthetic IV covers it", mut(func(b []byte) []byte { b[13] = 0x80; b[14] = 0; return b }), g.rawA)
	bad("index-minor", cIndex, "the header's minor version changed: every synthetic IV covers it", mut(func(b []byte) []byte { b[9] = 1; return b }), g.rawA)
	bad("index-truncated", cIndex, "the last 5 bytes missing", valid[:len(valid)-5], g.rawA)
	bad("index-trailing", cIndex, "one byte after the trailer", append(bytes.Clone(valid), 0), g.rawA)
	// Index spec 5.2 steps 1 and 3.
	bad("index-short-magic", notIndex, "the first 7 bytes of an index: fewer than 8 bytes is not an index", valid[:7], g.rawA)
	bad("index-not-magic", notIndex, "48 bytes that do not start with CBFSINDX", randBytes("index-not-magic", 48), g.rawA)
	bad("index-header-short", cIndex, "the first 20 bytes of an index: the magic, then the header cut short", valid[:20], g.rawA)
	bad("index-check-frame-cut", cKey, "a bit of the key check value flipped and the index cut inside its first block: there is no directory to open, so a wrong key", mut(func(b []byte) []byte {
		b[20] ^= 1
		return b[:index.HeaderSize+hdrSize+10]
	}), g.rawA)
	bad("index-blocks-swapped", cIndex, "an index of several blocks with its first two block frames swapped (same lengths, CRCs intact)", swapBlocks(blocks), g.rawA)
}

// swapBlocks swaps the first two block frames of an index whose first
// two blocks have frames of the same length, or, failing that, moves the
// second in front of the first (the directory then finds other frames
// where it expects them).
func swapBlocks(b []byte) []byte {
	b = bytes.Clone(b)
	h := index.HeaderSize
	n1 := hdrSize + int(binary.LittleEndian.Uint32(b[h+4:]))
	n2 := hdrSize + int(binary.LittleEndian.Uint32(b[h+n1+4:]))
	f1, f2 := bytes.Clone(b[h:h+n1]), bytes.Clone(b[h+n1:h+n1+n2])
	copy(b[h:], f2)
	copy(b[h+n2:], f1)
	return b
}

// paths are the vectors of the canonical path form (index spec section
// 2.7): the input path is the data, its canonical form (hex) the
// expected outcome, or the failure class "path" for a path that has none.
func (g *gen) paths() {
	add := func(name, desc, in, canon string) {
		v := &Vector{Name: name, Expect: success, Kind: "path", Desc: desc, Data: []byte(in), Canonical: []byte(canon)}
		if canon == "" {
			v.Expect, v.Canonical = "path", nil
		}
		g.add(v)
	}
	add("path-canonical", "a path already in canonical form", "data/f1", "data/f1")
	add("path-dot-slash", "a leading ./ is removed", "./data/f1", "data/f1")
	add("path-absolute", "leading slashes are removed, as GNU tar does on extract", "//data/f1", "data/f1")
	add("path-trailing-slash", "a directory as tar names it: the trailing slash is removed", "data/", "data")
	add("path-repeated-slash", "repeated slashes collapse to one", "data///sub//f1", "data/sub/f1")
	add("path-dot-components", "every . component is dropped", "./data/./sub/.", "data/sub")
	add("path-dotfiles", "names that only start with dots are names", ".a/..b/...", ".a/..b/...")
	add("path-not-utf8", "any bytes but / are a name, UTF-8 or not", "caf\xe9/\x01", "caf\xe9/\x01")
	add("path-dotdot", "a .. component: no canonical form, kept out of the index", "data/../etc/passwd", "")
	add("path-dotdot-leading", "a leading .. component", "../x", "")
	add("path-root", "the root itself: no path below it", "./", "")
	add("path-empty", "the empty path", "", "")
}

func (g *gen) keyfiles() {
	k := randBytes("keyfile", 32)
	add := func(name, expect, desc string, data []byte) {
		g.add(&Vector{Name: name, Expect: expect, Kind: "keyfile", Desc: desc, Data: data})
	}
	add("keyfile-valid", success, "a key file of exactly 32 bytes", k)
	add("keyfile-newline", cKeyf, "32 bytes and a newline, as a text editor saves it", append(bytes.Clone(k), '\n'))
	add("keyfile-crlf", cKeyf, "32 bytes and CR LF", append(bytes.Clone(k), '\r', '\n'))
	add("keyfile-short", cKeyf, "31 bytes", k[:31])
	add("keyfile-empty", cKeyf, "an empty key file", nil)
	add("keyfile-long", cKeyf, "64 bytes", append(bytes.Clone(k), k...))
}

// bigIndex is a one-archive index of 4,000 paths, over several blocks
// (built without writing the archive: the index holds locations only).
func (g *gen) bigIndex() *index.Index {
	const n = 4000
	a := index.Archive{Name: "big.cbfs", Seq: 9, Members: n}
	copy(a.ID[:], randBytes("index-big-id", 16))
	b, err := index.NewBuilder(a, n, 0)
	if err != nil {
		panic(err)
	}
	for i := range n {
		p := fmt.Sprintf("srv/data/project-%02d/src/module-%03d/file-%05d.go", i%7, i%113, i)
		if err := b.Add([]byte(p), index.Entry{Member: uint32(i), Type: format.TypeRegular, Offset: int64(1536 + 1024*i), Span: 900 + int64(i%97), Size: int64(i * 13 % 800), Inode: uint64(5000 + i)}); err != nil {
			panic(err)
		}
	}
	return b.Index()
}
