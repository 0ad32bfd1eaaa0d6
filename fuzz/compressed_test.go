package fuzz

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/cbfs/cbfs/tarconv"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// FuzzCompressedImport feeds arbitrary bytes through import's input
// detection and decompression (gzip, bzip2, xz, zstd) into the tar
// importer: no panic, only typed input errors, and what imports exports
// back as the decompressed bytes.
func FuzzCompressedImport(f *testing.F) {
	tars := madeTars(f)
	for _, tb := range tars[:min(len(tars), 4)] {
		var g bytes.Buffer
		gw := gzip.NewWriter(&g)
		gw.Write(tb)
		gw.Close()
		f.Add(g.Bytes())
		zw, _ := zstd.NewWriter(nil)
		f.Add(zw.EncodeAll(tb, nil))
		var x bytes.Buffer
		if xw, err := xz.NewWriter(&x); err == nil {
			xw.Write(tb)
			xw.Close()
			f.Add(x.Bytes())
		}
	}
	// bzip2: the standard library has no writer; a stream of "hello\n".
	f.Add([]byte("BZh91AY&SY\xc1\xc0\x80\xe2\x00\x00\x01A\x00\x00\x10\x02D\xa0\x00!\x9ah3M\x07<]\xc9\x14\xe1BC\x07\x02\x03\x88"))
	f.Add([]byte("PK\x03\x04"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rc, _, _, err := tarconv.Decompress(bytes.NewReader(data))
		if err != nil {
			var de *tarconv.DecompressError
			if !errors.As(err, &de) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		defer rc.Close()
		// Decompressed input is capped here: a bomb is not this target's
		// concern (the importer streams), the fuzzer's memory is.
		plain, err := io.ReadAll(io.LimitReader(rc, 4<<20))
		if err != nil {
			var de *tarconv.DecompressError
			if !errors.As(err, &de) {
				t.Fatalf("untyped read error: %v", err)
			}
			return
		}
		var out bytes.Buffer
		if _, err := tarconv.ImportTar(context.Background(), &out, bytes.NewReader(plain), fuzzKey, smallOpts(true)); err != nil {
			if !isInputError(err) {
				t.Fatalf("import failed with an untyped error: %v", err)
			}
			return
		}
		checkExport(t, out.Bytes(), plain)
	})
}
