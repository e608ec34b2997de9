#!/bin/sh
# valgrind.sh [RULE...] - valgrind memcheck on one short `plast train` of
# each rule (default: bp drtp tpsgd, plus qzoff and auglocal when their
# plug-ins are in $PLAST_PLUGIN_PATH).  Not part of `make check` (minutes,
# not seconds); run from a build tree:
#   top_srcdir=SRC PLAST=examples/plast PLAST_PLUGIN_PATH=plugins/.libs \
#     sh SRC/tests/valgrind.sh
# or `make valgrind`.  A rule passes when valgrind reports
# "ERROR SUMMARY: 0 errors" and nothing definitely lost.  valgrind has no
# AVX-512, so this also checks that the CPU dispatch of the kernels picks
# a path valgrind runs (an AVX-512 instruction would stop valgrind with
# "unhandled instruction").
# Exit 0 all clean, 1 a rule is not clean, 77 valgrind missing.
. "${top_srcdir:-.}/tests/testlib.sh"
command -v valgrind > /dev/null || { echo "valgrind not installed: skipped"; exit 77; }
: "${PLAST_PLUGIN_PATH:?PLAST_PLUGIN_PATH must name the directory of the rule plug-ins}"
export PLAST_PLUGIN_SYSTEM_PATH=

# a libtool wrapper script must be run through libtool, or valgrind checks
# the shell
run_under() {
  if grep -q 'libtool' "$PLAST" 2> /dev/null && [ -x "${top_builddir:-.}/libtool" ]; then
    "${top_builddir:-.}/libtool" --mode=execute "$@"
  else
    "$@"
  fi
}

have_plugin() {
  IFS=:
  for d in $PLAST_PLUGIN_PATH; do
    [ -f "$d/$1.so" ] && { unset IFS; return 0; }
  done
  unset IFS
  return 1
}

rules=${*:-}
if [ -z "$rules" ]; then
  rules="bp drtp tpsgd"
  for r in qzoff auglocal; do have_plugin "$r" && rules="$rules $r"; done
fi

status=0
printf '%-9s %-8s %s\n' rule errors "definitely lost"
for rule in $rules; do
  # three dense+relu blocks: deep enough for AugLocal's auxiliary
  # networks, and all layers with a fixed-point form for QZO-FF
  cat > "$tmp/$rule.ini" <<INI
[run]
seed = 7
epochs = 1
batch = 32
max_batches = 3
eval_batch = 100
[data]
format = synthetic
samples = 600
test_samples = 200
features = 8
classes = 3
[layer.h1]
type = dense
units = 16
[layer.a1]
type = relu
[layer.h2]
type = dense
units = 16
[layer.a2]
type = relu
[layer.h3]
type = dense
units = 16
[layer.a3]
type = relu
[layer.out]
type = dense
units = 3
[optimizer]
type = adam
lr = 0.01
[rule]
name = $rule
INI
  log=$tmp/$rule.vg
  run_under valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite \
    --errors-for-leak-kinds=definite --track-origins=yes --num-callers=30 \
    --log-file="$log" "$PLAST" train "$tmp/$rule.ini" --progress none \
    --checkpoint "$tmp/$rule.ckpt" --log "$tmp/$rule.jsonl" > "$tmp/$rule.out" 2>&1
  rc=$?
  errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$log" | tail -n1)
  lost=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tail -n1)
  grep -q 'All heap blocks were freed' "$log" && lost=0
  printf '%-9s %-8s %s\n' "$rule" "${errors:-?}" "${lost:-?}"
  grep -q 'unhandled instruction' "$log" &&
    echo "FAIL: $rule: valgrind met an instruction it cannot run: the CPU dispatch chose a path valgrind lacks" >&2
  if [ "$rc" -ne 0 ] || [ "${errors:-x}" != 0 ] || [ "${lost:-x}" != 0 ]; then
    echo "FAIL: $rule (exit $rc); valgrind said:" >&2
    grep -v '^==[0-9]*== *$' "$log" | tail -n 60 >&2
    tail -n 5 "$tmp/$rule.out" >&2
    status=1
  fi
done
exit $status
