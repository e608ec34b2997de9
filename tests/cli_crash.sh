#!/bin/sh
# A rule plug-in that crashes (SIGSEGV in create() or in train_batch()):
# plast names the plug-in file on stderr and dies of the same signal.
. "${top_srcdir:-.}/tests/testlib.sh"
plugin=$(cd "${top_builddir:-.}/tests/crash/.libs" 2> /dev/null && pwd)/crashrule.so
[ -f "$plugin" ] || { echo "no $plugin: skipped"; exit 77; }
ulimit -c 0 2> /dev/null # no core file in the build tree

crash_run() { # WHEN: train the crashing rule; its exit status in $rc
  write_synthetic_ini "$tmp/c.ini" crashrule 1
  printf 'plugin = %s\n[rule.crashrule]\nwhen = %s\n' "$plugin" "$1" >> "$tmp/c.ini"
  "$PLAST" train "$tmp/c.ini" --progress none > "$tmp/out" 2> "$tmp/err"
  rc=$?
}

crash_run create
[ "$rc" -eq $((128 + 11)) ] || { cat "$tmp/err" >&2; fail "create crash: exit $rc, expected 139 (SIGSEGV)"; }
grep -qxF "plast: fatal signal SIGSEGV in rule plug-in $plugin (rule 'crashrule', setting up the run)" \
  "$tmp/err" || { cat "$tmp/err" >&2; fail "create crash: plug-in not named"; }

crash_run train
[ "$rc" -eq $((128 + 11)) ] || { cat "$tmp/err" >&2; fail "train crash: exit $rc, expected 139 (SIGSEGV)"; }
grep -qxF "plast: fatal signal SIGSEGV in rule plug-in $plugin (rule 'crashrule', training)" \
  "$tmp/err" || { cat "$tmp/err" >&2; fail "train crash: plug-in not named"; }
exit 0
