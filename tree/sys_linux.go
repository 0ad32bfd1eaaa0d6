package tree

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/cbfs/cbfs/format"
	"golang.org/x/sys/unix"
)

// sysSupported says whether this system has what pack and extract need.
const sysSupported = true

// This file holds the system calls pack and extract make. They need what
// the os package does not give: nanosecond times with ctime, inode and
// device numbers, SEEK_DATA/SEEK_HOLE, xattrs without following symlinks,
// and *at calls on directory descriptors, so that extraction never
// resolves a path through a symlink.

func fromStat(st *unix.Stat_t) statInfo {
	t := func(ts unix.Timespec) format.Time {
		return format.Time{Sec: ts.Sec, Nsec: uint32(ts.Nsec), Set: true}
	}
	return statInfo{
		mode: st.Mode, dev: st.Dev, ino: st.Ino, nlink: uint64(st.Nlink),
		uid: st.Uid, gid: st.Gid, rdev: st.Rdev, size: st.Size, blocks: st.Blocks,
		atime: t(st.Atim), mtime: t(st.Mtim), ctime: t(st.Ctim),
		isDir: st.Mode&sIFMT == sIFDIR, isLink: st.Mode&sIFMT == sIFLNK,
	}
}

func fstatFd(fd int) (statInfo, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return statInfo{}, err
	}
	return fromStat(&st), nil
}

// fstatAt stats name in directory dirfd without following a symlink.
func fstatAt(dirfd int, name string) (statInfo, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return statInfo{}, err
	}
	return fromStat(&st), nil
}

func ignoringEINTR(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}

// openFileAt opens a regular file for reading without following a
// symlink, and without blocking if it was swapped for a fifo since it was
// listed. O_NOATIME keeps pack from changing the access times it records;
// only the owner or root may ask for it, so it is dropped when refused.
func openFileAt(dirfd int, name string) (int, error) {
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	var fd int
	err := ignoringEINTR(func() (err error) { fd, err = unix.Openat(dirfd, name, flags|unix.O_NOATIME, 0); return err })
	if err == unix.EPERM {
		err = ignoringEINTR(func() (err error) { fd, err = unix.Openat(dirfd, name, flags, 0); return err })
	}
	return fd, err
}

// openDirPath opens a directory named by the user, following symlinks
// as any path on a command line does.
func openDirPath(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

// preadFull reads len(b) bytes at off, fewer only at the end of the file.
func preadFull(fd int, b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) {
		k, err := unix.Pread(fd, b[n:], off+int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if k == 0 {
			return n, io.EOF
		}
		n += k
	}
	return n, nil
}

// dirEntry is a name in a directory and whether readdir says it is a
// regular file (then pack opens it without a stat first).
type dirEntry struct {
	name    string
	regular bool
}

// readDirFd lists an open directory in byte order of the names. The
// descriptor stays open.
func readDirFd(fd int) ([]dirEntry, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "")
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	out := make([]dirEntry, len(ents))
	for i, e := range ents {
		out[i] = dirEntry{name: e.Name(), regular: e.Type().IsRegular()}
	}
	slices.SortFunc(out, func(a, b dirEntry) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// maxPackExtents caps the sparse map pack records; a file more fragmented
// than this is stored whole (its holes as zeros) to keep the metadata
// record under its cap.
const maxPackExtents = 100_000

// dataExtents lists the data regions of an open file with SEEK_DATA and
// SEEK_HOLE. ok is false when the file system cannot tell (the file is
// then stored whole) or the map is too long.
func dataExtents(fd int, size int64) (ext []format.Extent, ok bool) {
	ext = []format.Extent{}
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break // only a hole is left
		}
		if err != nil {
			return nil, false
		}
		if data >= size {
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, false
		}
		hole = min(hole, size)
		if len(ext) == maxPackExtents {
			return nil, false
		}
		ext = append(ext, format.Extent{Offset: data, Length: hole - data})
		off = hole
	}
	return ext, true
}

// readXattrs reads every extended attribute of a file it can read, of
// every namespace (user.*, POSIX ACLs in system.posix_acl_*, security.*
// such as capabilities and SELinux labels, and trusted.*, which only root
// can list), sorted by name: from the descriptor fd when it is not -1,
// else by path without following a symlink. A file system without
// xattrs gives none. An attribute that cannot be read (an LSM refusing
// it) is left out and named in the error, with the others returned.
func readXattrs(fd int, path string) ([]format.Xattr, error) {
	list := func(buf []byte) (int, error) {
		if fd >= 0 {
			return unix.Flistxattr(fd, buf)
		}
		return unix.Llistxattr(path, buf)
	}
	get := func(name string, buf []byte) (int, error) {
		if fd >= 0 {
			return unix.Fgetxattr(fd, name, buf)
		}
		return unix.Lgetxattr(path, name, buf)
	}
	names, err := growRead(list)
	if err != nil || len(names) == 0 {
		if err == unix.ENOTSUP || err == unix.EOPNOTSUPP || err == unix.EPERM {
			err = nil
		}
		return nil, err
	}
	var out []format.Xattr
	var unread error
	for _, n := range bytes.Split(bytes.TrimRight(names, "\x00"), []byte{0}) {
		name := string(n)
		val, err := growRead(func(b []byte) (int, error) { return get(name, b) })
		switch {
		case err == unix.ENODATA:
			continue // removed since it was listed
		case err == unix.EPERM || err == unix.EACCES || err == unix.ENOTSUP || err == unix.EOPNOTSUPP:
			if unread == nil {
				unread = fmt.Errorf("%s: %w", name, err)
			}
			continue
		case err != nil:
			return nil, err
		}
		out = append(out, format.Xattr{Name: name, Value: val})
	}
	slices.SortFunc(out, func(a, b format.Xattr) int { return strings.Compare(a.Name, b.Name) })
	return out, unread
}

// growRead calls an xattr call with a growing buffer until the value fits
// (it may grow between the size query and the read).
func growRead(call func([]byte) (int, error)) ([]byte, error) {
	size := 256
	for range 8 {
		buf := make([]byte, size)
		n, err := call(buf)
		if err == unix.ERANGE {
			if n, err = call(nil); err != nil {
				return nil, err
			}
			size = max(2*size, n)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
	return nil, unix.ERANGE
}

// devOf returns the device and inode of a file the os package stat'ed.
func devOf(fi os.FileInfo) (dev, ino uint64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return uint64(st.Dev), uint64(st.Ino), true
}

func readlinkAt(dirfd int, name string) ([]byte, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return nil, err
		}
		if n < size {
			return buf[:n], nil
		}
		if size > format.MaxPathLen {
			return nil, errors.New("link target over the cap")
		}
	}
}

func devMajor(rdev uint64) uint64 { return uint64(unix.Major(rdev)) }
func devMinor(rdev uint64) uint64 { return uint64(unix.Minor(rdev)) }

// The calls extraction makes, all relative to a directory descriptor that
// was reached without following a symlink.

const openDirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

func openRoot(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

// openDirAt opens the directory name in dirfd; a symlink fails (ELOOP or
// ENOTDIR).
func openDirAt(dirfd int, name string) (int, error) {
	var fd int
	err := ignoringEINTR(func() (err error) { fd, err = unix.Openat(dirfd, name, openDirFlags, 0); return err })
	return fd, err
}

func closeFd(fd int) { unix.Close(fd) }

func mkdirAt(dirfd int, name string, mode uint32) error { return unix.Mkdirat(dirfd, name, mode) }

// createAt creates a new file for writing; it fails if name exists, even
// as a symlink.
func createAt(dirfd int, name string) (int, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	return fd, err
}

// writeFd writes all of b.
func writeFd(fd int, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := unix.Write(fd, b[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		n += k
	}
	return n, nil
}

// pwriteFd writes all of b at off.
func pwriteFd(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		k, err := unix.Pwrite(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b, off = b[k:], off+int64(k)
	}
	return nil
}

// renameAt moves old to new in the same directory. Unless replace is set
// it fails if new exists, even if new appeared after it was checked.
func renameAt(dirfd int, old, new string, replace bool) error {
	if replace {
		return unix.Renameat(dirfd, old, dirfd, new)
	}
	err := unix.Renameat2(dirfd, old, dirfd, new, unix.RENAME_NOREPLACE)
	if err == unix.EINVAL || err == unix.ENOSYS {
		// The file system cannot rename without replacing: link(2)
		// refuses to replace too.
		if err = unix.Linkat(dirfd, old, dirfd, new, 0); err == nil {
			unix.Unlinkat(dirfd, old, 0)
		}
	}
	return err
}

func unlinkAt(dirfd int, name string, dir bool) error {
	flags := 0
	if dir {
		flags = unix.AT_REMOVEDIR
	}
	return unix.Unlinkat(dirfd, name, flags)
}

func symlinkAt(target []byte, dirfd int, name string) error {
	return unix.Symlinkat(string(target), dirfd, name)
}

// linkAt makes a hard link; with flags 0 linkat(2) never follows a
// symlink at old: it links the symlink itself.
func linkAt(olddir int, old string, newdir int, new string) error {
	return unix.Linkat(olddir, old, newdir, new, 0)
}

func mknodAt(dirfd int, name string, t format.Type, major, minor uint64) error {
	mode := uint32(0o600)
	switch t {
	case format.TypeChar:
		mode |= unix.S_IFCHR
	case format.TypeBlock:
		mode |= unix.S_IFBLK
	default:
		mode |= unix.S_IFIFO
	}
	if major > 0xfffff || minor > 0xfffff {
		return unix.EINVAL
	}
	return unix.Mknodat(dirfd, name, mode, int(unix.Mkdev(uint32(major), uint32(minor))))
}

func fchown(fd int, uid, gid int) error { return unix.Fchown(fd, uid, gid) }

func fchmod(fd int, mode uint32) error { return unix.Fchmod(fd, mode) }

// openNodeAt opens name itself, never what a symlink there points to, as
// an O_PATH descriptor: a fifo or a device is not opened for I/O (no
// blocking, no driver side effects). Every attribute extract sets on a
// node goes through such a descriptor, checked first to be the node
// extract created: a name can be swapped for a symlink or a hard link to
// another file between the creation and the change.
func openNodeAt(dirfd int, name string) (int, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	return fd, err
}

// fchownNode sets the owner of the node fd refers to (a symlink itself,
// not its target); fd may be an O_PATH descriptor.
func fchownNode(fd int, uid, gid int) error {
	return unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH)
}

// errNoNodeChmod says the kernel cannot change a node's mode through its
// descriptor. No call that follows a name or a link takes its place.
var errNoNodeChmod = errors.New("this kernel cannot set the mode through a descriptor (needs fchmodat2, Linux 6.6, or /proc)")

// fchmodNode sets the mode of the fifo or device node fd refers to (an
// O_PATH descriptor; never a symlink: the caller checked its type).
// fchmodat2 with AT_EMPTY_PATH does it on Linux 6.6 and later; before,
// the /proc/self/fd magic link names the open inode itself, not a path
// that could be swapped.
func fchmodNode(fd int, mode uint32) error {
	err := unix.Fchmodat(fd, "", mode, unix.AT_EMPTY_PATH)
	if err == unix.EOPNOTSUPP || err == unix.ENOSYS {
		err = unix.Fchmodat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), mode, 0)
		if errors.Is(err, unix.ENOENT) {
			err = errNoNodeChmod
		}
	}
	return err
}

// futimesNode sets the access and modification times of the node fd
// refers to (any descriptor, O_PATH included; a symlink itself); an
// absent time is left alone.
func futimesNode(fd int, atime, mtime format.Time) error {
	ts := func(t format.Time) unix.Timespec {
		if !t.Set {
			return unix.Timespec{Nsec: unix.UTIME_OMIT}
		}
		return unix.Timespec{Sec: t.Sec, Nsec: int64(t.Nsec)}
	}
	return unix.UtimesNanoAt(fd, "", []unix.Timespec{ts(atime), ts(mtime)}, unix.AT_EMPTY_PATH)
}

// devNumber is the st_rdev a device node of major, minor has.
func devNumber(major, minor uint64) uint64 { return unix.Mkdev(uint32(major), uint32(minor)) }

func fsetxattr(fd int, name string, val []byte) error { return unix.Fsetxattr(fd, name, val, 0) }

func ftruncate(fd int, size int64) error { return unix.Ftruncate(fd, size) }

func closeErr(fd int) error { return unix.Close(fd) }

func geteuid() int { return unix.Geteuid() }
func getegid() int { return unix.Getegid() }

// errLoop is what opening a symlink with O_NOFOLLOW fails with.
var errLoop error = unix.ELOOP
