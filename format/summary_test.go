package format

import (
	"bytes"
	"fmt"
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

// TestSummaryPathsApart: the entries of a decoded summary share slabs,
// but appending to one's path or link never changes another's.
func TestSummaryPathsApart(t *testing.T) {
	key := testutil.Key(t, 1)
	data, _ := writeArchive(t, key, sampleMembers(), WriterOptions{})
	a, err := OpenArchive(NewSource(bytes.NewReader(data), int64(len(data))), key)
	if err != nil {
		t.Fatal(err)
	}
	es, err := a.Entries()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range es {
		want = append(want, string(e.Meta.Path)+"|"+string(e.Meta.Link))
	}
	for _, e := range es {
		_ = append(e.Meta.Path, "XXXXXXXX"...)
		_ = append(e.Meta.Link, "YYYYYYYY"...)
	}
	for i, e := range es {
		if got := string(e.Meta.Path) + "|" + string(e.Meta.Link); got != want[i] {
			t.Fatalf("entry %d: %q, was %q", i, got, want[i])
		}
	}
}
