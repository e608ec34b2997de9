# bench/common.sh - sourced by the bench scripts after they set TOP (the
# source tree): the plast binary (PLAST, default the in-tree build) and its
# plug-ins, the PyTorch baselines (BASELINES) and the malloc settings
# PyTorch's best rows run with (TUN).
PLAST=${PLAST:-$TOP/examples/plast}
[ -x "$PLAST" ] || { echo "no plast binary: build first or set PLAST" >&2; exit 1; }
if [ -z "${PLAST_PLUGIN_PATH:-}" ]; then
  export PLAST_PLUGIN_PATH=$(dirname "$(dirname "$PLAST")")/plugins/.libs
  export PLAST_PLUGIN_SYSTEM_PATH=
fi
BASELINES=${BASELINES:-$(dirname "$TOP")/shared/baselines}
TUN="glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"
