// Package crypt holds the CBFS key file, the key schedule of format v1 and
// the sealing primitives. Nothing in this package ever formats key bytes:
// Key has no exported fields and prints as a fingerprint only.
package crypt

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// KeySize is the exact size of a key file: 32 raw bytes, nothing around them.
const KeySize = 32

// Key is a file system's long-lived key. The zero value is not a valid key.
type Key struct {
	b [KeySize]byte
}

// String never reveals key material.
func (k *Key) String() string { return "cbfs key " + k.ID() }

// GoString keeps %#v from dumping the bytes.
func (k *Key) GoString() string { return k.String() }

// ID is a short public fingerprint of the key: 16 hex digits of
// HKDF-SHA-256(key, "", "cbfs/v1 key id"), grouped by four.
func (k *Key) ID() string {
	b, err := hkdf.Key(sha256.New, k.b[:], nil, "cbfs/v1 key id", 8)
	if err != nil {
		panic("cbfs: hkdf failed") // cannot happen for an 8-byte output
	}
	h := hex.EncodeToString(b)
	return h[0:4] + "-" + h[4:8] + "-" + h[8:12] + "-" + h[12:16]
}

// KeyFromBytes makes a key from exactly KeySize bytes (tests, vectors, and
// callers that keep the key elsewhere).
func KeyFromBytes(b []byte) (*Key, error) {
	if len(b) != KeySize {
		return nil, fmt.Errorf("key is %d bytes, want exactly %d", len(b), KeySize)
	}
	k := new(Key)
	copy(k.b[:], b)
	return k, nil
}

// KeySizeError says a key file does not hold exactly KeySize bytes.
type KeySizeError struct {
	Path string
	Size int64
	// TrailingNewline is set when the file is one or two bytes too long
	// and ends in a newline: the usual damage done by a text editor.
	TrailingNewline bool
	// AtLeast is set when a pipe or a device gave more than KeySize+2
	// bytes: how many more is not known.
	AtLeast bool
}

func (e *KeySizeError) Error() string {
	size := fmt.Sprintf("%d bytes", e.Size)
	if e.AtLeast {
		size = fmt.Sprintf("more than %d bytes", KeySize+2)
	}
	msg := fmt.Sprintf("key file %s: %s, a key file holds exactly %d raw bytes", e.Path, size, KeySize)
	if e.TrailingNewline {
		msg += " (it ends in a newline: was it saved by a text editor?)"
	}
	return msg
}

// ErrKeyFileExists is returned by GenerateKeyFile when the target exists.
var ErrKeyFileExists = errors.New("file exists")

// KeyFileWarning is a problem with a key file that does not stop its use.
type KeyFileWarning string

// ReadKeyFile reads a key file. It returns warnings (such as a key file
// that grants group or others access) alongside a valid key.
func ReadKeyFile(path string) (*Key, []KeyFileWarning, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("key file %s: %w", path, unwrapPathErr(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("key file %s: %w", path, unwrapPathErr(err))
	}
	if !st.Mode().IsRegular() && st.Mode()&fs.ModeNamedPipe == 0 && st.Mode()&fs.ModeCharDevice == 0 {
		return nil, nil, fmt.Errorf("key file %s: not a regular file", path)
	}
	// Read up to KeySize+3 bytes: of a pipe or a device, up to KeySize+2
	// bytes the size is then known exactly (and a line ending after the
	// key can be named); a full buffer says only "more than KeySize+2".
	buf := make([]byte, KeySize+3)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, nil, fmt.Errorf("key file %s: %w", path, unwrapPathErr(err))
	}
	defer clear(buf)
	if n != KeySize {
		size := int64(n)
		if st.Mode().IsRegular() {
			size = st.Size()
		}
		// Of a pipe or a device, only what was read is known: a full
		// buffer may be the start of more.
		more := !st.Mode().IsRegular() && n == len(buf)
		nl := !more && n > KeySize && n <= KeySize+2 && size <= KeySize+2 && buf[n-1] == '\n'
		return nil, nil, &KeySizeError{Path: path, Size: size, TrailingNewline: nl, AtLeast: more}
	}
	var warns []KeyFileWarning
	if st.Mode().IsRegular() && st.Mode().Perm()&0o077 != 0 {
		warns = append(warns, KeyFileWarning(fmt.Sprintf(
			"key file %s has mode %04o, which grants group or others access; run chmod 600 %s",
			path, st.Mode().Perm(), path)))
	}
	k := new(Key)
	copy(k.b[:], buf[:KeySize])
	return k, warns, nil
}

// GenerateKeyFile writes KeySize random bytes to path with mode 0600. It
// never replaces an existing file: the new key is written to a temporary
// file in the same directory and linked into place, which fails if path
// exists.
func GenerateKeyFile(path string) (*Key, error) {
	k := new(Key)
	if _, err := rand.Read(k.b[:]); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("key file %s: %w", path, ErrKeyFileExists)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".cbfs-key-*")
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, unwrapPathErr(err))
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, err
	}
	if _, err := tmp.Write(k.b[:]); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("key file %s: %w", path, unwrapPathErr(err))
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	// link(2) fails with EEXIST instead of replacing: no race with a file
	// created between the check above and now.
	if err := os.Link(tmpName, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("key file %s: %w", path, ErrKeyFileExists)
		}
		return nil, fmt.Errorf("key file %s: %w", path, unwrapPathErr(err))
	}
	return k, nil
}

func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
