#!/usr/bin/env bash
# hf_export.sh HOKUSAI SOURCE_DIR WORKDIR [RANKS]
# `hokusai export` checked by an independent reader (tests/ckpt/hf_reference.py, numpy only):
# the exported directory's logits for a prompt equal hokusai's own (`generate --logits`):
#   gpt2 tied (configs/tiny.yaml), gpt2 untied, llama untied (configs/llama-tiny.yaml), llama
#   tied and llama with grouped-query attention (8 query heads on 2 key/value heads): fp32 within 1e-5; bf16 and fp16 within 5e-3 and 1e-3 (rounding the weights to 8 and 11
#   significant bits: about 5x what the small models show, 1e-3 and 2.4e-4); sharded
#   (a 1 MB shard limit: model-0000k-of-0000n + index) within 1e-5;
# with RANKS=8, a tp 2 x pp 2 x dp 2 run exported straight from its shards, against the logits of
# its merged checkpoint, and `train --init-from` that export in tp 2 x pp 2 x dp 2 reproduces the
# serial --init-from run's losses. Import (`hokusai import`) of every fp32 export (single file and
# sharded) gives back the exact logits (bit for bit), and the validation loss of the model
# started from the export or the import (`train --init-from ... --eval-only`) is the exporting
# run's at its last step, bit for bit (and that run's metrics.jsonl to its 6 decimals). Damaged or
# mismatched inputs are one line naming the file, the tensor and the shapes.
set -euo pipefail
hokusai=$1; src=$2; work=$3; ranks=${4:-1}
fail() { echo "hf_export.sh: FAIL: $*" >&2; exit 1; }
py=$(command -v /usr/bin/python3 || command -v python3)
"$py" -c "import numpy" 2> /dev/null || { echo "hf_export.sh: SKIP: python3-numpy missing (scripts/install-deps.sh)"; exit 77; }
rm -rf "$work"; mkdir -p "$work"
prompt="In the beginning God created the heaven and the earth."
common=(--set train.steps=4 --set logging.interval=1 --set logging.eval_interval=0 --set logging.eval_batches=1
        --set data.cache_dir="$work/cache" --set kernels.peak_gflops=100 --set train.seq_len=64)
check() {  # RUN TAG EXPORT_OPTS... -- TOLERANCE
  local run=$1 tag=$2; shift 2
  local opts=() tol
  while [ "$1" != -- ]; do opts+=("$1"); shift; done
  tol=$2
  local out=$work/export-$(basename "$run")-$tag
  "$hokusai" export "$run" "$out" "${opts[@]}" > "$out.log" 2>&1 || fail "export of $run failed: $(tail -2 "$out.log")"
  "$py" "$src/tests/ckpt/hf_reference.py" "$out" "$work/$(basename "$run").logits" "$tol" || fail "$run ${opts[*]}"
}
logits() {  # RUN [SERIAL_RUN]: hokusai's logits of the prompt
  "$hokusai" generate "${2:-$1}" --prompt "$prompt" --logits "$work/$(basename "$1").logits" ||
    fail "generate --logits of $1"
}
if [ "$ranks" = 1 ]; then
  for case in "gpt2-tied tiny" "gpt2-untied tiny model.tie_embeddings=false" "llama-untied llama-tiny" \
              "llama-tied llama-tiny model.tie_embeddings=true" "llama-gqa llama-tiny model.kv_heads=2"; do
    set -- $case
    name=$1 config=$2 extra=()
    for kv in "${@:3}"; do extra+=(--set "$kv"); done
    "$hokusai" train "$src/configs/$config.yaml" "${common[@]}" ${extra[@]+"${extra[@]}"} --set logging.run_dir="$work/$name" \
      > "$work/$name.train.log" 2>&1 || fail "training $name: $(tail -2 "$work/$name.train.log")"
    logits "$work/$name"
    check "$work/$name" fp32 -- 1e-5
    check "$work/$name" bf16 --dtype bf16 -- 5e-3
    check "$work/$name" fp16 --dtype fp16 -- 1e-3
    check "$work/$name" sharded --max-shard-size 0.001 -- 1e-5
    ls "$work/export-$name-sharded"/model-00001-of-*.safetensors > /dev/null || fail "$name: no shards at a 1 MB limit"
    for kind in fp32 sharded; do  # import: the model from config.json, the exact weights back
      "$hokusai" import "$work/export-$name-$kind" "$work/import-$name-$kind" > /dev/null || fail "import $name $kind"
      "$hokusai" generate "$work/import-$name-$kind" --prompt "$prompt" --logits "$work/import-$name-$kind.logits" ||
        fail "generate --logits of the imported $name $kind"
      cmp -s "$work/$name.logits" "$work/import-$name-$kind.logits" || fail "$name $kind: imported logits differ from the original's"
    done
    # The validation loss of the exported and of the re-imported model: the exporting run's, exactly.
    val_of() {  # WEIGHTS: the eval-only line's val_loss (every digit)
      "$hokusai" train "$src/configs/$config.yaml" "${common[@]}" ${extra[@]+"${extra[@]}"} --init-from "$1" --eval-only \
        --set logging.run_dir="$work/eval-$name" > "$work/eval.log" 2>&1 || fail "--eval-only from $1: $(tail -1 "$work/eval.log")"
      sed -n 's/.*eval only: step 0 val_loss \([^ ]*\) .*/\1/p' "$work/eval.log"
    }
    own=$(val_of "$work/$name") exported=$(val_of "$work/export-$name-fp32") imported=$(val_of "$work/import-$name-fp32")
    logged=$(sed -n 's/.*"val_loss":\([0-9.]*\)}.*/\1/p' "$work/$name/metrics.jsonl" | tail -1)
    echo "hf_export.sh: $name val_loss: run $logged, its checkpoint $own, export $exported, import $imported"
    [ -n "$own" ] && [ "$own" = "$exported" ] && [ "$own" = "$imported" ] || fail "$name: validation losses differ"
    [ "$(printf '%.6f' "$own")" = "$logged" ] || fail "$name: eval-only $own is not the run's logged $logged"
  done
  one_line() {  # EXPECTED COMMAND...: fails with one line containing EXPECTED
    "${@:2}" > /dev/null 2> "$work/err" && fail "accepted: ${*:2}"
    [ "$(wc -l < "$work/err")" = 1 ] && grep -qF -- "$1" "$work/err" || fail "expected one line with '$1', got: $(cat "$work/err")"
  }
  g=$work/export-gpt2-tied-fp32
  one_line "config.json: a gpt2 model, but model.family is llama" "$hokusai" import "$g" "$work/x" --config "$src/configs/llama-tiny.yaml"
  one_line "tensor transformer.wte.weight has shape [257, 256], expected [257, 128]" \
    "$hokusai" import "$g" "$work/x" --config "$src/configs/tiny.yaml" --set model.hidden=128
  one_line "no tensor transformer.h.4.ln_1.weight (expected [256]" \
    "$hokusai" import "$g" "$work/x" --config "$src/configs/tiny.yaml" --set model.layers=5
  one_line "transformer.h.3.attn.c_attn.bias has no place in the model" \
    "$hokusai" import "$g" "$work/x" --config "$src/configs/tiny.yaml" --set model.layers=3
  # Damaged exports: the independent reader and hokusai's own reader refuse them.
  cp -r "$work/export-gpt2-tied-fp32" "$work/bad"
  head -c 1000 "$work/export-gpt2-tied-fp32/model.safetensors" > "$work/bad/model.safetensors"
  "$py" "$src/tests/ckpt/hf_reference.py" "$work/bad" "$work/gpt2-tied.logits" 1e-5 2> "$work/bad.err" &&
    fail "a truncated model.safetensors was read"
  grep -q "runs past the end of the file" "$work/bad.err" || fail "truncated file: $(cat "$work/bad.err")"
  one_line "$work/bad/model.safetensors" "$hokusai" import "$work/bad" "$work/x"
  "$hokusai" export "$work/nonexistent" "$work/out" 2> "$work/bad2.err" && fail "exporting a missing run succeeded"
  [ "$(wc -l < "$work/bad2.err")" = 1 ] && grep -q "nonexistent" "$work/bad2.err" || fail "not one line naming the path: $(cat "$work/bad2.err")"
else
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  mpirun --oversubscribe -np 8 -x OMP_NUM_THREADS=1 "$hokusai" train "$src/configs/tiny.yaml" "${common[@]}" \
    --set parallel.tp=2 --set parallel.pp=2 --set parallel.dp=2 --set logging.run_dir="$work/tp2pp2dp2" \
    > "$work/tp2pp2dp2.train.log" 2>&1 || fail "training tp2 pp2 dp2: $(tail -2 "$work/tp2pp2dp2.train.log")"
  "$hokusai" merge "$work/tp2pp2dp2" "$work/merged" > /dev/null || fail "merge"
  logits "$work/tp2pp2dp2" "$work/merged"
  check "$work/tp2pp2dp2" fp32 -- 1e-5
  [ ! -e "$work/export-tp2pp2dp2-fp32/.merge" ] || fail "the export left its merge directory behind"
  # Continued pretraining from the export: serial and tp 2 x pp 2 x dp 2 start from the same model.
  init=(--init-from "$work/export-tp2pp2dp2-fp32" --set train.steps=3)
  "$hokusai" train "$src/configs/tiny.yaml" "${common[@]}" "${init[@]}" --set logging.run_dir="$work/init-serial" \
    > "$work/init-serial.log" 2>&1 || fail "--init-from, serial: $(tail -2 "$work/init-serial.log")"
  mpirun --oversubscribe -np 8 -x OMP_NUM_THREADS=1 "$hokusai" train "$src/configs/tiny.yaml" "${common[@]}" "${init[@]}" \
    --set parallel.tp=2 --set parallel.pp=2 --set parallel.dp=2 --set logging.run_dir="$work/init-3d" \
    > "$work/init-3d.log" 2>&1 || fail "--init-from, tp2 pp2 dp2: $(tail -2 "$work/init-3d.log")"
  "$py" - "$work/init-serial/metrics.jsonl" "$work/init-3d/metrics.jsonl" "$work/tp2pp2dp2/metrics.jsonl" <<'PY' || fail "--init-from losses"
import json, sys
loss = lambda f: [json.loads(l)["loss"] for l in open(f) if '"loss"' in l]
a, b, trained = loss(sys.argv[1]), loss(sys.argv[2]), loss(sys.argv[3])
print(f"hf_export.sh: --init-from losses serial {a}, tp2 pp2 dp2 {b}")
assert len(a) == 3 and len(b) == 3, "3 steps each"
assert all(abs(x - y) <= 1e-5 * abs(x) for x, y in zip(a, b)), "the layouts start from different models"
assert a[0] < trained[0], "the first loss is not below a fresh model's: the weights were not loaded"
PY
  # Grouped-query llama: each rank of tp 2 x pp 2 x dp 2 reads its slices of the export (k/v rows
  # of its key/value heads); the validation loss is the serial one's.
  gqa=(--set model.kv_heads=2 --set train.micro_batch=8 --set logging.eval_batches=2)
  "$hokusai" train "$src/configs/llama-tiny.yaml" "${common[@]}" "${gqa[@]}" --set logging.run_dir="$work/gqa" \
    > "$work/gqa.train.log" 2>&1 || fail "training llama-gqa: $(tail -2 "$work/gqa.train.log")"
  "$hokusai" export "$work/gqa" "$work/gqa-hf" > /dev/null || fail "export llama-gqa"
  "$hokusai" train "$src/configs/llama-tiny.yaml" "${common[@]}" "${gqa[@]}" --init-from "$work/gqa-hf" --eval-only \
    --set logging.run_dir="$work/gqa-eval1" > "$work/gqa-eval1.log" 2>&1 || fail "--eval-only serial: $(tail -1 "$work/gqa-eval1.log")"
  mpirun --oversubscribe -np 8 -x OMP_NUM_THREADS=1 "$hokusai" train "$src/configs/llama-tiny.yaml" "${common[@]}" \
    "${gqa[@]}" --init-from "$work/gqa-hf" --eval-only --set parallel.tp=2 --set parallel.pp=2 --set parallel.dp=2 \
    --set logging.run_dir="$work/gqa-eval8" > "$work/gqa-eval8.log" 2>&1 || fail "--eval-only 8 ranks: $(tail -1 "$work/gqa-eval8.log")"
  v1=$(sed -n 's/.*eval only: step 0 val_loss \([^ ]*\) .*/\1/p' "$work/gqa-eval1.log")
  v8=$(sed -n 's/.*eval only: step 0 val_loss \([^ ]*\) .*/\1/p' "$work/gqa-eval8.log")
  echo "hf_export.sh: llama-gqa export --eval-only: serial $v1, tp2 pp2 dp2 $v8"
  awk -v a="$v1" -v b="$v8" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= 1e-6 * a) }' ||
    fail "llama-gqa: the 8-rank validation loss $v8 is not the serial $v1"
fi
echo "hf_export.sh: PASS"
