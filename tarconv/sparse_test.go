package tarconv_test

// Issue 19, item 2: import takes the sparse maps GNU tar writes for
// files of many extents, which Go's reader and the old 1 MiB cap refused.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/internal/testutil"
	"github.com/cbfs/cbfs/tarconv"
)

// manyExtents is how many data extents the big sparse file has.
const manyExtents = 80_000

// makeManyExtents writes a file of a 100 MiB hole (so that offsets in the
// map have 9 digits), then one byte every 1024 bytes: GNU tar's raw hole
// detection (zero 512-byte blocks are holes) sees 80,000 data extents of
// 512 bytes, 41 MB of data.
func makeManyExtents(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const lead = 100 << 20
	if err := f.Truncate(lead + manyExtents*1024); err != nil {
		t.Fatal(err)
	}
	for i := range int64(manyExtents) {
		if _, err := f.WriteAt([]byte{byte('a' + i%26)}, lead+i*1024); err != nil {
			t.Fatal(err)
		}
	}
}

// TestImportManyExtents: a file of 80,000 data extents as GNU tar writes
// it in each pax sparse version (0.0 and 0.1 hold the map in a pax header
// of 4.7 and 1.2 MB, 1.0 in front of the data) imports, exports byte for
// byte, and its content reads back as the file, holes included.
func TestImportManyExtents(t *testing.T) {
	testutil.Tool(t, "tar")
	dir := t.TempDir()
	makeManyExtents(t, filepath.Join(dir, "big"))
	want := sha256.Sum256(readFile(t, dir, "big"))
	key := testutil.Key(t, 7)
	for _, c := range []struct {
		version string
		mapIn   string // where the map is: "pax" or "data"
	}{{"0.0", "pax"}, {"0.1", "pax"}, {"1.0", "data"}} {
		t.Run(c.version, func(t *testing.T) {
			name := "big-" + c.version + ".tar"
			runTool(t, dir, "tar", "--format=posix", "--sparse", "--sparse-version="+c.version,
				"--hole-detection=raw", "-cf", name, "big")
			in := readFile(t, dir, name)
			// The tar really holds a map of 80,000 extents, over 1 MiB.
			h := goHeaderBytes(t, in)
			switch c.version {
			case "0.0":
				if n := bytes.Count(h, []byte(" GNU.sparse.offset=")); n < manyExtents {
					t.Fatalf("test setup: %d GNU.sparse.offset records, want %d", n, manyExtents)
				}
			case "0.1":
				m := regexp.MustCompile(`GNU\.sparse\.numblocks=(\d+)`).FindSubmatch(h)
				if n, _ := strconv.Atoi(string(m[1])); n < manyExtents {
					t.Fatalf("test setup: numblocks %d, want %d", n, manyExtents)
				}
			case "1.0":
				lines := bytes.SplitN(in[len(h):], []byte("\n"), 2)
				if n, _ := strconv.Atoi(string(lines[0])); n < manyExtents {
					t.Fatalf("test setup: a 1.0 map of %d extents, want %d", n, manyExtents)
				}
			}
			if c.mapIn == "pax" && len(h) <= 1<<20 {
				t.Fatalf("test setup: headers of %d bytes, want over 1 MiB", len(h))
			}
			for _, wo := range writerOptions {
				arc, err := importBytes(t, in, key, wo.opt)
				if err != nil {
					t.Fatalf("%s: import: %v", wo.name, err)
				}
				var back bytes.Buffer
				if err := tarconv.ExportTar(context.Background(), &back, bytes.NewReader(arc), key, tarconv.ExportOptions{}); err != nil {
					t.Fatalf("%s: export: %v", wo.name, err)
				}
				if !bytes.Equal(back.Bytes(), in) {
					t.Fatalf("%s: export(import(x)) != x: %s", wo.name, firstDiff(back.Bytes(), in))
				}
				a, err := format.OpenArchive(format.NewSource(bytes.NewReader(arc), int64(len(arc))), key)
				if err != nil {
					t.Fatal(err)
				}
				es, err := a.Entries()
				if err != nil {
					t.Fatal(err)
				}
				hw := sha256.New()
				if err := tarconv.WriteContent(a, es[0], hw); err != nil {
					t.Fatalf("%s: content: %v", wo.name, err)
				}
				if got := [32]byte(hw.Sum(nil)); got != want {
					t.Fatalf("%s: content differs from the file", wo.name)
				}
			}
		})
	}
}

// goHeaderBytes returns the bytes of a tar's first entry up to its data:
// its extended headers and main header.
func goHeaderBytes(t *testing.T, in []byte) []byte {
	t.Helper()
	off := 0
	for off+512 <= len(in) {
		b := (*format.Block)(in[off : off+512])
		size, err := format.ParseNumeric(b.Size())
		if err != nil {
			t.Fatal(err)
		}
		off += 512
		if tf := b.Typeflag(); tf != 'x' && tf != 'L' && tf != 'K' {
			return in[:off]
		}
		off += int((size + 511) / 512 * 512)
	}
	t.Fatal("test setup: no main header")
	return nil
}

// TestImportSparseContentAsGo: for every sparse file of Go's testdata
// and of GNU tar's small sparse archives, the content read from the
// imported archive is what Go's reader gives (GNU's pax sparse formats
// are expanded by cbfs itself, the others by Go's reader).
func TestImportSparseContentAsGo(t *testing.T) {
	inputs := map[string][]byte{}
	for name, in := range goTestdata(t) {
		if goAccepts(in) == nil && bytes.Contains(in, []byte("GNU.sparse")) {
			inputs[name] = in
		}
	}
	testutil.Tool(t, "tar")
	{
		tr := makeTree(t, 0)
		makeSparse(t, filepath.Join(tr.root, "s"), 1<<20, false)
		makeSparse(t, filepath.Join(tr.root, "m"), 25*16<<10+4096, true)
		for _, v := range []string{"0.0", "0.1", "1.0"} {
			runTool(t, tr.root, "tar", "--format=posix", "--sparse", "--sparse-version="+v, "-cf", "x.tar", "s", "m")
			inputs["gnu-"+v] = readFile(t, tr.root, "x.tar")
		}
	}
	if len(inputs) < 5 {
		t.Fatalf("only %d sparse inputs", len(inputs))
	}
	key := testutil.Key(t, 7)
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			arc, err := importBytes(t, in, key, format.WriterOptions{Compress: true})
			if err != nil {
				t.Fatal(err)
			}
			a, err := format.OpenArchive(format.NewSource(bytes.NewReader(arc), int64(len(arc))), key)
			if err != nil {
				t.Fatal(err)
			}
			es, err := a.Entries()
			if err != nil {
				t.Fatal(err)
			}
			tr := tar.NewReader(bytes.NewReader(in))
			checked, huge := 0, 0
			for _, e := range es {
				if e.Meta.Type == format.TypeTrailer {
					break
				}
				h, err := tr.Next()
				if err != nil {
					t.Fatal(err)
				}
				if e.Meta.Type != format.TypeRegular {
					continue
				}
				if h.Size > 1<<30 {
					huge++ // the huge sparse files of Go's testdata take minutes to read
					continue
				}
				wantH, gotH := sha256.New(), sha256.New()
				if _, err := io.Copy(wantH, tr); err != nil {
					t.Fatal(err)
				}
				if err := tarconv.WriteContent(a, e, gotH); err != nil {
					t.Fatalf("%q: %v", h.Name, err)
				}
				if !bytes.Equal(wantH.Sum(nil), gotH.Sum(nil)) {
					t.Fatalf("%q: content differs from Go's reader's", h.Name)
				}
				checked++
			}
			if checked == 0 && huge == 0 {
				t.Fatal("no file checked")
			}
		})
	}
}

// bigPAXTar streams a tar whose first entry has a pax header of size
// bytes (a path record, if path is set, and a comment filling the rest),
// then the main header of an empty file named name, then end blocks.
func bigPAXTar(t *testing.T, path, name string, size int64) io.Reader {
	t.Helper()
	var rec string
	if path != "" {
		rec = fmt.Sprintf("%d path=%s\n", len(" path=\n")+len(path)+2, path)
		if n, _ := strconv.Atoi(strings.Fields(rec)[0]); n != len(rec) {
			t.Fatalf("test setup: record length %d, want %d", len(rec), n)
		}
	}
	fill := size - int64(len(rec)) // "<fill> comment=aaaa...\n"
	prefix := fmt.Sprintf("%d comment=", fill)
	var xh format.Block
	copy(xh[0:], "PaxHeaders/x")
	copy(xh[100:], "0000644\x00")
	copy(xh[108:], "0000000\x00")
	copy(xh[116:], "0000000\x00")
	copy(xh[124:], fmt.Sprintf("%011o\x00", size))
	copy(xh[136:], "00000000000\x00")
	xh[156] = 'x'
	copy(xh[257:], "ustar\x0000")
	xh.SetChecksum()
	var main bytes.Buffer
	tw := tar.NewWriter(&main)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	return io.MultiReader(bytes.NewReader(xh[:]), strings.NewReader(rec), strings.NewReader(prefix),
		io.LimitReader(repeatByte('a'), fill-int64(len(prefix))-1), strings.NewReader("\n"),
		bytes.NewReader(make([]byte, (512-size%512)%512)), &main)
}

type repeatByte byte

func (r repeatByte) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// TestImportPAXOverCap: a pax header over the 64 MiB cap is refused, and
// the error names the cap and the entry: from the header's path record,
// else from the main header after it. It is read as a stream, never held.
func TestImportPAXOverCap(t *testing.T) {
	const capBytes = 64 << 20
	key := testutil.Key(t, 7)
	for _, c := range []struct{ name, path, mainName, want string }{
		{"path-record", "dir/huge", "PaxStub/huge", "dir/huge"},
		{"main-header", "", "dir/plain", "dir/plain"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Just under the cap is taken, just over it refused.
			if c.path != "" {
				_, err := tarconv.ImportTar(context.Background(), io.Discard, bigPAXTar(t, c.path, c.mainName, 1<<20+1), key, format.WriterOptions{Compress: true})
				if err != nil {
					t.Fatalf("a pax header of 1 MiB + 1 byte: %v", err)
				}
			}
			_, err := tarconv.ImportTar(context.Background(), io.Discard, bigPAXTar(t, c.path, c.mainName, capBytes+1), key, format.WriterOptions{})
			var te *tarconv.TarError
			if !errors.As(err, &te) {
				t.Fatalf("got %T %v, want a *TarError", err, err)
			}
			msg := err.Error()
			if te.Entry != c.want || !strings.Contains(msg, strconv.Itoa(capBytes)+"-byte cap") || strings.Contains(msg, "\n") {
				t.Fatalf("error %q: want one line naming entry %q and the %d-byte cap", msg, c.want, capBytes)
			}
		})
	}
}
