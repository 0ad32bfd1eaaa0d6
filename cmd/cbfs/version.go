package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/cbfs/cbfs/format"
	"github.com/cbfs/cbfs/index"
)

// version is the release, set when building one:
// go build -ldflags "-X main.version=v1.2.3" ./cmd/cbfs
// Otherwise the module version go install records, or "devel".
var version = ""

// versionText is what --version prints: the tool's version and commit,
// the Go version it was built with, and the format versions it reads and
// writes, which is what decides whether it can read an archive.
func versionText() string {
	v, commit, modified := version, "unknown", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = " (with uncommitted changes)"
				}
			}
		}
	}
	if v == "" {
		v = "devel"
	}
	return fmt.Sprintf("cbfs %s\ncommit %s%s\nbuilt with %s for %s/%s\n"+
		"archive format: writes v%d.%d, reads v%d.x\nindex format: writes v%d.%d, reads v%d.x\n",
		v, commit, modified, runtime.Version(), runtime.GOOS, runtime.GOARCH,
		format.Major, format.Minor, format.Major, index.Major, index.Minor, index.Major)
}
