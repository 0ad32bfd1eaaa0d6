#!/usr/bin/env bash
# The file system's current tree through the index (issue: export and
# restore through the master index): the Go tree written as 20 archives
# of successive changes, each a slice of the tree plus rewrites of files
# from earlier slices and deletions, kept in one index. Then the current
# tree is exported through the index and compared, in the same run, with
# exporting one archive that holds the same final tree, and with what a
# user would do without the index: extract all 20 archives in order over
# one directory.
#   scripts/bench-tree.sh CBFS OUTDIR KEY RUNS
set -euo pipefail
cbfs=$1 out=$2 key=$3 runs=${4:-3}
goroot=$(go env GOROOT)
t=$out/tree
if [ ! -s "$t/fs.index" ]; then
  rm -rf "$t" && mkdir -p "$t/arch" "$t/mod"
  (cd "$goroot" && find . -type f | LC_ALL=C sort) > "$t/files"
  n=$(wc -l < "$t/files")
  per=$(( (n + 19) / 20 ))
  for i in $(seq 1 20); do
    name=$(printf '%04d' "$i")
    sed -n "$(( (i - 1) * per + 1 )),$(( i * per ))p" "$t/files" > "$t/slice"
    : > "$t/extra"; : > "$t/del"
    if [ "$i" -gt 1 ]; then
      # 300 files of earlier slices rewritten, 100 deleted.
      head -n $(( (i - 1) * per )) "$t/files" | awk -v s="$i" 'NR % 97 == s % 97' | head -300 > "$t/rw"
      head -n $(( (i - 1) * per )) "$t/files" | awk -v s="$i" 'NR % 89 == (s + 7) % 89' | head -100 > "$t/del"
      while read -r f; do
        mkdir -p "$t/mod/$(dirname "$f")"
        { cat "$goroot/$f"; echo "// rewritten in archive $i"; } > "$t/mod/$f"
      done < "$t/rw"
      cp "$t/rw" "$t/extra"
      grep -vxF -f "$t/rw" "$t/del" > "$t/del2" || true; mv "$t/del2" "$t/del"
    fi
    { tar cf - -C "$goroot" --files-from "$t/slice"; } > "$t/a.tar"
    if [ -s "$t/extra" ]; then tar rf "$t/a.tar" -C "$t/mod" --files-from "$t/extra"; fi
    new=(); [ "$i" -eq 1 ] && new=(--new-index)
    "$cbfs" import -k "$key" --index "$t/fs.index" "${new[@]}" --delete-from "$t/del" -o "$t/arch/$name.cbfs" "$t/a.tar" 2>/dev/null
    rm -rf "$t/mod"/*
  done
  # One archive of the same final tree, for the baseline.
  "$cbfs" export -k "$key" --index "$t/fs.index" -o "$t/final.tar" "$t/arch"
  "$cbfs" import -k "$key" -o "$t/final.cbfs" "$t/final.tar" 2>/dev/null
  rm -f "$t/a.tar" "$t/slice" "$t/extra" "$t/del" "$t/rw"
fi
paths=$("$cbfs" index ls -k "$key" "$t/fs.index" | wc -l)
printf 'Tree: %d live paths over 20 archives (%d bytes), final tree %d bytes as one archive.\n' "$paths" "$(du -cb "$t"/arch/*.cbfs | tail -1 | cut -f1)" "$(stat -c %s "$t/final.cbfs")"  | tee -a "$results"
measure "cbfs export of one archive holding the final tree" "$cbfs export -k $key $t/final.cbfs > /dev/null"
measure "cbfs export --index over the 20 archives" "$cbfs export -k $key --index $t/fs.index $t/arch > /dev/null"
shm=/dev/shm/cbfs-bench-tree
if [ -d /dev/shm ] && [ "$(df --output=avail -k /dev/shm | tail -1)" -gt 1048576 ]; then
  measure "extract the 20 archives in order over one directory, to tmpfs" \
    "for a in $t/arch/*.cbfs; do $cbfs extract --overwrite -k $key -C $shm \$a 2>/dev/null; done" "rm -rf $shm && mkdir $shm"
  measure "cbfs extract --index, to tmpfs" "$cbfs extract -k $key --index $t/fs.index -C $shm $t/arch" "rm -rf $shm && mkdir $shm"
  rm -rf "$shm"
fi
