package format

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/cbfs/cbfs/internal/testutil"
)

// streamArchive opens an archive of sampleMembers (made with opt) for
// random access, with its summary.
func streamArchive(t *testing.T, data []byte) (*Archive, []Entry) {
	t.Helper()
	a, err := OpenArchive(NewSource(bytes.NewReader(data), int64(len(data))), testutil.Key(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	es, err := a.Entries()
	if err != nil {
		t.Fatal(err)
	}
	return a, es
}

// TestMemberStream: members of two archives (different chunk sizes), in
// an order that jumps between them and goes back within one, come out in
// that order with the metadata and content random access gives; a member
// given twice comes twice.
func TestMemberStream(t *testing.T) {
	key := testutil.Key(t, 1)
	d1, _ := writeArchive(t, key, sampleMembers(), WriterOptions{Compress: true})
	d2, _ := writeArchive(t, key, sampleMembers(), WriterOptions{ChunkSize: 4096, RecordSize: 64 << 10})
	a1, e1 := streamArchive(t, d1)
	a2, e2 := streamArchive(t, d2)
	var items []StreamItem
	for i := range e1 {
		items = append(items, StreamItem{a1, e1[i]}, StreamItem{a2, e2[len(e2)-1-i]})
	}
	items = append(items, StreamItem{a1, e1[2]}, StreamItem{a1, e1[3]}, StreamItem{a1, e1[2]})
	for _, stopAt := range []int{len(items), 5, 0} {
		s := NewMemberStream(items)
		for i, it := range items[:stopAt] {
			m, err := s.Next()
			if err != nil {
				t.Fatalf("item %d: %v", i, err)
			}
			want, err := it.Archive.Meta(it.Entry)
			if err != nil {
				t.Fatal(err)
			}
			if m.Number != it.Entry.Number || m.Offset != it.Entry.Offset || !bytes.Equal(m.Meta.Encode(nil), want.Encode(nil)) {
				t.Fatalf("item %d: member %d %q, want %d %q", i, m.Number, m.Meta.Path, it.Entry.Number, want.Path)
			}
			var wantC bytes.Buffer
			if err := it.Archive.Content(it.Entry, &wantC); err != nil {
				t.Fatal(err)
			}
			// Half of them read partly: Next skips the rest.
			if i%2 == 1 && wantC.Len() > 10 {
				got := make([]byte, 10)
				if _, err := io.ReadFull(s, got); err != nil || !bytes.Equal(got, wantC.Bytes()[:10]) {
					t.Fatalf("item %d: first bytes %q %v", i, got, err)
				}
				continue
			}
			var got bytes.Buffer
			if _, err := io.Copy(&got, s); err != nil || !bytes.Equal(got.Bytes(), wantC.Bytes()) {
				t.Fatalf("item %d (%q): %d bytes of content, want %d (%v)", i, m.Meta.Path, got.Len(), wantC.Len(), err)
			}
		}
		if stopAt == len(items) {
			if _, err := s.Next(); err != io.EOF {
				t.Fatalf("after the last item: %v", err)
			}
		}
		s.Close() // also when stopped early: its goroutines end
		s.Close()
	}
}

// TestMemberStreamDamage: a changed byte in a member's metadata or
// content stops the stream at that member, named by number and path,
// after every member before it was delivered whole.
func TestMemberStreamDamage(t *testing.T) {
	key := testutil.Key(t, 1)
	good, entries := writeArchive(t, key, sampleMembers(), WriterOptions{Compress: true})
	for _, c := range []struct {
		name   string
		member int
		at     int64 // bytes into the member
	}{{"metadata", 2, FrameHeaderSize + 40}, {"content", 3, 1100 + FrameHeaderSize + 5000}, {"last content", 4, -20}} {
		t.Run(c.name, func(t *testing.T) {
			e := entries[c.member]
			off := e.Offset + c.at
			if c.at < 0 {
				off = e.Offset + e.Length + c.at
			}
			// Open before the damage (the summary is intact either way).
			data := bytes.Clone(good)
			a, es := streamArchive(t, data)
			data[physOf(off, DefaultRecordSize)] ^= 0x20
			var items []StreamItem
			for _, e := range es {
				items = append(items, StreamItem{a, e})
			}
			s := NewMemberStream(items)
			defer s.Close()
			var err error
			for i := 0; ; i++ {
				var m *Member
				if m, err = s.Next(); err == nil {
					_, err = io.Copy(io.Discard, s)
				}
				if err != nil {
					if i != c.member {
						t.Fatalf("stopped at item %d, not %d: %v", i, c.member, err)
					}
					break
				}
				if m.Number != uint32(i) {
					t.Fatalf("item %d is member %d", i, m.Number)
				}
			}
			var fe *Error
			if !errors.As(err, &fe) || fe.Member != int64(c.member) || fe.Path != string(sampleMembers()[c.member].meta.Path) {
				t.Fatalf("error %v (%+v)", err, fe)
			}
			if _, err2 := s.Next(); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("error not sticky: %v", err2)
			}
			if !strings.Contains(err.Error(), fmt.Sprint(c.member)) {
				t.Fatalf("error does not name the member: %v", err)
			}
		})
	}
}
