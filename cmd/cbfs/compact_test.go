package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCompact: an imported archive (GNU tar headers kept verbatim), then
// a packed archive that supersedes part of it; compact copies what the
// index serves, and the current tree exported through the index is the
// same bytes before and after, also once the sources are removed.
func TestCompact(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	_, tarPath := sourceTar(t)
	work := t.TempDir()
	arch := filepath.Join(work, "arch")
	if err := os.Mkdir(arch, 0o755); err != nil {
		t.Fatal(err)
	}
	idx := filepath.Join(work, "fs.index")
	mustRun(t, work, "import", "-k", key, "--index", idx, "--new-index", "-o", filepath.Join(arch, "0001.cbfs"), tarPath)
	// The second archive supersedes the big random file and deletes one.
	src2 := t.TempDir()
	writeFile(t, filepath.Join(src2, "d/sub/random.bin"), randomBytes(50_000, 2), 0o600)
	mustRun(t, src2, "pack", "-k", key, "--index", idx, "--delete", "d/name with spaces", "-o", filepath.Join(arch, "0002.cbfs"), "d")
	before := mustRun(t, work, "export", "-k", key, "--index", idx, arch).stdout
	idxBefore := readFile(t, idx)

	// Usage errors.
	for _, args := range [][]string{
		{"compact", "-k", key, arch},
		{"compact", "-k", key, "--index", idx, "--min-dead", "150", arch},
		{"compact", "-k", key, "--index", idx, "--max-size", "lots", arch},
	} {
		if r := cbfs(t, work, args...); r.code != exitUsage {
			t.Errorf("%v: %s, want status %d", args, r, exitUsage)
		}
	}

	// A dry run says what it would do and changes nothing.
	r := mustRun(t, work, "compact", "-k", key, "--index", idx, "--dry-run", "--json", arch)
	var dry struct {
		Picked  []struct{ Archive string } `json:"picked"`
		Outputs []struct {
			Replaces []string `json:"replaces"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(r.stdout, &dry); err != nil {
		t.Fatalf("dry run --json: %v\n%s", err, r.stdout)
	}
	if len(dry.Picked) != 1 || !strings.HasSuffix(dry.Picked[0].Archive, "0001.cbfs") || len(dry.Outputs) != 1 {
		t.Fatalf("dry run picked %+v, outputs %+v; want 0001.cbfs alone", dry.Picked, dry.Outputs)
	}
	if got := dirNames(t, arch); !slices.Equal(got, []string{"0001.cbfs", "0002.cbfs"}) {
		t.Fatalf("dry run changed the directory: %v", got)
	}
	if !bytes.Equal(readFile(t, idx), idxBefore) {
		t.Fatal("dry run changed the index")
	}

	r = mustRun(t, work, "compact", "-k", key, "--index", idx, "--json", arch)
	var res struct {
		Outputs []struct {
			Archive string `json:"archive"`
			Seq     uint64 `json:"seq"`
		} `json:"outputs"`
		Retired   []string `json:"retired"`
		Reclaimed int64    `json:"reclaimable_bytes"`
	}
	if err := json.Unmarshal(r.stdout, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Outputs) != 1 || res.Outputs[0].Seq != 1 || len(res.Retired) != 1 || res.Reclaimed <= 0 {
		t.Fatalf("compact: %s", r.stdout)
	}
	if got := mustRun(t, work, "export", "-k", key, "--index", idx, arch).stdout; !bytes.Equal(got, before) {
		t.Fatal("the current tree exported through the index changed")
	}
	// gc and verify name the retired archive; the index verifies.
	if out := mustRun(t, work, "gc", "-k", key, "--index", idx, arch).stdout; !bytes.Contains(out, []byte("retired")) {
		t.Errorf("gc does not say the source is retired:\n%s", out)
	}
	if out := mustRun(t, work, "verify", "-k", key, "--index", idx, arch).stdout; !bytes.Contains(out, []byte("0001.cbfs: retired")) {
		t.Errorf("verify --index does not name the retired archive:\n%s", out)
	}
	// The compacted archive alone exports as plain tar GNU tar reads, with
	// the imported entries' own headers.
	comp := res.Outputs[0].Archive
	plain := mustRun(t, work, "export", "-k", key, comp).stdout
	if err := os.WriteFile(filepath.Join(work, "c.tar"), plain, 0o644); err != nil {
		t.Fatal(err)
	}
	names := string(runTar(t, work, "-tf", "c.tar"))
	if !strings.Contains(names, "d/hello.txt") || strings.Contains(names, "d/sub/random.bin\n") {
		t.Errorf("the compacted archive's entries:\n%s", names)
	}

	// A second run finds nothing to do but removes what is retired.
	r = mustRun(t, work, "compact", "-k", key, "--index", idx, "--remove", arch)
	if !bytes.Contains(r.stdout, []byte("removed ")) {
		t.Errorf("second run: %s", r.stdout)
	}
	if slices.Contains(dirNames(t, arch), "0001.cbfs") {
		t.Fatal("--remove left the retired archive")
	}
	if got := mustRun(t, work, "export", "-k", key, "--index", idx, arch).stdout; !bytes.Equal(got, before) {
		t.Fatal("after --remove the current tree changed")
	}
	mustRun(t, work, "index", "rebuild", "-k", key, "-o", filepath.Join(work, "re.index"), arch)
	if !bytes.Equal(readFile(t, filepath.Join(work, "re.index")), readFile(t, idx)) {
		t.Fatal("a rebuild differs from the maintained index")
	}
}
