#!/bin/sh
# run.sh [SECONDS] [NAMES...] - build the libFuzzer harnesses with clang
# (ASan + UBSan, from the sources directly) and run each for SECONDS
# (default 60), one after the other; print executions and coverage.
#
# NAMES: config idx csv checkpoint plugin (default: all).  The build and
# the growing corpora go to $FUZZ_DIR (default ${TMPDIR:-/tmp}/plast-fuzz);
# the seed corpora in tests/fuzz/corpus/NAME are only read.  A crash
# leaves its input in $FUZZ_DIR/artifacts and makes the script exit 1:
# copy it to tests/fuzz/corpus/NAME/ once it is fixed (the replay tests
# of `make check` then run it).  Extra libFuzzer flags: $FUZZ_FLAGS.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
secs=${1:-60}
[ $# -gt 0 ] && shift
names=${*:-config idx csv checkpoint plugin}
dir=${FUZZ_DIR:-${TMPDIR:-/tmp}/plast-fuzz}
CC=${FUZZ_CC:-clang}

case $secs in *[!0-9]* | '') echo "run.sh: SECONDS must be a number, found '$secs'" >&2; exit 64 ;; esac
command -v "$CC" > /dev/null || { echo "run.sh: $CC not found (apt-get install clang)" >&2; exit 77; }
mkdir -p "$dir/obj" "$dir/plugins" "$dir/artifacts" || exit 1

san="-fsanitize=address,undefined -fno-sanitize-recover=all"
cflags="-std=c11 -ffp-contract=off -g -O1 -fno-omit-frame-pointer $san
  -I$dir -I$top/include -I$top/libcore -DPLAST_PLUGINDIR=\"/nonexistent\"
  $(pkg-config --cflags inih zlib 2> /dev/null)"
libs="$(pkg-config --libs inih zlib 2> /dev/null || echo -linih -lz) -lm -ldl"

# ---- build (everything again when a source is newer than the last build)
stamp=$dir/built
if [ ! -e "$stamp" ] ||
   [ -n "$(find "$top/include" "$top/libcore" "$top/tests/fuzz" "$top/plugins/bp" \
            -newer "$stamp" \( -name '*.c' -o -name '*.h' \) 2> /dev/null | head -n1)" ]; then
  echo "building the harnesses in $dir"
  rm -f "$stamp" "$dir"/obj/*.o "$dir/libplast-fuzz.a"
  # the library needs only _GNU_SOURCE from configure's config.h
  printf '#define _GNU_SOURCE 1\n' > "$dir/config.h"
  # the library's sources as Makefile.am lists them (= and += lines)
  srcs=$(awk '/^libcore_libplast_la_SOURCES *\+?=/ { on = 1 }
              on { for (i = 1; i <= NF; i++) if ($i ~ /\.c$/) print $i
                   if ($NF != "\\") on = 0 }' "$top/Makefile.am")
  [ -n "$srcs" ] || { echo "run.sh: no library sources in Makefile.am" >&2; exit 1; }
  for src in $srcs; do
    obj=$dir/obj/$(echo "$src" | tr / _ | sed 's/\.c$/.o/')
    # shellcheck disable=SC2086
    $CC $cflags -fsanitize=fuzzer-no-link -c "$top/$src" -o "$obj" 2> "$obj.err" && continue
    # a file this clang cannot compile (a newer CPU feature name) is
    # built by gcc, without instrumentation, so the others still fuzz
    cat "$obj.err" >&2
    echo "run.sh: $CC cannot compile $src; using ${FUZZ_FALLBACK_CC:-gcc} (not instrumented)" >&2
    # shellcheck disable=SC2086
    ${FUZZ_FALLBACK_CC:-gcc} -std=c11 -ffp-contract=off -O1 -g -I"$dir" -I"$top/include" \
      -I"$top/libcore" -DPLAST_PLUGINDIR=\"/nonexistent\" -c "$top/$src" -o "$obj" ||
      { echo "run.sh: cannot compile $src" >&2; exit 1; }
  done
  ar rcs "$dir/libplast-fuzz.a" "$dir"/obj/*.o || exit 1
  # the bp plug-in for fuzz_checkpoint: its plast_* symbols resolve to the
  # harness executable (linked with --export-dynamic), one registry
  # shellcheck disable=SC2086
  $CC $cflags -fsanitize=fuzzer-no-link -fPIC -shared "$top/plugins/bp/bp.c" \
    -o "$dir/plugins/bp.so" || exit 1
  for name in config idx csv checkpoint plugin; do
    extra=
    [ "$name" = config ] && extra=$top/plugins/bp/bp.c
    # shellcheck disable=SC2086
    $CC $cflags -fsanitize=fuzzer "$top/tests/fuzz/fuzz_$name.c" $extra \
      -Wl,--whole-archive "$dir/libplast-fuzz.a" -Wl,--no-whole-archive \
      -Wl,--export-dynamic $libs -o "$dir/fuzz_$name" ||
      { echo "run.sh: cannot link fuzz_$name" >&2; exit 1; }
  done
  touch "$stamp"
fi

# ---- run
# Allocations over 256 MiB fail (NULL) instead of aborting: a header that
# announces a huge size must end in "out of memory", which is checked.
export ASAN_OPTIONS="allocator_may_return_null=1:max_allocation_size_mb=256:detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export PLAST_PLUGIN_PATH=$dir/plugins PLAST_PLUGIN_SYSTEM_PATH=
status=0
printf '%-11s %12s %8s %8s %9s  %s\n' harness executions cov ft corpus result
for name in $names; do
  [ -x "$dir/fuzz_$name" ] || { echo "run.sh: no harness '$name'" >&2; status=1; continue; }
  mkdir -p "$dir/corpus/$name"
  dict=
  [ -f "$here/$name.dict" ] && dict=-dict=$here/$name.dict
  log=$dir/$name.log
  # shellcheck disable=SC2086
  "$dir/fuzz_$name" -max_total_time="$secs" -print_final_stats=1 -timeout=20 \
    -rss_limit_mb=2048 -artifact_prefix="$dir/artifacts/$name-" $dict ${FUZZ_FLAGS:-} \
    "$dir/corpus/$name" "$here/corpus/$name" > "$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  last=$(grep -E '^#[0-9]+.*(cov|ft):' "$log" | tail -n1)
  cov=$(printf '%s\n' "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  ft=$(printf '%s\n' "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
  corp=$(printf '%s\n' "$last" | sed -n 's/.*corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p')
  if [ $rc -eq 0 ]; then
    result=ok
  else
    result="FAILED (exit $rc): see $log"
    status=1
  fi
  printf '%-11s %12s %8s %8s %9s  %s\n' "$name" "${execs:-?}" "${cov:-?}" "${ft:-?}" \
    "${corp:-?}" "$result"
done
if ls "$dir"/artifacts/* > /dev/null 2>&1; then
  echo "inputs that crashed or hung (fix, then copy them to tests/fuzz/corpus/NAME/):"
  ls -l "$dir"/artifacts/
fi
exit $status
