// Package vecgen generates the test vectors of spec/vectors (see
// spec/vectors/README.md for their file format). spec/gen writes them and
// spec/vectors_test.go checks them against the reference readers.
package vecgen

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Vector is one test vector.
type Vector struct {
	Name   string
	Expect string // "success" or a failure class
	Kind   string // archive, index, keyfile
	Key    []byte // nil: none
	Desc   string

	// Archives: the outcome of reading without the key and of random
	// access, when they differ from Expect (spec 8.2, 10.2, 10.3).
	Keyless      string // "success" or "fail"
	RandomAccess string // "success" or "fail"

	// Success.
	Members     int
	PlainSHA    string // archives: SHA-256 of the plain tar cbfs export writes
	MembersSHA  string // archives: SHA-256 of every member's record and content
	Records     int    // index: records
	EntriesSHA  string // index: SHA-256 of the entries listing
	ImportedSHA string // archives imported from a tar: SHA-256 of that tar
	Canonical   []byte // path: the canonical form of the path in Data

	Data []byte
}

// Encode writes the vector file: header lines, an empty line, the bytes.
func (v *Vector) Encode() []byte {
	var b bytes.Buffer
	line := func(k, val string) {
		if val != "" {
			fmt.Fprintf(&b, "%s: %s\n", k, val)
		}
	}
	line("expect", v.Expect)
	line("kind", v.Kind)
	key := "none"
	if v.Key != nil {
		key = fmt.Sprintf("%x", v.Key)
	}
	line("key", key)
	line("description", v.Desc)
	line("keyless", v.Keyless)
	line("random-access", v.RandomAccess)
	if v.Expect == "success" && v.Kind != "keyfile" {
		if v.Kind == "archive" {
			line("members", strconv.Itoa(v.Members))
			line("plaintext-sha256", v.PlainSHA)
			line("members-sha256", v.MembersSHA)
			line("imported-sha256", v.ImportedSHA)
		} else if v.Kind == "path" {
			line("canonical", hex.EncodeToString(v.Canonical))
		} else {
			line("records", strconv.Itoa(v.Records))
			line("entries-sha256", v.EntriesSHA)
		}
	}
	b.WriteString("\n")
	b.Write(v.Data)
	return b.Bytes()
}

// Parse reads a vector file. Header lines are returned by name; every
// known line is also set in the Vector.
func Parse(name string, file []byte) (*Vector, map[string]string, error) {
	i := bytes.Index(file, []byte("\n\n"))
	if i < 0 {
		return nil, nil, errors.New("no empty line after the header")
	}
	v := &Vector{Name: name, Data: file[i+2:]}
	h := map[string]string{}
	for _, l := range strings.Split(string(file[:i]), "\n") {
		k, val, ok := strings.Cut(l, ": ")
		if !ok || k == "" {
			return nil, nil, fmt.Errorf("bad header line %q", l)
		}
		if _, dup := h[k]; dup {
			return nil, nil, fmt.Errorf("header %q twice", k)
		}
		h[k] = val
	}
	v.Expect, v.Kind, v.Desc = h["expect"], h["kind"], h["description"]
	v.Keyless, v.RandomAccess = h["keyless"], h["random-access"]
	v.PlainSHA, v.MembersSHA, v.EntriesSHA, v.ImportedSHA = h["plaintext-sha256"], h["members-sha256"], h["entries-sha256"], h["imported-sha256"]
	if c, ok := h["canonical"]; ok {
		var err error
		if v.Canonical, err = hexBytes(c); err != nil {
			return nil, nil, fmt.Errorf("bad canonical line %q", c)
		}
	}
	if k := h["key"]; k != "none" {
		var err error
		if v.Key, err = hexBytes(k); err != nil || len(v.Key) != 32 {
			return nil, nil, fmt.Errorf("bad key line %q", k)
		}
	}
	for _, f := range []struct {
		k string
		p *int
	}{{"members", &v.Members}, {"records", &v.Records}} {
		if s, ok := h[f.k]; ok {
			n, err := strconv.Atoi(s)
			if err != nil {
				return nil, nil, fmt.Errorf("bad %s line %q", f.k, s)
			}
			*f.p = n
		}
	}
	return v, h, nil
}

func hexBytes(s string) ([]byte, error) { return hex.DecodeString(s) }

// WriteDir writes every vector into dir, one file each, and removes the
// files there that are not vectors (but README.md), so that a renamed
// vector leaves nothing stale behind. It returns the number written.
func WriteDir(dir string) (int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	vs := Generate()
	keep := map[string]bool{"README.md": true}
	for _, v := range vs {
		keep[v.Name] = true
		if err := os.WriteFile(filepath.Join(dir, v.Name), v.Encode(), 0o644); err != nil {
			return 0, err
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		if !keep[e.Name()] && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return 0, err
			}
		}
	}
	return len(vs), nil
}
