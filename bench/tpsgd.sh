#!/bin/bash
# tpSGD beside bp, drtp and the shallow baseline (only the output layer
# learns: examples/shallow) on one of the Fashion-MNIST examples, run by
# hand (ALGORITHMS.md §4.9, issue 6):
#   mlp  examples/mlp-tpsgd.ini  784-256-256-10 tanh
#   cnn  examples/cnn-tpsgd.ini  conv5x5x32-pool-conv5x5x64-pool-fc128 tanh
#   rnn  examples/rnn-tpsgd.ini  Elman h128 over 28 rows, dense output
# Every row's Adam learning rate is chosen on a validation split (training
# images 50,000-59,999) from LRS, trained VAL_EPOCHS epochs; the chosen
# rate then trains on all 60k for EPOCHS epochs and is tested.  bce needs
# sigmoid units: its row (and a bp row beside it) use the same net with
# every hidden tanh replaced by a sigmoid.  For the rnn, extra rows vary
# the rule within its definition (targets on the last step only, the
# projection's scale and distribution).  s/epoch is the 1-thread median
# over the EPOCHS epochs of the final run; run nothing else meanwhile.
# usage: bench/tpsgd.sh [OUTDIR] [--model mlp|cnn|rnn] [--epochs N]
#                       [--val-epochs N] [--lrs 1e-4,3e-4,1e-3,3e-3] [--rows LIST]
# PLAST as bench/run.sh (default: the build's examples/plast).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")
OUT="" MODEL=mlp E=5 VE=2 LRS=0.0001,0.0003,0.001,0.003 ROWS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL=$2; shift ;;
    --epochs) E=$2; shift ;;
    --val-epochs) VE=$2; shift ;;
    --lrs) LRS=$2; shift ;;
    --rows) ROWS=$2; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) OUT=$1 ;;
  esac; shift
done
case $MODEL in mlp|cnn|rnn) ;; *) echo "--model: expected mlp, cnn or rnn, found '$MODEL'" >&2; exit 2 ;; esac
OUT=${OUT:-$HERE/results/tpsgd-$MODEL-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PLAST=${PLAST:-$TOP/examples/plast}
[ -x "$PLAST" ] || { echo "no plast binary: build first or set PLAST" >&2; exit 1; }
BUILD=$(dirname "$(dirname "$PLAST")")
export PLAST_PLUGIN_PATH="$BUILD/plugins/.libs:$OUT" PLAST_PLUGIN_SYSTEM_PATH=
cc -shared -fPIC -I"$TOP/include" -o "$OUT/shallow.so" "$TOP/examples/shallow/shallow.c" \
  -L"$BUILD/libcore/.libs" -lplast || exit 1
INI=$TOP/examples/$MODEL-tpsgd.ini
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  model: $MODEL  epochs: $E  validation epochs: $VE  lrs: $LRS"
  grep -m1 "model name" /proc/cpuinfo
  echo "plast: $("$PLAST" --version | head -n1) git $(git -C "$TOP" rev-parse --short HEAD)"
} > "$OUT/env.txt"

# The hidden activations' layer names, for the sigmoid variant.
SIGMOID=()
for a in $(sed -n 's/^\[layer\.\(.*\)\]$/\1/p' "$INI"); do
  if awk -v s="[layer.$a]" '$0==s{f=1;next} /^\[/{f=0} f && /^type *= *tanh/{ok=1} END{exit !ok}' "$INI"; then
    SIGMOID+=(--set "layer.$a.type=sigmoid")
  fi
done

# ROW NAME|DESCRIPTION|ARGS...: the rows of the table.
rows() {
  echo "tpsgd_mse|tpsgd, mse|--rule tpsgd --set rule.tpsgd.local_loss=mse"
  echo "tpsgd_l1|tpsgd, l1|--rule tpsgd --set rule.tpsgd.local_loss=l1"
  echo "tpsgd_linear|tpsgd, linear (= drtp's signal)|--rule tpsgd --set rule.tpsgd.local_loss=linear"
  [ "$MODEL" != rnn ] &&
    echo "tpsgd_bce_sigmoid|tpsgd, bce (sigmoid units)|--rule tpsgd --set rule.tpsgd.local_loss=bce ${SIGMOID[*]}"
  # wider targets (tanh: 0 +- 1 at proj_scale 2), on every model
  for l in mse l1; do
    echo "tpsgd_${l}_scale2|tpsgd, $l, proj_scale 2|--rule tpsgd --set rule.tpsgd.local_loss=$l --set rule.tpsgd.proj_scale=2"
  done
  if [ "$MODEL" = rnn ]; then
    echo "tpsgd_mse_last|tpsgd, mse, targets on the last step only|--rule tpsgd --set rule.tpsgd.local_loss=mse --set rule.tpsgd.rnn_target_steps=last"
    echo "tpsgd_mse_last_scale2|tpsgd, mse, last step only, proj_scale 2|--rule tpsgd --set rule.tpsgd.local_loss=mse --set rule.tpsgd.rnn_target_steps=last --set rule.tpsgd.proj_scale=2"
    echo "tpsgd_mse_he|tpsgd, mse, he_uniform targets|--rule tpsgd --set rule.tpsgd.local_loss=mse --set rule.tpsgd.proj_dist=he_uniform"
    for s in 0.25 0.5 4; do
      echo "tpsgd_mse_scale$s|tpsgd, mse, proj_scale $s|--rule tpsgd --set rule.tpsgd.local_loss=mse --set rule.tpsgd.proj_scale=$s"
    done
    echo "tpsgd_l1_scale4|tpsgd, l1, proj_scale 4|--rule tpsgd --set rule.tpsgd.local_loss=l1 --set rule.tpsgd.proj_scale=4"
  else
    echo "drtp|drtp|--rule drtp"
  fi
  echo "bp|bp$([ "$MODEL" = rnn ] && echo " (BPTT)")|--rule bp"
  [ "$MODEL" != rnn ] && echo "bp_sigmoid|bp (sigmoid units)|--rule bp ${SIGMOID[*]}"
  echo "shallow|shallow (output layer only)|--rule shallow"
  [ "$MODEL" != rnn ] && echo "shallow_sigmoid|shallow (sigmoid units)|--rule shallow ${SIGMOID[*]}"
}

run() { # NAME EPOCHS ARGS...
  local name=$1 ep=$2; shift 2
  echo "[$(date -u +%H:%M:%S)] $name" >&2
  "$PLAST" train "$INI" --progress=none --epochs "$ep" --log "$OUT/$name.jsonl" "$@" \
    < /dev/null > /dev/null 2> "$OUT/$name.err" || echo "$name FAILED: $(tail -n1 "$OUT/$name.err")" >&2
}
field() { sed -n "s/.*\"type\":\"$2\".*\"$3\":\([0-9.]*\).*/\1/p" "$1" | tail -n1; }

{
  echo "| run | Adam lr (chosen on validation) | validation acc % | test acc % | s/epoch (median of $E) |"
  echo "|---|---|---|---|---|"
} > "$OUT/table.md"
rows | while IFS='|' read -r name desc args; do
  [ -n "$ROWS" ] && [[ ",$ROWS," != *",$name,"* ]] && continue
  best="" bestv=-1
  for lr in ${LRS//,/ }; do
    # shellcheck disable=SC2086 # args is a word list by design
    run "val_${name}_$lr" "$VE" $args --set optimizer.lr=$lr \
      --set data.validation=10000 --set data.test_images= --set data.test_labels=
    v=$(field "$OUT/val_${name}_$lr.jsonl" epoch val_acc)
    if awk "BEGIN{exit !(${v:-0} > $bestv)}"; then best=$lr bestv=${v:-0}; fi
  done
  # shellcheck disable=SC2086
  run "final_$name" "$E" $args --set optimizer.lr=$best
  f=$OUT/final_$name.jsonl
  acc=$(field "$f" summary final_test_acc) s=$(field "$f" summary epoch_s_median)
  printf '| %s | %s | %.2f | %.2f | %.2f |\n' "$desc" "$best" "$(awk "BEGIN{print 100*$bestv}")" \
    "$(awk "BEGIN{print 100*${acc:-0}}")" "${s:-0}" >> "$OUT/table.md"
done
cat "$OUT/table.md"
