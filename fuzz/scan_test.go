package fuzz

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
)

// scan runs the verifier's scan (format.ScanArchive, also the index
// rebuild's fallback) over data, with every check on.
func scan(t *testing.T, data []byte, key *crypt.Key) (*format.ScanReport, int, error) {
	delivered := 0
	rep, err := format.ScanArchive(format.NewSource(bytes.NewReader(data), int64(len(data))),
		format.ScanOptions{Key: key, Content: true, Digest: true},
		func(e format.Entry) error {
			if key != nil && e.Meta == nil {
				t.Fatalf("keyed scan delivered member %d without metadata", e.Number)
			}
			delivered++
			return nil
		})
	if err != nil && !isInputError(err) && !errors.Is(err, format.ErrWrongKey) {
		t.Fatalf("ScanArchive (key=%v): untyped error: %v", key != nil, err)
	}
	if rep != nil && rep.Members != delivered {
		t.Fatalf("scan counts %d members, delivered %d", rep.Members, delivered)
	}
	return rep, delivered, err
}

// FuzzScan feeds arbitrary bytes to the scan that verify and the index
// rebuild's fallback use. Beyond never panicking and typed errors: an
// archive the keyed streaming reader accepts must scan intact, with and
// without the key, with the same members; and a scan that calls an
// archive intact with the key must agree with the streaming reader.
func FuzzScan(f *testing.F) {
	addSeeds(f, archiveSeeds(f), vectorSeeds(f, "archive"))
	f.Fuzz(func(t *testing.T, data []byte) {
		members, serr := streamRead(t, data, fuzzKey)
		krep, kn, kerr := scan(t, data, fuzzKey)
		nrep, _, nerr := scan(t, data, nil)
		keyedIntact := kerr == nil && krep.Intact()
		if serr == nil {
			if !keyedIntact {
				t.Fatalf("streaming reader accepts, keyed scan does not: %v %v", kerr, krep.Problems)
			}
			if nerr != nil || !nrep.Intact() {
				t.Fatalf("streaming reader accepts, keyless scan does not: %v %v", nerr, nrep.Problems)
			}
			if kn != len(members) {
				t.Fatalf("scan delivered %d members, the streaming reader %d", kn, len(members))
			}
		} else if keyedIntact {
			t.Fatalf("keyed scan calls intact what the streaming reader refuses: %v", serr)
		}
	})
}

// FuzzSalvage feeds arbitrary bytes to format.Salvage, which extract
// --salvage uses on archives whose footer or summary is lost. Beyond
// never panicking and typed errors: it finds exactly the members the
// keyed scan delivers, every one of them reads back whole through the
// Archive it returns (metadata and content: the scan authenticated them),
// and that Archive has no summary to give.
func FuzzSalvage(f *testing.F) {
	addSeeds(f, archiveSeeds(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		src := format.NewSource(bytes.NewReader(data), int64(len(data)))
		a, entries, problems, err := format.Salvage(src, fuzzKey)
		if err != nil {
			if !isInputError(err) && !errors.Is(err, format.ErrWrongKey) {
				t.Fatalf("Salvage: untyped error: %v", err)
			}
			return
		}
		_, kn, kerr := scan(t, data, fuzzKey)
		if kerr != nil || kn != len(entries) {
			t.Fatalf("Salvage found %d members, the keyed scan %d (%v)", len(entries), kn, kerr)
		}
		for _, e := range entries {
			if _, err := a.Meta(e); err != nil {
				t.Fatalf("salvaged member %d: Meta: %v (problems %v)", e.Number, err, problems)
			}
			if err := a.Content(e, io.Discard); err != nil {
				t.Fatalf("salvaged member %d: Content: %v (problems %v)", e.Number, err, problems)
			}
		}
		if _, err := a.Entries(); err == nil {
			t.Fatal("a salvaged archive gave a summary")
		}
	})
}
