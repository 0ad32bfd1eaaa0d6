package fuzz

import (
	"bytes"
	"encoding/hex"
	"errors"
	"runtime/metrics"
	"sync"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/tarconv"
)

// fuzzKeyHex is the fixed key every target reads with: the seeds made
// here are written under it, and it is the key spec/gen writes the test
// vectors under, so that the vectors are seeds the keyed readers open
// (TestVectorsUseFuzzKey says when the generator's key changes).
const fuzzKeyHex = "4c0daeba94b018d2cbcb633e572a22fadb1896fdda720bab4f751b85b98289e9"

var fuzzKey = func() *crypt.Key {
	b, err := hex.DecodeString(fuzzKeyHex)
	if err != nil {
		panic(err)
	}
	k, err := crypt.KeyFromBytes(b)
	if err != nil {
		panic(err)
	}
	return k
}()

// otherKey writes seeds that the keyed readers must reject as ErrWrongKey.
var otherKey = mustKey(0xa5)

func mustKey(b byte) *crypt.Key {
	k, err := crypt.KeyFromBytes(bytes.Repeat([]byte{b}, crypt.KeySize))
	if err != nil {
		panic(err)
	}
	return k
}

// seedID is the archive id of every seed archive: a fixed id keeps the
// seed corpus the same from run to run.
func seedRand(b byte) *bytes.Reader { return bytes.NewReader(bytes.Repeat([]byte{b}, crypt.IDSize)) }

// smallOpts keeps archives made inside the targets small and the work per
// execution low: the smallest chunk and record sizes the format allows
// and one sealing goroutine.
func smallOpts(compress bool) format.WriterOptions {
	return format.WriterOptions{Compress: compress, ChunkSize: format.MinChunkSize, RecordSize: format.MinRecordSize, Workers: 1}
}

type seedMember struct {
	meta    format.Meta
	content []byte
}

// writeArchive writes members to an archive under key.
func writeArchive(tb testing.TB, key *crypt.Key, opt format.WriterOptions, ms []seedMember) []byte {
	tb.Helper()
	b, _ := writeArchiveEntries(tb, key, opt, ms)
	return b
}

// writeArchiveEntries also returns the entries the writer recorded.
func writeArchiveEntries(tb testing.TB, key *crypt.Key, opt format.WriterOptions, ms []seedMember) ([]byte, []format.Entry) {
	tb.Helper()
	if opt.Rand == nil {
		opt.Rand = seedRand(0x11)
	}
	var buf bytes.Buffer
	w, err := format.NewWriter(&buf, key, opt)
	if err != nil {
		tb.Fatal(err)
	}
	for i := range ms {
		if _, err := w.Add(&ms[i].meta, bytes.NewReader(ms[i].content)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes(), w.Entries()
}

// sampleMembers covers every member type that is not imported, empty and multi-chunk content
// (compressible and not), xattrs, sparse maps and a non-UTF-8 name.
func sampleMembers() []seedMember {
	text := bytes.Repeat([]byte("all your data is just in a tarball\n"), 300) // 3 chunks of 4 KiB
	noise := make([]byte, 5000)
	x := uint32(1)
	for i := range noise {
		x = x*1664525 + 1013904223
		noise[i] = byte(x >> 24)
	}
	return []seedMember{
		{format.Meta{Type: format.TypeDir, Path: []byte("d"), Mode: 0o755, MTime: format.Time{Sec: 1, Nsec: 5, Set: true}}, nil},
		{format.Meta{Type: format.TypeRegular, Path: []byte("d/empty"), Mode: 0o644}, nil},
		{format.Meta{Type: format.TypeRegular, Path: []byte("d/text"), Size: int64(len(text)), Uname: "u", Gname: "g", UID: 1000, GID: 1000,
			Xattrs: []format.Xattr{{Name: "user.a", Value: []byte("b")}, {Name: "user.b", Value: nil}}}, text},
		{format.Meta{Type: format.TypeRegular, Path: []byte("d/noise\xff\xfe"), Size: int64(len(noise)), Inode: 7}, noise},
		{format.Meta{Type: format.TypeRegular, Path: []byte("d/sparse"), Size: 1 << 20, Sparse: []format.Extent{{Offset: 10, Length: 3}, {Offset: 1 << 19, Length: 2}}}, []byte("abcde")},
		{format.Meta{Type: format.TypeSymlink, Path: []byte("d/link"), Link: []byte("../etc/passwd")}, nil},
		{format.Meta{Type: format.TypeHardlink, Path: []byte("d/hard"), Link: []byte("d/text")}, nil},
		{format.Meta{Type: format.TypeChar, Path: []byte("d/null"), DevMajor: 1, DevMinor: 3}, nil},
		{format.Meta{Type: format.TypeFifo, Path: []byte("d/fifo"), ATime: format.Time{Sec: -5, Set: true}, CTime: format.Time{Sec: 1 << 40, Nsec: 999999999, Set: true}}, nil},
		{format.Meta{Type: format.TypeTombstone, Path: []byte("gone")}, nil},
	}
}

// importedMembers are the members of an imported archive (spec 7.5):
// imported entries and tombstones, then the trailer. They cannot share an
// archive with sampleMembers.
func importedMembers() []seedMember {
	return []seedMember{
		{format.Meta{Type: format.TypeTarOther, Path: []byte("v"), Typeflag: 'V', TarHeader: make([]byte, 512)}, nil},
		{format.Meta{Type: format.TypeTombstone, Path: []byte("gone")}, nil},
		{format.Meta{Type: format.TypeTarGlobal, Path: []byte("g"), TarHeader: make([]byte, 512)}, []byte("9 a=b\n")},
		{format.Meta{Type: format.TypeTrailer}, make([]byte, 1024)},
	}
}

// allocSample reads the cumulative heap allocation counter. runtime/metrics
// does not stop the world, unlike runtime.ReadMemStats, so the fuzzers
// keep most of their speed.
var (
	allocMu     sync.Mutex
	allocSample = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
)

func heapAllocs() uint64 {
	allocMu.Lock()
	defer allocMu.Unlock()
	metrics.Read(allocSample)
	return allocSample[0].Value.Uint64()
}

// allocCheckable reports whether heap growth during one call says
// something: the race detector and coverage instrumentation allocate on
// their own.
func allocCheckable() bool { return !raceEnabled && testing.CoverMode() == "" }

// allocSlack absorbs the runtime's accounting granularity: small objects
// are counted a whole span at a time when a span is handed to a P, so one
// call may be charged for up to a span per size class it touches, plus
// the error strings it formats. It is far below the caps the bound is
// meant to police (MaxSparseExtents*16 = 16 MiB, MaxXattrs*40 = 2.5 MiB,
// MaxMembers entries).
const allocSlack = 2 << 20

// isInputError reports whether err is one of the typed errors by which the
// readers say "this input is bad" (as opposed to an I/O failure, which a
// bytes.Reader never gives): the command maps exactly these to its
// "damaged", "wrong key" and "bad input" exit statuses.
func isInputError(err error) bool {
	var fe *format.Error
	var ve *format.VersionError
	var te *tarconv.TarError
	return errors.As(err, &fe) || errors.As(err, &ve) || errors.As(err, &te) ||
		errors.Is(err, format.ErrNotCBFS) || errors.Is(err, format.ErrWrongKey) || errors.Is(err, tarconv.ErrNotTar)
}

// addSeeds adds every input of each set to f's seed corpus.
func addSeeds(f *testing.F, sets ...[][]byte) {
	for _, set := range sets {
		for _, s := range set {
			f.Add(s)
		}
	}
}
