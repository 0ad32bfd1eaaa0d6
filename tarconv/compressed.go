package tarconv

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// MaxZstdWindow caps the window a zstd stream may ask for, which is what
// its decoder holds in memory: zstd's own command line needs --long=27 or
// more to write a larger one.
const MaxZstdWindow = 128 << 20

// sniffLen is how many leading bytes Decompress and LooksLike read.
const sniffLen = 264

// DecompressError is a compressed input that cannot be decompressed:
// bad input, as a tar that is not one.
type DecompressError struct {
	Format string // gzip, bzip2, xz, zstd
	Err    error
}

func (e *DecompressError) Error() string {
	return fmt.Sprintf("%s-compressed input is damaged or cut short (%v)", e.Format, e.Err)
}
func (e *DecompressError) Unwrap() error { return e.Err }

// decoded turns a decoder's errors into DecompressErrors.
type decoded struct {
	io.Reader
	format string
	close  func()
}

func (d *decoded) Read(p []byte) (int, error) {
	n, err := d.Reader.Read(p)
	if err != nil && err != io.EOF {
		err = &DecompressError{Format: d.format, Err: err}
	}
	return n, err
}

func (d *decoded) Close() error {
	if d.close != nil {
		d.close()
	}
	return nil
}

// Decompress looks at the first bytes of r, as tar -xf does, and when
// they begin a gzip, bzip2, xz or zstd stream returns a reader of the
// decompressed bytes and the compression's name. Anything else comes back
// unchanged, with name "". head holds the first bytes of r as read (up
// to 264), for LooksLike. Close releases the decoder, not r.
func Decompress(r io.Reader) (rc io.ReadCloser, format string, head []byte, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ = br.Peek(sniffLen)
	head = bytes.Clone(head)
	rc, format, err = decompress(br, r, head)
	return rc, format, head, err
}

// decompress reads r, of which br has read ahead.
func decompress(br *bufio.Reader, r io.Reader, head []byte) (io.ReadCloser, string, error) {
	bad := func(f string, err error) (io.ReadCloser, string, error) {
		return nil, f, &DecompressError{Format: f, Err: err}
	}
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return bad("gzip", err)
		}
		return &decoded{Reader: zr, format: "gzip"}, "gzip", nil
	case bytes.HasPrefix(head, []byte("BZh")) && len(head) >= 4 && head[3] >= '1' && head[3] <= '9':
		return &decoded{Reader: bzip2.NewReader(br), format: "bzip2"}, "bzip2", nil
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		xr, err := xz.NewReader(br)
		if err != nil {
			return bad("xz", err)
		}
		return &decoded{Reader: xr, format: "xz"}, "xz", nil
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(MaxZstdWindow),
			zstd.WithDecoderLowmem(true))
		if err != nil {
			return bad("zstd", err)
		}
		return &decoded{Reader: zr, format: "zstd", close: zr.Close}, "zstd", nil
	}
	// Not compressed: what was read to look at it, then r itself, so
	// that a reader of large blocks reads them from r directly.
	peeked, _ := br.Peek(br.Buffered())
	return io.NopCloser(io.MultiReader(bytes.NewReader(peeked), r)), "", nil
}

// LooksLike names the kind of non-tar input whose first bytes head holds,
// for a hint when import refuses it; "" when it is not one it knows.
func LooksLike(head []byte) string {
	has := func(p string) bool { return bytes.HasPrefix(head, []byte(p)) }
	switch {
	case has("PK\x03\x04"), has("PK\x05\x06"), has("PK\x07\x08"):
		return "a zip archive"
	case has("070701"), has("070702"), has("070707"), has("\xc7\x71"), has("\x71\xc7"):
		return "a cpio archive"
	case has("7z\xbc\xaf\x27\x1c"):
		return "a 7-Zip archive"
	case has("Rar!\x1a\x07"):
		return "a RAR archive"
	case has("\x04\x22\x4d\x18"):
		return "an LZ4 frame (decompress it with lz4 -d first)"
	case has("LZIP"):
		return "an lzip stream (decompress it with lzip -d first)"
	case has("\x1f\x9d"):
		return "a compress(1) .Z stream (decompress it with gzip -d first)"
	case has("!<arch>\n"):
		return "an ar archive (a .deb or a static library)"
	case has("\x7fELF"):
		return "an executable (ELF)"
	case has("CBFS"):
		return "CBFS data, not a tar"
	}
	return ""
}
