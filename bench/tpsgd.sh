#!/bin/bash
# tpSGD on the Fashion-MNIST MLP (784-256-256-10 tanh), run by hand:
# for each local loss a learning rate is chosen on a validation split
# (training images 50,000-59,999, ALGORITHMS.md §1.6) from {1e-4, 3e-4,
# 1e-3} (Adam), then trained on all 60k and tested; beside bp, drtp and the
# shallow baseline (only the output layer learns: examples/shallow).
# usage: bench/tpsgd.sh [OUTDIR] [--epochs N]      (PLAST as run.sh)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")
OUT="" E=5
while [ $# -gt 0 ]; do
  case "$1" in
    --epochs) E=$2; shift ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) OUT=$1 ;;
  esac; shift
done
OUT=${OUT:-$HERE/results/tpsgd-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PLAST=${PLAST:-$TOP/examples/plast}
BUILD=$(dirname "$(dirname "$PLAST")")
export PLAST_PLUGIN_PATH="$BUILD/plugins/.libs:$OUT" PLAST_PLUGIN_SYSTEM_PATH=
cc -shared -fPIC -I"$TOP/include" -o "$OUT/shallow.so" "$TOP/examples/shallow/shallow.c" \
  -L"$BUILD/libcore/.libs" -lplast || exit 1
INI=$TOP/examples/mlp-tpsgd.ini
run() { # NAME ARGS...
  local name=$1; shift
  echo "[$(date -u +%H:%M:%S)] $name" >&2
  "$PLAST" train "$INI" --progress=none --epochs "$E" --log "$OUT/$name.jsonl" "$@" \
    > /dev/null 2> "$OUT/$name.err" || echo "$name FAILED: $(tail -n1 "$OUT/$name.err")" >&2
}
acc() { sed -n 's/.*"type":"summary".*"final_test_acc":\([0-9.]*\).*/\1/p' "$1"; }
val() { grep '"type":"epoch"' "$1" | tail -n1 | sed -n 's/.*"val_acc":\([0-9.]*\).*/\1/p'; }
{
  echo "| rule | local loss | lr (chosen on validation) | validation acc % | test acc % | s/epoch |"
  echo "|---|---|---|---|---|---|"
} > "$OUT/table.md"
for loss in mse l1 linear; do
  best="" bestv=0
  for lr in 0.0001 0.0003 0.001; do
    run "val_${loss}_${lr}" --set rule.tpsgd.local_loss=$loss --set optimizer.lr=$lr \
      --set data.validation=10000 --set data.test_images= --set data.test_labels=
    v=$(val "$OUT/val_${loss}_${lr}.jsonl")
    if awk "BEGIN{exit !(${v:-0} > $bestv)}"; then best=$lr bestv=$v; fi
  done
  run "final_${loss}" --set rule.tpsgd.local_loss=$loss --set optimizer.lr=$best
  s=$(sed -n 's/.*"epoch_s_median":\([0-9.]*\).*/\1/p' "$OUT/final_${loss}.jsonl")
  printf '| tpsgd | %s | %s | %.2f | %.2f | %.2f |\n' $loss $best "$(awk "BEGIN{print 100*$bestv}")" \
    "$(awk "BEGIN{print 100*$(acc "$OUT/final_${loss}.jsonl")}")" "$s" >> "$OUT/table.md"
done
for r in bp drtp shallow; do
  case $r in
    bp) run ref_bp --rule bp --set optimizer.type=nesterov --set optimizer.lr=0.05 ;;
    drtp) run ref_drtp --rule drtp --set optimizer.type=nesterov --set optimizer.lr=0.01 \
            --set rule.drtp.hidden_reduce=sum ;;
    shallow) run ref_shallow --rule shallow --set optimizer.lr=0.001 ;;
  esac
  s=$(sed -n 's/.*"epoch_s_median":\([0-9.]*\).*/\1/p' "$OUT/ref_$r.jsonl")
  printf '| %s | - | example settings | - | %.2f | %.2f |\n' $r \
    "$(awk "BEGIN{print 100*$(acc "$OUT/ref_$r.jsonl")}")" "$s" >> "$OUT/table.md"
done
cat "$OUT/table.md"
