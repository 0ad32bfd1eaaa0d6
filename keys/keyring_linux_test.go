package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cbfs/cbfs/crypt"
	"golang.org/x/sys/unix"
)

// kernelKeyring skips the test when this kernel (or a sandbox's filter)
// offers no keyring, and returns a name no other test uses.
func kernelKeyring(t *testing.T) string {
	t.Helper()
	if _, err := unix.KeyctlGetKeyringID(unix.KEY_SPEC_USER_KEYRING, false); err != nil {
		t.Skipf("the kernel keyring is not available here (keyctl: %v): the keyring source is tested through the fake Keyctl only", err)
	}
	var b [8]byte
	rand.Read(b[:])
	name := "cbfs-test-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		if id, err := unix.KeyctlSearch(unix.KEY_SPEC_USER_KEYRING, "user", name, 0); err == nil {
			unix.KeyctlInt(unix.KEYCTL_INVALIDATE, id, 0, 0, 0)
		}
	})
	return name
}

func writeKey(t *testing.T, b []byte) string {
	p := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func kind(err error) KeyringErrorKind {
	var ke *KeyringError
	if errors.As(err, &ke) {
		return ke.Kind
	}
	return 0
}

// TestKernelKeyring runs load, read, a second load, unload and the
// errors against this machine's kernel keyring.
func TestKernelKeyring(t *testing.T) {
	name := kernelKeyring(t)
	raw := bytes.Repeat([]byte{0x3c}, crypt.KeySize)
	want, _ := crypt.KeyFromBytes(raw)
	path := writeKey(t, raw)

	if _, err := ReadKeyring(name); kind(err) != KeyringNotFound {
		t.Fatalf("read before load: %v", err)
	}
	res, _, err := LoadKeyring(path, name)
	if err != nil || res.Already {
		t.Fatalf("load: %+v %v", res, err)
	}
	perm := keyPerm(t, res.ID)
	if perm != KeyringPerm {
		t.Fatalf("loaded with permissions %08x, want %08x", perm, KeyringPerm)
	}
	k, err := ReadKeyring(name)
	if err != nil || k.ID() != want.ID() {
		t.Fatalf("read: %v %v", k, err)
	}
	// The same key again changes nothing; another one is refused.
	if res, _, err := LoadKeyring(path, name); err != nil || !res.Already {
		t.Fatalf("second load: %+v %v", res, err)
	}
	other := writeKey(t, bytes.Repeat([]byte{0x3d}, crypt.KeySize))
	if _, _, err := LoadKeyring(other, name); kind(err) != KeyringExists {
		t.Fatalf("load of another key under the name: %v", err)
	}

	// A thread whose session keyring does not link the user keyring (as
	// under sudo or in a systemd service) finds the key and may not read
	// it. The thread is locked and never unlocked: its credentials are
	// changed for good, so it ends with the goroutine.
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		if _, err := unix.KeyctlJoinSessionKeyring(name + "-session"); err != nil {
			done <- err
			return
		}
		_, err := ReadKeyring(name)
		done <- err
	}()
	err = <-done
	if kind(err) != KeyringNotPossessed {
		t.Fatalf("read from another session: %v", err)
	}
	if h := err.(*KeyringError).Hint(); !strings.Contains(h, "keyctl link @u @s") {
		t.Fatalf("hint %q", h)
	}
	t.Logf("not possessed: %v\nhint: %s", err, err.(*KeyringError).Hint())

	if err := UnloadKeyring(name); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyring(name); kind(err) != KeyringNotFound {
		t.Fatalf("read after unload: %v", err)
	}
	if err := UnloadKeyring(name); kind(err) != KeyringNotFound {
		t.Fatalf("unload twice: %v", err)
	}

	// A key of another size, put there by another tool.
	if _, err := unix.AddKey("user", name, raw[:31], unix.KEY_SPEC_USER_KEYRING); err != nil {
		t.Fatal(err)
	}
	_, err = ReadKeyring(name)
	var ke *KeyringError
	if !errors.As(err, &ke) || ke.Kind != KeyringSize || ke.Size != 31 {
		t.Fatalf("short key: %v", err)
	}
	if strings.Contains(err.Error(), "3c3c") {
		t.Fatal("key bytes in the error")
	}
}

func keyPerm(t *testing.T, id int) uint32 {
	d, err := unix.KeyctlString(unix.KEYCTL_DESCRIBE, id)
	if err != nil {
		t.Fatal(err)
	}
	// type;uid;gid;perm;description
	f := strings.SplitN(d, ";", 5)
	var p uint32
	for _, c := range f[3] {
		p = p*16 + uint32(strings.IndexRune("0123456789abcdef", c))
	}
	return p
}
