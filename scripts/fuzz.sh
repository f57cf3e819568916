#!/usr/bin/env bash
# Fuzzes every reader of outside input with libFuzzer under AddressSanitizer and UBSan: the YAML
# config and --set overrides, Megatron .idx/.bin, the GPT sample-index cache, checkpoints
# (state.bin, `latest`) and safetensors (targets in tests/fuzz/, built as build/fuzz with clang).
#
# Usage: scripts/fuzz.sh [--time SECONDS] [--no-build] [--build-only] [--seeds] [TARGET...]
#   TARGET       config indexed_dataset sample_index checkpoint safetensors (default: all)
#   --time S     fuzz each target for S seconds (default 60); 0 replays the corpus and the
#                regression inputs only
#   --seeds      rewrite the committed seed corpora (tests/fuzz/corpus/) and the config dictionary
#   --build-only / --no-build   only build, or do not build (the ctests fuzz_* build once)
#
# Each target first replays tests/fuzz/regressions/<target>/ (every input a crash once found),
# then fuzzes from tests/fuzz/corpus/<target>/ into build/fuzz/corpus/<target>/ (the committed
# seeds are not modified). A crash, leak, timeout (10 s) or allocation above 512 MB stops it:
# the input is written to build/fuzz/artifacts/<target>/ and the script exits 1. Fix the reader,
# then copy that input into tests/fuzz/regressions/<target>/ so it stays fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
all=(config indexed_dataset sample_index checkpoint safetensors)
seconds=60
build=1
build_only=0
seeds=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --time) seconds=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --build-only) build_only=1; shift ;;
    --seeds) seeds=1; shift ;;
    -*) echo "fuzz.sh: unknown option '$1' (see the header of $0)" >&2; exit 2 ;;
    *)
      if [[ " ${all[*]} " != *" $1 "* ]]; then
        echo "fuzz.sh: unknown target '$1' (expected one of: ${all[*]})" >&2; exit 2
      fi
      targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

if [ $build = 1 ]; then
  scripts/install-deps.sh --fuzz
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz -j "$(nproc)"
fi
[ $build_only = 1 ] && exit 0
bin=build/fuzz/tests/fuzz
for t in "${targets[@]}"; do
  if [ ! -x "$bin/fuzz_$t" ]; then
    echo "fuzz.sh: $bin/fuzz_$t is missing: run scripts/fuzz.sh without --no-build" >&2; exit 1
  fi
done

if [ $seeds = 1 ]; then
  rm -rf tests/fuzz/corpus
  "$bin/fuzz_seeds" tests/fuzz/corpus
  mkdir -p tests/fuzz/corpus/config
  for f in configs/*.yaml tests/config/*.yaml; do cp "$f" "tests/fuzz/corpus/config/$(basename "$f")"; done
  printf 'train:\n  steps: 3\n%%%%\nparallel.dp=2\ntrain.global_batch=32\nmodel.family=llama\n' \
    > tests/fuzz/corpus/config/with_overrides
  "$bin/fuzz_seeds" --dictionary > tests/fuzz/config.dict
fi

# Leaks are findings; the readers must refuse a huge size before allocating it.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in "${targets[@]}"; do
  work=build/fuzz/corpus/$t
  artifacts=build/fuzz/artifacts/$t/
  mkdir -p "$work" "$artifacts"
  log=build/fuzz/$t.log
  # The harnesses' scratch files go under a directory of ours, emptied after: libFuzzer ends a
  # time-limited run without the harness's exit handlers, which left a directory per run in /tmp.
  scratch=$PWD/build/fuzz/tmp/$t
  rm -rf "$scratch"; mkdir -p "$scratch"
  export TMPDIR=$scratch
  opts=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 -artifact_prefix="$artifacts")
  [ "$t" = config ] && opts+=(-dict=tests/fuzz/config.dict)
  regressions=(tests/fuzz/regressions/"$t"/*)
  if [ -e "${regressions[0]}" ]; then
    if ! "$bin/fuzz_$t" "${opts[@]}" "${regressions[@]}" >"$log" 2>&1; then
      echo "fuzz_$t: a regression input fails again:"; grep -E "ERROR|FINDING|SUMMARY|Running:" "$log" | tail -5
      status=1; continue
    fi
  fi
  # (libFuzzer's -max_total_time=0 means no limit: --time 0 runs the corpus once instead)
  budget=(-max_total_time="$seconds")
  [ "$seconds" = 0 ] && budget=(-runs=0)
  if "$bin/fuzz_$t" "${opts[@]}" "${budget[@]}" -print_final_stats=1 "$work" "tests/fuzz/corpus/$t" \
      >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz_$t: ${runs:-0} executions in ${seconds} s, no crash, leak or timeout ($(ls "$work" | wc -l) inputs in $work)"
  else
    echo "fuzz_$t: FAILED — see $log; the input is in $artifacts"
    grep -E "FINDING|ERROR: |SUMMARY|Test unit written" "$log" | head -8
    status=1
  fi
  rm -rf "$scratch"
done
exit $status
