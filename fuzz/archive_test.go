package fuzz

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
)

// readMember is what the streaming reader gave for one member.
type readMember struct {
	number     uint32
	offset     int64
	physOffset int64
	meta       []byte // full metadata record, encoded (keyed reads)
	summary    []byte // its summary form, encoded
	size       int64
	sum        [32]byte
}

func summaryForm(m *format.Meta) []byte {
	s := *m
	s.Xattrs, s.TarHeader = nil, nil
	return s.Encode(nil)
}

// streamRead reads an archive front to back with format.NewReader, content
// included (hashed, so that LZ4 expansion cannot make the test itself hold
// much). Any error is returned as the reader gave it.
func streamRead(t *testing.T, data []byte, key *crypt.Key) ([]readMember, error) {
	r, err := format.NewReader(bytes.NewReader(data), key, format.ReaderOptions{Workers: 1})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []readMember
	for {
		m, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		rm := readMember{number: m.Number, offset: m.Offset, physOffset: m.PhysOffset}
		if key == nil {
			if m.Meta != nil {
				t.Fatalf("member %d: metadata without the key", m.Number)
			}
			if n, err := r.Read(make([]byte, 1)); err == nil || n != 0 {
				t.Fatalf("member %d: content read without the key", m.Number)
			}
		} else {
			if m.Meta == nil {
				t.Fatalf("member %d: no metadata with the key", m.Number)
			}
			rm.meta, rm.summary = m.Meta.Encode(nil), summaryForm(m.Meta)
			h := sha256.New()
			rm.size, err = io.Copy(h, r)
			if err != nil {
				return out, err
			}
			h.Sum(rm.sum[:0])
		}
		out = append(out, rm)
	}
}

// checkArchive runs every reader over data and checks the properties that
// hold for any input:
//   - no panic, and every refusal is a typed error (what the command maps
//     to its exit statuses);
//   - the keyless reader accepts everything the keyed one does, with the
//     same members (it checks a subset);
//   - random access (OpenArchive, Entries, Meta, Content) accepts every
//     archive the streaming reader accepts with the key, and lists the same
//     members with the same metadata and content.
//
// It returns whether the keyed streaming reader accepted the archive.
func checkArchive(t *testing.T, data []byte) bool {
	keyed, kerr := streamRead(t, data, fuzzKey)
	if kerr != nil && !isInputError(kerr) {
		t.Fatalf("streaming reader (key): untyped error: %v", kerr)
	}
	keyless, nerr := streamRead(t, data, nil)
	if nerr != nil && !isInputError(nerr) {
		t.Fatalf("streaming reader (no key): untyped error: %v", nerr)
	}
	src := format.NewSource(bytes.NewReader(data), int64(len(data)))
	if a, err := format.OpenArchive(src, nil); err == nil {
		if _, err := a.Entries(); err == nil {
			t.Fatalf("summary read without the key")
		}
	} else if !isInputError(err) {
		t.Fatalf("OpenArchive (no key): untyped error: %v", err)
	}
	ra, raErr := randomRead(src)
	if raErr != nil && !isInputError(raErr) {
		t.Fatalf("random access: %v", raErr)
	}

	if kerr != nil {
		return false
	}
	if nerr != nil {
		t.Fatalf("the keyed reader accepts the archive, the keyless one refuses it: %v", nerr)
	}
	if len(keyless) != len(keyed) {
		t.Fatalf("keyless reader: %d members, keyed: %d", len(keyless), len(keyed))
	}
	for i := range keyed {
		k, n := keyed[i], keyless[i]
		if k.number != n.number || k.offset != n.offset || k.physOffset != n.physOffset {
			t.Fatalf("member %d: keyed reader says #%d at %d/%d, keyless #%d at %d/%d", i, k.number, k.offset, k.physOffset, n.number, n.offset, n.physOffset)
		}
	}
	if raErr != nil {
		t.Fatalf("the streaming reader accepts the archive, random access refuses it: %v", raErr)
	}
	if len(ra) != len(keyed) {
		t.Fatalf("summary lists %d members, the stream holds %d", len(ra), len(keyed))
	}
	for i := range keyed {
		k, r := keyed[i], ra[i]
		if d := memberDiff(k, r); d != "" {
			t.Fatalf("member %d: stream and random access disagree: %s", i, d)
		}
	}
	return true
}

func memberDiff(a, b readMember) string {
	switch {
	case a.number != b.number, a.offset != b.offset, a.physOffset != b.physOffset:
		return fmt.Sprintf("#%d at %d/%d vs #%d at %d/%d", a.number, a.offset, a.physOffset, b.number, b.offset, b.physOffset)
	case !bytes.Equal(a.summary, b.summary):
		return "summary entries differ"
	case !bytes.Equal(a.meta, b.meta):
		return "metadata records differ"
	case a.size != b.size || a.sum != b.sum:
		return fmt.Sprintf("contents differ (%d vs %d bytes)", a.size, b.size)
	}
	return ""
}

// randomRead opens an archive for random access with the key and reads
// every member's metadata and content. Errors must be typed.
func randomRead(src format.Source) ([]readMember, error) {
	a, err := format.OpenArchive(src, fuzzKey)
	if err != nil {
		return nil, typed("OpenArchive", err)
	}
	if a.Header == nil || a.Footer == nil {
		return nil, errors.New("OpenArchive: no header or footer")
	}
	// The summary's two readers: SummaryItems (what the index takes) must
	// give what Entries gives wherever Entries accepts the summary.
	var items []format.SummaryItem
	ierr := a.SummaryItems(&format.SummaryScratch{}, func(it *format.SummaryItem) error {
		c := *it
		c.Path = bytes.Clone(it.Path)
		items = append(items, c)
		return nil
	})
	if ierr != nil && !isInputError(ierr) {
		return nil, typed("SummaryItems", ierr)
	}
	es, err := a.Entries()
	if err != nil {
		return nil, typed("Entries", err)
	}
	if ierr != nil || len(items) != len(es) {
		return nil, fmt.Errorf("Entries accepts the summary (%d members), SummaryItems gives %d: %v", len(es), len(items), ierr)
	}
	for i, e := range es {
		it := items[i]
		if it.Member != e.Number || it.Type != e.Meta.Type || !bytes.Equal(it.Path, e.Meta.Path) || it.Size != e.Meta.Size ||
			it.Inode != e.Meta.Inode || it.Offset != a.PhysOffset(e.Offset) || it.Span != a.Header.PhysSpan(e.Offset, e.Length) {
			return nil, fmt.Errorf("member %d: SummaryItems gives %+v, Entries %+v", i, it, e)
		}
	}
	var out []readMember
	var raErr error
	defer func() {
		if err := streamAgrees(a, es, out, raErr); err != nil {
			panic(err) // a disagreement is a bug, not input
		}
	}()
	for _, e := range es {
		rm := readMember{number: e.Number, offset: e.Offset, physOffset: a.PhysOffset(e.Offset), summary: e.Meta.Encode(nil)}
		m, err := a.Meta(e)
		if err != nil {
			raErr = typed("Meta", err)
			return out, raErr
		}
		rm.meta = m.Encode(nil)
		h := sha256.New()
		cw := &counter{w: h}
		if err := a.Content(e, cw); err != nil {
			raErr = typed("Content", err)
			return out, raErr
		}
		rm.size = cw.n
		h.Sum(rm.sum[:0])
		out = append(out, rm)
	}
	return out, nil
}

// streamAgrees reads the members es of a as one stream (format.
// MemberStream, what export --index reads): it must give what random
// access gave (ra, every member before the first that failed, if one
// did) and fail, with a typed error, exactly at the member random access
// failed at.
func streamAgrees(a *format.Archive, es []format.Entry, ra []readMember, raErr error) error {
	items := make([]format.StreamItem, len(es))
	for i, e := range es {
		items[i] = format.StreamItem{Archive: a, Entry: e}
	}
	s := format.NewMemberStream(items)
	defer s.Close()
	for i := range es {
		m, err := s.Next()
		var size int64
		var sum [32]byte
		if err == nil {
			h := sha256.New()
			size, err = io.Copy(h, s)
			h.Sum(sum[:0])
		}
		switch {
		case err != nil && i < len(ra):
			return fmt.Errorf("member %d: random access read it, the stream fails: %v", i, err)
		case err != nil && !isInputError(err):
			return fmt.Errorf("member %d: stream: untyped error: %v", i, err)
		case err != nil:
			return nil // where random access failed too
		case i == len(ra):
			return fmt.Errorf("member %d: random access fails (%v), the stream reads it", i, raErr)
		case m.Number != ra[i].number || m.Offset != ra[i].offset || !bytes.Equal(m.Meta.Encode(nil), ra[i].meta) || size != ra[i].size || sum != ra[i].sum:
			return fmt.Errorf("member %d: the stream and random access disagree", i)
		}
	}
	if _, err := s.Next(); err != io.EOF {
		return fmt.Errorf("after the last member: %v", err)
	}
	return nil
}

// typed marks an untyped error so that checkArchive's caller sees which
// call gave it; typed errors pass unchanged.
func typed(call string, err error) error {
	if isInputError(err) {
		return err
	}
	return fmt.Errorf("%s: untyped error: %w", call, err)
}

type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// archiveSeeds are valid archives (several member sets, compressed or not,
// one spanning two records, one re-padded by GNU tar, one under another
// key) and damaged copies of one: truncated, bit-flipped in each
// structure, appended to.
func archiveSeeds(tb testing.TB) [][]byte {
	sample := writeArchive(tb, fuzzKey, smallOpts(false), sampleMembers())
	big := bytes.Repeat([]byte("0123456789abcdef"), 70000/16)
	out := [][]byte{
		sample,
		writeArchive(tb, fuzzKey, smallOpts(true), sampleMembers()),
		writeArchive(tb, fuzzKey, smallOpts(false), nil),
		writeArchive(tb, fuzzKey, smallOpts(false), []seedMember{{format.Meta{Type: format.TypeRegular, Path: []byte("big"), Size: int64(len(big))}, big}}),
		writeArchive(tb, otherKey, smallOpts(true), sampleMembers()[:3]),
		writeArchive(tb, fuzzKey, smallOpts(false), importedMembers()),
		append(bytes.Clone(sample), make([]byte, 10240-len(sample)%10240)...),
	}
	n := len(sample)
	for _, cut := range []int{511, 1024, 1536, n / 2, n - 1536, n - 1024, n - 512, n - 1} {
		out = append(out, sample[:cut])
	}
	for _, at := range []int{100, 148, 520, 530, 600, 1024 + 124, 1600, n / 2, n - 2048 + 100, n - 1536 + 20, n - 1536 + 60, n - 100} {
		out = append(out, flip(sample, at, 0x10))
	}
	rec := append(bytes.Clone(sample[:n-1024]), sample[1024:2048]...)
	out = append(out, append(rec, make([]byte, 1024)...))     // tar -r: a record after the footer
	out = append(out, append(bytes.Clone(sample), 'x'))       // a stray byte
	out = append(out, append(bytes.Clone(sample), sample...)) // two archives concatenated
	return out
}

// FuzzArchiveReader feeds arbitrary bytes to every archive reader: the
// streaming one with and without the key, and random access through the
// footer and summary. See checkArchive for the properties.
func FuzzArchiveReader(f *testing.F) {
	addSeeds(f, archiveSeeds(f), vectorSeeds(f, "archive"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkArchive(t, data)
	})
}

// TestArchiveSeedsAccepted makes sure the seeds reach the deep end of the
// readers: the valid ones must pass every reader.
func TestArchiveSeedsAccepted(t *testing.T) {
	seeds := archiveSeeds(t)
	for i, s := range seeds[:6] {
		ok := checkArchive(t, s)
		if want := i != 4; ok != want {
			t.Errorf("seed %d: accepted %v, want %v", i, ok, want)
		}
	}
}
