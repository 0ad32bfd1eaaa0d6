package crypt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadKeyFile(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{0xa5}, KeySize)
	cases := []struct {
		name    string
		body    []byte
		mode    os.FileMode
		wantErr string
		newline bool
		warn    bool
	}{
		{"exact", key, 0o600, "", false, false},
		{"newline", append(bytes.Clone(key), '\n'), 0o600, "33 bytes", true, false},
		{"crlf", append(bytes.Clone(key), '\r', '\n'), 0o600, "34 bytes", true, false},
		{"short", key[:31], 0o600, "31 bytes", false, false},
		{"empty", nil, 0o600, "0 bytes", false, false},
		{"long", bytes.Repeat(key, 3), 0o600, "96 bytes", false, false},
		{"group-readable", key, 0o640, "", false, true},
		{"world-writable", key, 0o602, "", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name)
			if err := os.WriteFile(p, c.body, c.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, c.mode); err != nil {
				t.Fatal(err)
			}
			k, warns, err := ReadKeyFile(p)
			if c.wantErr != "" {
				var se *KeySizeError
				if !errors.As(err, &se) {
					t.Fatalf("got %v, want a KeySizeError", err)
				}
				if !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), "32") || !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not give the size, 32 and the file", err)
				}
				if se.TrailingNewline != c.newline || strings.Contains(err.Error(), "newline") != c.newline {
					t.Errorf("newline hint %v in %q, want %v", se.TrailingNewline, err, c.newline)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (len(warns) > 0) != c.warn {
				t.Errorf("warnings %q, want warning=%v", warns, c.warn)
			}
			want, _ := KeyFromBytes(key)
			if k.ID() != want.ID() {
				t.Errorf("key id %s, want %s", k.ID(), want.ID())
			}
		})
	}
	if _, _, err := ReadKeyFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
	// Of a device or a pipe only what was read is known.
	if _, _, err := ReadKeyFile("/dev/zero"); err == nil || !strings.Contains(err.Error(), "more than 34 bytes") {
		t.Errorf("/dev/zero: %v", err)
	}
	for _, c := range []struct {
		body []byte
		want string
	}{{bytes.Repeat(key, 3), "more than 34 bytes"}, {key[:20], "20 bytes"}, {append(bytes.Clone(key), 'x', 'y', 'z'), "more than 34 bytes"},
		// 34 bytes from a pipe are told from more: the size and the hint.
		{append(bytes.Clone(key), '\r', '\n'), "34 bytes, a key file holds exactly 32 raw bytes (it ends in a newline"}} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		go func() { w.Write(c.body); w.Close() }()
		_, _, err = ReadKeyFile(fmt.Sprintf("/proc/self/fd/%d", r.Fd()))
		r.Close()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("pipe of %d bytes: %v, want %q", len(c.body), err, c.want)
		}
	}
}

func TestGenerateKeyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	k, err := GenerateKeyFile(p)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != KeySize || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %d bytes, mode %o", st.Size(), st.Mode().Perm())
	}
	before, _ := os.ReadFile(p)
	if _, err := GenerateKeyFile(p); !errors.Is(err, ErrKeyFileExists) {
		t.Fatalf("second keygen: %v, want ErrKeyFileExists", err)
	}
	after, _ := os.ReadFile(p)
	if !bytes.Equal(before, after) {
		t.Fatal("an existing key file was changed")
	}
	k2, _, err := ReadKeyFile(p)
	if err != nil || k2.ID() != k.ID() {
		t.Fatalf("read back: %v, id %s vs %s", err, k2.ID(), k.ID())
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".cbfs-key-*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

// TestKeyNeverPrinted checks that formatting a key shows its id only.
func TestKeyNeverPrinted(t *testing.T) {
	raw := bytes.Repeat([]byte{0x5a}, KeySize)
	k, _ := KeyFromBytes(raw)
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k)} {
		if strings.Contains(s, "5a5a") || strings.Contains(s, "90 90") || strings.Contains(s, "ZZZZ") {
			t.Fatalf("key material in %q", s)
		}
		if !strings.Contains(s, k.ID()) {
			t.Fatalf("%q does not name the key id", s)
		}
	}
}

func TestArchiveKeysSeparate(t *testing.T) {
	k1, _ := KeyFromBytes(bytes.Repeat([]byte{1}, KeySize))
	k2, _ := KeyFromBytes(bytes.Repeat([]byte{2}, KeySize))
	var id1, id2 [IDSize]byte
	id2[0] = 1
	a, b, c := DeriveArchiveKeys(k1, id1), DeriveArchiveKeys(k1, id2), DeriveArchiveKeys(k2, id1)
	if a.Check() == b.Check() || a.Check() == c.Check() {
		t.Fatal("key check values repeat across archives or keys")
	}
	n := Nonce('c', true, 7, 1<<40+5)
	sealed := a.Seal(nil, n, []byte("chunk"), []byte("ad"))
	if _, err := b.Open(nil, n, sealed, []byte("ad")); err == nil {
		t.Fatal("another archive's keys opened the frame")
	}
	if _, err := a.Open(nil, Nonce('c', false, 7, 1<<40+5), sealed, []byte("ad")); err == nil {
		t.Fatal("a frame opened with its final flag cleared")
	}
	if got, err := a.Open(nil, n, sealed, []byte("ad")); err != nil || string(got) != "chunk" {
		t.Fatalf("open: %q, %v", got, err)
	}
	if Nonce('c', false, 1, 2) == Nonce('c', false, 2, 1) || Nonce('m', true, 1, 0) == Nonce('c', true, 1, 0) {
		t.Fatal("distinct frames share a nonce")
	}
}
