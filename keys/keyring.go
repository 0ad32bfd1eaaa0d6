package keys

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/cbfs/cbfs/crypt"
)

// KeyringPrefix starts a key source that names a key in the Linux kernel
// keyring: keyring:NAME is the "user" key of description NAME.
const KeyringPrefix = "keyring:"

// KeyringName returns NAME of a source keyring:NAME, and whether src is
// one.
func KeyringName(src string) (string, bool) {
	name, ok := strings.CutPrefix(src, KeyringPrefix)
	return name, ok
}

// KeyringPerm is the permission mask LoadKeyring gives a key: every right
// to a process that possesses it (one whose session keyring links the
// user keyring, as a login session's does), and to its owner's other
// processes only the right to see that it exists. Nobody else, not even
// the owner's processes of another session, can read it.
const KeyringPerm = 0x3f010000 // KEY_POS_ALL | KEY_USR_VIEW

// KeyringErrorKind says what is wrong with a key in the kernel keyring.
type KeyringErrorKind int

const (
	// KeyringNotFound: no "user" key of that name in the session or user
	// keyring.
	KeyringNotFound KeyringErrorKind = iota + 1
	// KeyringNotPossessed: the key exists but this process may not read
	// it: its session keyring does not link the user keyring (sudo, a
	// systemd service, cron).
	KeyringNotPossessed
	// KeyringSize: the key is not exactly crypt.KeySize bytes.
	KeyringSize
	// KeyringUnavailable: the kernel has no keyring (no CONFIG_KEYS, or a
	// sandbox that filters the calls).
	KeyringUnavailable
	// KeyringExists: LoadKeyring found another key under that name.
	KeyringExists
	// KeyringBadName: an empty name.
	KeyringBadName
)

// KeyringError is a key in the kernel keyring that cannot be used. It
// never holds key bytes.
type KeyringError struct {
	Name string
	Kind KeyringErrorKind
	Size int   // KeyringSize: the key's size
	Err  error // the system call's error, when there was one
}

func (e *KeyringError) Error() string {
	src := KeyringPrefix + e.Name
	switch e.Kind {
	case KeyringNotFound:
		return fmt.Sprintf("%s: no such key in the session or user keyring", src)
	case KeyringNotPossessed:
		return fmt.Sprintf("%s: permission denied: the key is in the user keyring, but this process does not possess it (its session keyring does not link the user keyring)", src)
	case KeyringSize:
		return fmt.Sprintf("%s: the key is %d bytes, a cbfs key is exactly %d raw bytes", src, e.Size, crypt.KeySize)
	case KeyringUnavailable:
		return fmt.Sprintf("%s: the kernel keyring is not available: %v", src, e.Err)
	case KeyringExists:
		return fmt.Sprintf("%s: the user keyring already holds another key of that name", src)
	case KeyringBadName:
		return fmt.Sprintf("%q: a key in the kernel keyring is named keyring:NAME, NAME not empty", src)
	}
	return fmt.Sprintf("%s: %v", src, e.Err)
}

func (e *KeyringError) Unwrap() error { return e.Err }

// Hint says how to fix the problem, or "".
func (e *KeyringError) Hint() string {
	src := KeyringPrefix + e.Name
	switch e.Kind {
	case KeyringNotFound:
		return fmt.Sprintf("load it as this user with 'cbfs key load -k FILE %s' (keyrings do not survive a reboot: the key file is the durable copy; under sudo the user keyring is root's), or give -k FILE", src)
	case KeyringNotPossessed:
		return "link the user keyring into this session with 'keyctl link @u @s' first (a systemd service: KeyringMode=shared); sudo and services start a session keyring of their own"
	case KeyringSize:
		return "the key was not loaded by cbfs; replace it with 'cbfs key unload " + src + "' and 'cbfs key load -k FILE " + src + "'"
	case KeyringUnavailable:
		return "give the key file with -k FILE"
	case KeyringExists:
		return fmt.Sprintf("'cbfs key unload %s' removes it first", src)
	}
	return ""
}

// Keyctl is the part of the kernel's keyctl interface the keyring source
// uses, replaceable in tests. Every call is made on one locked OS thread:
// keyrings hang off a thread's credentials.
type Keyctl interface {
	// Search finds a key of type "user" in ring (a KEY_SPEC_* value or a
	// key id), recursively.
	Search(ring int, name string) (int, error)
	// Read copies the key's payload into buf and returns its full size,
	// which may be more than len(buf).
	Read(id int, buf []byte) (int, error)
	// Add adds (or updates) a "user" key in ring.
	Add(name string, payload []byte, ring int) (int, error)
	SetPerm(id int, perm uint32) error
	// Remove makes the key unusable everywhere (invalidate), or at least
	// unlinks it from ring.
	Remove(id, ring int) error
}

// Special keyring ids (keyctl(2)).
const (
	SessionKeyring = -3 // KEY_SPEC_SESSION_KEYRING
	UserKeyring    = -4 // KEY_SPEC_USER_KEYRING
)

// Errors the kernel returns that the keyring source tells apart.
var (
	errNoKey   error // ENOKEY
	errKeyExp  error // EKEYEXPIRED
	errKeyRev  error // EKEYREVOKED
	errAccess  error // EACCES
	errNoSys   error // ENOSYS
	errPerm    error // EPERM
	sysKeyctl  Keyctl
	lockThread = func() func() { runtime.LockOSThread(); return runtime.UnlockOSThread }
)

// ReadKeyring reads the key keyring:name from the kernel keyring: the
// session keyring first (and what it links), then the user keyring.
func ReadKeyring(name string) (*crypt.Key, error) {
	return readKeyring(sysKeyctl, name)
}

func readKeyring(kc Keyctl, name string) (*crypt.Key, error) {
	if name == "" {
		return nil, &KeyringError{Name: name, Kind: KeyringBadName}
	}
	if kc == nil {
		return nil, &KeyringError{Name: name, Kind: KeyringUnavailable, Err: errors.New("not supported on this system")}
	}
	defer lockThread()()
	id, err := find(kc, name)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, crypt.KeySize+1)
	defer clear(buf)
	n, err := kc.Read(id, buf)
	if err != nil {
		return nil, classifyKeyctl(name, err)
	}
	if n != crypt.KeySize {
		return nil, &KeyringError{Name: name, Kind: KeyringSize, Size: n}
	}
	return crypt.KeyFromBytes(buf[:crypt.KeySize])
}

// find searches the session keyring, then the user keyring. A key found
// in neither but refused by one is reported as refused.
func find(kc Keyctl, name string) (int, error) {
	var refused error
	for _, ring := range []int{SessionKeyring, UserKeyring} {
		id, err := kc.Search(ring, name)
		if err == nil {
			return id, nil
		}
		ke := classifyKeyctl(name, err)
		var k *KeyringError
		if errors.As(ke, &k) && k.Kind == KeyringNotFound {
			continue
		}
		if errors.As(ke, &k) && k.Kind == KeyringNotPossessed {
			refused = ke
			continue
		}
		return 0, ke
	}
	if refused != nil {
		return 0, refused
	}
	return 0, &KeyringError{Name: name, Kind: KeyringNotFound}
}

func classifyKeyctl(name string, err error) error {
	switch {
	case errNoKey != nil && (errors.Is(err, errNoKey) || errors.Is(err, errKeyExp) || errors.Is(err, errKeyRev)):
		return &KeyringError{Name: name, Kind: KeyringNotFound, Err: err}
	case errAccess != nil && errors.Is(err, errAccess):
		return &KeyringError{Name: name, Kind: KeyringNotPossessed, Err: err}
	case errNoSys != nil && (errors.Is(err, errNoSys) || errors.Is(err, errPerm)):
		// ENOSYS: a kernel without keys; EPERM: a seccomp filter.
		return &KeyringError{Name: name, Kind: KeyringUnavailable, Err: err}
	}
	return &KeyringError{Name: name, Err: err}
}

// LoadResult says what LoadKeyring did.
type LoadResult struct {
	ID      int  // the kernel's key serial number
	Already bool // the same key was loaded already: nothing changed
}

// LoadKeyring reads the key file at path and adds its key to the user
// keyring as keyring:name, readable only by processes that possess it
// (KeyringPerm). The key goes from the file to the kernel in memory: it
// is never on a command line or in the environment. A key of that name
// that holds the same bytes is left as it is; another one is refused.
func LoadKeyring(path, name string) (*LoadResult, []Warning, error) {
	return loadKeyring(sysKeyctl, path, name)
}

func loadKeyring(kc Keyctl, path, name string) (*LoadResult, []Warning, error) {
	if name == "" {
		return nil, nil, &KeyringError{Name: name, Kind: KeyringBadName}
	}
	buf, warns, err := readKeyBytes(path)
	if err != nil {
		return nil, nil, err
	}
	defer clear(buf)
	if kc == nil {
		return nil, nil, &KeyringError{Name: name, Kind: KeyringUnavailable, Err: errors.New("not supported on this system")}
	}
	defer lockThread()()
	if id, err := kc.Search(UserKeyring, name); err == nil {
		old := make([]byte, crypt.KeySize+1)
		defer clear(old)
		n, err := kc.Read(id, old)
		if err != nil {
			return nil, nil, classifyKeyctl(name, err)
		}
		if n == crypt.KeySize && bytes.Equal(old[:n], buf) {
			return &LoadResult{ID: id, Already: true}, warns, nil
		}
		return nil, nil, &KeyringError{Name: name, Kind: KeyringExists}
	}
	id, err := kc.Add(name, buf, UserKeyring)
	if err != nil {
		return nil, nil, classifyKeyctl(name, err)
	}
	if err := kc.SetPerm(id, KeyringPerm); err != nil {
		// A key left with other permissions is not what was asked for.
		kc.Remove(id, UserKeyring)
		return nil, nil, classifyKeyctl(name, err)
	}
	return &LoadResult{ID: id}, warns, nil
}

// UnloadKeyring removes keyring:name: the key is invalidated, so that no
// keyring that links it keeps it.
func UnloadKeyring(name string) error {
	return unloadKeyring(sysKeyctl, name)
}

func unloadKeyring(kc Keyctl, name string) error {
	if name == "" {
		return &KeyringError{Name: name, Kind: KeyringBadName}
	}
	if kc == nil {
		return &KeyringError{Name: name, Kind: KeyringUnavailable, Err: errors.New("not supported on this system")}
	}
	defer lockThread()()
	id, err := find(kc, name)
	if err != nil {
		return err
	}
	if err := kc.Remove(id, UserKeyring); err != nil {
		return classifyKeyctl(name, err)
	}
	return nil
}
