package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyKeylessSaysWhatItProves: a keyless "ok" says that only
// accidental damage was ruled out, and the sequence number read without
// the key is marked as unauthenticated; with the key both are facts.
func TestVerifyKeylessSaysWhatItProves(t *testing.T) {
	t.Parallel()
	im := importSource(t)
	r := mustRun(t, im.dir, "verify", "a.cbfs")
	if !strings.Contains(string(r.stdout), "no accidental damage found (without the key a deliberate change is not detectable)") {
		t.Errorf("keyless verify says %q", r.stdout)
	}
	r = mustRun(t, im.dir, "verify", "-k", im.key, "a.cbfs")
	if strings.Contains(string(r.stdout), "accidental") || !strings.Contains(string(r.stdout), "intact and authentic") {
		t.Errorf("keyed verify says %q", r.stdout)
	}
	for _, c := range []struct {
		args          []string
		authenticated bool
		verdict       string
	}{
		{[]string{"verify", "--json", "a.cbfs"}, false, "no accidental damage found (without the key a deliberate change is not detectable)"},
		{[]string{"verify", "--json", "-k", im.key, "a.cbfs"}, true, "intact and authentic: every byte checked with the key"},
	} {
		var doc struct {
			Archives []map[string]any `json:"archives"`
		}
		out := mustRun(t, im.dir, c.args...).stdout
		if err := json.Unmarshal(out, &doc); err != nil || len(doc.Archives) != 1 {
			t.Fatalf("%v: %v in %s", c.args, err, out)
		}
		a := doc.Archives[0]
		if a["sequence_authenticated"] != c.authenticated || a["verdict"] != c.verdict || a["status"] != "ok" {
			t.Errorf("%v: sequence_authenticated %v, verdict %q, status %v", c.args, a["sequence_authenticated"], a["verdict"], a["status"])
		}
		if _, ok := a["sequence"]; !ok {
			t.Errorf("%v: no sequence field", c.args)
		}
	}
}

// TestVerifyWrongKeyStillFindsDamage: an archive under another key is
// still checked without the key, so that damage is reported as damage
// (status 3), not hidden behind the wrong key (status 4) (found by the
// audit); an intact one under another key is a wrong key.
func TestVerifyWrongKeyStillFindsDamage(t *testing.T) {
	t.Parallel()
	im := importSource(t)
	other := filepath.Join(im.dir, "other.key")
	mustRun(t, im.dir, "keygen", "-o", other)
	run(t, im.dir, exitWrongKey, "verify", "-k", other, "a.cbfs")
	b := readFile(t, filepath.Join(im.dir, "a.cbfs"))
	b[len(b)-1500] ^= 0xAA // in the footer
	writeFile(t, filepath.Join(im.dir, "bad.cbfs"), b, 0o644)
	r := run(t, im.dir, exitDamaged, "verify", "-k", other, "bad.cbfs")
	if !strings.Contains(string(r.stdout), "written under another key") || !strings.Contains(string(r.stdout), "footer") {
		t.Errorf("verify of a damaged archive under another key: %s", r.stdout)
	}
}

// TestIndexDamagedDuringUpdate: an index whose block is damaged, found
// as the update merges it, is status 3 as reading it is, the archive
// written complete and the repair command given.
func TestIndexDamagedDuringUpdate(t *testing.T) {
	t.Parallel()
	im := importSource(t)
	writeFile(t, filepath.Join(im.dir, "in.tar"), im.tarBytes, 0o644)
	mustRun(t, im.dir, "import", "-k", im.key, "--index", "fs.idx", "--new-index", "-o", "b.cbfs", "in.tar")
	b := readFile(t, filepath.Join(im.dir, "fs.idx"))
	b[100] ^= 0xAA // in the first block frame
	writeFile(t, filepath.Join(im.dir, "fs.idx"), b, 0o644)
	r := run(t, im.dir, exitDamaged, "import", "-k", im.key, "--index", "fs.idx", "-o", "c.cbfs", "in.tar")
	if !strings.Contains(string(r.stderr), "index fs.idx was not updated") || !strings.Contains(string(r.stderr), "cbfs index add") {
		t.Errorf("an update of a damaged index: %s", r.stderr)
	}
}
