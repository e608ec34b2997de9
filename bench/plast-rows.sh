#!/bin/bash
# Called by ../shared/baselines/run.sh (PLAST_BENCH) with its plast folder
# as $1: plast's rows with the baselines' names, so summary.md lines them up.
set -u
OUTP=${1:?}
QUICK=${PLAST_ROWS_QUICK:-}
HERE=$(cd "$(dirname "$0")" && pwd)
: "${PLAST:?}"
E=5; [ -n "$QUICK" ] && E=1
/usr/bin/time -v -o "$OUTP/mlp_sgd_b128_t1.time" "$PLAST" train "$HERE/mlp-relu-sgd.ini" \
  --progress=none --epochs $E --threads 1 --log "$OUTP/mlp_sgd_b128_t1.jsonl" \
  > "$OUTP/mlp_sgd_b128_t1.out" 2> "$OUTP/mlp_sgd_b128_t1.err"
