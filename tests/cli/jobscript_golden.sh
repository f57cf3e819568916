#!/usr/bin/env bash
# jobscript_golden.sh HOKUSAI SOURCE_DIR WORKDIR [--write]
# `hokusai jobscript` against recorded scripts (tests/golden/jobscripts/): the Fugaku-LLM 13B
# recipe as a PJM job on 13,824 nodes (48x6x48 torus; the script, the first lines of the
# --vcoordfile, its line count and checksum) and as a Slurm job on 64 nodes; the tiny config with
# the mpirun launcher. Paths of this checkout and of WORKDIR are replaced by @SRC@ and @WORK@.
# --write records the current output instead (review the diff before committing it).
set -euo pipefail
hokusai=$(cd "$(dirname "$1")" && pwd)/$(basename "$1"); src=$2; work=$3; write=${4:-}
golden=$src/tests/golden/jobscripts
rm -rf "$work"; mkdir -p "$work"
work=$(cd "$work" && pwd)
cd "$src"
normalise() { sed -e "s|$work|@WORK@|g" -e "s|$src|@SRC@|g" "$1"; }
gen() {  # NAME ARGS...
  local name=$1; shift
  "$hokusai" jobscript "$@" --hokusai /opt/hokusai/bin/hokusai --no-create -o "$work/$name.sh" 2> "$work/$name.err" ||
    { echo "jobscript_golden.sh: FAIL: $name: $(cat "$work/$name.err")" >&2; exit 1; }
  normalise "$work/$name.sh" > "$work/$name.out"
  if [ -e "$work/$name.vcoord" ]; then
    { head -n 24 "$work/$name.vcoord"; echo "... $(wc -l < "$work/$name.vcoord") lines, sha256 $(sha256sum < "$work/$name.vcoord" | cut -c1-64)"; } \
      > "$work/$name.vcoord.out"
  fi
}
gen fugaku-llm-13b-pjm configs/fugaku-llm-13b.yaml --scheduler pjm --nodes 13824 --time 24:00:00 --rscgrp large \
  --group hp000000 --gfscache /vol0004:/vol0005 --run-dir /vol0004/hp000000/runs/fugaku-llm-13b
gen fugaku-llm-13b-slurm64 configs/fugaku-llm-13b.yaml --scheduler slurm --nodes 64 --ranks-per-node 2 \
  --threads-per-rank 32 --time 48:00:00 --partition compute --account llm \
  --set parallel.tp=2 --set parallel.pp=8 --set parallel.dp=8 --run-dir /scratch/llm/runs/fugaku-llm-13b-64
gen tiny-mpirun configs/tiny.yaml --nodes 2 --set parallel.dp=4 --launcher mpirun --time 0:30:00 --run-dir "$work/runs/tiny"
status=0
for f in "$work"/*.out; do
  name=$(basename "$f" .out)
  if [ "$write" = --write ]; then
    cp "$f" "$golden/$name"
    echo "jobscript_golden.sh: wrote $golden/$name"
  elif ! diff -u "$golden/$name" "$f"; then
    echo "jobscript_golden.sh: FAIL: $name differs from $golden/$name (regenerate with --write if intended)" >&2
    status=1
  fi
done
# Bad requests are one line naming the option.
if "$hokusai" jobscript configs/fugaku-llm-13b.yaml --nodes 1000 > /dev/null 2> "$work/bad.err"; then
  echo "jobscript_golden.sh: FAIL: 13,824 ranks on 1000 nodes accepted" >&2; status=1
fi
grep -q "^hokusai: config error: --nodes 1000: the config's 13824 ranks" "$work/bad.err" ||
  { echo "jobscript_golden.sh: FAIL: unexpected error: $(cat "$work/bad.err")" >&2; status=1; }
[ $status = 0 ] && echo "jobscript_golden.sh: PASS"
exit $status
