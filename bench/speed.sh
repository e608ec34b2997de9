#!/bin/bash
# Epoch times in one session, 1 thread, run by hand on a quiet machine
# (the two vCPUs are shared: run nothing else meanwhile):
#   issue 5  plast bp beside PyTorch at its best (the _t1_best settings of
#            ../shared/baselines/run.sh) on the MLP, CNN and RNN, and
#            plast's drtp CNN beside its bp CNN (examples/cnn-drtp.ini)
#   issue 6  tpsgd beside bp on the tpSGD examples (MLP, CNN, RNN)
# Each time is the median over the run's epochs (training loop only).
# usage: bench/speed.sh [OUTDIR] [--epochs N] [--no-torch]
#   PLAST, BASELINES as bench/run.sh.  Writes OUTDIR/speed.md and the logs.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")
OUT="" E=3 TORCH=1
while [ $# -gt 0 ]; do
  case "$1" in
    --epochs) E=${2:?--epochs needs a number}; shift ;;
    --no-torch) TORCH="" ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) OUT=$1 ;;
  esac; shift
done
OUT=${OUT:-$HERE/results/speed-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# shellcheck source=bench/common.sh
. "$HERE/common.sh"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  epochs: $E"
  grep -m1 "model name" /proc/cpuinfo
  echo "plast: $("$PLAST" --version | head -n1) git $(git -C "$TOP" rev-parse --short HEAD)"
} > "$OUT/env.txt"

plast_time() { # NAME INI ARGS...: the median epoch seconds
  local name=$1 ini=$2; shift 2
  echo "[$(date -u +%H:%M:%S)] plast $name" >&2
  "$PLAST" train "$ini" --progress=none --epochs "$E" --threads 1 --log "$OUT/$name.jsonl" \
    --set data.test_images= --set data.test_labels= "$@" < /dev/null > /dev/null \
    2> "$OUT/$name.err" || { echo "$name FAILED: $(tail -n1 "$OUT/$name.err")" >&2; return; }
  sed -n 's/.*"type":"summary".*"epoch_s_median":\([0-9.]*\).*/\1/p' "$OUT/$name.jsonl"
}
torch_time() { # NAME ARGS...
  local name=$1; shift
  [ -n "$TORCH" ] || return
  echo "[$(date -u +%H:%M:%S)] torch $name" >&2
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE GLIBC_TUNABLES=$TUN /usr/bin/python3 \
    "$BASELINES/train_torch.py" --threads 1 --epochs "$E" "$@" < /dev/null \
    > "$OUT/torch_$name.jsonl" 2> "$OUT/torch_$name.err" || { echo "torch $name FAILED" >&2; return; }
  sed -n 's/.*"type": "summary".*"epoch_s_median": \([0-9.]*\).*/\1/p' "$OUT/torch_$name.jsonl"
}
ratio() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.3f", a / b; else print "-" }'; }

# PyTorch and plast alternate, so that a slow spell of the machine hits both.
T_MLP=$(torch_time mlp --model mlp --optim sgd --lr 0.1 --batch 128)
P_MLP=$(plast_time bp_mlp "$HERE/mlp-relu-sgd.ini")
T_CNN=$(torch_time cnn --model cnn --optim sgd --lr 0.1 --batch 128)
P_CNN=$(plast_time bp_cnn "$TOP/examples/cnn-bp.ini")
T_RNN=$(torch_time rnn --model rnn --optim adam --lr 1e-3 --batch 128)
P_RNN=$(plast_time bp_rnn "$TOP/examples/rnn-bp.ini")
P_CNN_BP_TANH=$(plast_time bp_cnn_tanh "$TOP/examples/cnn-drtp.ini" --rule bp)
P_CNN_DRTP=$(plast_time drtp_cnn_tanh "$TOP/examples/cnn-drtp.ini")
declare -A TP BP
for m in mlp cnn rnn; do
  TP[$m]=$(plast_time tpsgd_$m "$TOP/examples/$m-tpsgd.ini")
  BP[$m]=$(plast_time bp_tpsgd_$m "$TOP/examples/$m-tpsgd.ini" --rule bp)
done

{
  cat "$OUT/env.txt"
  echo
  echo "| run | plast s/epoch | reference | reference s/epoch | ratio | bar |"
  echo "|---|---|---|---|---|---|"
  echo "| MLP 784-256-256-10 relu, SGD 0.1, b128, bp | ${P_MLP:--} | PyTorch | ${T_MLP:--} | $(ratio "$P_MLP" "$T_MLP") | <= 0.8 |"
  echo "| CNN (examples/cnn-bp.ini), bp | ${P_CNN:--} | PyTorch | ${T_CNN:--} | $(ratio "$P_CNN" "$T_CNN") | <= 1.0 |"
  echo "| Elman RNN h128 (examples/rnn-bp.ini), BPTT | ${P_RNN:--} | PyTorch | ${T_RNN:--} | $(ratio "$P_RNN" "$T_RNN") | <= 0.5 |"
  echo "| CNN tanh (examples/cnn-drtp.ini), drtp | ${P_CNN_DRTP:--} | plast bp | ${P_CNN_BP_TANH:--} | $(ratio "$P_CNN_DRTP" "$P_CNN_BP_TANH") | <= 0.75 |"
  for m in mlp cnn rnn; do
    echo "| examples/$m-tpsgd.ini, tpsgd | ${TP[$m]:--} | plast bp | ${BP[$m]:--} | $(ratio "${TP[$m]}" "${BP[$m]}") | <= 1.0 |"
  done
} > "$OUT/speed.md"
cat "$OUT/speed.md"
