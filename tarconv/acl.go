package tarconv

import (
	"encoding/binary"
	"strconv"
	"strings"
)

// POSIX ACLs are kept as the kernel gives them, in the xattrs
// system.posix_acl_access and system.posix_acl_default: a version (2),
// then entries of a tag, permission bits and an id, little-endian. GNU
// tar 1.34 with --acls restores ACLs from its own text records,
// SCHILY.acl.access and SCHILY.acl.default, and not from those xattrs, so
// export writes both, as GNU tar does when it creates an archive.

// aclRecords maps the ACL xattrs to GNU tar's text records.
var aclRecords = map[string]string{
	"system.posix_acl_access":  "SCHILY.acl.access",
	"system.posix_acl_default": "SCHILY.acl.default",
}

// aclText is the text form of an ACL xattr's value, as acl_to_text(3)
// writes it, one entry a line, with numeric ids (the ids the xattr
// holds, whatever names the exporting machine has for them). ok is false
// when the value is not an ACL this version knows.
func aclText(v []byte) (string, bool) {
	if len(v) < 4 || (len(v)-4)%8 != 0 || binary.LittleEndian.Uint32(v) != 2 {
		return "", false
	}
	var b strings.Builder
	for e := v[4:]; len(e) > 0; e = e[8:] {
		tag, perm, id := binary.LittleEndian.Uint16(e), binary.LittleEndian.Uint16(e[2:]), binary.LittleEndian.Uint32(e[4:])
		var kind, qual string
		switch tag {
		case 0x01:
			kind = "user"
		case 0x02:
			kind, qual = "user", strconv.FormatUint(uint64(id), 10)
		case 0x04:
			kind = "group"
		case 0x08:
			kind, qual = "group", strconv.FormatUint(uint64(id), 10)
		case 0x10:
			kind = "mask"
		case 0x20:
			kind = "other"
		default:
			return "", false
		}
		if perm > 7 {
			return "", false
		}
		rwx := []byte("---")
		for i, c := range "rwx" {
			if perm&(4>>i) != 0 {
				rwx[i] = byte(c)
			}
		}
		b.WriteString(kind + ":" + qual + ":" + string(rwx) + "\n")
	}
	return b.String(), true
}
