package index

import (
	"bytes"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
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
