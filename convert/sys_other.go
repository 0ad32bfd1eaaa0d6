//go:build !linux

package convert

import (
	"os"

	"github.com/cbfs/cbfs/format"
)

// Elsewhere than Linux, AddTree, AddFile and Extract return
// errUnsupported before calling any of these.
const sysSupported = false

func lstatPath(string) (statInfo, error)                     { return statInfo{}, errUnsupported }
func fstatFd(int) (statInfo, error)                          { return statInfo{}, errUnsupported }
func fstatAt(int, string) (statInfo, error)                  { return statInfo{}, errUnsupported }
func openForPack(string) (*os.File, error)                   { return nil, errUnsupported }
func dataExtents(*os.File, int64) ([]format.Extent, bool)    { return nil, false }
func userXattrs(*os.File, string) ([]format.Xattr, error)    { return nil, errUnsupported }
func devOf(os.FileInfo) (uint64, uint64, bool)               { return 0, 0, false }
func readDirNames(string) ([]string, error)                  { return nil, errUnsupported }
func readlink(string) ([]byte, error)                        { return nil, errUnsupported }
func devMajor(uint64) uint64                                 { return 0 }
func devMinor(uint64) uint64                                 { return 0 }
func openRoot(string) (int, error)                           { return -1, errUnsupported }
func openDirAt(int, string) (int, error)                     { return -1, errUnsupported }
func openDirFileAt(int, string) (*os.File, error)            { return nil, errUnsupported }
func closeFd(int)                                            {}
func mkdirAt(int, string, uint32) error                      { return errUnsupported }
func createAt(int, string) (*os.File, error)                 { return nil, errUnsupported }
func renameAt(int, string, string, bool) error               { return errUnsupported }
func unlinkAt(int, string, bool) error                       { return errUnsupported }
func symlinkAt([]byte, int, string) error                    { return errUnsupported }
func linkAt(int, string, int, string) error                  { return errUnsupported }
func mknodAt(int, string, format.Type, uint64, uint64) error { return errUnsupported }
func chownAt(int, string, int, int) error                    { return errUnsupported }
func fchown(*os.File, int, int) error                        { return errUnsupported }
func fchmod(*os.File, uint32) error                          { return errUnsupported }
func chmodAt(int, string, uint32) error                      { return errUnsupported }
func setTimesAt(int, string, format.Time, format.Time) error { return errUnsupported }
func fsetxattr(*os.File, string, []byte) error               { return errUnsupported }
func ftruncate(*os.File, int64) error                        { return errUnsupported }
func geteuid() int                                           { return os.Geteuid() }
func getegid() int                                           { return os.Getegid() }
