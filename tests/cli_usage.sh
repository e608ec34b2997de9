#!/bin/sh
# The command line: help, version, usage errors, bad input, exit codes.
. "${top_srcdir:-.}/tests/testlib.sh"

expect_exit 0 "$PLAST" --help
grep -q '^Usage: plast COMMAND' "$tmp/out" || fail "--help not on stdout"
[ -s "$tmp/err" ] && fail "--help wrote to stderr"

expect_exit 0 "$PLAST" --version
head -n1 "$tmp/out" | grep -qx 'plast (plast) [0-9][0-9.]*' || fail "bad --version line: $(head -n1 "$tmp/out")"

expect_exit 64 "$PLAST"
grep -q "Try 'plast --help' for more information." "$tmp/err" || fail "no usage hint"
expect_exit 64 "$PLAST" frobnicate
grep -q "unknown command 'frobnicate'" "$tmp/err" || fail "unknown command not named"
expect_exit 64 "$PLAST" train
expect_exit 64 "$PLAST" train --bogus x.ini
grep -q "unrecognized option '--bogus'" "$tmp/err" || fail "bad option not named"
expect_exit 64 "$PLAST" train x.ini --progress=sometimes
expect_exit 64 "$PLAST" eval x.ini

# a missing INI file: 66, one line naming it
expect_exit 66 "$PLAST" train "$tmp/nope.ini"
grep -q "^plast:.*nope.ini.*No such file" "$tmp/err" || fail "missing file: $(cat "$tmp/err")"
[ "$(wc -l < "$tmp/err")" -eq 1 ] || fail "missing file: more than one line"

# bad INI: 78 and FILE:LINE
write_synthetic_ini "$tmp/bad.ini" bp 1
printf '[optimizer]\nmomentum = 0.9\n' > /dev/null
sed 's/^lr = 0.01$/lr = fast/' "$tmp/bad.ini" > "$tmp/bad2.ini"
expect_exit 78 "$PLAST" train "$tmp/bad2.ini"
line=$(grep -n '^lr = fast' "$tmp/bad2.ini" | cut -d: -f1)
grep -q "^plast:$tmp/bad2.ini:$line: \[optimizer\] lr: expected a number in (0, 10\], found \"fast\"" "$tmp/err" \
  || fail "bad number message: $(cat "$tmp/err")"
printf '[colour]\nred = 1\n' >> "$tmp/bad.ini"
expect_exit 78 "$PLAST" train "$tmp/bad.ini"
grep -q "unknown section \[colour\]" "$tmp/err" || fail "unknown section: $(cat "$tmp/err")"

# --set errors name the option
write_synthetic_ini "$tmp/ok.ini" bp 1
expect_exit 78 "$PLAST" train "$tmp/ok.ini" --set run.epochs=zero
grep -q "^plast:--set run.epochs: \[run\] epochs: expected an integer" "$tmp/err" || fail "--set message: $(cat "$tmp/err")"
expect_exit 78 "$PLAST" train "$tmp/ok.ini" --rule no_such_rule
grep -q "no rule 'no_such_rule' found" "$tmp/err" || fail "missing rule: $(cat "$tmp/err")"
expect_exit 78 "$PLAST" train "$tmp/ok.ini" --rule ../evil
grep -q "invalid rule name" "$tmp/err" || fail "path in rule name: $(cat "$tmp/err")"

# rules
expect_exit 0 "$PLAST" rules
grep -q '^bp ' "$tmp/out" || fail "rules: no bp"
grep -q '^drtp ' "$tmp/out" || fail "rules: no drtp"
grep -q 'layers: .*dense' "$tmp/out" || fail "rules: no layers line"
expect_exit 0 "$PLAST" rules --describe drtp
for k in proj_store hidden_reduce zero_init_hidden; do
  grep -q "^  $k " "$tmp/out" || fail "describe drtp: no $k"
done
expect_exit 78 "$PLAST" rules --describe nosuch
exit 0
