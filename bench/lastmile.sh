#!/bin/bash
# The "last mile" experiment (ALGORITHMS.md §5.7), run by hand from a build:
#   make && nice bench/lastmile.sh [--quick] [--ft] [--full-grid] [--tasks LIST]
#                                  [--schedule constant|cosine] [--reuse] WORKDIR
#
# 1. data      bench/lastmile data: Q1 (domain shift: rotation 30°, noise
#              sigma 0.3) and Q2 (class shift: new classes 5-9, 20 support
#              + 20 validation images per class) as IDX files
# 2. pretrain  backbone C2 (examples/lastmile-c2.ini) with bp: Q1 on clean
#              images 0-49,999 (10 classes), Q2 on classes 0-4 (5-way head)
# 3. zeroshot  the pre-trained model on the shifted test sets; for Q2 the
#              head is replaced by the prototype classifier of the support
#              set (bench/lastmile proto), which is also where Q2 runs start
# 4. runs      on each task: bp LP and FT (SGD, lr from {1e-3, 1e-2, 1e-1});
#              QZO-FF (rule qzoff) LP: fp32 and 16w8a, value (lr from {1e-3,
#              3e-3, 1e-2, 3e-2, 1e-1}) and sign (lr from {1e-3, 3e-3, 1e-2,
#              3e-2}) with m = 1; 16w8a m = 3 at the lr chosen for m = 1
#              (same steps, so the comparison isolates the variance); 8w8a
#              sign m = 1 with eps = 1e-3 and eps = 2 LSB at the lr chosen for
#              16w8a sign; 16w8a with whitened directions (rule.qzoff.whiten,
#              plast's extension): value and sign m = 1 and value m = 3,
#              each over its grid, and value m = 3 in fp32.  --full-grid sweeps the whole grid for those too;
#              --ft adds fp32 and 16w8a FT (value and sign, m = 1).  The lr
#              with the best validation accuracy is reported (runs.md lists
#              every run).  LP: bp freezes c1, c2 and fc1; qzoff trains
#              `last`.  Inference only: the 16w8a forward of the chosen
#              value-mode run, resumed from its checkpoint (its test
#              accuracy must equal the run's), and the fp32 forward of the
#              pre-trained model, each one batch at a time.
# 5. report    WORKDIR/table.md (chosen runs), runs.md (every run),
#              results.jsonl (one record per run), timing.md (per part);
#              all runs' logs and checkpoints in WORKDIR/runs
#
# Each adaptation run is ONE epoch over a training file holding the
# adaptation set repeated (bench/lastmile tile) followed by the validation
# set, which [data] validation holds out: max_batches = the step count
# (Q1: batch 64 x 3,000 steps = 96 passes over 2,000 images; Q2: batch 50
# x 500 steps = 250 passes over 100), and validation and test are
# evaluated once, at the end, with the rule's own forward (fixed point for
# 16w8a/8w8a).  The data order is one shuffle of the repeated set rather
# than a reshuffle per pass.  qzoff calibrates its int8 activation scales
# with float forwards on its first `calibrate` = 1,000 training images and
# does not update before (15 of 3,000 steps for Q1, 19 of 500 for Q2);
# those float forwards set the training-run tracker peak of 16w8a/8w8a.
#
# Time on 1 thread on the shared 2-core machine (full mode, 2026-11-24):
# data + tiles 5 s; pre-training ~90 s (Q1, 15 epochs of 50,000) + ~55 s
# (Q2), skipped when WORKDIR has the checkpoints; per Q1 run (192,000
# samples) bp LP 4 s, bp FT 6 s, fp32 FF LP m=1 4 s, 16w8a/8w8a LP m=1
# 17 s, 16w8a LP m=3 50 s, plus ~1 s to load and evaluate; a Q2 run is
# 1/8 of that.  Full mode: ~14.5 min per Q1 task, ~1.5 min for Q2, ~32 min
# in all; --full-grid adds ~8 min per Q1 task, --ft more.
#
# --quick: 60 (Q1) / 40 (Q2) steps, one learning rate per configuration,
#          a 40-batch pre-training: proves the pipeline (about 1 min), the
#          numbers mean nothing
# --tasks: comma list of q1rot, q1noise, q2 (default all three)
# --schedule: the learning-rate schedule of every adaptation run, bp and
#          qzoff alike ([optimizer] schedule; default constant, as §5.7):
#          cosine decays each run's lr to 0 over its steps
# --reuse: a run that finished in an earlier invocation on WORKDIR (same
#          name, so same task, configuration and lr) is not run again: its
#          log, checkpoint and wall time are kept.  Only for an unchanged
#          build and settings: it lets a changed grid add its new runs.
# Environment: PLAST (default ../examples/plast of this tree; its build
# directory must hold plugins/.libs and bench/lastmile), LASTMILE (the
# bench/lastmile binary), PLAST_LASTMILE_THREADS (default 1).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")
QUICK=0 FT=0 FULL_GRID=0 REUSE=0 TASKS="q1rot,q1noise,q2" SCHEDULE=constant W=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --ft) FT=1 ;;
    --full-grid) FULL_GRID=1 ;;
    --reuse) REUSE=1 ;;
    --tasks) TASKS=$2; shift ;;
    --schedule) SCHEDULE=$2; shift ;;
    -h|--help) sed -n '2,67p' "$0"; exit 0 ;;
    -*) echo "lastmile.sh: unknown option $1" >&2; exit 64 ;;
    *) W=$1 ;;
  esac; shift
done
[ -n "$W" ] || { echo "usage: bench/lastmile.sh [--quick] [--ft] [--full-grid] [--tasks LIST] [--schedule S] [--reuse] WORKDIR" >&2
                 exit 64; }
mkdir -p "$W" && W=$(cd "$W" && pwd) || exit 73
PLAST=${PLAST:-$TOP/examples/plast}
BUILD=$(cd "$(dirname "$PLAST")/.." && pwd)
LASTMILE=${LASTMILE:-$BUILD/bench/lastmile}
THREADS=${PLAST_LASTMILE_THREADS:-1}
export PLAST_PLUGIN_PATH="$BUILD/plugins/.libs" PLAST_PLUGIN_SYSTEM_PATH=
INI=$TOP/examples/lastmile-c2.ini
FM=/usr/share/datasets/fashion-mnist
D=$W/data T=$W/tiles C=$W/ckpt R=$W/runs
mkdir -p "$D" "$T" "$C" "$R"
for x in "$PLAST" "$LASTMILE"; do
  [ -x "$x" ] || { echo "lastmile.sh: $x not found: build first (make)" >&2; exit 66; }
done
HAVE_QZOFF=0
"$PLAST" rules 2>/dev/null | grep -qw qzoff && HAVE_QZOFF=1
[ $HAVE_QZOFF = 1 ] || echo "lastmile.sh: rule qzoff not found in $PLAST_PLUGIN_PATH: bp runs only" >&2

if [ $QUICK = 1 ]; then
  Q1_STEPS=60 Q2_STEPS=40 PRE_ARGS=(--epochs 1 --set run.max_batches=40)
  LR_BP="0.1" LR_VALUE="0.01" LR_SIGN="0.003"
else
  Q1_STEPS=3000 Q2_STEPS=500 PRE_ARGS=()
  LR_BP="0.001 0.01 0.1" LR_VALUE="0.001 0.003 0.01 0.03 0.1" LR_SIGN="0.001 0.003 0.01 0.03"
fi
Q1_BATCH=64 Q2_BATCH=50
FREEZE=(--set layer.c1.frozen=true --set layer.c2.frozen=true --set layer.fc1.frozen=true)
[ $REUSE = 1 ] && [ -s "$R/runs.tsv" ] && cat "$R/runs.tsv" >> "$R/runs.prev.tsv"
: > "$R/runs.tsv"
: > "$W/timing.tsv"

now() { date +%s.%N; }
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
phase_start() { PHASE=$1; PHASE_T0=$(now); log "== $1"; }
phase_end() { printf '%s\t%s\n' "$PHASE" "$(awk "BEGIN{printf \"%.1f\", $(now) - $PHASE_T0}")" >> "$W/timing.tsv"; }
data_args() { # TRAIN_PREFIX TEST_PREFIX
  echo --set data.train_images="$1-images.idx" --set data.train_labels="$1-labels.idx" \
       --set data.test_images="$2-images.idx" --set data.test_labels="$2-labels.idx"
}

# ---- 1. data -----------------------------------------------------------------
phase_start data
if [ ! -s "$D/q2-test-labels.idx" ]; then
  "$LASTMILE" data "$D" > "$W/data.txt" || exit 1
fi
tiles() { # NAME ADAPT VAL STEPS BATCH N_ADAPT
  local times=$(( ($4 * $5 + $6 - 1) / $6 ))
  [ -s "$T/$1-$times-labels.idx" ] || "$LASTMILE" tile "$T/$1-$times" $times "$D/$2" "$D/$3" || exit 1
  echo "$T/$1-$times"
}
Q1ROT_TRAIN=$(tiles q1rot q1rot-adapt q1rot-val $Q1_STEPS $Q1_BATCH 2000) || exit 1
Q1NOISE_TRAIN=$(tiles q1noise q1noise-adapt q1noise-val $Q1_STEPS $Q1_BATCH 2000) || exit 1
Q2_TRAIN=$(tiles q2 q2-support q2-val $Q2_STEPS $Q2_BATCH 100) || exit 1
phase_end

# ---- 2. pre-training -----------------------------------------------------------
pretrain() { # NAME ARGS...
  local name=$1; shift
  if [ ! -s "$C/$name.ckpt" ]; then
    log "pre-training $name"
    "$PLAST" train "$INI" --progress=none --threads "$THREADS" --log "$C/$name.jsonl" \
      --checkpoint "$C/$name.ckpt.tmp" "${PRE_ARGS[@]}" "$@" > "$C/$name.out" 2> "$C/$name.err" ||
      { echo "lastmile.sh: pre-training $name failed: $(tail -n1 "$C/$name.err")" >&2; exit 1; }
    mv "$C/$name.ckpt.tmp" "$C/$name.ckpt"
  fi
}
Q2_HEAD=(--set layer.out.units=5)
phase_start pretrain
pretrain q1-pre --set data.train_images="$D/q1-pretrain-images.idx" \
  --set data.train_labels="$D/q1-pretrain-labels.idx" --set data.test_images="$FM/t10k-images-idx3-ubyte.gz" \
  --set data.test_labels="$FM/t10k-labels-idx1-ubyte.gz"
pretrain q2-pre $(data_args "$D/q2-pretrain" "$D/q2-pretest") "${Q2_HEAD[@]}"
phase_end

# ---- 3. zero-shot --------------------------------------------------------------
infer() { # OUT ARGS... (lastmile infer, one JSON line into OUT)
  local out=$1; shift
  "$LASTMILE" infer "$INI" "$@" > "$out" 2> "$out.err" ||
    { echo "lastmile.sh: infer for $(basename "$out") failed: $(tail -n1 "$out.err")" >&2; : > "$out"; }
}
infer_sets() { # TRAIN_PREFIX TEST_PREFIX -> SECTION.KEY=VALUE words
  echo data.train_images="$1-images.idx" data.train_labels="$1-labels.idx" \
       data.test_images="$2-images.idx" data.test_labels="$2-labels.idx" run.threads="$THREADS"
}
phase_start zeroshot
"$LASTMILE" proto "$INI" "$C/q2-pre.ckpt" "$D/q2-support-images.idx" "$D/q2-support-labels.idx" \
  "$C/q2-proto.ckpt" layer.out.units=5 $(infer_sets "$D/q2-support" "$D/q2-val") > "$C/q2-proto.txt" ||
  { echo "lastmile.sh: proto failed" >&2; exit 1; }
infer "$W/zeroshot-q1rot.json" run.init="$C/q1-pre.ckpt" run.eval_batch=$Q1_BATCH \
  $(infer_sets "$D/q1rot-adapt" "$D/q1rot-test")
infer "$W/zeroshot-q1noise.json" run.init="$C/q1-pre.ckpt" run.eval_batch=$Q1_BATCH \
  $(infer_sets "$D/q1noise-adapt" "$D/q1noise-test")
infer "$W/zeroshot-q2.json" run.init="$C/q2-proto.ckpt" run.eval_batch=$Q2_BATCH layer.out.units=5 \
  $(infer_sets "$D/q2-support" "$D/q2-test")
infer "$W/pretest-q1.json" run.init="$C/q1-pre.ckpt" data.train_images="$D/q1rot-adapt-images.idx" \
  data.train_labels="$D/q1rot-adapt-labels.idx" data.test_images="$FM/t10k-images-idx3-ubyte.gz" \
  data.test_labels="$FM/t10k-labels-idx1-ubyte.gz" run.threads="$THREADS"
infer "$W/pretest-q2.json" run.init="$C/q2-pre.ckpt" layer.out.units=5 \
  $(infer_sets "$D/q2-support" "$D/q2-pretest")
phase_end

# ---- 4. adaptation runs --------------------------------------------------------
# run TASK CONFIG PRECISION TRAINS ESTIMATOR M EPS LR ARGS...
run() {
  local task=$1 config=$2 prec=$3 trains=$4 est=$5 m=$6 eps=$7 lr=$8; shift 8
  local name="$task-$config-lr$lr" t0 rc wall=""
  [ $REUSE = 1 ] && wall=$(awk -F'\t' -v n="$name" '$10 == n && $12 == 0 { w = $11 } END { print w }' \
                           "$R/runs.prev.tsv" 2>/dev/null)
  if [ -n "$wall" ] && grep -q '"type":"epoch"' "$R/$name.jsonl" 2>/dev/null; then
    log "$name (reused)"
    rc=0
  else
    log "$name"
    t0=$(now)
    "$PLAST" train "$INI" --progress=none --threads "$THREADS" --log "$R/$name.jsonl" \
      --checkpoint "$R/$name.ckpt" "${TASK_ARGS[@]}" --set optimizer.type=sgd \
      --set optimizer.lr="$lr" "$@" > "$R/$name.out" 2> "$R/$name.err"
    rc=$?
    [ $rc = 0 ] || log "$name FAILED: $(tail -n1 "$R/$name.err")"
    wall=$(awk "BEGIN{printf \"%.2f\", $(now) - $t0}")
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$task" "$config" "$prec" "$trains" \
    "$est" "$m" "$eps" "$lr" "$STEPS" "$name" "$wall" "$rc" >> "$R/runs.tsv"
}
qz() { # TASK CONFIG PRECISION TRAINS ESTIMATOR M EPS LRS [ARGS...]
  local task=$1 config=$2 prec=$3 trains=$4 est=$5 m=$6 eps=$7 lrs=$8 lr; shift 8
  [ $HAVE_QZOFF = 1 ] || return 0
  local what=last; [ "$trains" = FT ] && what=all
  local epsarg=(--set rule.qzoff.eps=1e-3)
  [ "$eps" = 2lsb ] && epsarg=(--set rule.qzoff.eps_lsb=2)
  for lr in $lrs; do
    run "$task" "$config" "$prec" "$trains" "$est" "$m" "$eps" "$lr" --set rule.name=qzoff \
      --set rule.qzoff.precision="$prec" --set rule.qzoff.train=$what \
      --set rule.qzoff.estimator="$est" --set rule.qzoff.m="$m" "${epsarg[@]}" "$@"
  done
}
# The learning rate with the best validation accuracy of TASK CONFIG (the
# smallest on a tie), or nothing.
best_lr() {
  local task=$1 config=$2 best="" bestv=-1 name lr v
  while IFS=$'\t' read -r t c _ _ _ _ _ lr _ name _ rc; do
    [ "$t" = "$task" ] && [ "$c" = "$config" ] && [ "$rc" = 0 ] || continue
    v=$(grep '"type":"epoch"' "$R/$name.jsonl" | tail -n1 | sed -n 's/.*"val_acc":\([0-9.e-]*\).*/\1/p')
    [ -n "$v" ] || continue
    if awk "BEGIN{exit !($v > $bestv)}"; then best=$lr bestv=$v; fi
  done < "$R/runs.tsv"
  echo "$best"
}

task_runs() { # TASK
  local task=$1
  case $task in
    q1rot) STEPS=$Q1_STEPS; TASK_ARGS=($(data_args "$Q1ROT_TRAIN" "$D/q1rot-test")
             --set data.validation=2000 --set run.init="$C/q1-pre.ckpt") ;;
    q1noise) STEPS=$Q1_STEPS; TASK_ARGS=($(data_args "$Q1NOISE_TRAIN" "$D/q1noise-test")
             --set data.validation=2000 --set run.init="$C/q1-pre.ckpt") ;;
    q2) STEPS=$Q2_STEPS; TASK_ARGS=($(data_args "$Q2_TRAIN" "$D/q2-test")
             --set data.validation=100 --set run.init="$C/q2-proto.ckpt" "${Q2_HEAD[@]}") ;;
  esac
  local b=$Q1_BATCH; [ $task = q2 ] && b=$Q2_BATCH
  TASK_ARGS+=(--epochs 1 --set run.batch=$b --set run.max_batches=$STEPS --set run.eval_batch=$b
             --set optimizer.schedule="$SCHEDULE")
  phase_start "$task bp"
  for lr in $LR_BP; do run $task bp-lp fp32 LP exact - - $lr "${FREEZE[@]}"; done
  for lr in $LR_BP; do run $task bp-ft fp32 FT exact - - $lr; done
  phase_end
  [ $HAVE_QZOFF = 1 ] || return 0
  phase_start "$task FF-float LP"
  qz $task ff-lp-value-m1 fp32 LP value 1 1e-3 "$LR_VALUE"
  qz $task ff-lp-sign-m1 fp32 LP sign 1 1e-3 "$LR_SIGN"
  phase_end
  phase_start "$task 16w8a LP m=1"
  qz $task q16-lp-value-m1 16w8a LP value 1 1e-3 "$LR_VALUE"
  qz $task q16-lp-sign-m1 16w8a LP sign 1 1e-3 "$LR_SIGN"
  phase_end
  # m = 3 at the learning rate chosen for m = 1 (the variance comparison at
  # equal steps), 8w8a at the one of 16w8a sign; --full-grid sweeps them too
  local lrv=$LR_VALUE lrs=$LR_SIGN
  if [ $FULL_GRID = 0 ]; then
    lrv=$(best_lr $task q16-lp-value-m1); lrv=${lrv:-$LR_VALUE}
    lrs=$(best_lr $task q16-lp-sign-m1); lrs=${lrs:-$LR_SIGN}
  fi
  phase_start "$task 16w8a LP m=3"
  qz $task q16-lp-value-m3 16w8a LP value 3 1e-3 "$lrv"
  qz $task q16-lp-sign-m3 16w8a LP sign 3 1e-3 "$lrs"
  phase_end
  # plast's extension: the head's directions whitened by its input's
  # second moment (rule.qzoff.whiten); m = 3 over its own grid: it is the
  # run the bar is read from, and the optimum moves with m here
  phase_start "$task LP whitened"
  local WH=(--set rule.qzoff.whiten=true)
  qz $task q16-lp-value-m1-whiten 16w8a LP value 1 1e-3 "$LR_VALUE" "${WH[@]}"
  qz $task q16-lp-sign-m1-whiten 16w8a LP sign 1 1e-3 "$LR_SIGN" "${WH[@]}"
  qz $task q16-lp-value-m3-whiten 16w8a LP value 3 1e-3 "$LR_VALUE" "${WH[@]}"
  qz $task ff-lp-value-m3-whiten fp32 LP value 3 1e-3 "$LR_VALUE" "${WH[@]}"
  phase_end
  phase_start "$task 8w8a LP"
  qz $task q8-lp-sign-m1-eps1e-3 8w8a LP sign 1 1e-3 "$lrs"
  qz $task q8-lp-sign-m1-eps2lsb 8w8a LP sign 1 2lsb "$lrs"
  phase_end
  # inference only: the 16w8a forward of the chosen value-mode run
  local lr16; lr16=$(best_lr $task q16-lp-value-m1)
  if [ -n "$lr16" ]; then
    local sets=() i
    for ((i = 0; i < ${#TASK_ARGS[@]}; i++)); do # the --set words, without --set
      [ "${TASK_ARGS[i]}" = --set ] && sets+=("${TASK_ARGS[i + 1]}")
    done
    infer "$W/infer16-$task.json" --resume "$R/$task-q16-lp-value-m1-lr$lr16.ckpt" "${sets[@]}" \
      rule.name=qzoff rule.qzoff.precision=16w8a rule.qzoff.train=last rule.qzoff.estimator=value \
      rule.qzoff.m=1 rule.qzoff.eps=1e-3 optimizer.type=sgd \
      run.threads="$THREADS"
  fi
  if [ $FT = 1 ]; then
    phase_start "$task FT (FF)"
    qz $task ff-ft-value-m1 fp32 FT value 1 1e-3 "$LR_VALUE"
    qz $task ff-ft-sign-m1 fp32 FT sign 1 1e-3 "$LR_SIGN"
    qz $task q16-ft-value-m1 16w8a FT value 1 1e-3 "$LR_VALUE"
    qz $task q16-ft-sign-m1 16w8a FT sign 1 1e-3 "$LR_SIGN"
    phase_end
  fi
}

for task in ${TASKS//,/ }; do
  case $task in q1rot|q1noise|q2) task_runs $task ;; *) echo "lastmile.sh: unknown task $task" >&2 ;; esac
done

# ---- 5. report -----------------------------------------------------------------
python3 - "$W" <<'EOF'
import json, math, os, sys
W = sys.argv[1]
R = os.path.join(W, "runs")

def records(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    out.append(json.loads(line))
    except (OSError, ValueError):
        pass
    return out

def one(path):
    r = records(path)
    return r[0] if r else None

MiB = 1024.0 * 1024.0
zero = {t: one(os.path.join(W, "zeroshot-%s.json" % t)) for t in ("q1rot", "q1noise", "q2")}
rows = []
for line in open(os.path.join(R, "runs.tsv")):
    f = line.rstrip("\n").split("\t")
    task, config, prec, trains, est, m, eps, lr, steps, name, wall, rc = f
    recs = records(os.path.join(R, name + ".jsonl"))
    ep = [x for x in recs if x.get("type") == "epoch"]
    ep = ep[-1] if ep else {}
    peak = ep.get("mem_peak_bytes", {})
    train_peak = peak.get("total", 0) - peak.get("dataset", 0) if peak else None
    z = zero.get(task)
    rows.append(dict(task=task, run=config, precision=prec, trains=trains, estimator=est,
                     m=None if m == "-" else int(m), eps=None if eps == "-" else eps,
                     lr=float(lr), steps=int(steps), status="ok" if rc == "0" else "failed",
                     val_acc=ep.get("val_acc"), test_acc=ep.get("test_acc"),
                     zero_shot_acc=z.get("test_acc") if z else None,
                     train_s=ep.get("train_s"), wall_s=float(wall),
                     tracker_peak_bytes=train_peak, mem_peak_bytes=peak or None, log=name + ".jsonl"))
chosen = {}
for r in rows:
    if r["status"] != "ok" or r["val_acc"] is None:
        continue
    k = (r["task"], r["run"])
    if k not in chosen or r["val_acc"] > chosen[k]["val_acc"]:
        chosen[k] = r
for r in rows:
    r["chosen"] = chosen.get((r["task"], r["run"])) is r

def pct(v):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else "%.2f" % (100 * v)

def mib(v):
    return "-" if v is None else "%.3f" % (v / MiB)

head = ("| task | run | precision | trains | estimator | m | lr | test acc % | zero-shot % | "
        "steps | seconds | tracker peak MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
def line(r):
    return "| %s | %s | %s | %s | %s | %s | %g | %s | %s | %d | %.1f | %s |" % (
        r["task"], r["run"], r["precision"], r["trains"], r["estimator"],
        "-" if r["m"] is None else r["m"], r["lr"], pct(r["test_acc"]), pct(r["zero_shot_acc"]),
        r["steps"], r["train_s"] or 0.0, mib(r["tracker_peak_bytes"]))

infer_rows = []
for t in ("q1rot", "q1noise", "q2"):
    for kind, path in (("fp32", "zeroshot-%s.json" % t), ("16w8a", "infer16-%s.json" % t)):
        x = one(os.path.join(W, path))
        if x:
            infer_rows.append(dict(task=t, run="inference only", precision=kind,
                                   test_acc=x.get("test_acc"), tracker_peak_bytes=x["total_bytes"],
                                   weights_bytes=x["weights_bytes"], rule_bytes=x["rule_bytes"],
                                   work_peak_bytes=x["work_peak_bytes"]))
        elif kind == "16w8a":
            infer_rows.append(dict(task=t, run="inference only", precision=kind, test_acc=None,
                                   tracker_peak_bytes=None, todo="no 16w8a run (qzoff missing?)"))

with open(os.path.join(W, "results.jsonl"), "w") as f:
    for r in rows + infer_rows:
        f.write(json.dumps(dict(type="run" if "lr" in r else "infer", **r)) + "\n")
with open(os.path.join(W, "table.md"), "w") as f:
    f.write(head + "\n")
    for t in ("q1rot", "q1noise", "q2"):
        for r in rows:
            if r["task"] == t and r["chosen"]:
                f.write(line(r) + "\n")
        for r in infer_rows:
            if r["task"] == t:
                f.write("| %s | inference only | %s | - | - | - | - | %s | %s | 1 batch | - | %s |\n" % (
                    t, r["precision"], pct(r["test_acc"]), pct((zero.get(t) or {}).get("test_acc")),
                    mib(r["tracker_peak_bytes"]) if r["tracker_peak_bytes"] else "TODO"))
    f.write("\nzero-shot: the pre-trained model on the shifted test set (Q2: the prototype head); "
            "tracker peak: training runs, peak of all tracker categories but the data set while "
            "training; inference rows, weights + rule state + peak of activations, input and "
            "scratch in a forward of one batch (evaluation)\n")
with open(os.path.join(W, "runs.md"), "w") as f:
    f.write("| task | run | lr | val acc % | test acc % | seconds | status |\n|---|---|---|---|---|---|---|\n")
    for r in rows:
        f.write("| %s | %s | %g | %s | %s | %.1f | %s%s |\n" % (
            r["task"], r["run"], r["lr"], pct(r["val_acc"]), pct(r["test_acc"]),
            r["train_s"] or 0.0, r["status"], " (chosen)" if r["chosen"] else ""))
with open(os.path.join(W, "timing.md"), "w") as f:
    f.write("| part | seconds |\n|---|---|\n")
    total = 0.0
    for line_ in open(os.path.join(W, "timing.tsv")):
        p, s = line_.rstrip("\n").split("\t")
        total += float(s)
        f.write("| %s | %s |\n" % (p, s))
    f.write("| total | %.1f |\n" % total)
pre = {t: one(os.path.join(W, "pretest-%s.json" % t)) for t in ("q1", "q2")}
print("pre-training test accuracy: Q1 (clean, 10 classes) %s %%, Q2 (classes 0-4) %s %%\n" % (
    pct((pre["q1"] or {}).get("test_acc")), pct((pre["q2"] or {}).get("test_acc"))))
print(open(os.path.join(W, "table.md")).read())
print(open(os.path.join(W, "timing.md")).read())
EOF
