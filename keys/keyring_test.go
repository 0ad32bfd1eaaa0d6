package keys

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/cbfs/cbfs/crypt"
)

// fakeKeyctl is a keyring in memory: the logic of the keyring source
// without the kernel's.
type fakeKeyctl struct {
	keys      map[string][]byte
	ids       map[int]string
	perms     map[int]uint32
	possessed bool
	err       error // returned by every call when set
}

func newFake() *fakeKeyctl {
	return &fakeKeyctl{keys: map[string][]byte{}, ids: map[int]string{}, perms: map[int]uint32{}, possessed: true}
}

func (f *fakeKeyctl) Search(ring int, name string) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	if _, ok := f.keys[name]; !ok || ring == SessionKeyring && !f.possessed {
		return 0, syscall.ENOKEY
	}
	for id, n := range f.ids {
		if n == name {
			return id, nil
		}
	}
	panic("no id")
}

func (f *fakeKeyctl) Read(id int, buf []byte) (int, error) {
	if !f.possessed {
		return 0, syscall.EACCES
	}
	b := f.keys[f.ids[id]]
	return copy(buf, b) + max(0, len(b)-len(buf)), nil
}

func (f *fakeKeyctl) Add(name string, payload []byte, ring int) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	id := len(f.ids) + 100
	f.ids[id] = name
	f.keys[name] = bytes.Clone(payload)
	return id, nil
}

func (f *fakeKeyctl) SetPerm(id int, perm uint32) error { f.perms[id] = perm; return nil }

func (f *fakeKeyctl) Remove(id, ring int) error {
	delete(f.keys, f.ids[id])
	delete(f.ids, id)
	return nil
}

func TestKeyringLogic(t *testing.T) {
	raw := bytes.Repeat([]byte{7}, crypt.KeySize)
	path := writeKey(t, raw)
	f := newFake()
	if _, err := readKeyring(f, "fs1"); kind(err) != KeyringNotFound {
		t.Fatal(err)
	}
	res, _, err := loadKeyring(f, path, "fs1")
	if err != nil || f.perms[res.ID] != KeyringPerm {
		t.Fatalf("%v %v", res, err)
	}
	k, err := readKeyring(f, "fs1")
	if want, _ := crypt.KeyFromBytes(raw); err != nil || k.ID() != want.ID() {
		t.Fatal(err)
	}
	f.possessed = false
	if _, err := readKeyring(f, "fs1"); kind(err) != KeyringNotPossessed {
		t.Fatal(err)
	}
	f.possessed = true
	f.keys["long"] = make([]byte, 100)
	f.ids[1] = "long"
	var ke *KeyringError
	if _, err := readKeyring(f, "long"); !errors.As(err, &ke) || ke.Kind != KeyringSize || ke.Size != 100 {
		t.Fatal(err)
	}
	if err := unloadKeyring(f, "fs1"); err != nil {
		t.Fatal(err)
	}
	if _, err := readKeyring(f, ""); kind(err) != KeyringBadName {
		t.Fatal(err)
	}
	for _, e := range []error{syscall.ENOSYS, syscall.EPERM} {
		f.err = e
		if _, err := readKeyring(f, "fs1"); kind(err) != KeyringUnavailable || !strings.Contains(err.(*KeyringError).Hint(), "-k FILE") {
			t.Fatal(err)
		}
	}
	if _, err := readKeyring(nil, "fs1"); kind(err) != KeyringUnavailable {
		t.Fatal(err)
	}
	// Errors never carry key bytes.
	for _, k := range []KeyringErrorKind{KeyringNotFound, KeyringNotPossessed, KeyringSize, KeyringUnavailable, KeyringExists} {
		e := &KeyringError{Name: "fs1", Kind: k, Err: syscall.EIO}
		if s := fmt.Sprint(e, e.Hint()); strings.Contains(s, "0707") {
			t.Fatal(s)
		}
	}
}
