package fuzz

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cbfs/cbfs/format"
)

// maxSeedVector leaves the largest vectors (megabytes of content) out of
// the seed corpora: the fuzzer mutates big inputs slowly.
const maxSeedVector = 256 << 10

// vector is one file of spec/vectors: its header lines and its input.
type vector struct {
	name string
	hdr  map[string]string
	data []byte
}

// loadVectors reads spec/vectors (see its README.md for the format).
// Without them (a tree without spec/) the targets keep their own seeds.
func loadVectors(tb testing.TB) []vector {
	tb.Helper()
	dir := filepath.Join("..", "spec", "vectors")
	ents, err := os.ReadDir(dir)
	if err != nil {
		tb.Logf("no test vectors: %v", err)
		return nil
	}
	var out []vector
	for _, e := range ents {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".md") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		head, data, ok := bytes.Cut(b, []byte("\n\n"))
		if !ok {
			tb.Fatalf("vector %s: no empty line after the header", e.Name())
		}
		v := vector{name: e.Name(), hdr: map[string]string{}, data: data}
		for _, line := range strings.Split(string(head), "\n") {
			k, val, ok := strings.Cut(line, ": ")
			if !ok {
				tb.Fatalf("vector %s: header line %q", e.Name(), line)
			}
			v.hdr[k] = val
		}
		out = append(out, v)
	}
	return out
}

// vectorSeeds returns the inputs of the vectors of one kind that are
// small enough to seed a fuzzer.
func vectorSeeds(tb testing.TB, kind string) [][]byte {
	var out [][]byte
	for _, v := range loadVectors(tb) {
		if v.hdr["kind"] == kind && len(v.data) <= maxSeedVector {
			out = append(out, v.data)
		}
	}
	return out
}

// lastRecordBody returns the body block of an archive's last record (the
// footer's, in a well-formed archive): the last block that is not zero.
func lastRecordBody(a []byte) []byte {
	end := len(a) - len(a)%format.BlockSize
	for end >= format.BlockSize && allZeroBytes(a[end-format.BlockSize:end]) {
		end -= format.BlockSize
	}
	if end < format.BlockSize {
		return nil
	}
	return a[end-format.BlockSize : end]
}

func allZeroBytes(b []byte) bool { return len(bytes.Trim(b, "\x00")) == 0 }

// TestVectorsUseFuzzKey: the vectors must open under fuzzKey, or seeding
// the keyed targets from them only exercises the wrong-key path.
func TestVectorsUseFuzzKey(t *testing.T) {
	vs := loadVectors(t)
	if len(vs) == 0 {
		t.Skip("no spec/vectors")
	}
	n := 0
	for _, v := range vs {
		if v.hdr["expect"] == "success" && v.hdr["kind"] != "keyfile" {
			if v.hdr["key"] == fuzzKeyHex {
				n++
			}
		}
	}
	if n == 0 {
		t.Fatalf("no successful vector is written under fuzzKeyHex: spec/gen changed its key; set fuzzKeyHex to the key the vectors use")
	}
}

// TestVectorsThroughCheckArchive runs every archive vector through the
// readers' cross-checks of FuzzArchiveReader: a vector that must succeed
// has to pass all of them (keyed and keyless streaming reads agree, random
// access lists the same members with the same records and content), and
// no vector may break a property.
func TestVectorsThroughCheckArchive(t *testing.T) {
	for _, v := range loadVectors(t) {
		if v.hdr["kind"] != "archive" || v.hdr["key"] != fuzzKeyHex {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			ok := checkArchive(t, v.data)
			if want := v.hdr["expect"] == "success"; ok != want {
				t.Errorf("accepted %v, the vector expects %s", ok, v.hdr["expect"])
			}
		})
	}
}
