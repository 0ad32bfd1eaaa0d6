#!/usr/bin/env bash
# Master index benchmark (issues 4 and 14): for each set, the same
# archives as plain tars (one per archive) and as CBFS archives imported
# from them. Times `tar tvf` over every tar against `cbfs index rebuild`
# over every archive, and measures what the blocked index makes cheap:
# the rebuild's memory (bounded by --memory), a merge of 4 shards, a
# lookup of one path and of 1,000 paths, the index's bytes per entry.
# Peak RSS from GNU time.
#
#   scripts/bench-index.sh [CBFS_BINARY] [SET...]
#
# Sets are AxM (archives x members, 100-byte files, every path distinct:
# live entries = A x M). Default: 40x2500, 1000x1000 and 1x1000000 (one
# archive of a million members). BENCH_ENTRIES=N adds the set of N
# entries in archives of 1,000 (BENCH_ENTRIES=10000000: 10000x1000, about
# 12 GB of archives and an hour to generate; its tars are left out, and
# so is the tar column). Sets are generated once by the Go generator in
# repo/index_bench_test.go into $CBFS_BENCH_INDEX_DIR (default: a
# temporary directory, removed at the end). Every timing is the best of
# $RUNS runs (default 3), files in the page cache.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-bin/cbfs}
shift || true
sets=("$@")
[ ${#sets[@]} -eq 0 ] && sets=(40x2500 1000x1000 1x1000000)
if [ -n "${BENCH_ENTRIES:-}" ] && [ "$BENCH_ENTRIES" -gt 1000000 ]; then
  sets+=("$((BENCH_ENTRIES / 1000))x1000")
fi
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

printf '%-11s %9s | %8s | %8s %7s %10s %7s | %7s | %8s %7s | %9s %7s | %6s\n' \
  set entries "tar tvf" "rebuild" "RSS" "entries/s" "vs tar" "merge4" "lookup1" "RSS" "lookup1k" "RSS" "B/ent"
for set in "${sets[@]}"; do
  dir="$work/$set"
  archives=${set%x*}
  members=${set#*x}
  entries=$((archives * members))
  tars=1
  [ "$entries" -gt 1000000 ] && tars=0
  if [ ! -f "$dir/done" ]; then
    echo "bench-index: generating $set in $dir ..." >&2
    CBFS_BENCH_DIR="$dir" CBFS_BENCH_SET="$set" CBFS_BENCH_KEY="$key" CBFS_BENCH_TARS=$tars \
      go test -count=1 -timeout 0 -run '^TestGenerateIndexBenchSet$' ./repo >/dev/null
    touch "$dir/done"
  fi
  idx="$work/$set.idx"
  if [ "$tars" = 1 ] && [ "$archives" -gt 1 ]; then
    cat "$dir"/tar/*.tar >/dev/null # into the page cache
    read -r tar_s _ < <(measure sh -c 'for f in "$1"/tar/*.tar; do tar tvf "$f"; done' sh "$dir")
  elif [ "$tars" = 1 ]; then
    read -r tar_s _ < <(measure tar tvf "$dir"/tar/*.tar)
  else
    tar_s=0
  fi
  cat "$dir"/cbfs/*.cbfs >/dev/null
  read -r cb_s cb_kb < <(measure "$bin" index rebuild -k "$key" --force -o "$idx" "$dir/cbfs")
  # The rebuilt index must list every entry.
  listed=$("$bin" index ls -k "$key" "$idx" | wc -l)
  [ "$listed" -eq "$entries" ] || { echo "bench-index: $set: index lists $listed entries, want $entries" >&2; exit 1; }
  size=$(stat -c %s "$idx")
  merge_kb=0
  if [ "$archives" -ge 4 ]; then
    for i in 0 1 2 3; do
      "$bin" index rebuild -k "$key" --force --shard "$i/4" -o "$work/$set.part$i" "$dir/cbfs" 2>/dev/null
    done
    read -r _ merge_kb < <(measure "$bin" index merge -k "$key" --force -o "$work/$set.merged" "$work/$set".part{0,1,2,3})
    cmp "$idx" "$work/$set.merged" || { echo "bench-index: $set: merge of 4 shards differs from the rebuild" >&2; exit 1; }
    rm -f "$work/$set".part{0,1,2,3} "$work/$set.merged"
  fi
  # One path from the middle, and 1,000 spread over the index.
  "$bin" index ls -k "$key" "$idx" | awk -v n="$entries" -F'\t' 'NR % int(n / 1000) == 1 { print $1 }' >"$work/$set.paths"
  one=$(sed -n '500p' "$work/$set.paths")
  read -r l1_s l1_kb < <(measure "$bin" index lookup -k "$key" "$idx" "$one")
  read -r lk_s lk_kb < <(measure "$bin" index lookup -k "$key" "$idx" --from "$work/$set.paths")
  awk -v set="$set" -v n="$entries" -v ts="$tar_s" -v cs="$cb_s" -v ck="$cb_kb" -v mk="$merge_kb" \
    -v l1="$l1_s" -v l1k="$l1_kb" -v lk="$lk_s" -v lkk="$lk_kb" -v sz="$size" 'BEGIN {
    printf "%-11s %9d | %7.2fs | %7.3fs %5.1fMB %10.0f %6.1fx | %5.1fMB | %6.3fs %5.1fMB | %8.3fs %5.1fMB | %6.1f\n",
      set, n, ts, cs, ck / 1024, (cs > 0 ? n / cs : 0), (cs > 0 && ts > 0 ? ts / cs : 0), mk / 1024,
      l1, l1k / 1024, lk, lkk / 1024, sz / n }'
done
echo "(tar tvf: one process per tar, output to /dev/null; rebuild: footer and summary of each archive, 2 workers"
echo " on 2 cores, --memory 64MiB; merge4: index merge of the 4 shards of --shard I/4, peak RSS, checked"
echo " byte-identical to the rebuild; lookup1: index lookup of one path, whole process; lookup1k: 1,000 paths"
echo " with --from; B/ent: index file bytes per entry)"
