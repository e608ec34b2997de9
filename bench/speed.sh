#!/bin/bash
# Epoch times in one session, run by hand on a quiet machine (the two vCPUs
# are shared: run nothing else meanwhile):
#   issue 5  plast bp beside PyTorch at its best (the _t1_best settings of
#            ../shared/baselines/run.sh) on the MLP, CNN and RNN, 1 thread
#            (the bars), then with --two-threads the same on 2 threads with
#            the core probe's reading before and after (no bar: the second
#            vCPU comes and goes); plast's drtp CNN beside its bp CNN; the
#            GEMM's GFLOP/s against the measured FMA peak (bench/gemm_bench.c,
#            compiled here against the build's config.h)
#   issue 6  tpsgd beside bp on the tpSGD examples (MLP, CNN, RNN)
# Each time is the median over the run's epochs (training loop only);
# samples/s is the 60,000 training images over it, "GFLOP/s (3x fwd)" 3 x
# the model's forward FLOPs per sample (forward, input gradient, weight
# gradient) times samples/s: the first layer computes no input gradient, so
# this overstates the work, by a third for the MLP, whose first layer holds
# most of its FLOPs.  Two threads: PyTorch with OMP_WAIT_POLICY=passive
# (train_torch.py's default, its best here), plast with PLAST_T2_WAIT
# (default active: libgomp's spinning; passive makes each of plast's
# many short parallel regions wait for a wake-up).
# usage: bench/speed.sh [OUTDIR] [--epochs N] [--no-torch] [--two-threads]
#   PLAST, BASELINES as bench/run.sh.  Writes OUTDIR/speed.md and the logs.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")
OUT="" E=3 TORCH=1 TWO=""
while [ $# -gt 0 ]; do
  case "$1" in
    --epochs) E=${2:?--epochs needs a number}; shift ;;
    --no-torch) TORCH="" ;;
    --two-threads) TWO=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
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

SAMPLES=60000
declare -A FLOPS # forward FLOPs per sample of each model, from plast's log
T2_WAIT=${PLAST_T2_WAIT:-active}
plast_time() { # NAME INI THREADS ARGS...: the median epoch seconds
  local name=$1 ini=$2 threads=$3 wait=passive; shift 3
  [ "$threads" = 1 ] || wait=$T2_WAIT
  echo "[$(date -u +%H:%M:%S)] plast $name" >&2
  OMP_WAIT_POLICY=$wait "$PLAST" train "$ini" --progress=none --epochs "$E" \
    --threads "$threads" --log "$OUT/$name.jsonl" --set data.test_images= \
    --set data.test_labels= "$@" < /dev/null > /dev/null 2> "$OUT/$name.err" ||
    { echo "$name FAILED: $(tail -n1 "$OUT/$name.err")" >&2; return; }
  sed -n 's/.*"type":"summary".*"epoch_s_median":\([0-9.]*\).*/\1/p' "$OUT/$name.jsonl"
}
flops_of() { # NAME: forward FLOPs per sample in plast's log NAME.jsonl
  sed -n 's/.*"flops_per_sample":\([0-9]*\).*/\1/p' "$OUT/$1.jsonl" | head -n1
}
torch_time() { # NAME THREADS ARGS...
  local name=$1 threads=$2; shift 2
  [ -n "$TORCH" ] || return
  echo "[$(date -u +%H:%M:%S)] torch $name" >&2
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE GLIBC_TUNABLES=$TUN /usr/bin/python3 \
    "$BASELINES/train_torch.py" --threads "$threads" --epochs "$E" "$@" < /dev/null \
    > "$OUT/torch_$name.jsonl" 2> "$OUT/torch_$name.err" || { echo "torch $name FAILED" >&2; return; }
  sed -n 's/.*"type": "summary".*"epoch_s_median": \([0-9.]*\).*/\1/p' "$OUT/torch_$name.jsonl"
}
probe() { # LABEL: cores_effective now (the baselines' probe.py)
  /usr/bin/python3 "$BASELINES/probe.py" --seconds 1 --label "$1" 2> /dev/null |
    tee -a "$OUT/probe.jsonl" | sed -n 's/.*"cores_effective": *\([0-9.]*\).*/\1/p'
}
ratio() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.3f", a / b; else print "-" }'; }
per_s() { awk -v s="${1:-0}" 'BEGIN { if (s > 0) printf "%.0f", '$SAMPLES' / s; else print "-" }'; }
gflops() { # SECONDS FORWARD_FLOPS_PER_SAMPLE
  awk -v s="${1:-0}" -v f="${2:-0}" 'BEGIN { if (s > 0 && f > 0) printf "%.1f", 3 * f * '$SAMPLES' / s / 1e9; else print "-" }'
}
# | name | plast s | samples/s | GFLOP/s | reference | its s | its samples/s | ratio | bar |
row() { # LABEL PLAST_S FLOPS REF_NAME REF_S BAR
  echo "| $1 | ${2:--} | $(per_s "$2") | $(gflops "$2" "$3") | $4 | ${5:--} | $(per_s "$5") | $(ratio "$2" "$5") | $6 |"
}

# PyTorch and plast alternate, so that a slow spell of the machine hits both.
T_MLP=$(torch_time mlp 1 --model mlp --optim sgd --lr 0.1 --batch 128)
P_MLP=$(plast_time bp_mlp "$HERE/mlp-relu-sgd.ini" 1); FLOPS[mlp]=$(flops_of bp_mlp)
T_CNN=$(torch_time cnn 1 --model cnn --optim sgd --lr 0.1 --batch 128)
P_CNN=$(plast_time bp_cnn "$TOP/examples/cnn-bp.ini" 1); FLOPS[cnn]=$(flops_of bp_cnn)
T_RNN=$(torch_time rnn 1 --model rnn --optim adam --lr 1e-3 --batch 128)
P_RNN=$(plast_time bp_rnn "$TOP/examples/rnn-bp.ini" 1); FLOPS[rnn]=$(flops_of bp_rnn)
P_CNN_BP_TANH=$(plast_time bp_cnn_tanh "$TOP/examples/cnn-drtp.ini" 1 --rule bp)
P_CNN_DRTP=$(plast_time drtp_cnn_tanh "$TOP/examples/cnn-drtp.ini" 1)
declare -A TP BP
for m in mlp cnn rnn; do
  TP[$m]=$(plast_time tpsgd_$m "$TOP/examples/$m-tpsgd.ini" 1)
  BP[$m]=$(plast_time bp_tpsgd_$m "$TOP/examples/$m-tpsgd.ini" 1 --rule bp)
done
if [ -n "$TWO" ]; then
  CORES0=$(probe "before 2 threads")
  T2_MLP=$(torch_time mlp_t2 2 --model mlp --optim sgd --lr 0.1 --batch 128)
  P2_MLP=$(plast_time bp_mlp_t2 "$HERE/mlp-relu-sgd.ini" 2)
  T2_CNN=$(torch_time cnn_t2 2 --model cnn --optim sgd --lr 0.1 --batch 128)
  P2_CNN=$(plast_time bp_cnn_t2 "$TOP/examples/cnn-bp.ini" 2)
  T2_RNN=$(torch_time rnn_t2 2 --model rnn --optim adam --lr 1e-3 --batch 128)
  P2_RNN=$(plast_time bp_rnn_t2 "$TOP/examples/rnn-bp.ini" 2)
  CORES1=$(probe "after 2 threads")
fi

# The GEMM against the FMA peak, built from this tree with the build's
# config.h (gemm_bench.c's own build line).
BUILD=$(dirname "$(dirname "$PLAST")")
if gcc -std=c11 -ffp-contract=off -O2 -fopenmp -I"$TOP/include" -I"$TOP/libcore" -I"$BUILD" \
     "$HERE/gemm_bench.c" "$TOP/libcore/gemm.c" "$TOP/libcore/gemm_x86.c" "$TOP/libcore/err.c" \
     "$TOP/libcore/fpenv.c" -o "$OUT/gemm_bench" -lm 2> "$OUT/gemm_bench.err"; then
  echo "[$(date -u +%H:%M:%S)] gemm_bench" >&2
  "$OUT/gemm_bench" 0.3 > "$OUT/gemm_bench.txt" 2>&1
fi

{
  cat "$OUT/env.txt"
  echo
  echo "1 thread (the bars):"
  echo
  echo "| run | plast s/epoch | samples/s | GFLOP/s (3x fwd) | reference | its s/epoch | its samples/s | ratio | bar |"
  echo "|---|---|---|---|---|---|---|---|---|"
  row "MLP 784-256-256-10 relu, SGD 0.1, b128, bp" "$P_MLP" "${FLOPS[mlp]}" PyTorch "$T_MLP" "<= 0.8"
  row "CNN (examples/cnn-bp.ini), bp" "$P_CNN" "${FLOPS[cnn]}" PyTorch "$T_CNN" "<= 1.0"
  row "Elman RNN h128 (examples/rnn-bp.ini), BPTT" "$P_RNN" "${FLOPS[rnn]}" PyTorch "$T_RNN" "<= 0.5"
  row "CNN tanh (examples/cnn-drtp.ini), drtp" "$P_CNN_DRTP" "" "plast bp" "$P_CNN_BP_TANH" "<= 0.75"
  for m in mlp cnn rnn; do
    row "examples/$m-tpsgd.ini, tpsgd" "${TP[$m]}" "" "plast bp" "${BP[$m]}" "<= 1.0"
  done
  if [ -n "$TWO" ]; then
    echo
    echo "2 threads (OMP_WAIT_POLICY: PyTorch passive, plast $T2_WAIT; cores_effective ${CORES0:--} before, ${CORES1:--} after):"
    echo
    echo "| run | plast s/epoch | samples/s | GFLOP/s (3x fwd) | reference | its s/epoch | its samples/s | ratio | bar |"
    echo "|---|---|---|---|---|---|---|---|---|"
    row "MLP, bp" "$P2_MLP" "${FLOPS[mlp]}" PyTorch "$T2_MLP" "-"
    row "CNN, bp" "$P2_CNN" "${FLOPS[cnn]}" PyTorch "$T2_CNN" "-"
    row "RNN, BPTT" "$P2_RNN" "${FLOPS[rnn]}" PyTorch "$T2_RNN" "-"
  fi
  if [ -s "$OUT/gemm_bench.txt" ]; then
    echo
    echo "GEMM (bench/gemm_bench.c, 0.3 s per shape):"
    echo
    echo '```'
    cat "$OUT/gemm_bench.txt"
    echo '```'
  fi
} > "$OUT/speed.md"
cat "$OUT/speed.md"
