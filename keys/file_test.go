package keys

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cbfs/cbfs/crypt"
)

func TestReadKeyFile(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{0xa5}, crypt.KeySize)
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
			k, warns, err := ReadFile(p)
			if c.wantErr != "" {
				var se *SizeError
				if !errors.As(err, &se) {
					t.Fatalf("got %v, want a SizeError", err)
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
			want, _ := crypt.KeyFromBytes(key)
			if k.ID() != want.ID() {
				t.Errorf("key id %s, want %s", k.ID(), want.ID())
			}
		})
	}
	if _, _, err := ReadFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
	// Of a device or a pipe only what was read is known.
	if _, _, err := ReadFile("/dev/zero"); err == nil || !strings.Contains(err.Error(), "more than 34 bytes") {
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
		_, _, err = ReadFile(fmt.Sprintf("/proc/self/fd/%d", r.Fd()))
		r.Close()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("pipe of %d bytes: %v, want %q", len(c.body), err, c.want)
		}
	}
}

func TestGenerateKeyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	k, err := GenerateFile(p)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != crypt.KeySize || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %d bytes, mode %o", st.Size(), st.Mode().Perm())
	}
	before, _ := os.ReadFile(p)
	if _, err := GenerateFile(p); !errors.Is(err, ErrExists) {
		t.Fatalf("second keygen: %v, want ErrExists", err)
	}
	after, _ := os.ReadFile(p)
	if !bytes.Equal(before, after) {
		t.Fatal("an existing key file was changed")
	}
	k2, _, err := ReadFile(p)
	if err != nil || k2.ID() != k.ID() {
		t.Fatalf("read back: %v, id %s vs %s", err, k2.ID(), k.ID())
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".cbfs-key-*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}
