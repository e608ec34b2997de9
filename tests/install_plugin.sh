#!/bin/sh
# Install plast into a staging directory, build the example rule outside the
# tree with nothing but pkg-config, load it by name and train with it.
. "${top_srcdir:-.}/tests/testlib.sh"
command -v pkg-config > /dev/null || exit 77
command -v cc > /dev/null || exit 77
: "${top_builddir:?}"
dest="$tmp/dest"
${MAKE:-make} -C "$top_builddir" install DESTDIR="$dest" > "$tmp/install.log" 2>&1 \
  || { tail -20 "$tmp/install.log" >&2; fail "make install DESTDIR=$dest failed"; }
pc=$(find "$dest" -name plast.pc | head -n1)
[ -n "$pc" ] || fail "plast.pc not installed"
PKG_CONFIG_PATH=$(dirname "$pc"); export PKG_CONFIG_PATH
PC="pkg-config --define-prefix"
prefix=$($PC --variable=prefix plast)
libdir=$($PC --variable=libdir plast)
plugindir=$($PC --variable=plugindir plast)
[ "$plugindir" = "$libdir/plast" ] || fail "plugindir is $plugindir, expected $libdir/plast"
for f in "$prefix/bin/plast" "$prefix/include/plast/plast.h" "$prefix/include/plast/rule.h" \
         "$libdir/libplast.so" "$plugindir/bp.so" "$plugindir/drtp.so" \
         "$prefix/share/man/man1/plast.1" "$prefix/share/man/man5/plast.ini.5" \
         "$prefix/share/man/man3/plast-rule.3" "$prefix/share/man/man7/plast.7"; do
  [ -e "$f" ] || fail "not installed: $f"
done
nm -D --defined-only "$plugindir/drtp.so" | grep -v ' plast_plugin_entry$' | grep -q ' T ' \
  && fail "drtp.so exports more than plast_plugin_entry"
mkdir "$tmp/rules"
# shellcheck disable=SC2046
cc -shared -fPIC -o "$tmp/rules/shallow.so" "$top_srcdir/examples/shallow/shallow.c" \
   $($PC --cflags --libs plast) || fail "building the example rule with pkg-config failed"
nm -D --defined-only "$tmp/rules/shallow.so" | grep -q ' plast_plugin_entry$' || fail "no entry symbol"
# the staged plast: its library from the stage, its plug-in directory too
LD_LIBRARY_PATH=$libdir; export LD_LIBRARY_PATH
PLAST_PLUGIN_SYSTEM_PATH=$plugindir; export PLAST_PLUGIN_SYSTEM_PATH
PLAST_PLUGIN_PATH="$tmp/rules"; export PLAST_PLUGIN_PATH
expect_exit 0 "$prefix/bin/plast" rules
grep -q "^shallow .*$tmp/rules/shallow.so" "$tmp/out" || fail "shallow not listed: $(cat "$tmp/out")"
grep -q "^bp .*$plugindir/bp.so" "$tmp/out" || fail "installed bp not found: $(cat "$tmp/out")"
expect_exit 0 "$prefix/bin/plast" rules --describe shallow
grep -q '^  bias_only ' "$tmp/out" || fail "describe shallow"
write_synthetic_ini "$tmp/m.ini" shallow 2
expect_exit 0 "$prefix/bin/plast" train "$tmp/m.ini" --log "$tmp/s.jsonl"
grep -q '"rule":"shallow"' "$tmp/s.jsonl" || fail "did not train with the example rule"
grep -q "\"rule_file\":\"$tmp/rules/shallow.so\"" "$tmp/s.jsonl" || fail "rule file not logged"
exit 0
