// Package keys finds a file system's key where its owner keeps it: a key
// file that holds exactly the key's 32 bytes (systemd's
// $CREDENTIALS_DIRECTORY/NAME is such a file), or the Linux kernel
// keyring (keyring:NAME, loaded from a key file; keyrings do not survive
// a reboot, so the key file stays the durable copy). Derivation and
// sealing are package crypt's.
package keys

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/cbfs/cbfs/crypt"
)

// SizeError says a key file does not hold exactly crypt.KeySize bytes.
type SizeError struct {
	Path string
	Size int64
	// TrailingNewline is set when the file is one or two bytes too long
	// and ends in a newline: the usual damage done by a text editor.
	TrailingNewline bool
	// AtLeast is set when a pipe or a device gave more than crypt.KeySize+2
	// bytes: how many more is not known.
	AtLeast bool
}

func (e *SizeError) Error() string {
	size := fmt.Sprintf("%d bytes", e.Size)
	if e.AtLeast {
		size = fmt.Sprintf("more than %d bytes", crypt.KeySize+2)
	}
	msg := fmt.Sprintf("key file %s: %s, a key file holds exactly %d raw bytes", e.Path, size, crypt.KeySize)
	if e.TrailingNewline {
		msg += " (it ends in a newline: was it saved by a text editor?)"
	}
	return msg
}

// ErrExists is returned by GenerateFile when the target exists.
var ErrExists = errors.New("file exists")

// Warning is a problem with a key file that does not stop its use.
type Warning string

// ReadFile reads a key file. It returns warnings (such as a key file
// that grants group or others access) alongside a valid key.
func ReadFile(path string) (*crypt.Key, []Warning, error) {
	b, warns, err := readKeyBytes(path)
	if err != nil {
		return nil, nil, err
	}
	defer clear(b)
	k, err := crypt.KeyFromBytes(b)
	return k, warns, err
}

// readKeyBytes reads a key file's crypt.KeySize bytes; the caller clears
// them once done.
func readKeyBytes(path string) ([]byte, []Warning, error) {
	// O_NONBLOCK: opening a FIFO no one writes to would otherwise wait
	// forever; so opened, it reads as empty (and is refused for its size),
	// while a pipe with a writer (-k <(...)) is read as it comes.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
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
	// Read up to crypt.KeySize+3 bytes: of a pipe or a device, up to crypt.KeySize+2
	// bytes the size is then known exactly (and a line ending after the
	// key can be named); a full buffer says only "more than crypt.KeySize+2".
	buf := make([]byte, crypt.KeySize+3)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, nil, fmt.Errorf("key file %s: %w", path, unwrapPathErr(err))
	}
	if n != crypt.KeySize {
		size := int64(n)
		if st.Mode().IsRegular() {
			size = st.Size()
		}
		// Of a pipe or a device, only what was read is known: a full
		// buffer may be the start of more.
		more := !st.Mode().IsRegular() && n == len(buf)
		nl := !more && n > crypt.KeySize && n <= crypt.KeySize+2 && size <= crypt.KeySize+2 && buf[n-1] == '\n'
		clear(buf)
		return nil, nil, &SizeError{Path: path, Size: size, TrailingNewline: nl, AtLeast: more}
	}
	var warns []Warning
	if st.Mode().IsRegular() && st.Mode().Perm()&0o077 != 0 {
		warns = append(warns, Warning(fmt.Sprintf(
			"key file %s has mode %04o, which grants group or others access; run chmod 600 %s",
			path, st.Mode().Perm(), path)))
	}
	clear(buf[crypt.KeySize:])
	return buf[:crypt.KeySize], warns, nil
}

// GenerateFile writes crypt.KeySize random bytes to path with mode 0600. It
// never replaces an existing file: the new key is written to a temporary
// file in the same directory and linked into place, which fails if path
// exists.
func GenerateFile(path string) (*crypt.Key, error) {
	b := make([]byte, crypt.KeySize)
	defer clear(b)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	k, err := crypt.KeyFromBytes(b)
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("key file %s: %w", path, ErrExists)
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
	if _, err := tmp.Write(b); err != nil {
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
			return nil, fmt.Errorf("key file %s: %w", path, ErrExists)
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
