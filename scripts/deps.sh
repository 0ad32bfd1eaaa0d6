#!/usr/bin/env bash
# Installs the Debian packages a make target needs, when they are missing.
#   deps.sh test   GNU tar, bsdtar (libarchive-tools), getfattr/setfattr (attr),
#                  getfacl/setfacl (acl), getcap/setcap (libcap2-bin),
#                  gzip, bzip2, xz, zstd (compressed input)
#   deps.sh bench  the above, plus the peers: age, restic, lz4, and GNU time
# Both also install versitygw v1.8.0, the S3-compatible server the tests and
# the benchmark run, from the Go module proxy into .tools/bin (project-local).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -x "$root/.tools/bin/versitygw" ]; then
  echo "deps: installing versitygw v1.8.0 into .tools/bin" >&2
  GOBIN="$root/.tools/bin" GOFLAGS=-buildvcs=false go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have tar || need+=(tar)
have bsdtar || need+=(libarchive-tools)
have setfattr || need+=(attr)
# The compressors whose output import must read.
have gzip || need+=(gzip)
have bzip2 || need+=(bzip2)
have xz || need+=(xz-utils)
have zstd || need+=(zstd)
have setfacl || need+=(acl)
# setcap and getcap live in /usr/sbin, which a user's PATH may lack.
have setcap || [ -x /usr/sbin/setcap ] || [ -x /sbin/setcap ] || need+=(libcap2-bin)
if [ "${1:-test}" = bench ]; then
  have age || need+=(age)
  have restic || need+=(restic)
  have lz4 || need+=(lz4)
  [ -x /usr/bin/time ] || need+=(time)
fi
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "deps: installing ${need[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
