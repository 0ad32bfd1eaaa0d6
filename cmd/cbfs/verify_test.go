package main

import (
	"encoding/json"
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
