#!/bin/bash
# plast benchmarks for the foundation issue, run by hand (not in CI):
#   1. accuracy: examples/mlp-bp.ini and examples/mlp-drtp.ini, 10 epochs
#   2. memory at batch 1024: the tracker's activations+input peak beside the
#      analytic count (bench/memcount.py) for bp and drtp
#   3. speed: plast's MLP epoch beside PyTorch's mlp_sgd_b128_t1_best row of
#      ../shared/baselines/run.sh, 1 thread, in the same run
# usage: bench/run.sh [OUTDIR] [--quick] [--no-torch]
#   PLAST  plast binary (default: the build tree's examples/plast)
#   BASELINES  folder of the PyTorch baselines (default: ../shared/baselines)
# Writes OUTDIR/report.md (and every run's JSONL); prints the report.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")
OUT="" QUICK="" TORCH=1
for a in "$@"; do
  case "$a" in
    --quick) QUICK=1 ;;
    --no-torch) TORCH="" ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) echo "unknown option $a" >&2; exit 2 ;;
    *) OUT=$a ;;
  esac
done
OUT=${OUT:-$HERE/results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT/plast"
OUT=$(cd "$OUT" && pwd)
PLAST=${PLAST:-$TOP/examples/plast}
[ -x "$PLAST" ] || PLAST=$TOP/build/examples/plast
[ -x "$PLAST" ] || { echo "no plast binary: build first or set PLAST" >&2; exit 1; }
if [ -z "${PLAST_PLUGIN_PATH:-}" ]; then
  export PLAST_PLUGIN_PATH=$(dirname "$(dirname "$PLAST")")/plugins/.libs
  export PLAST_PLUGIN_SYSTEM_PATH=
fi
BASELINES=${BASELINES:-$(dirname "$TOP")/shared/baselines}
PY=/usr/bin/python3
EPOCHS=10; [ -n "$QUICK" ] && EPOCHS=1
TIMEV=(); [ -x /usr/bin/time ] && TIMEV=(/usr/bin/time -v -o)
ts() { date -u +%H:%M:%S; }

run_plast() { # NAME INI ARGS...
  local name=$1 ini=$2; shift 2
  echo "[$(ts)] plast $name" >&2
  if [ ${#TIMEV[@]} -gt 0 ]; then
    "${TIMEV[@]}" "$OUT/plast/$name.time" "$PLAST" train "$ini" --progress=none \
      --log "$OUT/plast/$name.jsonl" "$@" > "$OUT/plast/$name.out" 2> "$OUT/plast/$name.err"
  else
    "$PLAST" train "$ini" --progress=none --log "$OUT/plast/$name.jsonl" "$@" \
      > "$OUT/plast/$name.out" 2> "$OUT/plast/$name.err"
  fi || echo "[$(ts)] $name FAILED: $(tail -n1 "$OUT/plast/$name.err")" >&2
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  grep -m1 "model name" /proc/cpuinfo
  echo "nproc: $(nproc)"
  echo "plast: $("$PLAST" --version | head -n1) ($PLAST)"
  echo "git: $(git -C "$TOP" rev-parse --short HEAD 2>/dev/null)"
} > "$OUT/env.txt"

# 1. accuracy bars (the examples' own settings and seed)
run_plast bp_mlp_tanh_ce_nag5e-2_b128_t1_s0 "$TOP/examples/mlp-bp.ini" --epochs $EPOCHS
run_plast drtp_mlp_tanh_ce_nag1e-2_b128_t1_s0 "$TOP/examples/mlp-drtp.ini" --epochs $EPOCHS

# 2. memory at batch 1024 (a few batches are enough: the peak repeats)
for rule in bp drtp; do
  run_plast mem_${rule}_b1024 "$TOP/examples/mlp-bp.ini" --rule $rule --epochs 1 \
    --set run.batch=1024 --set run.max_batches=4
done
$PY "$HERE/memcount.py" "$TOP/examples/mlp-bp.ini" 1024 > "$OUT/memcount.json"

# 3. speed beside PyTorch, 1 thread, same run
if [ -n "$TORCH" ] && [ -x "$BASELINES/run.sh" ]; then
  PLAST="$PLAST" PLAST_ROWS_QUICK="$QUICK" PLAST_BENCH="$HERE/plast-rows.sh" "$BASELINES/run.sh" "$OUT/baselines" --only best,plast \
    ${QUICK:+--quick} >&2
fi

$PY "$HERE/report.py" "$OUT" > "$OUT/report.md"
cat "$OUT/report.md"
