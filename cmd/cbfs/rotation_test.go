package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRotationWorkflow runs the key rotation of the README end to end:
// keygen NEW; rekey every archive; rekey the index (as a rebuild under
// NEW writes it);
// verify -k NEW --index; the old key opens nothing new; remove the old
// oldKeyHistory is the start the rotation tests share: old.key, and
// under it archives/0001.cbfs (the source's d/, with --new-index) and
// 0002.cbfs (d/hello.txt changed, "d/name with spaces" deleted), both
// in fs.index. run runs cbfs in dir and requires status 0.
func oldKeyHistory(t *testing.T) (dir, src string, run func(args ...string) result) {
	t.Helper()
	dir = t.TempDir()
	src, _ = sourceTar(t)
	run = func(args ...string) result { t.Helper(); return mustRun(t, dir, args...) }
	run("keygen", "-o", "old.key")
	os.Mkdir(filepath.Join(dir, "archives"), 0o755)
	run("pack", "-k", "old.key", "--new-index", "--index", "fs.index", "-o", "archives/0001.cbfs", filepath.Join(src, "d"))
	writeFile(t, filepath.Join(src, "d/hello.txt"), []byte("hello again\n"), 0o644)
	run("pack", "-k", "old.key", "--index", "fs.index", "--delete", "d/name with spaces", "-o", "archives/0002.cbfs", filepath.Join(src, "d/hello.txt"))
	return dir, src, run
}

// archives. Between the steps, -k NEW -k OLD reads the mixed set.
func TestRotationWorkflow(t *testing.T) {
	t.Parallel()
	dir, src, run := oldKeyHistory(t)
	run("import", "-k", "old.key", "--index", "fs.index", "-o", "archives/0003.cbfs", filepath.Join(src, "x.tar"))
	oldLs := run("index", "ls", "-k", "old.key", "fs.index").stdout

	// 1. A new key.
	run("keygen", "-o", "new.key")
	os.Mkdir(filepath.Join(dir, "new"), 0o755)

	// 2. Rekey one archive: the set is mixed now, and both keys read it.
	r := run("rekey", "-k", "old.key", "--new-key", "new.key", "-o", "new", "--json", "archives/0001.cbfs")
	var rows []rekeyJSON
	if err := json.Unmarshal(r.stdout, &rows); err != nil || len(rows) != 1 || rows[0].Status != "rekeyed" || *rows[0].Sequence != 1 || rows[0].OldID == rows[0].NewID {
		t.Fatalf("rekey --json: %s %v", r.stdout, err)
	}
	mixed := []string{"new/0001.cbfs", "archives/0002.cbfs", "archives/0003.cbfs"}
	oldID := strings.TrimSpace(string(run("key", "id", "-k", "old.key").stdout))
	newID := strings.TrimSpace(string(run("key", "id", "-k", "new.key").stdout))
	r = run(append([]string{"verify", "-k", "new.key", "-k", "old.key", "--json"}, mixed...)...)
	var doc struct{ Archives []verifyResult }
	if err := json.Unmarshal(r.stdout, &doc); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{newID, oldID, oldID} {
		if a := doc.Archives[i]; a.Status != "ok" || a.KeyID != want {
			t.Fatalf("mixed set, %s: %s with key %q, want %s", a.Archive, a.Status, a.KeyID, want)
		}
	}
	// The old index still reads the mixed set's paths; export reads with
	// either key and says which it used.
	r = run("export", "-k", "old.key", "-k", "new.key", "-o", "mixed1.tar", "new/0001.cbfs")
	if !strings.Contains(string(r.stderr), "opened with key "+newID) {
		t.Fatalf("export does not name the key in use: %s", r.stderr)
	}
	run("export", "-k", "old.key", "-o", "old1.tar", "archives/0001.cbfs")
	if !bytes.Equal(readFile(t, filepath.Join(dir, "mixed1.tar")), readFile(t, filepath.Join(dir, "old1.tar"))) {
		t.Fatal("the rekeyed archive exports to another tar")
	}
	run("ls", "-k", "new.key", "-k", "old.key", "archives/0002.cbfs")
	run("cat", "-k", "new.key", "-k", "old.key", "new/0001.cbfs", "d/sub/text.txt")

	// 3. Rekey every archive; the one done already is refused, not
	// replaced.
	if r := cbfs(t, dir, "rekey", "-k", "old.key", "--new-key", "new.key", "-o", "new", "archives"); r.code != 1 || !strings.Contains(string(r.stderr), "1 of 3 archives not rekeyed") {
		t.Fatalf("rekey over an existing output: %s\n%s", r, r.stdout)
	}
	// The output directory may not be the sources'.
	if r := cbfs(t, dir, "rekey", "-k", "old.key", "--new-key", "new.key", "-o", "archives", "archives"); r.code != 2 {
		t.Fatalf("rekey into the sources' directory: %s", r)
	}
	for _, f := range []string{"0001.cbfs", "0002.cbfs", "0003.cbfs"} {
		if _, err := os.Stat(filepath.Join(dir, "new", f)); err != nil {
			t.Fatal(err)
		}
		// Same size, same sequence, another archive id.
		a, b := readFile(t, filepath.Join(dir, "archives", f)), readFile(t, filepath.Join(dir, "new", f))
		if len(a) != len(b) || bytes.Equal(a[:48], b[:48]) {
			t.Fatalf("%s: sizes %d and %d, names %q %q", f, len(a), len(b), a[:48], b[:48])
		}
	}

	// 4. The index under NEW, rebuilt from the new archives alone: the
	// same paths, archives, offsets and sequence numbers as the old index
	// (only the archive ids differ); a second rebuild is byte-identical.
	// index rekey (the old index, the new archives' headers and footers)
	// writes the bytes a rebuild writes.
	run("index", "rekey", "-k", "old.key", "--new-key", "new.key", "-o", "new.index", "fs.index", "new")
	run("index", "rebuild", "-k", "new.key", "-o", "again.index", "new")
	if !bytes.Equal(readFile(t, filepath.Join(dir, "new.index")), readFile(t, filepath.Join(dir, "again.index"))) {
		t.Fatal("index rekey and index rebuild -k NEW differ")
	}
	if newLs := run("index", "ls", "-k", "new.key", "new.index").stdout; !bytes.Equal(newLs, oldLs) {
		t.Fatalf("index ls differs:\n%s\n%s", oldLs, newLs)
	}

	// 5. verify -k NEW --index.
	r = run("verify", "-k", "new.key", "--index", "new.index", "new")
	if !strings.Contains(string(r.stdout), "every entry checked points at an intact member") {
		t.Fatalf("verify --index: %s", r.stdout)
	}

	// 6. The old key opens nothing new.
	if r := cbfs(t, dir, "verify", "-k", "old.key", "new"); r.code != exitWrongKey || strings.Count(string(r.stdout), "WRONGKEY") != 3 {
		t.Fatalf("old key over the new archives: %s\n%s", r, r.stdout)
	}
	if r := cbfs(t, dir, "index", "ls", "-k", "old.key", "new.index"); r.code != exitWrongKey {
		t.Fatalf("old key over the new index: %s", r)
	}
	if r := cbfs(t, dir, "extract", "-k", "old.key", "-C", t.TempDir(), "new/0003.cbfs"); r.code != exitWrongKey {
		t.Fatalf("old key extracting a new archive: %s", r)
	}

	// 7. Remove the old archives and the old index: the file system reads
	// with NEW alone.
	os.RemoveAll(filepath.Join(dir, "archives"))
	os.Remove(filepath.Join(dir, "fs.index"))
	run("verify", "-k", "new.key", "--index", "new.index", "new")
	if got := run("cat", "-k", "new.key", "new/0002.cbfs", "hello.txt").stdout; string(got) != "hello again\n" {
		t.Fatalf("cat: %q", got)
	}
	// A writer given both keys writes under the first.
	run("pack", "-k", "new.key", "-k", "old.key", "--index", "new.index", "-o", "new/0004.cbfs", filepath.Join(src, "d/sub"))
	if r := cbfs(t, dir, "verify", "-k", "old.key", "new/0004.cbfs"); r.code != exitWrongKey {
		t.Fatalf("pack -k NEW -k OLD wrote under OLD: %s", r)
	}
	run("verify", "-k", "new.key", "--index", "new.index", "new")
}

// TestKeyringCLI: key load, -k keyring:NAME, unload, and the errors a
// user sees, on this machine's kernel keyring.
func TestKeyringCLI(t *testing.T) {
	if _, err := unix.KeyctlGetKeyringID(unix.KEY_SPEC_USER_KEYRING, false); err != nil {
		t.Skipf("the kernel keyring is not available here (keyctl: %v)", err)
	}
	dir := t.TempDir()
	var b [6]byte
	rand.Read(b[:])
	name := "keyring:cbfs-cli-" + hex.EncodeToString(b[:])
	t.Cleanup(func() { cbfs(t, dir, "key", "unload", name) })
	mustRun(t, dir, "keygen", "-o", "fs.key")
	src, _ := sourceTar(t)
	mustRun(t, dir, "pack", "-k", "fs.key", "-o", "a.cbfs", filepath.Join(src, "d"))

	say := func(what string, r result) { t.Logf("%s: exit %d\n%s", what, r.code, r.stderr) }
	r := cbfs(t, dir, "ls", "-k", name, "a.cbfs")
	say("not loaded", r)
	if r.code != 1 || !strings.Contains(string(r.stderr), "no such key") || !strings.Contains(string(r.stderr), "hint: load it") {
		t.Fatalf("not loaded: %s", r)
	}
	r = mustRun(t, dir, "key", "load", "-k", "fs.key", name)
	say("load", r)
	id := strings.TrimSpace(string(mustRun(t, dir, "key", "id", "-k", "fs.key").stdout))
	if got := strings.TrimSpace(string(mustRun(t, dir, "key", "id", "-k", name).stdout)); got != id {
		t.Fatalf("key id from the keyring %q, from the file %q", got, id)
	}
	mustRun(t, dir, "verify", "-k", name, "a.cbfs")
	mustRun(t, dir, "key", "load", "-k", "fs.key", name) // again: nothing changes
	mustRun(t, dir, "keygen", "-o", "other.key")
	r = cbfs(t, dir, "key", "load", "-k", "other.key", name)
	say("another key under the name", r)
	if r.code != 1 || !strings.Contains(string(r.stderr), "already holds another key") {
		t.Fatalf("another key: %s", r)
	}

	// A process whose session keyring does not link the user keyring (as
	// under sudo or in a systemd service): run from a thread that joined
	// a new session keyring; the child inherits it.
	done := make(chan result)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if _, err := unix.KeyctlJoinSessionKeyring(""); err != nil {
			unix.KeyctlJoinSessionKeyring("cbfs-test-session")
		}
		done <- cbfs(t, dir, "ls", "-k", name, "a.cbfs")
	}()
	r = <-done
	say("not possessed", r)
	if r.code != 1 || !strings.Contains(string(r.stderr), "permission denied") || !strings.Contains(string(r.stderr), "keyctl link @u @s") {
		t.Fatalf("not possessed: %s", r)
	}

	mustRun(t, dir, "key", "unload", name)
	if r := cbfs(t, dir, "ls", "-k", name, "a.cbfs"); r.code != 1 {
		t.Fatalf("after unload: %s", r)
	}
	// A key of the wrong size, put there by another tool.
	short := strings.TrimPrefix(name, "keyring:")
	if _, err := unix.AddKey("user", short, make([]byte, 16), unix.KEY_SPEC_USER_KEYRING); err != nil {
		t.Fatal(err)
	}
	r = cbfs(t, dir, "ls", "-k", name, "a.cbfs")
	say("wrong size", r)
	if r.code != 2 || !strings.Contains(string(r.stderr), "16 bytes") {
		t.Fatalf("wrong size: %s", r)
	}
	// The key never reaches the environment or a command line: the key
	// file is read by cbfs itself.
	if r := cbfs(t, dir, "key", "load", name); r.code != 2 {
		t.Fatalf("load without -k: %s", r)
	}
}

// TestIndexRekey: 'index rekey' gives, from the old index and the
// rekeyed archives' headers and footers alone, the very bytes 'index
// rebuild -k NEW' writes over the rekeyed archives, for a history with
// updates, deletions and a conflict; an archive missing, not rekeyed or
// not the rekeyed copy is named and nothing is written.
func TestIndexRekey(t *testing.T) {
	t.Parallel()
	dir, src, run := oldKeyHistory(t)
	run("keygen", "-o", "new.key")
	os.Mkdir(filepath.Join(dir, "new"), 0o755)
	// Sequence 2 again, holding d/hello.txt too: a conflict (status 6).
	if r := cbfs(t, dir, "pack", "-k", "old.key", "--index", "fs.index", "--seq", "2", "-o", "archives/0003.cbfs", filepath.Join(src, "d/hello.txt")); r.code != exitConflict {
		t.Fatalf("pack --seq 2: %s", r)
	}
	run("import", "-k", "old.key", "--index", "fs.index", "--delete", "d/sub/text.txt", "-o", "archives/0004.cbfs", filepath.Join(src, "x.tar"))
	run("rekey", "-k", "old.key", "--new-key", "new.key", "-o", "new", "archives")

	// Conflicts are reported by both (status 6), the index written.
	if r := cbfs(t, dir, "index", "rekey", "-k", "old.key", "--new-key", "new.key", "-o", "rekeyed.index", "fs.index", "new"); r.code != exitConflict {
		t.Fatalf("index rekey: %s", r)
	}
	if r := cbfs(t, dir, "index", "rebuild", "-k", "new.key", "-o", "rebuilt.index", "new"); r.code != exitConflict {
		t.Fatalf("index rebuild: %s", r)
	}
	rekeyed, rebuilt := readFile(t, filepath.Join(dir, "rekeyed.index")), readFile(t, filepath.Join(dir, "rebuilt.index"))
	if !bytes.Equal(rekeyed, rebuilt) {
		t.Fatalf("index rekey (%d bytes) differs from index rebuild -k NEW (%d bytes)", len(rekeyed), len(rebuilt))
	}
	if r := cbfs(t, dir, "index", "ls", "-k", "old.key", "rekeyed.index"); r.code != exitWrongKey {
		t.Fatalf("the old key reads the rekeyed index: %s", r)
	}
	// An archive in ARCHIVES that the index does not hold is named.
	writeFile(t, filepath.Join(dir, "new/0009.cbfs"), readFile(t, filepath.Join(dir, "new/0001.cbfs")), 0o644)
	r0 := cbfs(t, dir, "index", "rekey", "-k", "old.key", "--new-key", "new.key", "-o", "other.index", "fs.index", "new")
	if r0.code != exitConflict || !strings.Contains(string(r0.stderr), "note: 1 archive in new not in the index") || !strings.Contains(string(r0.stderr), ": 0009.cbfs") {
		t.Fatalf("an archive the index does not hold: %s", r0)
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, "other.index")), rekeyed) {
		t.Fatal("an archive the index does not hold changed the rekeyed index")
	}
	os.Remove(filepath.Join(dir, "new/0009.cbfs"))
	// The same live paths as before; only the archive ids changed.
	oldLs := cbfs(t, dir, "index", "ls", "-k", "old.key", "fs.index").stdout
	if newLs := cbfs(t, dir, "index", "ls", "-k", "new.key", "rekeyed.index").stdout; len(oldLs) == 0 || !bytes.Equal(newLs, oldLs) {
		t.Fatalf("index ls differs:\n%s\n%s", oldLs, newLs)
	}
	// --json names each archive's old and new id.
	r := cbfs(t, dir, "index", "rekey", "-k", "new.key", "-k", "old.key", "--new-key", "new.key", "-o", "x.index", "fs.index", "new")
	if r.code != exitUsage {
		t.Fatalf("NEW also given as an old key: %s", r)
	}
	r = cbfs(t, dir, "index", "rekey", "-k", "old.key", "--new-key", "new.key", "--json", "-o", "j.index", "fs.index", "new")
	var doc struct {
		Rekeyed []indexRekeyRow
		Written bool
	}
	if err := json.Unmarshal(r.stdout, &doc); err != nil || !doc.Written || len(doc.Rekeyed) != 4 {
		t.Fatalf("--json: %v %s", err, r.stdout)
	}
	for _, row := range doc.Rekeyed {
		if row.NewID == "" || row.NewID == row.OldID || row.Error != "" {
			t.Fatalf("--json row %+v", row)
		}
	}

	absent := func(name string) {
		t.Helper()
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Fatalf("%s was written: %v", name, err)
		}
	}
	// The sources' directory: still under the old key (status 4).
	r = cbfs(t, dir, "index", "rekey", "-k", "old.key", "--new-key", "new.key", "-o", "bad.index", "fs.index", "archives")
	if r.code != exitWrongKey || strings.Count(string(r.stderr), "still under the old key") != 4 || !strings.Contains(string(r.stderr), "was not written") {
		t.Fatalf("over the old archives: %s", r)
	}
	absent("bad.index")
	// One archive missing from the new directory (status 1).
	os.Rename(filepath.Join(dir, "new/0003.cbfs"), filepath.Join(dir, "0003.cbfs"))
	r = cbfs(t, dir, "index", "rekey", "-k", "old.key", "--new-key", "new.key", "-o", "bad.index", "fs.index", "new")
	if r.code != exitFailure || !strings.Contains(string(r.stderr), "new/0003.cbfs") || !strings.Contains(string(r.stderr), "0003.cbfs (sequence 2 in the index)") {
		t.Fatalf("an archive missing: %s", r)
	}
	absent("bad.index")
	// Another archive under its name: sequence 1, not 2 (status 3).
	writeFile(t, filepath.Join(dir, "new/0003.cbfs"), readFile(t, filepath.Join(dir, "new/0001.cbfs")), 0o644)
	r = cbfs(t, dir, "index", "rekey", "-k", "old.key", "--new-key", "new.key", "-o", "bad.index", "fs.index", "new")
	if r.code != exitDamaged || !strings.Contains(string(r.stderr), "sequence 1, the index holds 2: not the rekeyed copy") {
		t.Fatalf("another archive under the name: %s", r)
	}
	absent("bad.index")
}

// TestSeveralKeysIndexBuilders: index rebuild and index add given
// several keys read each archive with the key it is under (a mixed set
// during a rotation), and seal the index with the first key.
func TestSeveralKeysIndexBuilders(t *testing.T) {
	t.Parallel()
	dir, src, run := oldKeyHistory(t)
	run("keygen", "-o", "new.key")
	os.Mkdir(filepath.Join(dir, "new"), 0o755)
	run("import", "-k", "old.key", "--index", "fs.index", "-o", "archives/0003.cbfs", filepath.Join(src, "x.tar"))
	oldLs := run("index", "ls", "-k", "old.key", "fs.index").stdout
	// Half way through a rotation: 0002 is rekeyed, the others are not.
	run("rekey", "-k", "old.key", "--new-key", "new.key", "-o", "new", "archives/0002.cbfs")
	os.Rename(filepath.Join(dir, "new/0002.cbfs"), filepath.Join(dir, "archives/0002.cbfs"))
	newID := strings.TrimSpace(string(run("key", "id", "-k", "new.key").stdout))
	oldID := strings.TrimSpace(string(run("key", "id", "-k", "old.key").stdout))

	// One key alone does not read the set.
	if r := cbfs(t, dir, "index", "rebuild", "-k", "new.key", "-o", "one.index", "archives"); r.code != exitWrongKey {
		t.Fatalf("rebuild with the new key alone: %s", r)
	}
	r := run("index", "rebuild", "-k", "new.key", "-k", "old.key", "--json", "-o", "mixed.index", "archives")
	var rep struct {
		Keys []keyUse
	}
	if err := json.Unmarshal(r.stdout, &rep); err != nil || len(rep.Keys) != 2 ||
		rep.Keys[0] != (keyUse{KeyID: newID, Archives: 1, SealsIndex: true}) || rep.Keys[1] != (keyUse{KeyID: oldID, Archives: 2}) {
		t.Fatalf("rebuild --json keys: %v %s", err, r.stdout)
	}
	// Sealed with the first key; the same paths as the old index.
	if r := cbfs(t, dir, "index", "ls", "-k", "old.key", "mixed.index"); r.code != exitWrongKey {
		t.Fatalf("the index is not sealed with the first key: %s", r)
	}
	if ls := run("index", "ls", "-k", "new.key", "mixed.index").stdout; !bytes.Equal(ls, oldLs) {
		t.Fatalf("index ls:\n%s\nwant\n%s", ls, oldLs)
	}
	// The other order seals with the old key, and reads the same.
	run("index", "rebuild", "-k", "old.key", "-k", "new.key", "-o", "mixed2.index", "archives")
	if ls := run("index", "ls", "-k", "old.key", "mixed2.index").stdout; !bytes.Equal(ls, oldLs) {
		t.Fatalf("index ls (old key first):\n%s", ls)
	}
	r = run("index", "rebuild", "-k", "old.key", "-k", "new.key", "-o", "mixed3.index", "archives")
	if !strings.Contains(string(r.stderr), "2 archives with key "+oldID+", 1 archive with key "+newID+" opened; the index is sealed with key "+oldID) {
		t.Fatalf("rebuild does not say which keys opened what: %s", r.stderr)
	}

	// index add: an index sealed with NEW takes archives under OLD and
	// under NEW, and ends up as the rebuild of the mixed set.
	run("index", "add", "-k", "new.key", "-k", "old.key", "--new-index", "added.index", "archives/0001.cbfs", "archives/0002.cbfs")
	run("index", "add", "-k", "new.key", "-k", "old.key", "added.index", "archives/0003.cbfs")
	if !bytes.Equal(readFile(t, filepath.Join(dir, "added.index")), readFile(t, filepath.Join(dir, "mixed.index"))) {
		t.Fatal("index add over the mixed set differs from the rebuild")
	}
	if r := cbfs(t, dir, "index", "add", "-k", "new.key", "added.index", "archives/0001.cbfs"); r.code != exitWrongKey {
		t.Fatalf("index add of an old-key archive with the new key alone: %s", r)
	}
}
