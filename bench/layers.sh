#!/bin/bash
# Benchmarks of the layer issue, run by hand (not in CI):
#   accuracy: examples/cnn-bp.ini, rnn-bp.ini, cnn-drtp.ini, 5 epochs,
#             beside PyTorch's train_torch.py --model cnn|rnn --epochs 5
#   memory:   the CNN at batch 1024 under bp and drtp, the tracker's
#             activations+input peak beside bench/memcount.py
# usage: bench/layers.sh [OUTDIR] [--quick] [--epochs N]  (PLAST, BASELINES as run.sh)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")
OUT="" QUICK="" EPOCHS=5
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --epochs) EPOCHS=${2:?--epochs needs a number}; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) OUT=$1 ;;
  esac; shift
done
OUT=${OUT:-$HERE/results/layers-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT/plast" "$OUT/torch"
OUT=$(cd "$OUT" && pwd)
# shellcheck source=bench/common.sh
. "$HERE/common.sh"
E=$EPOCHS; MB=(); [ -n "$QUICK" ] && { E=1; MB=(--set run.max_batches=20); }
ts() { date -u +%H:%M:%S; }
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"; grep -m1 "model name" /proc/cpuinfo
  echo "plast: $("$PLAST" --version | head -n1) ($PLAST) git $(git -C "$TOP" rev-parse --short HEAD)"
} > "$OUT/env.txt"

plast_run() { # NAME INI ARGS...
  local name=$1 ini=$2; shift 2
  echo "[$(ts)] plast $name" >&2
  /usr/bin/time -v -o "$OUT/plast/$name.time" "$PLAST" train "$ini" --progress=none \
    --log "$OUT/plast/$name.jsonl" "$@" > "$OUT/plast/$name.out" 2> "$OUT/plast/$name.err" \
    || echo "[$(ts)] $name FAILED: $(tail -n1 "$OUT/plast/$name.err")" >&2
}
torch_run() { # NAME ARGS...
  local name=$1; shift
  echo "[$(ts)] torch $name" >&2
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE GLIBC_TUNABLES=$TUN /usr/bin/python3 \
    "$BASELINES/train_torch.py" "$@" ${QUICK:+--max-batches 20} > "$OUT/torch/$name.jsonl" \
    2> "$OUT/torch/$name.err" || echo "[$(ts)] $name FAILED" >&2
}

plast_run cnn_sgd_b128_t1 "$TOP/examples/cnn-bp.ini" --epochs $E "${MB[@]}"
plast_run rnn_adam_b128_t1 "$TOP/examples/rnn-bp.ini" --epochs $E "${MB[@]}"
plast_run drtp_cnn_tanh_adam_b128_t1 "$TOP/examples/cnn-drtp.ini" --epochs $E "${MB[@]}"
for rule in bp drtp; do
  plast_run mem_cnn_${rule}_b1024 "$TOP/examples/cnn-drtp.ini" --rule $rule --epochs 1 \
    --set run.batch=1024 --set run.max_batches=2
done
/usr/bin/python3 "$HERE/memcount.py" "$TOP/examples/cnn-drtp.ini" 1024 > "$OUT/memcount_cnn.json"
if [ -f "$BASELINES/train_torch.py" ]; then
  torch_run cnn_sgd_b128_t1_best --model cnn --optim sgd --lr 0.1 --batch 128 --threads 1 --epochs $E
  torch_run rnn_adam_b128_t1_best --model rnn --optim adam --lr 1e-3 --batch 128 --threads 1 --epochs $E
fi
/usr/bin/python3 "$HERE/report_layers.py" "$OUT" > "$OUT/report.md"
cat "$OUT/report.md"
