package index

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/internal/testutil"
	"github.com/google/go-cmp/cmp"
)

// fakeArchive is a one-archive index built from (path, type) pairs in
// member order.
type fakeMember struct {
	path string
	typ  format.Type
}

func buildIndex(t testing.TB, name string, id byte, seq uint64, ms []fakeMember) *Index {
	t.Helper()
	a := Archive{Name: name, Seq: seq, Members: uint64(len(ms))}
	a.ID[0] = id
	b, err := NewBuilder(a, len(ms), 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		e := Entry{Member: uint32(i), Type: m.typ, Offset: int64(1536 + 2048*i), Span: 1100, Size: int64(len(m.path)), Inode: uint64(100*int(id) + i)}
		if err := b.Add([]byte(m.path), e); err != nil {
			t.Fatal(err)
		}
	}
	return b.Index()
}

func mustMerge(t testing.TB, a, b *Index) *Index {
	t.Helper()
	x, _, err := Merge(a, b)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func encodeT(t testing.TB, x *Index, key *crypt.Key) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := x.Encode(&buf, key); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// view is an index in plain Go values, for comparisons in tests.
type view struct {
	Archives []Archive
	Records  map[string][]Entry
	Order    []string
}

func viewOf(x *Index) view {
	v := view{Archives: x.Archives, Records: map[string][]Entry{}}
	for i := 0; i < x.Len(); i++ {
		p := string(x.Path(i))
		v.Order = append(v.Order, p)
		v.Records[p] = x.Entries(i)
	}
	return v
}

// threeArchives: a (seq 1), b (seq 2), c (seq 2, conflicting with b on
// "both"), with a tombstone, a path superseded across sequences, and a
// path repeated within one archive.
func threeArchives(t testing.TB) []*Index {
	return []*Index{
		buildIndex(t, "a.cbfs", 1, 1, []fakeMember{
			{"dir", format.TypeDir}, {"dir/x", format.TypeRegular}, {"dir/y", format.TypeRegular}, {"old", format.TypeRegular},
			{"both", format.TypeRegular}, {"glob", format.TypeTarGlobal}, {"dir/x", format.TypeSymlink}, {"", format.TypeTrailer},
		}),
		buildIndex(t, "b.cbfs", 2, 2, []fakeMember{
			{"dir/y", format.TypeRegular}, {"old", format.TypeTombstone}, {"both", format.TypeRegular}, {"new", format.TypeFifo},
		}),
		buildIndex(t, "c.cbfs", 3, 2, []fakeMember{
			{"both", format.TypeTombstone}, {"zzz", format.TypeRegular},
		}),
	}
}

func TestIndexWinnerRule(t *testing.T) {
	parts := threeArchives(t)
	x := mustMerge(t, mustMerge(t, parts[0], parts[1]), parts[2])
	v := viewOf(x)
	if diff := cmp.Diff([]string{"both", "dir", "dir/x", "dir/y", "new", "old", "zzz"}, v.Order); diff != "" {
		t.Fatalf("paths (-want +got):\n%s", diff)
	}
	check := func(path string, want ...Entry) {
		t.Helper()
		got := v.Records[path]
		for i := range want {
			want[i].Span = 1100
			want[i].Size = int64(len(path))
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", path, diff)
		}
	}
	// Archive indexes: a=0, b=1, c=2.
	check("dir/x", Entry{Archive: 0, Member: 6, Type: format.TypeSymlink, Offset: 1536 + 2048*6, Inode: 106})
	check("dir/y", Entry{Archive: 1, Member: 0, Type: format.TypeRegular, Offset: 1536, Inode: 200})
	check("old", Entry{Archive: 1, Member: 1, Type: format.TypeTombstone, Offset: 1536 + 2048, Inode: 201})
	check("both",
		Entry{Archive: 1, Member: 2, Type: format.TypeRegular, Offset: 1536 + 2*2048, Inode: 202},
		Entry{Archive: 2, Member: 0, Type: format.TypeTombstone, Offset: 1536, Inode: 300})
	i, ok := x.Find([]byte("both"))
	if !ok || !x.Conflicted(i) || !x.Live(i) {
		t.Errorf("both: found %v, conflicted %v, live %v", ok, x.Conflicted(i), x.Live(i))
	}
	i, ok = x.Find([]byte("old"))
	if !ok || x.Live(i) || x.Conflicted(i) {
		t.Errorf("old: found %v, live %v", ok, x.Live(i))
	}
	if _, ok := x.Find([]byte("glob")); ok {
		t.Error("a pax global header was indexed")
	}
	want := Stats{Records: 7, Live: 6, Tombstones: 1, Conflicts: 1}
	if got := x.Stats(); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
}

func TestIndexMergeOrderFree(t *testing.T) {
	key := testutil.Key(t, 3)
	var want []byte
	orders := [][3]int{{0, 1, 2}, {2, 1, 0}, {1, 0, 2}, {1, 2, 0}}
	for _, o := range orders {
		for _, leftFirst := range []bool{true, false} {
			p := threeArchives(t)
			var x *Index
			if leftFirst {
				x = mustMerge(t, mustMerge(t, p[o[0]], p[o[1]]), p[o[2]])
			} else {
				x = mustMerge(t, p[o[0]], mustMerge(t, p[o[1]], p[o[2]]))
			}
			got := encodeT(t, x, key)
			if want == nil {
				want = got
			} else if !bytes.Equal(got, want) {
				t.Fatalf("order %v (left first %v) gives different bytes", o, leftFirst)
			}
		}
	}
	// Merging an index with itself changes nothing.
	p := threeArchives(t)
	all := mustMerge(t, mustMerge(t, p[0], p[1]), p[2])
	q := threeArchives(t)
	again := mustMerge(t, mustMerge(t, q[0], q[1]), q[2])
	x, copies, err := Merge(all, again)
	if err != nil {
		t.Fatal(err)
	}
	if got := encodeT(t, x, key); !bytes.Equal(got, want) {
		t.Error("merging an index with itself changed it")
	}
	if len(copies) != 3 {
		t.Errorf("%d copies reported, want 3", len(copies))
	}
}

func TestIndexCopies(t *testing.T) {
	ms := []fakeMember{{"f", format.TypeRegular}}
	a := buildIndex(t, "b-copy.cbfs", 9, 4, ms)
	b := buildIndex(t, "a-orig.cbfs", 9, 4, ms)
	x, copies, err := Merge(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(x.Archives) != 1 || x.Archives[0].Name != "a-orig.cbfs" {
		t.Errorf("archives %+v, want one named a-orig.cbfs", x.Archives)
	}
	if len(copies) != 1 || copies[0].Names != [2]string{"a-orig.cbfs", "b-copy.cbfs"} {
		t.Errorf("copies %+v", copies)
	}
	if x.Len() != 1 || x.Conflicted(0) {
		t.Errorf("a copy made a conflict")
	}
	c := buildIndex(t, "c.cbfs", 9, 5, ms)
	if _, _, err := Merge(x, c); err == nil {
		t.Error("one archive id with two sequence numbers merged")
	}
}

func TestIndexRoundTrip(t *testing.T) {
	key := testutil.Key(t, 4)
	p := threeArchives(t)
	x := mustMerge(t, mustMerge(t, p[0], p[1]), p[2])
	enc := encodeT(t, x, key)
	if got := encodeT(t, x, key); !bytes.Equal(got, enc) {
		t.Fatal("encoding twice gives different bytes")
	}
	y, err := Read(bytes.NewReader(enc), key)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(viewOf(x), viewOf(y)); diff != "" {
		t.Fatalf("decoded index differs (-want +got):\n%s", diff)
	}
	if got := encodeT(t, y, key); !bytes.Equal(got, enc) {
		t.Fatal("re-encoding a decoded index gives different bytes")
	}
	if !bytes.Equal(enc[:8], []byte("CBFSINDX")) || enc[8] != 1 || enc[9] != 0 {
		t.Errorf("header starts %q", enc[:10])
	}
	// An empty index is valid too.
	e := encodeT(t, &Index{}, key)
	if y, err := Read(bytes.NewReader(e), key); err != nil || y.Len() != 0 {
		t.Errorf("empty index: %v", err)
	}
}

// A large index spans many chunks, some paths cross chunk boundaries.
func TestIndexRoundTripLarge(t *testing.T) {
	key := testutil.Key(t, 5)
	var ms []fakeMember
	for i := range 30000 {
		ms = append(ms, fakeMember{fmt.Sprintf("d%03d/%s-%06d", i%997, bytes.Repeat([]byte{'p'}, i%300), i*7919%30011), format.TypeRegular})
	}
	x := buildIndex(t, "big.cbfs", 1, 1, ms)
	enc := encodeT(t, x, key)
	y, err := Read(bytes.NewReader(enc), key)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(viewOf(x), viewOf(y)); diff != "" {
		t.Fatalf("decoded index differs (-want +got):\n%s", diff)
	}
	if !bytes.Equal(encodeT(t, y, key), enc) {
		t.Fatal("re-encoding differs")
	}
}

func TestIndexTamper(t *testing.T) {
	key := testutil.Key(t, 6)
	p := threeArchives(t)
	enc := encodeT(t, mustMerge(t, mustMerge(t, p[0], p[1]), p[2]), key)
	for i := range enc {
		for _, bit := range []byte{0x01, 0x80} {
			b := bytes.Clone(enc)
			b[i] ^= bit
			if _, err := Read(bytes.NewReader(b), key); err == nil {
				t.Fatalf("flip of bit %#x at byte %d accepted", bit, i)
			}
		}
	}
	for n := range len(enc) {
		if _, err := Read(bytes.NewReader(enc[:n]), key); err == nil {
			t.Fatalf("truncation to %d bytes accepted", n)
		}
	}
	if _, err := Read(bytes.NewReader(append(bytes.Clone(enc), 0)), key); err == nil {
		t.Fatal("a trailing byte accepted")
	}
}

func TestIndexErrorClasses(t *testing.T) {
	key := testutil.Key(t, 6)
	p := threeArchives(t)
	enc := encodeT(t, mustMerge(t, mustMerge(t, p[0], p[1]), p[2]), key)
	read := func(b []byte) error {
		_, err := Read(bytes.NewReader(b), key)
		return err
	}
	if _, err := Read(bytes.NewReader(enc), testutil.Key(t, 7)); !errors.Is(err, format.ErrWrongKey) {
		t.Errorf("other key: %v, want format.ErrWrongKey", err)
	}
	b := bytes.Clone(enc)
	b[8] = 2
	var ve *VersionError
	if err := read(b); !errors.As(err, &ve) || ve.Major != 2 {
		t.Errorf("major 2: %v, want an VersionError", err)
	}
	b = bytes.Clone(enc)
	b[9] = 7 // a minor version bump is read, but it is covered by the IV
	if err := read(b); err == nil {
		t.Error("changed minor version accepted")
	}
	if err := read([]byte("not an index at all, longer than a header, really, yes")); !errors.Is(err, ErrNotIndex) {
		t.Errorf("garbage: %v, want ErrNotIndex", err)
	}
	// A damaged key check value is damage, not a wrong key; so is a
	// damaged IV.
	for _, at := range []int{20, 40} {
		b = bytes.Clone(enc)
		b[at] ^= 1
		var fe *Error
		if err := read(b); !errors.As(err, &fe) || fe.What == "" {
			t.Errorf("flip at %d: %v, want an index error", at, err)
		}
	}
}

type plainBuilder struct{ b []byte }

func (p *plainBuilder) u(vs ...uint64) *plainBuilder {
	for _, v := range vs {
		p.b = binary.AppendUvarint(p.b, v)
	}
	return p
}
func (p *plainBuilder) raw(b ...byte) *plainBuilder { p.b = append(p.b, b...); return p }
func (p *plainBuilder) str(s string) *plainBuilder  { return p.u(uint64(len(s))).raw([]byte(s)...) }
func (p *plainBuilder) id(n byte) *plainBuilder {
	var id [crypt.IDSize]byte
	id[0] = n
	return p.raw(id[:]...)
}
func (p *plainBuilder) arch(name string, id byte, seq, members uint64) *plainBuilder {
	return p.str(name).id(id).u(seq, members, 0)
}

// cand appends one candidate: archive, type, member, offset, span, size, inode.
func (p *plainBuilder) cand(arch uint64, typ format.Type, member uint64) *plainBuilder {
	return p.u(arch).raw(byte(typ)).u(member, 1536, 1100, 5, 77)
}

// rec appends one record: shared prefix length, suffix, candidates.
func (p *plainBuilder) rec(shared uint64, suffix string, n uint64) *plainBuilder {
	return p.u(shared).str(suffix).u(n)
}

func TestIndexCanonical(t *testing.T) {
	key := testutil.Key(t, 8)
	two := func() []byte { return (&plainBuilder{}).u(1, 2).arch("a", 1, 1, 3).arch("b", 2, 1, 3).b }
	blk := func() *plainBuilder { return &plainBuilder{} }
	one := func(first string, n int, p *plainBuilder) []rawBlock { return []rawBlock{{first, n, p.b}} }
	good := blk().rec(0, "p/a", 1).cand(0, format.TypeRegular, 0).rec(2, "b", 2).cand(0, format.TypeRegular, 1).cand(1, format.TypeRegular, 2)
	enc := sealRaw(t, key, two(), one("p/a", 2, good))
	x, err := Read(bytes.NewReader(enc), key)
	if err != nil {
		t.Fatalf("well-formed plaintext refused: %v", err)
	}
	if !bytes.Equal(encodeT(t, x, key), enc) {
		t.Fatal("hand-made index re-encodes differently")
	}
	rp := func() *plainBuilder { return blk().rec(0, "p", 1) }
	cases := map[string]struct {
		table  []byte
		blocks []rawBlock
	}{
		"archives unsorted":         {(&plainBuilder{}).u(1, 2).arch("b", 1, 1, 3).arch("a", 2, 1, 3).b, nil},
		"archive id twice":          {(&plainBuilder{}).u(1, 2).arch("a", 1, 1, 3).arch("b", 1, 1, 3).b, nil},
		"archive name with slash":   {(&plainBuilder{}).u(1, 1).arch("d/a", 1, 1, 3).b, nil},
		"archive name empty":        {(&plainBuilder{}).u(1, 1).arch("", 1, 1, 3).b, nil},
		"archive count too big":     {(&plainBuilder{}).u(1, MaxArchives+1).b, nil},
		"high-seq below a row":      {(&plainBuilder{}).u(0, 1).arch("a", 1, 1, 3).b, nil},
		"empty directory":           {nil, nil},
		"records unsorted":          {two(), one("q", 2, blk().rec(0, "q", 1).cand(0, format.TypeRegular, 0).rec(0, "p", 1).cand(0, format.TypeRegular, 1))},
		"path twice":                {two(), one("p", 2, rp().cand(0, format.TypeRegular, 0).u(1, 0).u(1).cand(0, format.TypeRegular, 1))},
		"shared prefix not longest": {two(), one("pa", 2, blk().rec(0, "pa", 1).cand(0, format.TypeRegular, 0).rec(0, "pb", 1).cand(0, format.TypeRegular, 1))},
		"first record shares":       {two(), one("p", 1, blk().rec(1, "p", 1).cand(0, format.TypeRegular, 0))},
		"first path not the dir's":  {two(), one("o", 1, rp().cand(0, format.TypeRegular, 0))},
		"path over the cap":         {two(), one("p", 1, blk().u(0, format.MaxPathLen+1))},
		"no candidate":              {two(), one("p", 1, rp())},
		"candidates unsorted":       {two(), one("p", 1, blk().rec(0, "p", 2).cand(1, format.TypeRegular, 0).cand(0, format.TypeRegular, 0))},
		"candidate archive twice":   {two(), one("p", 1, blk().rec(0, "p", 2).cand(0, format.TypeRegular, 0).cand(0, format.TypeRegular, 1))},
		"archive out of table":      {two(), one("p", 1, rp().cand(2, format.TypeRegular, 0))},
		"type not indexed":          {two(), one("p", 1, rp().cand(0, format.TypeTrailer, 0))},
		"type zero":                 {two(), one("p", 1, rp().cand(0, 0, 0))},
		"member past the count":     {two(), one("p", 1, rp().cand(0, format.TypeRegular, 3))},
		"conflict of two seqs":      {(&plainBuilder{}).u(2, 2).arch("a", 1, 1, 3).arch("b", 2, 2, 3).b, one("p", 1, blk().rec(0, "p", 2).cand(0, format.TypeRegular, 0).cand(1, format.TypeRegular, 0))},
		"record count too big":      {two(), one("p", 2, rp().cand(0, format.TypeRegular, 0))},
		"bytes after the records":   {two(), one("p", 1, rp().cand(0, format.TypeRegular, 0).raw(0))},
		"long varint":               {two(), one("p", 1, blk().raw(0x80, 0x00))},
		"empty block":               {two(), one("p", 1, blk())},
		"no records in a block":     {two(), one("p", 0, blk())},
		"blocks unsorted":           {two(), []rawBlock{{"q", 1, blk().rec(0, "q", 1).cand(0, format.TypeRegular, 0).b}, {"p", 1, rp().cand(0, format.TypeRegular, 1).b}}},
		"block overlaps the next":   {two(), []rawBlock{{"p", 1, blk().rec(0, "p", 1).cand(0, format.TypeRegular, 0).rec(1, "z", 1).cand(0, format.TypeRegular, 0).b}, {"q", 1, blk().rec(0, "q", 1).cand(0, format.TypeRegular, 1).b}}},
		"path with ./":              {two(), one("./p", 1, blk().rec(0, "./p", 1).cand(0, format.TypeRegular, 0))},
		"path with a trailing /":    {two(), one("p/", 1, blk().rec(0, "p/", 1).cand(0, format.TypeRegular, 0))},
		"path with //":              {two(), one("p//q", 1, blk().rec(0, "p//q", 1).cand(0, format.TypeRegular, 0))},
		"absolute path":             {two(), one("/p", 1, blk().rec(0, "/p", 1).cand(0, format.TypeRegular, 0))},
		"path with ..":              {two(), one("p/../q", 1, blk().rec(0, "p/../q", 1).cand(0, format.TypeRegular, 0))},
		"empty path":                {two(), one("", 1, blk().rec(0, "", 1).cand(0, format.TypeRegular, 0))},
		"zero span":                 {two(), one("p", 1, rp().u(0).raw(byte(format.TypeRegular)).u(0, 1536, 0, 5, 77))},
	}
	for name, c := range cases {
		enc := sealRaw(t, key, c.table, c.blocks)
		_, err := Read(bytes.NewReader(enc), key)
		var fe *Error
		if !errors.As(err, &fe) || fe.What == "" {
			t.Errorf("%s: %v, want an index error", name, err)
		}
	}
}

// TestMergeIndexesReference checks the k-way, range-parallel merge against
// a plain reading of the winner rule, on parts big enough to be cut into
// ranges, with conflicts, tombstones, repeats within an archive, and
// copies of an archive in two parts.
func TestMergeIndexesReference(t *testing.T) {
	rnd := rand.New(rand.NewPCG(11, 12))
	type member struct {
		path string
		e    Entry
	}
	type arch struct {
		a  Archive
		ms []member
	}
	var archs []arch
	for i := range 40 {
		a := Archive{Name: fmt.Sprintf("a%03d-%02d", rnd.IntN(1000), i), Seq: uint64(rnd.IntN(8))}
		a.ID[0], a.ID[1] = byte(i), 0xee
		n := 1000 + rnd.IntN(3000)
		a.Members = uint64(n)
		var ms []member
		for m := range n {
			typ := []format.Type{format.TypeRegular, format.TypeRegular, format.TypeRegular, format.TypeDir, format.TypeTombstone, format.TypeTarOther}[rnd.IntN(6)]
			ms = append(ms, member{fmt.Sprintf("p/%05d", rnd.IntN(40000)), Entry{Member: uint32(m), Type: typ,
				Offset: int64(m) * 2048, Span: 1100, Size: int64(rnd.IntN(100)), Inode: rnd.Uint64()}})
		}
		archs = append(archs, arch{a, ms})
	}
	build := func(ar arch) *Index {
		b, err := NewBuilder(ar.a, len(ar.ms), 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ar.ms {
			if err := b.Add([]byte(m.path), m.e); err != nil {
				t.Fatal(err)
			}
		}
		return b.Index()
	}
	// Reference: per path, per archive the last member; then those of the
	// highest sequence.
	type pathID struct {
		path string
		id   [crypt.IDSize]byte
	}
	last := map[pathID]member{}
	for _, ar := range archs {
		for _, m := range ar.ms {
			if Indexed(m.e.Type) {
				last[pathID{m.path, ar.a.ID}] = m
			}
		}
	}
	byPath := map[string][]member{}
	idArch := map[[crypt.IDSize]byte]Archive{}
	for _, ar := range archs {
		idArch[ar.a.ID] = ar.a
	}
	for k, m := range last {
		byPath[k.path] = append(byPath[k.path], member{path: string(k.id[:]), e: m.e})
	}
	// Groups of archives into parts; archive 0 is also copied into the
	// last part under another name.
	// Half the archives in merged groups, half as compact one-archive
	// indexes, as a rebuild gives them.
	var parts []*Index
	for _, ar := range archs[20:] {
		b, err := NewBuilder(ar.a, len(ar.ms), 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ar.ms {
			b.Add([]byte(m.path), m.e)
		}
		parts = append(parts, b.Compact())
	}
	for g := 0; g < 20; g += 4 {
		var p *Index
		for _, ar := range archs[g:min(g+4, len(archs))] {
			if p == nil {
				p = build(ar)
			} else {
				p = mustMerge(t, p, build(ar))
			}
		}
		parts = append(parts, p)
	}
	cp := archs[0]
	cp.a.Name = "zz-copy"
	parts[len(parts)-1] = mustMerge(t, parts[len(parts)-1], build(cp))
	total := 0
	for _, p := range parts {
		total += p.Len()
	}
	if total < 1<<16 {
		t.Fatalf("parts hold %d records: too few to be cut into ranges", total)
	}
	x, copies, err := Merge(parts...)
	if err != nil {
		t.Fatal(err)
	}
	if len(copies) != 1 || copies[0].Names[1] != "zz-copy" {
		t.Errorf("copies %+v", copies)
	}
	if x.Len() != len(byPath) {
		t.Fatalf("%d records, want %d", x.Len(), len(byPath))
	}
	conflicts := 0
	for i := 0; i < x.Len(); i++ {
		cands := byPath[string(x.Path(i))]
		var top uint64
		for _, c := range cands {
			top = max(top, idArch[[crypt.IDSize]byte([]byte(c.path))].Seq)
		}
		var want []string
		for _, c := range cands {
			a := idArch[[crypt.IDSize]byte([]byte(c.path))]
			if a.Seq == top {
				want = append(want, fmt.Sprintf("%s/%x#%d %v", a.Name, a.ID[:2], c.e.Member, c.e.Type))
			}
		}
		slices.Sort(want)
		var got []string
		for _, e := range x.Entries(i) {
			a := x.Archives[e.Archive]
			got = append(got, fmt.Sprintf("%s/%x#%d %v", a.Name, a.ID[:2], e.Member, e.Type))
		}
		if !slices.Equal(want, got) {
			t.Fatalf("%s: got %v, want %v", x.Path(i), got, want)
		}
		if len(got) > 1 {
			conflicts++
		}
	}
	if conflicts == 0 {
		t.Error("the test made no conflicts")
	}
	// The same as merging every archive one by one, in reverse.
	var y *Index
	for i := len(archs) - 1; i >= 0; i-- {
		if y == nil {
			y = build(archs[i])
		} else {
			y = mustMerge(t, build(archs[i]), y)
		}
	}
	y = mustMerge(t, y, build(cp))
	key := testutil.Key(t, 9)
	if !bytes.Equal(encodeT(t, x, key), encodeT(t, y, key)) {
		t.Error("k-way merge of parts differs from merging archive by archive")
	}
}

// format.WriterOptions.Tombstones come first, so the archive's own members
// supersede them.
func TestWriterTombstonesFirst(t *testing.T) {
	key := testutil.Key(t, 12)
	opt := format.WriterOptions{Sequence: 3, Tombstones: [][]byte{[]byte("gone"), []byte("back")}}
	data, entries := writeArchive(t, key, []testMember{{format.Meta{Type: format.TypeRegular, Path: []byte("back"), Size: 2}, []byte("hi")}}, opt)
	var got []string
	for _, e := range entries {
		got = append(got, fmt.Sprintf("%d %s %s", e.Number, e.Meta.Type, e.Meta.Path))
	}
	want := []string{"0 tombstone gone", "1 tombstone back", "2 file back"}
	if !slices.Equal(got, want) {
		t.Fatalf("members %v, want %v", got, want)
	}
	a, err := format.OpenArchive(format.NewSource(bytes.NewReader(data), int64(len(data))), key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewBuilder(Archive{Name: "t", ID: a.Header.ID, Seq: 3, Members: a.Footer.Members}, 3, 0)
	if err := a.SummaryItems(&format.SummaryScratch{}, func(it *format.SummaryItem) error {
		return b.Add(it.Path, Entry{Member: it.Member, Type: it.Type, Offset: it.Offset, Span: it.Span, Size: it.Size})
	}); err != nil {
		t.Fatal(err)
	}
	x := b.Index()
	if i, ok := x.Find([]byte("back")); !ok || !x.Live(i) || x.Entries(i)[0].Member != 2 {
		t.Errorf("back: %v %+v", ok, x.Entries(i))
	}
	if i, ok := x.Find([]byte("gone")); !ok || x.Live(i) {
		t.Errorf("gone is live or missing")
	}
	if _, err := format.NewWriter(io.Discard, key, format.WriterOptions{Tombstones: [][]byte{nil}}); err == nil {
		t.Error("a tombstone without a path was written")
	}
}

// A compact index is the same index; a builder reused after Compact
// starts clean.
func TestIndexCompact(t *testing.T) {
	key := testutil.Key(t, 13)
	var ms []fakeMember
	for i := range 1000 {
		ms = append(ms, fakeMember{fmt.Sprintf("d/%04d", i*7919%1000), []format.Type{format.TypeRegular, format.TypeTombstone, format.TypeDir}[i%3]})
	}
	ms = append(ms, fakeMember{"d/0005", format.TypeSymlink}) // repeats a path: the last wins
	full := buildIndex(t, "c.cbfs", 1, 4, ms)
	a := Archive{Name: "c.cbfs", Seq: 4, Members: uint64(len(ms))}
	a.ID[0] = 1
	b, _ := NewBuilder(Archive{Name: "first", Members: 1}, 1, 0)
	b.Add([]byte("zzz"), Entry{Type: format.TypeRegular, Span: 1})
	first := b.Compact()
	if err := b.Reset(a, len(ms)); err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		b.Add([]byte(m.path), Entry{Member: uint32(i), Type: m.typ, Offset: int64(1536 + 2048*i), Span: 1100, Size: int64(len(m.path)), Inode: uint64(100 + i)})
	}
	c := b.Compact()
	if err := b.Add([]byte("x"), Entry{Type: format.TypeRegular, Span: 1}); err == nil {
		t.Error("Add after Compact without Reset accepted")
	}
	if diff := cmp.Diff(viewOf(full), viewOf(c)); diff != "" {
		t.Fatalf("compact index differs (-want +got):\n%s", diff)
	}
	if !bytes.Equal(encodeT(t, full, key), encodeT(t, c, key)) {
		t.Error("compact index encodes differently")
	}
	if first.Len() != 1 || string(first.Path(0)) != "zzz" {
		t.Error("the first archive's compact index changed when the builder was reused")
	}
}

// TestMergeNameClash: two different archives of one name cannot share an
// index (spec cbfs-index-v1 6.1); the error names both ids.
func TestMergeNameClash(t *testing.T) {
	a := &Index{Archives: []Archive{{Name: "x.cbfs", ID: [crypt.IDSize]byte{1}, Seq: 1, Members: 1}}}
	b := &Index{Archives: []Archive{{Name: "x.cbfs", ID: [crypt.IDSize]byte{2}, Seq: 2, Members: 1}}}
	_, _, err := Merge(a, b)
	if err == nil || !strings.Contains(err.Error(), `both named "x.cbfs"`) || !strings.Contains(err.Error(), "01000000") || !strings.Contains(err.Error(), "02000000") {
		t.Fatalf("merge of two archives named x.cbfs: %v", err)
	}
	// The same archive twice is one archive.
	if x, copies, err := Merge(a, a); err != nil || len(x.Archives) != 1 || len(copies) != 1 {
		t.Fatalf("the same archive twice: %v, %d copies", err, len(copies))
	}
}

func TestCanonicalPath(t *testing.T) {
	for in, want := range map[string]string{
		"data/f1": "data/f1", "./data/f1": "data/f1", "/data/f1": "data/f1", "data/": "data", "data//f1/": "data/f1",
		"//a/./b/.": "a/b", "././a": "a", ".a/..b/...": ".a/..b/...", "a/.b": "a/.b",
		"..": "", "a/../b": "", "../a": "", "a/..": "", "": "", ".": "", "/": "", "./": "", "//.//": "",
	} {
		got, err := CanonicalPath([]byte(in))
		var ce *CanonicalPathError
		switch {
		case want == "" && !errors.As(err, &ce):
			t.Errorf("CanonicalPath(%q) = %q, %v; want a CanonicalPathError", in, got, err)
		case want == "" && ce.Root != !bytes.Contains([]byte("/"+in+"/"), []byte("/../")):
			t.Errorf("CanonicalPath(%q): Root = %v", in, ce.Root)
		case want != "" && (err != nil || string(got) != want):
			t.Errorf("CanonicalPath(%q) = %q, %v; want %q", in, got, err, want)
		}
		if want != "" && IsCanonicalPath([]byte(in)) != (in == want) {
			t.Errorf("IsCanonicalPath(%q) = %v", in, !(in == want))
		}
	}
}

// The index keys on canonical paths: aliases of one path in one archive
// are one record, the last member winning; ".." paths are refused.
func TestIndexBuilderCanonical(t *testing.T) {
	b, err := NewBuilder(Archive{Name: "a", Seq: 3, Members: 4}, 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	add := func(p string, m uint32) error {
		return b.Add([]byte(p), Entry{Member: m, Type: format.TypeRegular, Offset: 1536, Span: 10})
	}
	for m, p := range []string{"data/f1", "./data/f1", "./"} {
		if err := add(p, uint32(m)); err != nil {
			t.Fatalf("%q: %v", p, err)
		}
	}
	var ce *CanonicalPathError
	if err := add("data/../../etc/passwd", 3); !errors.As(err, &ce) || ce.Root {
		t.Fatalf(".. path: %v, want a CanonicalPathError", err)
	}
	x := b.Index()
	if x.Len() != 1 || string(x.Path(0)) != "data/f1" || x.Entries(0)[0].Member != 1 || x.HighSeq != 3 {
		t.Fatalf("records %d, path %q, high-seq %d", x.Len(), x.Path(0), x.HighSeq)
	}
}

// TestIndexWorkedExample is appendix A of spec/cbfs-index-v1.md: the
// index of one archive, whose SHA-256 was also computed independently
// from the spec text (Python, cryptography).
func TestIndexWorkedExample(t *testing.T) {
	key := testutil.Key(t, 0x42)
	var id [crypt.IDSize]byte
	for i := range id {
		id[i] = byte(i)
	}
	b, err := NewBuilder(Archive{Name: "0001.cbfs", ID: id, Seq: 7, Members: 1}, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Add([]byte("hello.txt"), Entry{Member: 0, Type: format.TypeRegular, Offset: 1536, Span: 1086, Size: 6}); err != nil {
		t.Fatal(err)
	}
	enc := encodeT(t, b.Index(), key)
	sum := sha256.Sum256(enc)
	if got, want := hex.EncodeToString(sum[:]), "94577c57098d5a970fa317f49288e1659b89dd5f53a7b95b94910da3e3db8605"; len(enc) != 207 || got != want {
		t.Fatalf("worked example: %d bytes, SHA-256 %s; want 207 bytes, %s", len(enc), got, want)
	}
}

func TestVersionErrorWording(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&VersionError{Major + 1, 0}, "a newer cbfs is needed"},
		{&VersionError{0, 3}, "is the index damaged?"},
	} {
		if got := c.err.Error(); !strings.Contains(got, c.want) {
			t.Errorf("%q does not say %q", got, c.want)
		}
	}
}

// TestIndexConcurrentReads: an index, compact or not, may be read from
// several goroutines at once; the first read of a compact one expands it
// while others read (go test -race finds a race there).
func TestIndexConcurrentReads(t *testing.T) {
	var ms []fakeMember
	for i := range 500 {
		ms = append(ms, fakeMember{fmt.Sprintf("p/%04d", i), format.TypeRegular})
	}
	full := buildIndex(t, "r.cbfs", 1, 2, ms)
	a := Archive{Name: "r.cbfs", Seq: 2, Members: uint64(len(ms))}
	a.ID[0] = 1
	b, _ := NewBuilder(a, len(ms), 0)
	for i, m := range ms {
		b.Add([]byte(m.path), Entry{Member: uint32(i), Type: m.typ, Offset: int64(1536 + 2048*i), Span: 1100})
	}
	for _, x := range []*Index{full, b.Compact()} {
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				if x.Len() != len(ms) {
					t.Errorf("Len %d", x.Len())
				}
				p := []byte(ms[(g*61)%len(ms)].path)
				if i, ok := x.Find(p); !ok || !bytes.Equal(x.Path(i), p) || !x.Live(i) || x.Conflicted(i) || len(x.Entries(i)) != 1 {
					t.Errorf("record %s", p)
				}
				if st := x.Stats(); st.Live != len(ms) {
					t.Errorf("stats %+v", st)
				}
			})
		}
		wg.Wait()
	}
}

// TestSeveralKeys: Read and Check take, of several keys, the one whose
// key check value the header carries (here the second); no match is
// ErrWrongKey, unless a key opens the content, which makes a changed
// check value damage.
func TestSeveralKeys(t *testing.T) {
	right, wrong, other := testutil.Key(t, 6), testutil.Key(t, 7), testutil.Key(t, 8)
	p := threeArchives(t)
	x := mustMerge(t, mustMerge(t, p[0], p[1]), p[2])
	enc := encodeT(t, x, right)
	y, err := Read(bytes.NewReader(enc), wrong, right)
	if err != nil || y.Len() != x.Len() {
		t.Fatalf("Read: %v", err)
	}
	if info, err := Check(bytes.NewReader(enc), nil, wrong, right); err != nil || info.Index == nil {
		t.Fatalf("Check: %v", err)
	}
	if _, err := Read(bytes.NewReader(enc), wrong, other); !errors.Is(err, format.ErrWrongKey) {
		t.Errorf("no matching key: %v", err)
	}
	if info, err := Check(bytes.NewReader(enc)); err != nil || info.Index != nil || info.Frames == 0 {
		t.Errorf("Check without a key: %+v, %v", info, err)
	}
	b := bytes.Clone(enc)
	b[40] ^= 1 // the key check value
	var ie *Error
	if _, err := Read(bytes.NewReader(b), wrong, right); !errors.As(err, &ie) {
		t.Errorf("changed check value, right key second: %v, want damage", err)
	}
	if _, err := Read(bytes.NewReader(b), wrong, other); !errors.Is(err, format.ErrWrongKey) {
		t.Errorf("changed check value, no right key: %v, want ErrWrongKey", err)
	}
}

// An aborted RunBuilder leaves nothing in the index: not its records
// (spilled or not), not its archive's row, not its sequence number, not
// the archives its replaces record retires.
func TestRunBuilderAbort(t *testing.T) {
	key := testutil.Key(t, 6)
	build := func(abort bool) []byte {
		sp := &Spiller{Budget: 64, Dir: t.TempDir()}
		defer sp.Close()
		keep, err := sp.NewRunBuilder(Archive{Name: "a", ID: [crypt.IDSize]byte{1}, Seq: 1, Members: 3}, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range []string{"x", "y", "z"} {
			if err := keep.Add([]byte(p), Entry{Member: uint32(i), Type: format.TypeRegular, Offset: int64(i) * 2000, Span: 1080}); err != nil {
				t.Fatal(err)
			}
		}
		if err := keep.Commit(); err != nil {
			t.Fatal(err)
		}
		if abort {
			gone, err := sp.NewRunBuilder(Archive{Name: "b", ID: [crypt.IDSize]byte{2}, Seq: 9, Members: 20000}, 0)
			if err != nil {
				t.Fatal(err)
			}
			// A compacted archive given up: what it replaces stays.
			if err := gone.SetReplaces([]format.Replaced{{ID: [crypt.IDSize]byte{1}, Seq: 1}}); err != nil {
				t.Fatal(err)
			}
			for i := range 20000 { // past the builder's limit: its own runs spill
				if err := gone.Add(fmt.Appendf(nil, "y/%05d", (i*7)%20000), Entry{Member: uint32(i), Type: format.TypeRegular, Offset: int64(i) * 2000, Span: 1080}); err != nil {
					t.Fatal(err)
				}
			}
			if sp.Spills == 0 {
				t.Fatal("the aborted builder's runs did not spill")
			}
			gone.Abort()
		}
		var buf bytes.Buffer
		res, err := sp.Combine(&buf, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.HighSeq != 1 || len(res.Archives) != 1 || len(res.Copies) != 0 {
			t.Errorf("abort %v: high seq %d, %d archives, %d copies", abort, res.HighSeq, len(res.Archives), len(res.Copies))
		}
		return buf.Bytes()
	}
	if a, b := build(false), build(true); !bytes.Equal(a, b) {
		t.Errorf("an aborted archive changed the index: %d bytes, %d without it", len(b), len(a))
	}
}

// However many runs spill, no more than maxSpillFiles spill files are
// kept (they are merged into one past that), and the index is the same
// bytes as with a budget that never spills.
func TestSpillFilesBounded(t *testing.T) {
	key := testutil.Key(t, 6)
	build := func(budget, limit int) ([]byte, int) {
		sp := &Spiller{Budget: budget, Dir: t.TempDir()}
		defer sp.Close()
		most := 0
		for a := range 5 {
			b, err := sp.NewRunBuilder(Archive{Name: fmt.Sprintf("a%d", a), ID: [crypt.IDSize]byte{byte(a + 1)}, Seq: uint64(a % 3), Members: 30000}, limit)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 30000 {
				p := fmt.Appendf(nil, "d%d/%05d", i%7, (i*7919+a*13)%30000)
				if err := b.Add(p, Entry{Member: uint32(i), Type: format.TypeRegular, Offset: int64(i) * 2000, Span: 1080, Size: int64(a)}); err != nil {
					t.Fatal(err)
				}
				most = max(most, len(b.files))
			}
			if err := b.Commit(); err != nil {
				t.Fatal(err)
			}
			most = max(most, len(sp.files))
		}
		var buf bytes.Buffer
		if _, err := sp.Combine(&buf, key, nil); err != nil {
			t.Fatal(err)
		}
		if budget < 1<<30 && sp.Spills < 2*maxSpillFiles {
			t.Errorf("budget %d: %d spills, want the files merged more than once", budget, sp.Spills)
		}
		return buf.Bytes(), most
	}
	want, _ := build(1<<30, 1<<30)
	got, most := build(64, 0)
	if most >= maxSpillFiles {
		t.Errorf("%d spill files kept at once, want fewer than %d", most, maxSpillFiles)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("with spill files merged: %d bytes, differ from the %d in memory", len(got), len(want))
	}
}
