//go:build !linux

package tree

import (
	"os"

	"github.com/cbfs/cbfs/format"
)

// Elsewhere than Linux, AddTree, AddFile and Extract return
// errUnsupported before calling any of these.
const sysSupported = false

var errLoop = errUnsupported

type dirEntry struct {
	name    string
	regular bool
}

func openFileAt(int, string) (int, error)                    { return -1, errUnsupported }
func openDirPath(string) (int, error)                        { return -1, errUnsupported }
func preadFull(int, []byte, int64) (int, error)              { return 0, errUnsupported }
func readDirFd(int) ([]dirEntry, error)                      { return nil, errUnsupported }
func readlinkAt(int, string) ([]byte, error)                 { return nil, errUnsupported }
func dataExtents(int, int64) ([]format.Extent, bool)         { return nil, false }
func readXattrs(int, string) ([]format.Xattr, error)         { return nil, errUnsupported }
func fstatFd(int) (statInfo, error)                          { return statInfo{}, errUnsupported }
func fstatAt(int, string) (statInfo, error)                  { return statInfo{}, errUnsupported }
func devOf(os.FileInfo) (uint64, uint64, bool)               { return 0, 0, false }
func devMajor(uint64) uint64                                 { return 0 }
func devMinor(uint64) uint64                                 { return 0 }
func openRoot(string) (int, error)                           { return -1, errUnsupported }
func openDirAt(int, string) (int, error)                     { return -1, errUnsupported }
func closeFd(int)                                            {}
func mkdirAt(int, string, uint32) error                      { return errUnsupported }
func createAt(int, string) (int, error)                      { return -1, errUnsupported }
func writeFd(int, []byte) (int, error)                       { return 0, errUnsupported }
func pwriteFd(int, []byte, int64) error                      { return errUnsupported }
func closeErr(int) error                                     { return errUnsupported }
func renameAt(int, string, string, bool) error               { return errUnsupported }
func unlinkAt(int, string, bool) error                       { return errUnsupported }
func symlinkAt([]byte, int, string) error                    { return errUnsupported }
func linkAt(int, string, int, string) error                  { return errUnsupported }
func mknodAt(int, string, format.Type, uint64, uint64) error { return errUnsupported }
func fchown(int, int, int) error                             { return errUnsupported }
func fchmod(int, uint32) error                               { return errUnsupported }
func openNodeAt(int, string) (int, error)                    { return -1, errUnsupported }
func fchownNode(int, int, int) error                         { return errUnsupported }
func fchmodNode(int, uint32) error                           { return errUnsupported }
func futimesNode(int, format.Time, format.Time) error        { return errUnsupported }
func devNumber(uint64, uint64) uint64                        { return 0 }
func fsetxattr(int, string, []byte) error                    { return errUnsupported }
func ftruncate(int, int64) error                             { return errUnsupported }
func geteuid() int                                           { return os.Geteuid() }
func getegid() int                                           { return os.Getegid() }
