#!/usr/bin/env bash
# Index rebuild benchmark (issue 4): for each set, the same archives as
# plain tars (one per archive) and as CBFS archives imported from them;
# times `tar tvf` over every tar against `cbfs index rebuild` over every
# archive, with peak RSS from GNU time.
#
#   scripts/bench-index.sh [CBFS_BINARY] [SET...]
#
# Sets: 40x2500 and 1000x1000 (archives x members, 100-byte files, every
# path distinct: live entries = archives x members). They are generated
# once by the Go generator in repo/index_bench_test.go into
# $CBFS_BENCH_INDEX_DIR (default: a temporary directory, removed at the
# end; the 1000x1000 set takes about 2.4 GB). Every timing is the best of
# $RUNS runs (default 3) with the files in the page cache.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-bin/cbfs}
shift || true
sets=("$@")
[ ${#sets[@]} -eq 0 ] && sets=(40x2500 1000x1000)
runs=${RUNS:-3}
[ -x "$bin" ] || { echo "bench-index: $bin not found: run 'make build' first" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench-index: GNU time (/usr/bin/time) is needed" >&2; exit 2; }
command -v tar >/dev/null || { echo "bench-index: tar is needed" >&2; exit 2; }

work=${CBFS_BENCH_INDEX_DIR:-}
if [ -z "$work" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
key="$work/key"
[ -f "$key" ] || "$bin" keygen -o "$key" 2>/dev/null

# measure CMD...: prints "seconds peak_rss_kb" of the best run.
measure() {
  local best_s="" best_kb="" i out s kb
  for ((i = 0; i < runs; i++)); do
    /usr/bin/time -v -o "$work/time.out" "$@" >/dev/null 2>&1 || true
    out=$(cat "$work/time.out")
    s=$(printf '%s\n' "$out" | awk -F': ' '/Elapsed \(wall clock\)/ {
          n = split($2, p, ":"); t = 0; for (j = 1; j <= n; j++) t = t * 60 + p[j]; print t }')
    kb=$(printf '%s\n' "$out" | awk -F': ' '/Maximum resident set size/ { print $2 }')
    if [ -z "$best_s" ] || awk -v a="$s" -v b="$best_s" 'BEGIN { exit !(a < b) }'; then
      best_s=$s
      best_kb=$kb
    fi
  done
  echo "$best_s $best_kb"
}

printf '%-10s %9s | %10s %9s | %10s %9s %12s %9s %11s\n' \
  set entries "tar tvf s" "tar RSS" "rebuild s" "RSS MB" "entries/s" "vs tar" "RSS B/entry"
for set in "${sets[@]}"; do
  dir="$work/$set"
  if [ ! -f "$dir/done" ]; then
    echo "bench-index: generating $set in $dir ..." >&2
    CBFS_BENCH_DIR="$dir" CBFS_BENCH_SET="$set" CBFS_BENCH_KEY="$key" \
      go test -count=1 -run '^TestGenerateIndexBenchSet$' ./repo >/dev/null
    touch "$dir/done"
  fi
  archives=${set%x*}
  members=${set#*x}
  entries=$((archives * members))
  cat "$dir"/tar/*.tar "$dir"/cbfs/*.cbfs >/dev/null # into the page cache
  read -r tar_s tar_kb < <(measure sh -c 'for f in "$1"/tar/*.tar; do tar tvf "$f"; done' sh "$dir")
  read -r cb_s cb_kb < <(measure "$bin" index rebuild -k "$key" --force -o "$work/$set.idx" "$dir/cbfs")
  # The rebuilt index must list every entry.
  listed=$("$bin" index ls -k "$key" "$work/$set.idx" | wc -l)
  [ "$listed" -eq "$entries" ] || { echo "bench-index: $set: index lists $listed entries, want $entries" >&2; exit 1; }
  awk -v set="$set" -v n="$entries" -v ts="$tar_s" -v tk="$tar_kb" -v cs="$cb_s" -v ck="$cb_kb" 'BEGIN {
    printf "%-10s %9d | %10.2f %7.1fMB | %10.3f %9.1f %12.0f %8.1fx %11.0f\n",
      set, n, ts, tk / 1024, cs, ck / 1024, (cs > 0 ? n / cs : 0), (cs > 0 ? ts / cs : 0), ck * 1024 / n }'
done
echo "(tar tvf: one process per tar, output to /dev/null; rebuild: footer and summary of each archive, 2 workers on 2 cores)"
