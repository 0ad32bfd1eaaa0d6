// Package tree packs directory trees into CBFS archives and extracts them
// again, safely: pack reads with no-follow calls relative to directory
// descriptors; extract never writes outside its destination and sets
// every attribute through a descriptor of the very node it created.
// Packer is also the Go API a tiering agent embeds to write archives
// member by member.
package tree

import (
	"errors"
	"os/user"
	"strconv"
	"sync"

	"github.com/cbfs/cbfs/format"
)

// errUnsupported is what packing from and extracting to a file system
// return where the system calls they need are not implemented (see
// sys_linux.go). Packer.Add, which needs no file system, works anywhere.
var errUnsupported = errors.New("packing files and extracting are implemented for Linux only")

// statInfo is what pack and extract read from stat(2).
type statInfo struct {
	mode          uint32 // st_mode: type and permission bits
	dev, ino      uint64
	nlink         uint64
	uid, gid      uint32
	rdev          uint64
	size, blocks  int64 // blocks in 512-byte units
	atime, mtime  format.Time
	ctime         format.Time
	isDir, isLink bool
}

func (s statInfo) fmt() uint32 { return s.mode & sIFMT }

// File type bits of st_mode, the same on every Unix.
const (
	sIFMT   = 0o170000
	sIFREG  = 0o100000
	sIFDIR  = 0o040000
	sIFLNK  = 0o120000
	sIFCHR  = 0o020000
	sIFBLK  = 0o060000
	sIFIFO  = 0o010000
	sIFSOCK = 0o140000
)

// idNames maps uids and gids to names and back, caching every answer,
// found or not: the lookups read /etc/passwd and /etc/group each time.
type idNames struct {
	mu                sync.Mutex
	users, groups     map[uint32]string
	userIDs, groupIDs map[string]int64 // -1: no such name
}

func newIDNames() *idNames {
	return &idNames{users: map[uint32]string{}, groups: map[uint32]string{},
		userIDs: map[string]int64{}, groupIDs: map[string]int64{}}
}

func (n *idNames) user(uid uint32) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	s, ok := n.users[uid]
	if !ok {
		if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil && len(u.Username) <= format.MaxNameLen {
			s = u.Username
		}
		n.users[uid] = s
	}
	return s
}

func (n *idNames) group(gid uint32) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	s, ok := n.groups[gid]
	if !ok {
		if g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10)); err == nil && len(g.Name) <= format.MaxNameLen {
			s = g.Name
		}
		n.groups[gid] = s
	}
	return s
}

// uidOf returns the local uid of a user name, or -1.
func (n *idNames) uidOf(name string) int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	id, ok := n.userIDs[name]
	if !ok {
		id = -1
		if u, err := user.Lookup(name); err == nil {
			if v, err := strconv.ParseUint(u.Uid, 10, 32); err == nil {
				id = int64(v)
			}
		}
		n.userIDs[name] = id
	}
	return id
}

// gidOf returns the local gid of a group name, or -1.
func (n *idNames) gidOf(name string) int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	id, ok := n.groupIDs[name]
	if !ok {
		id = -1
		if g, err := user.LookupGroup(name); err == nil {
			if v, err := strconv.ParseUint(g.Gid, 10, 32); err == nil {
				id = int64(v)
			}
		}
		n.groupIDs[name] = id
	}
	return id
}

// nodeID identifies a file on its file system.
type nodeID struct{ dev, ino uint64 }
