package spec_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
	"github.com/cbfs/cbfs/keys"
	"github.com/cbfs/cbfs/spec/internal/vecgen"
	"github.com/cbfs/cbfs/tarconv"
)

// classes are the outcomes a vector may expect (spec section 8.5).
var classes = map[string]bool{
	"success": true, "not-cbfs": true, "tar": true, "header": true, "version": true, "key": true,
	"frame": true, "member": true, "summary": true, "footer": true, "not-index": true, "index": true, "keyfile": true, "path": true,
}

// classOf names the failure class of an error as the vectors do.
func classOf(err error) string {
	var ve *format.VersionError
	var ive *index.VersionError
	var fe *format.Error
	var ie *index.Error
	var ke *keys.SizeError
	switch {
	case err == nil:
		return "success"
	case errors.Is(err, format.ErrWrongKey):
		return "key"
	case errors.As(err, &ve), errors.As(err, &ive):
		return "version"
	case errors.Is(err, format.ErrNotCBFS):
		return "not-cbfs"
	case errors.Is(err, index.ErrNotIndex):
		return "not-index"
	case errors.As(err, &fe):
		return string(fe.Class)
	case errors.As(err, &ie):
		return "index"
	case errors.As(err, &ke):
		return "keyfile"
	case errors.As(err, new(*index.CanonicalPathError)):
		return "path"
	}
	return "unclassified (" + err.Error() + ")"
}

func readVectors(t *testing.T) []*vecgen.Vector {
	t.Helper()
	ents, err := os.ReadDir("vectors")
	if err != nil {
		t.Fatal(err)
	}
	var vs []*vecgen.Vector
	for _, e := range ents {
		if e.Name() == "README.md" {
			continue
		}
		b, err := os.ReadFile(filepath.Join("vectors", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		v, _, err := vecgen.Parse(e.Name(), b)
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		vs = append(vs, v)
	}
	return vs
}

// TestVectors runs every vector through the reference readers and checks
// the outcome it expects.
func TestVectors(t *testing.T) {
	vs := readVectors(t)
	count := map[string]int{}
	for _, v := range vs {
		if !classes[v.Expect] {
			t.Errorf("%s: unknown expect %q", v.Name, v.Expect)
			continue
		}
		count[v.Expect]++
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			switch v.Kind {
			case "archive":
				checkArchive(t, v)
			case "index":
				checkIndex(t, v)
			case "keyfile":
				checkKeyFile(t, v)
			case "path":
				got, err := index.CanonicalPath(v.Data)
				if c := classOf(err); c != v.Expect {
					t.Fatalf("%q: %s, want %s", v.Data, c, v.Expect)
				}
				if err == nil && !bytes.Equal(got, v.Canonical) {
					t.Fatalf("%q: canonical %q, want %q", v.Data, got, v.Canonical)
				}
				if index.IsCanonicalPath(v.Data) != (err == nil && bytes.Equal(v.Data, v.Canonical)) {
					t.Fatalf("%q: IsCanonicalPath disagrees", v.Data)
				}
			default:
				t.Fatalf("unknown kind %q", v.Kind)
			}
		})
	}
	if len(vs) < 60 {
		t.Errorf("%d vectors, want at least 60", len(vs))
	}
	for c := range classes {
		if count[c] == 0 {
			t.Errorf("no vector expects %q", c)
		}
	}
}

// TestVectorsReproducible regenerates every vector and compares it with
// the committed file, byte for byte.
func TestVectorsReproducible(t *testing.T) {
	dir := t.TempDir()
	if _, err := vecgen.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	list := func(d string) []string {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		var n []string
		for _, e := range ents {
			if e.Name() != "README.md" {
				n = append(n, e.Name())
			}
		}
		sort.Strings(n)
		return n
	}
	got, want := list(dir), list("vectors")
	if !equalStrings(got, want) {
		t.Fatalf("generated vectors %v, committed %v (run make vectors)", got, want)
	}
	for _, n := range got {
		a, _ := os.ReadFile(filepath.Join(dir, n))
		b, _ := os.ReadFile(filepath.Join("vectors", n))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: the committed vector differs from a fresh generation (run make vectors)", n)
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func mustKey(t *testing.T, b []byte) *crypt.Key {
	t.Helper()
	k, err := crypt.KeyFromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func hexSum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func writeMember(w io.Writer, rec, content []byte) {
	w.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(rec))))
	w.Write(rec)
	w.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(content))))
	w.Write(content)
}

// stream reads the archive with the streaming reader: with a key, every
// member's record and content (members-sha256); without, the framing.
func stream(data []byte, key *crypt.Key) (string, int, error) {
	r, err := format.NewReader(bytes.NewReader(data), key, format.ReaderOptions{})
	if err != nil {
		return "", 0, err
	}
	defer r.Close()
	h := sha256.New()
	n := 0
	for {
		m, err := r.Next()
		if err == io.EOF {
			return hex.EncodeToString(h.Sum(nil)), n, nil
		}
		if err != nil {
			return "", n, err
		}
		n++
		if key == nil {
			continue
		}
		c, err := io.ReadAll(r)
		if err != nil {
			return "", n, err
		}
		writeMember(h, m.Meta.Encode(nil), c)
	}
}

// randomAccess opens the archive through its footer and summary and reads
// every member's metadata and content.
func randomAccess(data []byte, key *crypt.Key) (string, int, error) {
	a, err := format.OpenArchive(format.NewSource(bytes.NewReader(data), int64(len(data))), key)
	if err != nil {
		return "", 0, err
	}
	es, err := a.Entries()
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	for _, e := range es {
		m, err := a.Meta(e)
		if err != nil {
			return "", 0, err
		}
		var c bytes.Buffer
		if err := a.Content(e, &c); err != nil {
			return "", 0, err
		}
		writeMember(h, m.Encode(nil), c.Bytes())
	}
	return hex.EncodeToString(h.Sum(nil)), len(es), nil
}

// scan checks the archive front to back with ScanArchive, content and
// digest included. A problem found is an error.
func scan(data []byte, key *crypt.Key) (*format.ScanReport, error) {
	rep, err := format.ScanArchive(format.NewSource(bytes.NewReader(data), int64(len(data))),
		format.ScanOptions{Key: key, Content: true, Digest: true}, nil)
	if err != nil {
		return rep, err
	}
	if !rep.Intact() {
		return rep, rep.Problems[0]
	}
	return rep, nil
}

func checkArchive(t *testing.T, v *vecgen.Vector) {
	key := mustKey(t, v.Key)
	var plain bytes.Buffer
	exportErr := tarconv.ExportTar(context.Background(), &plain, bytes.NewReader(v.Data), key, tarconv.ExportOptions{})
	digest, n, streamErr := stream(v.Data, key)
	raDigest, raN, raErr := randomAccess(v.Data, key)
	rep, scanErr := scan(v.Data, key)
	_, _, keylessErr := stream(v.Data, nil)
	krep, keylessScanErr := scan(v.Data, nil)

	if v.Expect == "success" {
		for _, e := range []struct {
			what string
			err  error
		}{{"export", exportErr}, {"streaming read", streamErr}, {"random access", raErr}, {"scan", scanErr},
			{"keyless streaming read", keylessErr}, {"keyless scan", keylessScanErr}} {
			if e.err != nil {
				t.Errorf("%s: %v", e.what, e.err)
			}
		}
		if t.Failed() {
			return
		}
		if got := hexSum(plain.Bytes()); got != v.PlainSHA {
			t.Errorf("export: plaintext SHA-256 %s, want %s", got, v.PlainSHA)
		}
		if v.ImportedSHA != "" && v.ImportedSHA != v.PlainSHA {
			t.Errorf("export of an imported tar: plaintext-sha256 %s is not the input's %s", v.PlainSHA, v.ImportedSHA)
		}
		if digest != v.MembersSHA || n != v.Members {
			t.Errorf("streaming read: %d members, digest %s; want %d, %s", n, digest, v.Members, v.MembersSHA)
		}
		if raDigest != v.MembersSHA || raN != v.Members {
			t.Errorf("random access: %d members, digest %s; want %d, %s", raN, raDigest, v.Members, v.MembersSHA)
		}
		if rep.Members != v.Members || !rep.SummaryChecked {
			t.Errorf("scan: %d members, summary checked %v; want %d, true", rep.Members, rep.SummaryChecked, v.Members)
		}
		if krep.Members != v.Members {
			t.Errorf("keyless scan: %d members, want %d", krep.Members, v.Members)
		}
		return
	}

	// Every keyed path fails; the streaming one with the expected class.
	if c := classOf(exportErr); c != v.Expect {
		t.Errorf("export: %s (%v), want %s", c, exportErr, v.Expect)
	}
	if c := classOf(streamErr); c != v.Expect {
		t.Errorf("streaming read: %s (%v), want %s", c, streamErr, v.Expect)
	}
	if scanErr == nil {
		t.Errorf("scan with the key found nothing wrong")
	}
	switch v.RandomAccess {
	case "success":
		// Random access authenticates what it reads, not every byte
		// (spec 8.2, 10.3): this damage is outside what it reads.
		if raErr != nil {
			t.Errorf("random access: %v, want success", raErr)
		}
	case "fail":
		if raErr == nil {
			t.Errorf("random access found nothing wrong")
		}
	default:
		t.Errorf("random-access: %q", v.RandomAccess)
	}
	switch v.Keyless {
	case "success":
		// Only the key finds this damage (spec 10.2).
		if keylessErr != nil || keylessScanErr != nil {
			t.Errorf("without the key: streaming %v, scan %v; want success", keylessErr, keylessScanErr)
		}
	case "fail":
		if keylessErr == nil || keylessScanErr == nil {
			t.Errorf("without the key: streaming %v, scan %v; want both to fail", keylessErr, keylessScanErr)
		}
	default:
		t.Errorf("keyless: %q", v.Keyless)
	}
}

func checkIndex(t *testing.T, v *vecgen.Vector) {
	key := mustKey(t, v.Key)
	x, err := index.Read(bytes.NewReader(v.Data), key)
	if c := classOf(err); c != v.Expect {
		t.Fatalf("ReadIndex: %s (%v), want %s", c, err, v.Expect)
	}
	if err != nil {
		return
	}
	if got := hexSum(vecgen.IndexListing(x)); x.Len() != v.Records || got != v.EntriesSHA {
		t.Errorf("%d records, listing %s; want %d, %s", x.Len(), got, v.Records, v.EntriesSHA)
	}
	var b bytes.Buffer
	if err := x.Encode(&b, key); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), v.Data) {
		t.Errorf("the index does not re-encode to the same bytes")
	}
}

func checkKeyFile(t *testing.T, v *vecgen.Vector) {
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, v.Data, 0o600); err != nil {
		t.Fatal(err)
	}
	k, warns, err := keys.ReadFile(p)
	if c := classOf(err); c != v.Expect {
		t.Fatalf("ReadKeyFile: %s (%v), want %s", c, err, v.Expect)
	}
	if err != nil {
		return
	}
	if len(warns) != 0 {
		t.Errorf("warnings for a mode 0600 key file: %v", warns)
	}
	if k.ID() != mustKey(t, v.Data).ID() {
		t.Errorf("the key read is not the file's 32 bytes")
	}
}
