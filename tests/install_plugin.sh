#!/bin/sh
# Install plast into a temporary prefix, build the example rule outside the
# tree with nothing but pkg-config, load it by name and train with it.
. "${top_srcdir:-.}/tests/testlib.sh"
command -v pkg-config > /dev/null || exit 77
command -v cc > /dev/null || exit 77
: "${top_builddir:?}"
prefix="$tmp/prefix"
${MAKE:-make} -C "$top_builddir" install prefix="$prefix" > "$tmp/install.log" 2>&1 \
  || { tail -20 "$tmp/install.log" >&2; fail "make install into $prefix failed"; }
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
[ "$(pkg-config --variable=plugindir plast)" = "$prefix/lib/plast" ] || fail "plugindir variable"
for f in bin/plast include/plast/plast.h include/plast/rule.h lib/plast/bp.so lib/plast/drtp.so \
         share/man/man1/plast.1 share/man/man5/plast.ini.5 share/man/man3/plast-rule.3; do
  [ -e "$prefix/$f" ] || fail "not installed: $f"
done
mkdir "$tmp/rules"
cc -shared -fPIC -o "$tmp/rules/shallow.so" "$top_srcdir/examples/shallow/shallow.c" \
   $(pkg-config --cflags --libs plast) || fail "building the example rule with pkg-config failed"
nm -D --defined-only "$tmp/rules/shallow.so" | grep -q ' plast_plugin_entry$' || fail "no entry symbol"
# the installed plast finds its own rules and the new one by name
PLAST_PLUGIN_SYSTEM_PATH= ; unset PLAST_PLUGIN_SYSTEM_PATH
export PLAST_PLUGIN_PATH="$tmp/rules"
expect_exit 0 "$prefix/bin/plast" rules
grep -q "^shallow .*$tmp/rules/shallow.so" "$tmp/out" || fail "shallow not listed: $(cat "$tmp/out")"
grep -q "^bp .*$prefix/lib/plast/bp.so" "$tmp/out" || fail "installed bp not found"
write_synthetic_ini "$tmp/m.ini" shallow 2
expect_exit 0 "$prefix/bin/plast" train "$tmp/m.ini" --log "$tmp/s.jsonl"
grep -q '"rule":"shallow"' "$tmp/s.jsonl" || fail "did not train with the example rule"
exit 0
