// Attributes of what extract creates: owner, mode, xattrs, ACLs and
// capabilities, always through a descriptor of the node itself.

package tree

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cbfs/cbfs/format"
)

// owner returns the uid and gid to give a file, or false when owners are
// not restored.
func (x *extractor) owner(m *format.Meta) (uid, gid int, ok bool) {
	if !x.opt.SameOwner {
		return -1, -1, false
	}
	if m.UID > 1<<32-2 || m.GID > 1<<32-2 {
		return -1, -1, false
	}
	uid, gid = int(m.UID), int(m.GID)
	if !x.opt.NumericOwner {
		if id := x.names.uidOf(m.Uname); m.Uname != "" && id >= 0 {
			uid = int(id)
		}
		if id := x.names.gidOf(m.Gname); m.Gname != "" && id >= 0 {
			gid = int(id)
		}
	}
	return uid, gid, true
}

// mode is the mode to set. Set-id bits are kept only when the file ends
// up with the owner (or group) it was archived with: a setuid file owned
// by whoever runs extract instead would hand out their rights.
func (x *extractor) mode(m *format.Meta, owned bool) uint32 {
	mode := m.Mode & 0o7777
	if x.opt.NoSetID {
		mode &^= 0o4000
		if m.Type != format.TypeDir {
			mode &^= 0o2000
		}
	}
	if owned {
		return mode
	}
	if int64(x.euid) != int64(m.UID) {
		mode &^= 0o4000
	}
	if int64(x.egid) != int64(m.GID) && m.Type != format.TypeDir {
		mode &^= 0o2000
	}
	return mode
}

// nodeAttrs sets the owner, mode (unless a symlink) and times of a
// symlink, fifo or device node just created at base in parent. It acts
// through a descriptor of the node itself, checked to be the one created:
// whoever can write into the directory could have swapped the name for a
// symlink or a hard link to another file, and a change made by name would
// land on that file, with extract's privileges.
func (x *extractor) nodeAttrs(parent int, base, name string, m *format.Meta) {
	fd, err := openNodeAt(parent, base)
	if err != nil {
		x.report(Failed, name, "owner, mode and times not restored: cannot open the %s just created: %v", typeName(m.Type), err)
		return
	}
	defer closeFd(fd)
	st, err := fstatFd(fd)
	if err != nil {
		x.report(Failed, name, "owner, mode and times not restored: %v", err)
		return
	}
	if why := x.notCreated(st, m); why != "" {
		x.report(Failed, name, "replaced while being extracted (%s); its owner, mode and times were not set", why)
		return
	}
	owned := false
	if uid, gid, ok := x.owner(m); ok {
		if err := fchownNode(fd, uid, gid); err != nil {
			x.report(Failed, name, "owner not restored: %v", err)
		} else {
			owned = true
		}
	}
	if m.Type != format.TypeSymlink {
		if err := fchmodNode(fd, x.mode(m, owned)); err != nil {
			x.report(Failed, name, "mode not restored: %v", err)
		}
	}
	x.nodeXattrs(name, m)
	if err := futimesNode(fd, m.ATime, m.MTime); err != nil {
		x.report(Failed, name, "times not restored: %v", err)
	}
}

// notCreated says why the node st describes is not the one extract just
// made for m, or "" when it is: of m's type (and device number), owned by
// extract's effective user (no one else can create a node owned by it),
// and with no other name (a hard link to an existing file has two).
func (x *extractor) notCreated(st statInfo, m *format.Meta) string {
	want := map[format.Type]uint32{format.TypeSymlink: sIFLNK, format.TypeFifo: sIFIFO,
		format.TypeChar: sIFCHR, format.TypeBlock: sIFBLK, format.TypeDir: sIFDIR}[m.Type]
	switch {
	case st.fmt() != want:
		return "the name now holds another type of file"
	case int64(st.uid) != int64(x.euid):
		return fmt.Sprintf("the name now holds a file owned by uid %d", st.uid)
	case st.fmt() != sIFDIR && st.nlink != 1:
		return "the name now holds a file with other hard links"
	case (m.Type == format.TypeChar || m.Type == format.TypeBlock) && st.rdev != devNumber(m.DevMajor, m.DevMinor):
		return "the name now holds another device"
	}
	return ""
}

// xattrPhase says when an attribute is set: most before the owner and
// mode, security.capability after chown (which clears it), POSIX ACLs
// after chmod (an access ACL holds the group and other bits a chmod would
// rewrite; a directory's default ACL waits until its contents are
// written, so that they do not inherit it).
type xattrPhase bool

const (
	xattrsEarly xattrPhase = false
	xattrsLate  xattrPhase = true
)

func lateXattr(name string) bool {
	return name == "security.capability" || name == "system.posix_acl_access" || name == "system.posix_acl_default"
}

// setXattrs restores a file's extended attributes of one phase through
// fd, the descriptor of the very file extract created. user.* ones are
// restored always; the others (POSIX ACLs, capabilities, SELinux labels,
// trusted.*) only as root, and otherwise counted and named in the
// closing note: they could grant rights, and only root may set most.
// With NoSetID, capabilities are not restored either (a note), as
// set-id bits are not.
func (x *extractor) setXattrs(fd int, name string, m *format.Meta, phase xattrPhase) {
	for _, xa := range m.Xattrs {
		if lateXattr(xa.Name) != bool(phase) {
			continue
		}
		if !x.mayRestore(name, xa.Name) {
			continue
		}
		if err := fsetxattr(fd, xa.Name, xa.Value); err != nil {
			x.report(Failed, name, "extended attribute %q not restored: %v", xa.Name, err)
		}
	}
}

// mayRestore says whether extract restores the attribute named xname of
// member name, counting or reporting it when not.
func (x *extractor) mayRestore(name, xname string) bool {
	if strings.HasPrefix(xname, "user.") {
		return true
	}
	if x.euid != 0 {
		x.mu.Lock()
		x.otherXattrs++
		if len(x.otherNames) < 8 && !slices.Contains(x.otherNames, xname) {
			x.otherNames = append(x.otherNames, xname)
		}
		x.mu.Unlock()
		return false
	}
	if x.opt.NoSetID && xname == "security.capability" {
		x.report(Note, name, "file capabilities (security.capability) not restored (--no-setid)")
		return false
	}
	return true
}

// nodeXattrs reports the extended attributes of a symlink, fifo or
// device node, which extract cannot restore: it holds such a node only
// through an O_PATH descriptor, which fsetxattr and setxattrat refuse
// (EBADF), and it makes no call by name.
func (x *extractor) nodeXattrs(name string, m *format.Meta) {
	for _, xa := range m.Xattrs {
		if x.mayRestore(name, xa.Name) {
			x.report(Failed, name, "extended attribute %q not restored: a %s's attributes cannot be set through a descriptor of it, and extract makes no call by name", xa.Name, m.Type)
		}
	}
}

// adoptDir records the directory at base as this member's, to get its
// owner, mode and times at the end, and restores its xattrs now. fresh
// says this run just made it: it must then be owned by extract's user
// (no one else can make such a directory), else it was swapped. An
// existing directory keeps the identity it had when first seen.
func (x *extractor) adoptDir(parent int, base, name string, m *format.Meta, fresh bool) {
	fd, err := openDirAt(parent, base)
	if err != nil {
		x.report(Failed, name, "directory attributes not restored: %v", err)
		return
	}
	defer closeFd(fd)
	st, err := fstatFd(fd)
	if err != nil {
		x.report(Failed, name, "directory attributes not restored: %v", err)
		return
	}
	id := nodeID{st.dev, st.ino}
	if fresh {
		if why := x.notCreated(st, m); why != "" {
			x.report(Failed, name, "replaced while being extracted (%s); its attributes were not set", why)
			return
		}
		x.dirIDs[name] = id
	} else if old, ok := x.dirIDs[name]; !ok {
		x.dirIDs[name] = id // an existing directory taken over (--overwrite)
	} else if old != id {
		x.report(Failed, name, "replaced while being extracted; its attributes were not set")
		return
	}
	x.setXattrs(fd, name, m, xattrsEarly)
	x.dirMeta[name] = m
}

// ownerAndMode restores an open file's or directory's owner (when the run
// may) and then its mode: after chown, which clears set-id bits.
func (x *extractor) ownerAndMode(fd int, name string, m *format.Meta) {
	owned := false
	if uid, gid, ok := x.owner(m); ok {
		if err := fchown(fd, uid, gid); err != nil {
			x.report(Failed, name, "owner not restored: %v", err)
		} else {
			owned = true
		}
	}
	if err := fchmod(fd, x.mode(m, owned)); err != nil {
		x.report(Failed, name, "mode not restored: %v", err)
	}
}

// typeName names a member type in a sentence.
func typeName(t format.Type) string {
	switch t {
	case format.TypeChar:
		return "character device"
	case format.TypeBlock:
		return "block device"
	}
	return t.String()
}
