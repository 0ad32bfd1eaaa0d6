package tarconv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/internal/testutil"
)

// handBlock is a ustar header block, made by hand: Go's tar writer will
// not write the pax records this test needs.
func handBlock(name string, typeflag byte, size int) []byte {
	b := make([]byte, format.BlockSize)
	copy(b[0:], name)
	copy(b[100:], "0000644\x00")
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", size))
	copy(b[136:], "00000000000\x00")
	b[156] = typeflag
	copy(b[257:], "ustar\x0000")
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func padded(b []byte) []byte {
	return append(b, make([]byte, (format.BlockSize-len(b)%format.BlockSize)%format.BlockSize)...)
}

// TestImportRefusesWhatTheFormatCannotHold: a tar entry whose metadata
// the format cannot store (here a GNU sparse real size over 2^62) is a
// *TarError naming the entry, so the command reports bad input (status
// 5); before, the writer took it and wrote an archive its own reader
// refused.
func TestImportRefusesWhatTheFormatCannotHold(t *testing.T) {
	rec := "GNU.sparse.realsize=4611686018427387905\n"
	n := len(rec) + 3
	rec = fmt.Sprintf("%d %s", n, rec)
	var in []byte
	in = append(in, handBlock("PaxHeaders/huge", 'x', len(rec))...)
	in = append(in, padded([]byte(rec))...)
	in = append(in, handBlock("huge", '0', 5)...)
	in = append(in, padded([]byte("hello"))...)
	in = append(in, make([]byte, 2*format.BlockSize)...)
	var out bytes.Buffer
	_, err := ImportTar(context.Background(), &out, bytes.NewReader(in), testutil.Key(t, 3), format.WriterOptions{})
	var te *TarError
	if !errors.As(err, &te) || te.Entry != "huge" || !strings.Contains(err.Error(), "2^62") {
		t.Fatalf("import: %v; want a TarError for entry huge over 2^62", err)
	}
}
