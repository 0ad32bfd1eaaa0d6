package index

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/internal/frame"
)

type testMember struct {
	m       format.Meta
	content []byte
}

// writeArchive writes an archive of ms and returns it with its entries.
func writeArchive(t testing.TB, key *crypt.Key, ms []testMember, opt format.WriterOptions) ([]byte, []format.Entry) {
	t.Helper()
	var buf bytes.Buffer
	w, err := format.NewWriter(&buf, key, opt)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ms {
		if _, err := w.Add(&ms[i].m, bytes.NewReader(ms[i].content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), w.Entries()
}

// rawBlock is a hand-made record block: its plaintext, and what the
// directory says of it.
type rawBlock struct {
	first string
	n     int
	plain []byte
}

// sealRaw seals a hand-made index: the directory's table part (high-seq
// and the archives table, as bytes) and blocks, whatever they hold, with
// the writer's framing and sealing. Tests of the decoder's checks use it.
func sealRaw(t testing.TB, key *crypt.Key, table []byte, blocks []rawBlock) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, key, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := append([]byte(nil), table...)
	d = binary.AppendUvarint(d, uint64(len(blocks)))
	for _, b := range blocks {
		siv := w.seal(BlockKind, b.plain, 0)
		d = binary.AppendUvarint(d, uint64(len(b.first)))
		d = append(d, b.first...)
		d = binary.AppendUvarint(d, uint64(b.n))
		d = binary.AppendUvarint(d, uint64(len(w.frame)-frame.HeaderSize))
		d = append(d, siv[:]...)
		w.write(w.frame)
	}
	dirOff := w.pos
	siv := w.seal(DirKind, d, dirOff)
	w.write(w.frame)
	tr := binary.LittleEndian.AppendUint64(nil, uint64(dirOff))
	w.write(append(append(tr, siv[:]...), trailerMagic...))
	if err := w.w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
