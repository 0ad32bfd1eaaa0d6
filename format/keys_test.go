package format

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/internal/testutil"
)

// TestSeveralKeys: every reader takes, of several keys, the one whose key
// check value the header carries, here the second; only when none
// matches is it ErrWrongKey.
func TestSeveralKeys(t *testing.T) {
	right, wrong, other := testutil.Key(t, 1), testutil.Key(t, 2), testutil.Key(t, 3)
	data, _ := writeArchive(t, right, sampleMembers(), WriterOptions{Compress: true})
	src := func() Source { return NewSource(bytes.NewReader(data), int64(len(data))) }

	a, err := OpenArchive(src(), wrong, right)
	if err != nil {
		t.Fatalf("OpenArchive: %v", err)
	}
	if es, err := a.Entries(); err != nil || len(es) != len(sampleMembers()) {
		t.Fatalf("Entries: %d, %v", len(es), err)
	}
	if _, err := OpenArchive(src(), wrong, other); !errors.Is(err, ErrWrongKey) {
		t.Errorf("OpenArchive with no matching key: %v", err)
	}
	if _, err := OpenArchive(src(), nil); err != nil {
		t.Errorf("OpenArchive without a key: %v", err)
	}

	rd, err := NewReader(bytes.NewReader(data), wrong, ReaderOptions{Keys: []*crypt.Key{right}})
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	n := 0
	for {
		_, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if _, err := io.Copy(io.Discard, rd); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != len(sampleMembers()) {
		t.Errorf("read %d members", n)
	}
	if _, err := NewReader(bytes.NewReader(data), wrong, ReaderOptions{Keys: []*crypt.Key{other}}); !errors.Is(err, ErrWrongKey) {
		t.Errorf("NewReader with no matching key: %v", err)
	}

	rep, err := ScanArchive(src(), ScanOptions{Keys: []*crypt.Key{wrong, right}, Content: true, Digest: true}, nil)
	if err != nil || !rep.Intact() || !rep.SummaryChecked {
		t.Fatalf("ScanArchive: %v %+v", err, rep)
	}
	if _, err := ScanArchive(src(), ScanOptions{Key: wrong, Keys: []*crypt.Key{other}}, nil); !errors.Is(err, ErrWrongKey) {
		t.Errorf("ScanArchive with no matching key: %v", err)
	}

	cut := data[:len(data)/2/BlockSize*BlockSize]
	sa, entries, _, err := Salvage(NewSource(bytes.NewReader(cut), int64(len(cut))), wrong, right)
	if err != nil || len(entries) == 0 {
		t.Fatalf("Salvage: %d entries, %v", len(entries), err)
	}
	if _, err := sa.Meta(entries[0]); err != nil {
		t.Errorf("salvaged Meta: %v", err)
	}
	if _, _, _, err := Salvage(NewSource(bytes.NewReader(cut), int64(len(cut))), wrong, other); !errors.Is(err, ErrWrongKey) {
		t.Errorf("Salvage with no matching key: %v", err)
	}
}
