# testlib.sh - shared helpers of plast's shell tests (sourced).
# Exit codes: 0 pass, 77 skip, 99 hard error; fail() exits 1.
: "${PLAST:?PLAST must name the plast binary (set by make check)}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/plast-test.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_exit CODE CMD...: run CMD, check its exit status, keep stdout/stderr.
expect_exit() {
  want=$1; shift
  "$@" > "$tmp/out" 2> "$tmp/err"; got=$?
  [ "$got" = "$want" ] || { cat "$tmp/err" >&2; fail "'$*' exited $got, expected $want"; }
}
# A small synthetic model that trains in well under a second.
write_synthetic_ini() { # FILE RULE EPOCHS
  cat > "$1" <<INI
[run]
seed = 7
epochs = $3
batch = 32
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
type = tanh
[layer.out]
type = dense
units = 3
[optimizer]
type = adam
lr = 0.01
[rule]
name = $2
INI
}
