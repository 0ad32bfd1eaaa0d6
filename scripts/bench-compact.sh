#!/usr/bin/env bash
# Compaction (issue 17): the Go tree as 20 archives (slices of its files),
# then one later archive that holds every second file of the tree again,
# so that about half of each of the 20 is superseded. compact runs on a
# fresh copy of the set each time; it is compared, in the same run, with
# cbfs export of the same 20 archives, and with what gc reported dead.
#   scripts/bench-compact.sh CBFS OUTDIR KEY RUNS
set -euo pipefail
cbfs=$1 out=$2 key=$3 runs=${4:-3}
goroot=$(go env GOROOT)
c=$out/compact
if [ ! -s "$c/pristine/fs.index" ]; then
  rm -rf "$c" && mkdir -p "$c/pristine/arch"
  (cd "$goroot" && find . -type f | LC_ALL=C sort) > "$c/files"
  n=$(wc -l < "$c/files")
  per=$(( (n + 19) / 20 ))
  for i in $(seq 1 20); do
    sed -n "$(( (i - 1) * per + 1 )),$(( i * per ))p" "$c/files" > "$c/slice"
    new=(); [ "$i" -eq 1 ] && new=(--new-index)
    tar cf - -C "$goroot" --files-from "$c/slice" |
      "$cbfs" import -k "$key" --index "$c/pristine/fs.index" "${new[@]}" -o "$c/pristine/arch/$(printf '%04d' "$i").cbfs" - 2>/dev/null
  done
  # Of each slice, every second file by size: about half its bytes.
  python3 - "$goroot" "$c/files" "$per" > "$c/half" <<'PY'
import os, sys
root, files, per = sys.argv[1], open(sys.argv[2]).read().split("\n")[:-1], int(sys.argv[3])
for s in range(0, len(files), per):
    sl = sorted(files[s:s + per], key=lambda f: -os.path.getsize(os.path.join(root, f)))
    print("\n".join(sl[0::2]))
PY
  tar cf - -C "$goroot" --files-from "$c/half" |
    "$cbfs" import -k "$key" --index "$c/pristine/fs.index" -o "$c/pristine/arch/0021.cbfs" - 2>/dev/null
  rm -f "$c/slice" "$c/half"
fi
p=$c/pristine
dead=$("$cbfs" gc -k "$key" --index "$p/fs.index" --json "$p/arch" | python3 -c 'import json,sys; print(sum(a["dead_bytes"] for a in json.load(sys.stdin)))')
srcbytes=$(du -cb "$p"/arch/00[01]*.cbfs "$p"/arch/0020.cbfs | tail -1 | cut -f1)
printf 'Compaction set: 21 archives, %d bytes; gc reports %d dead bytes.\n' "$(du -cb "$p"/arch/*.cbfs | tail -1 | cut -f1)" "$dead" | tee -a "$results"
prep="rm -rf $c/run && cp -r $p $c/run"
measure "cbfs compact --min-dead 30 --remove (copies the live half of 20 archives)" \
  "$cbfs compact -k $key --index $c/run/fs.index --min-dead 30 --remove --json $c/run/arch > $c/compact.json" "$prep"
measure "cbfs export of the 20 archives compacted (each to /dev/null)" \
  "for a in $p/arch/00[01]*.cbfs $p/arch/0020.cbfs; do $cbfs export -k $key \$a > /dev/null; done"
# The figures of the last compact run; compaction output is the same
# every run up to the new ids.
python3 - "$c/compact.json" "$dead" "$srcbytes" "$out/time.txt" <<'PY' | tee -a "$results"
import json, sys
r = json.load(open(sys.argv[1])); dead = int(sys.argv[2]); src = int(sys.argv[3])
freed = r['removed_bytes'] - sum(o['size'] for o in r['outputs'])
print(f"\ncompact: {len(r['picked'])} archives picked, {len(r['outputs'])} written, {len(r['removed'])} removed; "
      f"copied {r['copied_bytes']} member bytes; the disk holds {freed} bytes less = "
      f"{100 * freed / dead:.1f}% of the {dead} dead bytes gc reported (the 20 sources were {src} bytes).")
PY
"$cbfs" index rebuild -k "$key" --force -o "$c/rebuilt.index" "$c/run/arch" 2>/dev/null
if cmp -s "$c/rebuilt.index" "$c/run/fs.index"; then
  echo "A rebuild from the compacted set is byte-identical to the maintained index." | tee -a "$results"
else
  echo "A rebuild from the compacted set DIFFERS from the maintained index." | tee -a "$results"
fi
