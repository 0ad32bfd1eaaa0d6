package fuzz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/keys"
)

// seedArchive is a small valid archive with every member type.
func seedArchive(tb testing.TB) ([]byte, []format.Entry) {
	return writeArchiveEntries(tb, fuzzKey, smallOpts(true), sampleMembers())
}

// headerPayload and footerPayload cut the header and footer frame payloads
// out of an archive written by format.Writer (plain zero end blocks).
func headerPayload(a []byte) []byte {
	o := format.BlockSize + format.FrameHeaderSize
	return a[o : o+format.HeaderSize]
}

func footerPayload(a []byte) []byte {
	o := len(a) - 4*format.BlockSize + format.BlockSize + format.FrameHeaderSize
	return a[o : o+format.FooterSize]
}

// flip returns b with byte i xored with x.
func flip(b []byte, i int, x byte) []byte {
	c := bytes.Clone(b)
	c[i] ^= x
	return c
}

// FuzzHeader: whatever DecodeHeader accepts re-encodes to the same bytes,
// and authenticating it under a key never panics.
func FuzzHeader(f *testing.F) {
	a, _ := seedArchive(f)
	h := headerPayload(a)
	f.Add(h)
	f.Add(flip(h, 8, 1))  // major version
	f.Add(flip(h, 9, 7))  // minor version: still read
	f.Add(flip(h, 10, 1)) // suite
	f.Add(flip(h, 14, 1)) // chunk size
	f.Add(flip(h, 17, 1)) // record size
	f.Add(h[:len(h)-1])
	f.Add([]byte("CBFSARCH\x02\x00"))
	for _, v := range vectorSeeds(f, "archive") {
		if o := format.BlockSize + format.FrameHeaderSize; len(v) >= o+format.HeaderSize {
			f.Add(v[o : o+format.HeaderSize])
		}
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		hd, err := format.DecodeHeader(p)
		if err != nil {
			if !isInputError(err) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if enc := hd.Encode(); !bytes.Equal(enc, p) {
			t.Fatalf("accepted header re-encodes differently:\n got %x\nwant %x", enc, p)
		}
		ak := crypt.DeriveArchiveKeys(fuzzKey, hd.ID)
		if err := hd.Authenticate(ak); err != nil && !isInputError(err) {
			t.Fatalf("untyped error: %v", err)
		}
	})
}

// FuzzFooter: whatever DecodeFooter accepts re-encodes to the same bytes
// and is consistent in itself.
func FuzzFooter(f *testing.F) {
	a, _ := seedArchive(f)
	p := footerPayload(a)
	f.Add(p)
	for _, i := range []int{8, 10, 28, 36, 44, 52, 60, 70, 100} {
		f.Add(flip(p, i, 0x40))
	}
	f.Add(p[:len(p)-1])
	for _, v := range vectorSeeds(f, "archive") {
		if b := lastRecordBody(v); len(b) >= format.FrameHeaderSize+format.FooterSize {
			f.Add(b[format.FrameHeaderSize : format.FrameHeaderSize+format.FooterSize])
		}
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		ft, err := format.DecodeFooter(p)
		if err != nil {
			if !isInputError(err) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		if enc := ft.Encode(); !bytes.Equal(enc, p) {
			t.Fatalf("accepted footer re-encodes differently:\n got %x\nwant %x", enc, p)
		}
		if ft.Members > format.MaxMembers || ft.SummaryOffset+ft.SummaryLength != ft.StreamLength || ft.SummaryOffset > ft.StreamLength {
			t.Fatalf("accepted an inconsistent footer: %+v", ft)
		}
	})
}

// metaAllocBound is a sound bound on what one DecodeMeta or DecodeSummary
// call may allocate for an n-byte input, given that every count they read
// is checked against the bytes present before anything is allocated for it:
//   - byte fields (path, link, names, xattr values, tar header) are copied
//     once: at most n bytes in all;
//   - a sparse map of c extents takes 16c bytes and needs at least 2c input
//     bytes: at most 8n;
//   - an xattr list of c entries takes 40c bytes (a string and a slice
//     header) and needs at least 2c input bytes: at most 20n;
//   - a summary of c entries takes 32c bytes for the slice and at least 8
//     input bytes each: at most 4n;
//   - the canonical check re-encodes the record: about 2n with append's
//     growth, and the re-encoded sparse and xattr lists once more;
//
// so 64n covers the sum with room to spare, and allocSlack covers the
// runtime's per-span accounting and error strings. What the bound excludes
// is any allocation sized by a count or length field alone (a lying
// sparse count would ask MaxSparseExtents*16 = 16 MiB; a lying summary
// count MaxMembers*32 bytes), which is what "no allocation beyond the
// field's cap" forbids.
func metaAllocBound(n int) uint64 { return 64*uint64(n) + allocSlack }

func checkAllocs(t *testing.T, what string, n int, f func()) {
	t.Helper()
	if !allocCheckable() {
		f()
		return
	}
	before := heapAllocs()
	f()
	if got := heapAllocs() - before; got > metaAllocBound(n) {
		t.Fatalf("%s of %d bytes allocated %d bytes, over the bound %d", what, n, got, metaAllocBound(n))
	}
}

// metaSeeds are metadata records of every member type in full and summary
// form, and near misses of each.
func metaSeeds() [][]byte {
	var out [][]byte
	for _, m := range append(sampleMembers(), importedMembers()...) {
		full := m.meta.Encode(nil)
		sm := m.meta
		sm.Xattrs, sm.TarHeader = nil, nil
		out = append(out, full, sm.Encode(nil))
	}
	base := (&format.Meta{Type: format.TypeRegular, Path: []byte("f"), Size: 1}).Encode(nil)
	out = append(out,
		append(bytes.Clone(base), 64, 1, 0),                                                         // optional tag: not canonical
		append(bytes.Clone(base), 63, 0),                                                            // unknown critical tag
		[]byte{1, 2, 0x81, 0x00, 2, 1, 'f'},                                                         // overlong varint
		[]byte{2, 1, 'f', 1, 1, 1},                                                                  // out of order
		[]byte{1, 1, 1, 2, 1, 'f', 16, 3, 0xff, 0xff, 0x3f},                                         // sparse count beyond the bytes
		[]byte{1, 1, 1, 2, 1, 'f', 17, 2, 0x80, 0x80},                                               // xattr count cut
		[]byte{1, 1, 1, 2, 0, 9, 11, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0}, // 10-byte varint
	)
	return out
}

// FuzzMeta: what DecodeMeta accepts is valid and re-encodes to the same
// bytes, and decoding allocates no more than the input justifies.
func FuzzMeta(f *testing.F) {
	for _, s := range metaSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		var m *format.Meta
		var err error
		checkAllocs(t, "DecodeMeta", len(p), func() { m, err = format.DecodeMeta(p) })
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted a record that does not validate: %v", err)
		}
		if enc := m.Encode(nil); !bytes.Equal(enc, p) {
			t.Fatalf("accepted record re-encodes differently:\n got %x\nwant %x", enc, p)
		}
	})
}

// FuzzSummary: the input is a uvarint member count (what the footer would
// say) and a summary plaintext. What DecodeSummary accepts has exactly
// that many entries and re-encodes to the same bytes.
func FuzzSummary(f *testing.F) {
	_, entries := seedArchive(f)
	s := format.EncodeSummary(entries)
	n := uint64(len(entries))
	f.Add(append(binary.AppendUvarint(nil, n), s...))
	f.Add(append(binary.AppendUvarint(nil, n+1), s...))
	f.Add(append(binary.AppendUvarint(nil, n-1), s...))
	f.Add(append(binary.AppendUvarint(nil, 1<<40), s...))
	f.Add(append(binary.AppendUvarint(nil, 1), format.EncodeSummary(entries[:1])...))
	f.Add(append(binary.AppendUvarint(nil, 2), format.EncodeSummary(entries[1:3])...)) // offsets do not start at 0
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, in []byte) {
		want, k := binary.Uvarint(in)
		if k <= 0 {
			return
		}
		p := in[k:]
		var es []format.Entry
		var err error
		checkAllocs(t, "DecodeSummary", len(p), func() { es, err = format.DecodeSummary(p, want) })
		if err != nil {
			return
		}
		if uint64(len(es)) != want {
			t.Fatalf("accepted %d entries for a count of %d", len(es), want)
		}
		if enc := format.EncodeSummary(es); !bytes.Equal(enc, p) {
			t.Fatalf("accepted summary re-encodes differently:\n got %x\nwant %x", enc, p)
		}
	})
}

// FuzzSummaryPieces: the summary decoder fed the plaintext in pieces (as
// random access and the index rebuild open it, a chunk at a time), cut
// where cuts says (each byte one piece's length, 0 a piece of 256 bytes;
// the last piece the rest), accepts and refuses exactly what
// DecodeSummary does with the whole, with the same entries and the same
// error.
func FuzzSummaryPieces(f *testing.F) {
	_, entries := seedArchive(f)
	s := format.EncodeSummary(entries)
	n := uint64(len(entries))
	whole := append(binary.AppendUvarint(nil, n), s...)
	f.Add(whole, []byte{1})
	f.Add(whole, []byte{3, 200, 7})
	f.Add(whole, []byte{0})
	f.Add(append(binary.AppendUvarint(nil, n+1), s...), []byte{5})
	f.Add(append(binary.AppendUvarint(nil, n), s[:len(s)-2]...), []byte{2})
	f.Add(append(append(binary.AppendUvarint(nil, n), s...), 0x80), []byte{1})
	f.Fuzz(func(t *testing.T, in, cuts []byte) {
		want, k := binary.Uvarint(in)
		if k <= 0 || len(cuts) == 0 {
			return
		}
		p := in[k:]
		wes, werr := format.DecodeSummary(p, want)
		var es []format.Entry
		d, err := format.NewSummaryDecoder(want, int64(len(p)), func(e format.Entry) error {
			es = append(es, e)
			return nil
		})
		for i := 0; err == nil; i++ {
			c := int(cuts[i%len(cuts)])
			if c == 0 {
				c = 256
			}
			c = min(c, len(p))
			err = d.Write(p[:c], c == len(p))
			if p = p[c:]; len(p) == 0 {
				break
			}
		}
		if fmt.Sprint(err) != fmt.Sprint(werr) {
			t.Fatalf("in pieces: %v; whole: %v", err, werr)
		}
		if err == nil && !bytes.Equal(format.EncodeSummary(es), format.EncodeSummary(wes)) {
			t.Fatalf("in pieces: %d entries differ from the whole's %d", len(es), len(wes))
		}
	})
}

// FuzzKeyFile: a key file is accepted if and only if it holds exactly 32
// bytes, and then the key is those bytes. A file readable by others is
// still accepted, with one warning.
func FuzzKeyFile(f *testing.F) {
	f.Add(bytes.Repeat([]byte{7}, 32), false)
	f.Add(bytes.Repeat([]byte{7}, 32), true)
	f.Add(append(bytes.Repeat([]byte{7}, 32), '\n'), false)
	f.Add(append(bytes.Repeat([]byte{7}, 32), '\r', '\n'), false)
	f.Add(bytes.Repeat([]byte{7}, 31), false)
	f.Add(bytes.Repeat([]byte{7}, 64), false)
	f.Add([]byte{}, false)
	for _, v := range vectorSeeds(f, "keyfile") {
		f.Add(v, false)
	}
	// One file, rewritten for each input: calls of the fuzz function do not
	// overlap within a process, and a fresh directory per call would cost
	// more than the call itself.
	path := filepath.Join(f.TempDir(), "key")
	f.Fuzz(func(t *testing.T, data []byte, public bool) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o600)
		if public {
			mode = 0o644
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		k, warns, err := keys.ReadFile(path)
		if len(data) != crypt.KeySize {
			var se *keys.SizeError
			if !errors.As(err, &se) {
				t.Fatalf("%d-byte key file: error %v, want a KeySizeError", len(data), err)
			}
			nl := len(data) > 32 && len(data) <= 34 && data[len(data)-1] == '\n'
			if se.Size != int64(len(data)) || se.TrailingNewline != nl || k != nil {
				t.Fatalf("%d-byte key file: %+v (key %v)", len(data), se, k)
			}
			return
		}
		if err != nil {
			t.Fatalf("32-byte key file refused: %v", err)
		}
		want, _ := crypt.KeyFromBytes(data)
		if k.ID() != want.ID() {
			t.Fatalf("key %s read from a file holding %s", k.ID(), want.ID())
		}
		if len(warns) != map[bool]int{false: 0, true: 1}[public] {
			t.Fatalf("mode %v: warnings %q", mode, warns)
		}
	})
}
