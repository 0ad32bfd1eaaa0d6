// Package testutil holds what the tests of several packages share.
package testutil

import (
	"bytes"
	"os"
	"os/exec"
	"testing"

	"github.com/cbfs/cbfs/crypt"
)

// Key is a fixed test key: 32 bytes of seed.
func Key(t testing.TB, seed byte) *crypt.Key {
	t.Helper()
	k, err := crypt.KeyFromBytes(bytes.Repeat([]byte{seed}, crypt.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Tool finds a program a test compares against (GNU tar, bsdtar, a
// compressor). A missing one skips the test, unless CBFS_REQUIRE_TOOLS is
// set, as CI sets it: there a missing tool is a failure, so that a green
// run never hides a skipped comparison.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CBFS_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s not found and CBFS_REQUIRE_TOOLS is set: run scripts/deps.sh test", name)
		}
		t.Skipf("%s not installed (scripts/deps.sh test installs it)", name)
	}
	return p
}
