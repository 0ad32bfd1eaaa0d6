package fuzz

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
)

// rekeyKey is the new key of FuzzRekey.
var rekeyKey = mustKey(0x6b)

// rekeyRand gives the new archive id: two candidates, in case the input's
// own id is the first.
func rekeyRand() *bytes.Reader {
	return bytes.NewReader(append(bytes.Repeat([]byte{0x5e}, crypt.IDSize), bytes.Repeat([]byte{0x6f}, crypt.IDSize)...))
}

// FuzzRekey: for any input, format.Rekey either refuses it with a typed
// error, or writes an archive that a keyed streaming read under the new
// key gives the same members as the source under the old key. Rekey
// accepts whatever the keyed streaming reader accepts, and what it checks
// without decoding plaintext it refuses; what needs the plaintext decoded
// (metadata, LZ4, the summary) the new archive fails as the source did.
func FuzzRekey(f *testing.F) {
	addSeeds(f, archiveSeeds(f), vectorSeeds(f, "archive"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		_, err := format.Rekey(&out, bytes.NewReader(data), []*crypt.Key{fuzzKey}, rekeyKey, format.RekeyOptions{Rand: rekeyRand(), Workers: 1})
		src, srcErr := streamRead(t, data, fuzzKey)
		if err != nil {
			if !isInputError(err) {
				t.Fatalf("refused with an untyped error: %v", err)
			}
			if srcErr == nil {
				t.Fatalf("rekey refused what the streaming reader accepts: %v", err)
			}
			return
		}
		got, gotErr := streamRead(t, out.Bytes(), rekeyKey)
		if srcErr != nil {
			if gotErr == nil {
				t.Fatalf("the source is refused (%v) and its rekeyed copy accepted", srcErr)
			}
			return
		}
		if gotErr != nil {
			t.Fatalf("the rekeyed archive is refused: %v", gotErr)
		}
		if fmt.Sprint(got) != fmt.Sprint(src) {
			t.Fatal("the rekeyed archive holds other members")
		}
		if out.Len() > len(data) {
			t.Fatalf("rekeyed archive of %d bytes from %d", out.Len(), len(data))
		}
	})
}
