package keys

import (
	"golang.org/x/sys/unix"
)

func init() {
	sysKeyctl = linuxKeyctl{}
	errNoKey, errKeyExp, errKeyRev = unix.ENOKEY, unix.EKEYEXPIRED, unix.EKEYREVOKED
	errAccess, errNoSys, errPerm = unix.EACCES, unix.ENOSYS, unix.EPERM
}

// linuxKeyctl is the kernel's keyctl(2) and add_key(2).
type linuxKeyctl struct{}

func (linuxKeyctl) Search(ring int, name string) (int, error) {
	return unix.KeyctlSearch(ring, "user", name, 0)
}

func (linuxKeyctl) Read(id int, buf []byte) (int, error) {
	return unix.KeyctlBuffer(unix.KEYCTL_READ, id, buf, 0)
}

func (linuxKeyctl) Add(name string, payload []byte, ring int) (int, error) {
	return unix.AddKey("user", name, payload, ring)
}

func (linuxKeyctl) SetPerm(id int, perm uint32) error {
	return unix.KeyctlSetperm(id, perm)
}

func (linuxKeyctl) Remove(id, ring int) error {
	if _, err := unix.KeyctlInt(unix.KEYCTL_INVALIDATE, id, 0, 0, 0); err == nil {
		return nil
	}
	_, err := unix.KeyctlInt(unix.KEYCTL_UNLINK, id, ring, 0, 0)
	return err
}
