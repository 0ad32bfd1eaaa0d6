package format

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/cbfs/cbfs/internal/testutil"
	"github.com/google/go-cmp/cmp"
)

// SummaryItems must give what Entries gives.
func TestSummaryItemsMatchEntries(t *testing.T) {
	key := testutil.Key(t, 1)
	ms := sampleMembers()
	for i := range 300 {
		ms = append(ms, testMember{Meta{Type: TypeRegular, Path: fmt.Appendf(nil, "many/%04d", i), Size: 3, Inode: uint64(i)}, []byte("abc")})
	}
	data, _ := writeArchive(t, key, ms, WriterOptions{Compress: true, Sequence: 7, RecordSize: MinRecordSize})
	a, err := OpenArchive(NewSource(bytes.NewReader(data), int64(len(data))), key)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := a.Entries()
	if err != nil {
		t.Fatal(err)
	}
	var got []SummaryItem
	if err := a.SummaryItems(&SummaryScratch{}, func(it *SummaryItem) error {
		c := *it
		c.Path = bytes.Clone(it.Path)
		got = append(got, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var want []SummaryItem
	for _, e := range entries {
		end := a.PhysOffset(e.Offset+e.Length-1) + 1
		want = append(want, SummaryItem{Member: e.Number, Type: e.Meta.Type, Path: e.Meta.Path, Offset: a.PhysOffset(e.Offset),
			Span: end - a.PhysOffset(e.Offset), Size: e.Meta.Size, Inode: e.Meta.Inode})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("SummaryItems differs from Entries (-want +got):\n%s", diff)
	}
	// The span is the byte range of the member: its last byte is the
	// last byte of its final content frame.
	last := got[len(got)-1]
	if last.Offset+last.Span > int64(a.Footer.FooterOffset) {
		t.Errorf("last member's span runs past the footer")
	}
}

func TestLeanMetaRefuses(t *testing.T) {
	m := &Meta{Type: TypeRegular, Path: []byte("p"), Size: 4}
	enc := m.Encode(nil)
	var it SummaryItem
	if err := leanMeta(enc, &it); err != nil || string(it.Path) != "p" || it.Size != 4 {
		t.Fatalf("leanMeta: %v %+v", err, it)
	}
	bad := map[string][]byte{
		"unknown critical tag": append(bytes.Clone(enc), 30, 0),
		"tag 19":               append(bytes.Clone(enc), 19, 0),
		"out of order":         append(append([]byte{}, enc[3:]...), enc[:3]...),
		"length past the end":  append(bytes.Clone(enc), 64, 5, 1),
		"no path":              enc[:3],
		"type 0":               append([]byte{1, 1, 0}, enc[3:]...),
	}
	for name, b := range bad {
		if err := leanMeta(b, &it); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	// An optional tag is walked over.
	if err := leanMeta(append(bytes.Clone(enc), 70, 1, 9), &it); err != nil {
		t.Errorf("optional tag refused: %v", err)
	}
}

// summaryVariants are summary plaintexts with the member count a footer
// would give: a valid one with entries long enough to span many pieces,
// and damaged ones of every kind the walker refuses.
func summaryVariants() map[string]struct {
	p    []byte
	want uint64
} {
	var es []Entry
	off := int64(0)
	for i := range 40 {
		path := fmt.Appendf(nil, "dir/%03d", i)
		if i%7 == 3 {
			path = append(path, bytes.Repeat([]byte{'x'}, 300*i)...) // entries of several KiB
		}
		es = append(es, Entry{Number: uint32(i), Offset: off, Length: 1080 + int64(i)*300,
			Meta: &Meta{Type: TypeRegular, Path: path, Size: int64(i), Inode: uint64(1 << (i % 60))}})
		off += es[i].Length
	}
	p := EncodeSummary(es)
	n := uint64(len(es))
	third := EncodeSummary(es[:3])
	out := map[string]struct {
		p    []byte
		want uint64
	}{}
	add := func(name string, p []byte, want uint64) {
		out[name] = struct {
			p    []byte
			want uint64
		}{p, want}
	}
	add("valid", p, n)
	add("empty", nil, 0)
	add("one fewer in the footer", p, n-1)
	add("one more in the footer", p, n+1)
	add("footer count past the room", p, uint64(len(p))/minEntryLen+1)
	add("trailing byte", append(bytes.Clone(p), 0), n)
	for _, cut := range []int{1, len(third) - 1, len(third) + 1, len(p) / 2, len(p) - 1} {
		add(fmt.Sprintf("cut at %d", cut), p[:cut], n)
	}
	add("overlong varint", append([]byte{0x80, 0x00}, p[1:]...), n)
	add("varint over 64 bits", append(bytes.Repeat([]byte{0xff}, 11), p...), n)
	add("offset gap", append(bytes.Clone(third), EncodeSummary([]Entry{{Number: 3, Offset: off + 1, Length: 2000, Meta: es[3].Meta}})...), 4)
	add("short member", EncodeSummary([]Entry{{Offset: 0, Length: 1079, Meta: es[0].Meta}}), 1)
	bad := bytes.Clone(p)
	bad[len(third)+3] = 0x13 // the fourth entry's record: its type tag becomes critical tag 19
	add("bad record", bad, n)
	huge := binary.AppendUvarint(binary.AppendUvarint(binary.AppendUvarint(nil, 0), 1080), MaxMetaSize+1)
	add("meta-len over the cap", append(huge, make([]byte, 64)...), 1)
	return out
}

// decodePieces decodes p cut into pieces of the lengths cuts gives in
// turn (the last piece is the rest).
func decodePieces(p []byte, want uint64, cuts []int) ([]Entry, error) {
	var es []Entry
	d, err := NewSummaryDecoder(want, int64(len(p)), func(e Entry) error {
		es = append(es, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := 0; ; i++ {
		k := len(p)
		if len(cuts) > 0 {
			k = min(k, cuts[i%len(cuts)])
		}
		if err := d.Write(p[:k], k == len(p)); err != nil {
			return es, err
		}
		if p = p[k:]; len(p) == 0 {
			break
		}
	}
	if d.End() != entriesEnd(es) {
		return es, fmt.Errorf("End %d, the entries end at %d", d.End(), entriesEnd(es))
	}
	return es, nil
}

func entriesEnd(es []Entry) int64 {
	if len(es) == 0 {
		return 0
	}
	return es[len(es)-1].Offset + es[len(es)-1].Length
}

// The summary decoder fed in pieces, however the plaintext is cut (a
// byte at a time, through varints and records, at chunk-like sizes),
// accepts and refuses exactly what DecodeSummary does, with the same
// entries and the same error.
func TestSummaryDecoderPieces(t *testing.T) {
	cutss := [][]int{{1}, {2}, {3}, {5, 1, 9}, {13}, {64}, {100, 1}, {4096}, {7000, 3}}
	accepted, refused := 0, 0
	for name, v := range summaryVariants() {
		want, werr := DecodeSummary(v.p, v.want)
		if werr == nil {
			accepted++
		} else {
			refused++
			var se *summaryError
			if !errors.As(werr, &se) {
				t.Errorf("%s: DecodeSummary's error %T is not a summaryError: %v", name, werr, werr)
			}
		}
		for _, cuts := range cutss {
			got, gerr := decodePieces(v.p, v.want, cuts)
			if fmt.Sprint(gerr) != fmt.Sprint(werr) {
				t.Errorf("%s, pieces of %v: error %v, whole: %v", name, cuts, gerr, werr)
				continue
			}
			if werr == nil && !bytes.Equal(EncodeSummary(got), EncodeSummary(want)) {
				t.Errorf("%s, pieces of %v: %d entries differ from the whole's %d", name, cuts, len(got), len(want))
			}
		}
	}
	if accepted != 2 || refused < 12 {
		t.Errorf("%d variants accepted, %d refused: the damaged ones must be refused", accepted, refused)
	}
}

// largeSummaryArchive writes an archive whose summary is over a read
// window, in chunks of the smallest size, across several records.
func largeSummaryArchive(t *testing.T) ([]byte, []Entry) {
	t.Helper()
	var ms []testMember
	for i := range 12000 {
		ms = append(ms, testMember{Meta{Type: TypeDir, Path: fmt.Appendf(nil, "a/long/enough/directory/path/for/a/big/summary/%s/%06d", strings.Repeat("sub/", 30), i),
			Mode: 0o755, Inode: uint64(i)}, nil})
	}
	data, entries := writeArchive(t, testutil.Key(t, 1), ms, WriterOptions{ChunkSize: MinChunkSize, RecordSize: MinRecordSize})
	return data, entries
}

// readsSource records the reads of the summary's range.
type readsSource struct {
	Source
	from    int64
	mu      sync.Mutex
	largest int
	ranges  int
}

func (s *readsSource) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.from {
		s.mu.Lock()
		s.largest = max(s.largest, len(p))
		s.mu.Unlock()
	}
	return s.Source.ReadAt(p, off)
}

// rangeSource is a Source that is also a RangeReader.
type rangeSource struct{ *readsSource }

func (s rangeSource) ReadRange(off, n int64) (io.ReadCloser, error) {
	s.ranges++
	return io.NopCloser(io.NewSectionReader(s.Source, off, n)), nil
}

// A summary larger than the read window is read in windows (or in one
// range), never whole, across record boundaries, and gives the entries
// written; a second walk with the same scratch allocates next to nothing.
func TestSummaryWindowed(t *testing.T) {
	key := testutil.Key(t, 1)
	data, written := largeSummaryArchive(t)
	src := NewSource(bytes.NewReader(data), int64(len(data)))
	a, err := OpenArchive(src, key)
	if err != nil {
		t.Fatal(err)
	}
	R := int64(a.Header.RecordSize)
	pstart := physOf(int64(a.Footer.SummaryOffset), R)
	plen := int64(a.Footer.FooterOffset) - pstart
	if plen < 2*summaryWindow || int64(a.Footer.SummaryLength) < 2*R {
		t.Fatalf("summary of %d bytes over %d records: want more than two windows and records", plen, int64(a.Footer.SummaryLength)/R)
	}
	rs := &readsSource{Source: src, from: pstart}
	for _, s := range []Source{rs, rangeSource{rs}} {
		a, err := OpenArchive(s, key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.Entries()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(EncodeSummary(got), EncodeSummary(written)) {
			t.Fatalf("%T: %d entries read differ from the %d written", s, len(got), len(written))
		}
	}
	if rs.largest > summaryWindow || rs.largest == 0 {
		t.Errorf("largest read of the summary %d bytes, want at most the window %d", rs.largest, summaryWindow)
	}
	if rs.ranges != 1 {
		t.Errorf("a RangeReader's summary read in %d ranges, want 1", rs.ranges)
	}
	// The member scan walks the summary as it opens it too: intact, it
	// matches the members; with a member damaged, the summary names it.
	rep, err := ScanArchive(src, ScanOptions{Key: key}, nil)
	if err != nil || !rep.Intact() || !rep.SummaryChecked {
		t.Fatalf("scan: %v, %v, summary checked %v", err, rep.Problems, rep.SummaryChecked)
	}
	mid := written[len(written)/2]
	bad := bytes.Clone(data)
	bad[physOf(mid.Offset+FrameHeaderSize+40, R)] ^= 1
	rep, err = ScanArchive(NewSource(bytes.NewReader(bad), int64(len(bad))), ScanOptions{Key: key}, nil)
	if err != nil || len(rep.Problems) == 0 || rep.Problems[0].Member != int64(mid.Number) || rep.Problems[0].Path != string(mid.Meta.Path) {
		t.Fatalf("scan of a damaged member %d (%s): %v %v", mid.Number, mid.Meta.Path, err, rep.Problems)
	}
	var scratch SummaryScratch
	n := 0
	walk := func() {
		n = 0
		if err := a.SummaryItems(&scratch, func(*SummaryItem) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	walk()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	walk()
	runtime.ReadMemStats(&m1)
	if alloc := m1.TotalAlloc - m0.TotalAlloc; n != len(written) || alloc > uint64(plen)/16 {
		t.Errorf("second walk: %d items, %d bytes allocated for a summary of %d", n, alloc, plen)
	}
}

// A summary damaged in its last frame is refused after the entries of
// the frames before it were handed over; the error names the frame.
func TestSummaryLateError(t *testing.T) {
	key := testutil.Key(t, 1)
	data, _ := largeSummaryArchive(t)
	a, err := OpenArchive(NewSource(bytes.NewReader(data), int64(len(data))), key)
	if err != nil {
		t.Fatal(err)
	}
	R, cs := int64(a.Header.RecordSize), int64(a.Header.ChunkSize)
	last := int64(a.Footer.StreamLength) - FrameHeaderSize - summaryFrameLen(cs)
	for _, at := range []int64{FrameHeaderSize + 9, 0} { // the seal; the frame header
		bad := bytes.Clone(data)
		bad[physOf(last+at, R)] ^= 0x40
		a, err := OpenArchive(NewSource(bytes.NewReader(bad), int64(len(bad))), key)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		err = a.SummaryItems(&SummaryScratch{}, func(*SummaryItem) error { n++; return nil })
		var fe *Error
		if !errors.As(err, &fe) || fe.Class != ClassSummary || fe.Offset != physOf(last, R) {
			t.Fatalf("byte %d of the last frame damaged: %v, want a summary error at %d", at, err, physOf(last, R))
		}
		if n == 0 || n >= int(a.Footer.Members) {
			t.Errorf("%d of %d items handed over before the error: want the walk to have gone on", n, a.Footer.Members)
		}
		if es, err := a.Entries(); err == nil || es != nil {
			t.Errorf("Entries: %d entries, %v", len(es), err)
		}
	}
}

// TestSameSummary: sameSummary agrees with comparing the encodings, for
// members that differ in each field, in ways the encoding keeps and in
// ways it does not (nil and empty, a time not set), and with xattrs and
// tar bytes the summary leaves out.
func TestSameSummary(t *testing.T) {
	base := func() *Meta {
		return &Meta{Type: TypeRegular, Path: []byte("d/f"), Mode: 0o644, UID: 1, GID: 2, Uname: "u", Gname: "g",
			MTime: Time{Sec: 5, Nsec: 6, Set: true}, Size: 10, Inode: 7, Sparse: []Extent{{0, 4}, {8, 2}},
			Xattrs: []Xattr{{"user.a", []byte("b")}}, TarHeader: make([]byte, 512), Optional: []Field{{70, []byte("x")}}}
	}
	muts := []func(m *Meta){
		func(m *Meta) {},
		func(m *Meta) { m.Type = TypeSymlink },
		func(m *Meta) { m.Path = []byte("d/g") },
		func(m *Meta) { m.Link = []byte("t") },
		func(m *Meta) { m.Link = []byte{} },
		func(m *Meta) { m.Mode = 0o600 },
		func(m *Meta) { m.UID = 3 },
		func(m *Meta) { m.GID = 3 },
		func(m *Meta) { m.Uname = "v" },
		func(m *Meta) { m.Gname = "" },
		func(m *Meta) { m.MTime.Nsec = 7 },
		func(m *Meta) { m.ATime = Time{Sec: 9} }, // not set: not encoded
		func(m *Meta) { m.CTime = Time{Sec: 9, Set: true} },
		func(m *Meta) { m.DevMajor = 1 },
		func(m *Meta) { m.DevMinor = 1 },
		func(m *Meta) { m.Size = 11 },
		func(m *Meta) { m.Inode = 8 },
		func(m *Meta) { m.Sparse = nil },
		func(m *Meta) { m.Sparse = []Extent{} },
		func(m *Meta) { m.Sparse = []Extent{{0, 4}, {8, 3}} },
		func(m *Meta) { m.Xattrs = nil },
		func(m *Meta) { m.TarHeader = nil },
		func(m *Meta) { m.Typeflag = 'x' },
		func(m *Meta) { m.Optional = nil },
		func(m *Meta) { m.Optional = []Field{{70, []byte("y")}} },
		func(m *Meta) { m.Replaces = []Replaced{{ID: [16]byte{1}, Seq: 3}} },
		func(m *Meta) { m.Replaces = []Replaced{{ID: [16]byte{1}, Seq: 4}} },
		func(m *Meta) { m.Replaces = []Replaced{} },
	}
	for i, f := range muts {
		for j, g := range muts {
			m, s := base(), base().summaryOnly()
			f(m)
			g(s)
			want := bytes.Equal(m.summaryOnly().Encode(nil), s.Encode(nil))
			if got := m.sameSummary(s); got != want {
				t.Errorf("change %d on the member, %d on the summary: sameSummary %v, encodings equal %v", i, j, got, want)
			}
		}
	}
	// The summary form never carries xattrs or tar bytes.
	if m := base(); m.sameSummary(m) {
		t.Error("a summary entry with xattrs and tar bytes matched")
	}
}
