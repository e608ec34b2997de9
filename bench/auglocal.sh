#!/bin/bash
# AugLocal on ResNet-20 for Fashion-MNIST (net N1, ALGORITHMS.md §6.7),
# run by hand: bp, AugLocal d = 2 with pyramidal depth, greedy local
# learning (aux_depth = 0) and, with --all, AugLocal d = 1 and d = 3, all
# from the same seed for E epochs (warm-up over the first quarter epoch,
# then cosine), then a markdown table: test accuracy, gap to bp, the
# tracker's activation+input peak at batch 256 (2 batches of a separate
# run), parameter, gradient and optimizer bytes, training seconds.
# usage: bench/auglocal.sh EPOCHS [OUTDIR] [--all] [--max-batches N]
#   EPOCHS at most 10; --max-batches limits every epoch (smoke tests).
#   PLAST names the plast binary (default: the build tree's).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")
E="" OUT="" ALL=0 MAXB=0
while [ $# -gt 0 ]; do
  case "$1" in
    --all) ALL=1 ;;
    --max-batches) MAXB=$2; shift ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) if [ -z "$E" ]; then E=$1; else OUT=$1; fi ;;
  esac; shift
done
case "$E" in
  ''|*[!0-9]*) echo "usage: bench/auglocal.sh EPOCHS [OUTDIR] [--all] [--max-batches N]" >&2
               exit 2 ;;
esac
if [ "$E" -lt 1 ] || [ "$E" -gt 10 ]; then
  echo "bench/auglocal.sh: EPOCHS must be 1 to 10, found $E" >&2; exit 2
fi
OUT=${OUT:-$HERE/results/auglocal-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PLAST=${PLAST:-$TOP/examples/plast}
BUILD=$(dirname "$(dirname "$PLAST")")
export PLAST_PLUGIN_PATH="$BUILD/plugins/.libs" PLAST_PLUGIN_SYSTEM_PATH=
INI=$TOP/examples/resnet20-auglocal.ini

# name and plast options of each run
NAMES=(bp auglocal_d2 greedy)
OPTS=("--rule bp" "" "--set rule.auglocal.aux_depth=0")
if [ $ALL = 1 ]; then
  NAMES+=(auglocal_d1 auglocal_d3)
  OPTS+=("--set rule.auglocal.aux_depth=1" "--set rule.auglocal.aux_depth=3")
fi

run() { # NAME LOG ARGS...
  local name=$1 log=$2; shift 2
  echo "[$(date -u +%H:%M:%S)] $name" >&2
  "$PLAST" train "$INI" --progress=none --seed 0 --log "$log" "$@" \
    > /dev/null 2> "$OUT/$name.err" || echo "$name FAILED: $(tail -n1 "$OUT/$name.err")" >&2
}
# value of "KEY":NUMBER in the last record of TYPE in a log
field() { grep "\"type\":\"$2\"" "$1" | tail -n1 | sed -n "s/.*\"$3\":\([0-9.e+-]*\).*/\1/p"; }
mib() { awk "BEGIN{printf \"%.2f\", ${1:-0}/1048576}"; }

for i in "${!NAMES[@]}"; do
  n=${NAMES[$i]}
  # shellcheck disable=SC2086
  run "$n" "$OUT/$n.jsonl" --epochs "$E" --set optimizer.warmup=0.25 \
    --set run.max_batches="$MAXB" ${OPTS[$i]}
  # shellcheck disable=SC2086
  run "${n}_mem256" "$OUT/${n}_mem256.jsonl" --epochs 1 --set run.batch=256 \
    --set run.max_batches=2 --set data.test_images= --set data.test_labels= ${OPTS[$i]}
done

bp_acc=$(field "$OUT/bp.jsonl" summary final_test_acc)
{
  echo "| run | test acc % | gap to bp (points) | act+input peak, batch 256 (MiB) | weights (MiB) | gradients (MiB) | optimizer (MiB) | parameters primary + aux | train s |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for n in "${NAMES[@]}"; do
    log=$OUT/$n.jsonl mem=$OUT/${n}_mem256.jsonl
    acc=$(field "$log" summary final_test_acc)
    secs=$(grep '"type":"epoch"' "$log" | sed -n 's/.*"train_s":\([0-9.e+-]*\).*/\1/p' |
           awk '{s += $1} END {printf "%.1f", s}')
    printf '| %s | %.2f | %+.2f | %s | %s | %s | %s | %s + %s | %s |\n' "$n" \
      "$(awk "BEGIN{print 100*${acc:-0}}")" "$(awk "BEGIN{print 100*(${acc:-0}-${bp_acc:-0})}")" \
      "$(mib "$(field "$mem" epoch 'activations+input')")" "$(mib "$(field "$mem" epoch weights)")" \
      "$(mib "$(field "$mem" epoch gradients)")" "$(mib "$(field "$mem" epoch optimizer)")" \
      "$(field "$log" meta params_primary)" "$(field "$log" meta params_aux)" "$secs"
  done
} > "$OUT/table.md"
cat "$OUT/table.md"
