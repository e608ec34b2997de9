#!/bin/sh
# plast compare end to end on a synthetic task: the table (markdown and
# CSV) agrees with numbers recomputed here from the JSONL logs, the SVGs
# are well-formed with one line per rule, finished runs are skipped and
# unfinished ones redone, a diverging rule is reported, bad options fail.
. "${top_srcdir:-.}/tests/testlib.sh"

# near(A, B): equal to 1e-9 (relative); both empty counts as equal
near() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a == "" || b == "") exit !(a == b)
    d = a - b; if (d < 0) d = -d; m = a < 0 ? -a : a
    exit !(d <= 1e-9 * (1 + m)) }'
}
# csv_field FILE RULE COLUMN: one cell of the CSV, found by its header
csv_field() {
  awk -F, -v r="$2" -v c="$3" 'NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
    $1 == r { print $h[c] }' "$1"
}
# md_cell FILE RULE N: the N-th cell (1 = rule) of RULE's markdown row
md_cell() {
  awk -F' [|] ' -v r="$2" -v n="$3" '$1 == "| " r { print $n }' "$1"
}
# json_field FIELD: the value of FIELD in each JSON line on stdin
json_field() {
  sed -n "s/.*\"$1\":\\([^,}]*\\).*/\\1/p"
}
# Final test accuracy of each seed of RULE, from the last epoch record.
finals() {
  for f in "$dir/$1"-s*.jsonl; do
    grep '"type":"epoch"' "$f" | tail -n1 | json_field test_acc
  done
}
mean() { awk '{ s += $1; n++ } END { printf "%.17g\n", s / n }'; }
sd() { # sample standard deviation
  awk '{ v[NR] = $1; s += $1 } END { m = s / NR; for (i = 1; i <= NR; i++) q += (v[i] - m) ^ 2
    printf "%.17g\n", (NR > 1 ? sqrt(q / (NR - 1)) : 0) }'
}
median() {
  sort -g | awk '{ v[NR] = $1 } END {
    printf "%.17g\n", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
xml_ok() { # well-formed XML, when python3 can tell
  command -v python3 > /dev/null 2>&1 || return 0
  python3 -c 'import xml.dom.minidom,sys; xml.dom.minidom.parse(sys.argv[1])' "$1"
}
sums() { cksum "$dir"/*.jsonl; }

# A small learning rate, so that the seeds and the rules end apart.
write_synthetic_ini "$tmp/m.ini" bp 5
dir=$tmp/cmp
expect_exit 0 "$PLAST" compare "$tmp/m.ini" --rules bp,drtp --seeds 0,1 --epochs 2 \
  --set optimizer.lr=0.002 --out "$dir"
for f in bp-s0.jsonl bp-s1.jsonl drtp-s0.jsonl drtp-s1.jsonl compare.md compare.csv \
         accuracy.svg memory.svg; do
  [ -s "$dir/$f" ] || fail "no $f"
done
cmp -s "$tmp/out" "$dir/compare.md" || fail "the table on stdout differs from compare.md"
grep -q '^run 4/4: drtp seed 1: training' "$tmp/err" || fail "no progress note: $(cat "$tmp/err")"
for f in "$dir"/*.jsonl; do
  [ "$(grep -c '"type":"epoch"' "$f")" -eq 2 ] || fail "$f: expected 2 epoch records"
  tail -n1 "$f" | grep -q '"type":"summary","status":"ok"' || fail "$f: no ok summary"
done
grep -q '"seed":1,' "$dir/drtp-s1.jsonl" || fail "drtp-s1 was not trained with seed 1"
[ "$(sed -n '$=' "$tmp/out")" -eq 4 ] || fail "expected a header, a rule line and 2 rows"

# the table, recomputed from the logs
bp_mean=$(finals bp | mean)
for rule in bp drtp; do
  m=$(finals $rule | mean)
  s=$(finals $rule | sd)
  near "$(csv_field "$dir/compare.csv" $rule test_acc_mean)" "$m" || fail "$rule: CSV mean, logs say $m"
  near "$(csv_field "$dir/compare.csv" $rule test_acc_std)" "$s" || fail "$rule: CSV std, logs say $s"
  want=$(awk -v m="$m" -v s="$s" 'BEGIN { printf "%.2f \302\261 %.2f", 100 * m, 100 * s }')
  [ "$(md_cell "$tmp/out" $rule 2)" = "$want" ] || fail "$rule: markdown accuracy, want '$want'"
  gap=$(awk -v m="$m" -v b="$bp_mean" 'BEGIN { printf "%.17g", m - b }')
  near "$(csv_field "$dir/compare.csv" $rule gap_to_bp)" "$gap" || fail "$rule: CSV gap, want $gap"
  t=$(cat "$dir/$rule"-s*.jsonl | grep '"type":"epoch"' | json_field train_s | median)
  near "$(csv_field "$dir/compare.csv" $rule epoch_s_median)" "$t" || fail "$rule: s/epoch, want $t"
  w=$(cat "$dir/$rule"-s*.jsonl | grep '"type":"epoch"' | json_field weights | sort -g | tail -n1)
  near "$(csv_field "$dir/compare.csv" $rule peak_weights_bytes)" "$w" || fail "$rule: weights, want $w"
  p=$(head -n1 "$dir/$rule-s0.jsonl" | json_field params_primary)
  near "$(csv_field "$dir/compare.csv" $rule params)" "$p" || fail "$rule: params, want $p"
  [ "$(csv_field "$dir/compare.csv" $rule status)" = ok ] || fail "$rule: CSV status"
  [ "$(md_cell "$tmp/out" $rule 16)" = "ok |" ] || fail "$rule: markdown status"
done
# bp's own gap is +0.00, drtp's its difference in points
[ "$(md_cell "$tmp/out" bp 3)" = "+0.00" ] || fail "bp gap: $(md_cell "$tmp/out" bp 3)"
want=$(awk -v m="$(finals drtp | mean)" -v b="$bp_mean" 'BEGIN {
  g = 100 * m - 100 * b; printf "%+.2f", (g > -0.005 && g < 0.005) ? 0 : g }')
[ "$(md_cell "$tmp/out" drtp 3)" = "$want" ] || fail "drtp gap $(md_cell "$tmp/out" drtp 3), want $want"

# the figures
for f in accuracy memory; do
  xml_ok "$dir/$f.svg" || fail "$f.svg is not well-formed XML"
  grep -q 'viewBox=' "$dir/$f.svg" || fail "$f.svg has no viewBox"
  grep -q '>bp</text>' "$dir/$f.svg" || fail "$f.svg does not name bp"
  grep -q '>drtp</text>' "$dir/$f.svg" || fail "$f.svg does not name drtp"
done
[ "$(grep -c '<polyline' "$dir/accuracy.svg")" -eq 2 ] || fail "expected one polyline per rule"
grep -q '>test accuracy (%)</text>' "$dir/accuracy.svg" || fail "accuracy.svg: no y label"
grep -q '>activations</text>' "$dir/memory.svg" || fail "memory.svg: no category legend"
grep -q 'MiB' "$dir/memory.svg" || fail "memory.svg: no unit"

# a second run trains nothing, and its table is the same
sums > "$tmp/sums1"
cp "$tmp/out" "$tmp/table1"
expect_exit 0 "$PLAST" compare "$tmp/m.ini" --rules bp,drtp --seeds 0,1 --epochs 2 \
  --set optimizer.lr=0.002 --out "$dir"
sums | cmp -s - "$tmp/sums1" || fail "complete logs were rewritten"
[ "$(grep -c ': skipped, complete log' "$tmp/err")" -eq 4 ] || fail "runs not skipped"
grep -q '^epoch ' "$tmp/err" && fail "a complete run was trained again"
cmp -s "$tmp/out" "$tmp/table1" || fail "the same logs gave another table"

# a log cut short is redone from the start, the others are kept
sed '$d' "$dir/drtp-s1.jsonl" > "$tmp/cut" && cp "$tmp/cut" "$dir/drtp-s1.jsonl"
expect_exit 0 "$PLAST" compare "$tmp/m.ini" --rules bp,drtp --seeds 0,1 --epochs 2 \
  --set optimizer.lr=0.002 --out "$dir"
[ "$(grep -c ': skipped, complete log' "$tmp/err")" -eq 3 ] || fail "expected 3 runs skipped"
grep -q '^run 4/4: drtp seed 1: training' "$tmp/err" || fail "the cut log was not redone"
[ "$(wc -l < "$dir/drtp-s1.jsonl")" -eq 4 ] || fail "the redone log was appended to"
tail -n1 "$dir/drtp-s1.jsonl" | grep -q '"status":"ok"' || fail "the redone log is incomplete"
sums | grep -v drtp-s1 > "$tmp/sums2"
grep -v drtp-s1 "$tmp/sums1" | cmp -s - "$tmp/sums2" || fail "complete logs were rewritten"

# another configuration is not taken for a finished run
expect_exit 0 "$PLAST" compare "$tmp/m.ini" --rules bp --seeds 0 --epochs 2 \
  --set optimizer.lr=0.003 --out "$dir"
grep -q '^run 1/1: bp seed 0: training' "$tmp/err" || fail "a log of lr 0.002 was reused for lr 0.003"

# A rule that diverges is reported, not dropped.  MSE's gradient grows
# with the error, so plain SGD with a step of 10 overshoots the output
# layer's quadratic by more than twice the curvature: the error grows
# geometrically and overflows to inf/NaN within ~12 batches of epoch 1
# (every seed tried, 0-9).  ReLU keeps the hidden layer from saturating,
# and DRTP alone gets the step, via its [rule.drtp] section.
sed 's/^type = tanh$/type = relu/' "$tmp/m.ini" > "$tmp/d.ini"
printf '[loss]\ntype = mse\n[rule.drtp]\noptimizer.type = sgd\noptimizer.lr = 10\n' >> "$tmp/d.ini"
dir=$tmp/div
expect_exit 0 "$PLAST" compare "$tmp/d.ini" --rules bp,drtp --seeds 0,1 --epochs 2 --out "$dir"
grep -q 'training diverged' "$tmp/err" || fail "no divergence message"
for s in 0 1; do
  tail -n1 "$dir/drtp-s$s.jsonl" | grep -q '"type":"summary","status":"training diverged"' ||
    fail "drtp-s$s: no diverged summary"
  tail -n1 "$dir/bp-s$s.jsonl" | grep -q '"status":"ok"' || fail "bp-s$s should train"
done
[ "$(md_cell "$tmp/out" drtp 16)" = "diverged (2 of 2 seeds) |" ] || fail "drtp not reported diverged"
[ "$(md_cell "$tmp/out" bp 16)" = "ok |" ] || fail "bp: $(md_cell "$tmp/out" bp 16)"
[ "$(csv_field "$dir/compare.csv" drtp status)" = diverged ] || fail "CSV: drtp status"
[ "$(csv_field "$dir/compare.csv" drtp diverged_seeds)" = 2 ] || fail "CSV: drtp diverged seeds"
[ -z "$(csv_field "$dir/compare.csv" drtp test_acc_mean)" ] || fail "CSV: a diverged rule has no accuracy"
grep -q '>drtp (diverged 2 of 2)</text>' "$dir/accuracy.svg" || fail "accuracy.svg: no diverged entry"
xml_ok "$dir/accuracy.svg" || fail "accuracy.svg (diverged) is not well-formed"
sums > "$tmp/sums3"
expect_exit 0 "$PLAST" compare "$tmp/d.ini" --rules bp,drtp --seeds 0,1 --epochs 2 --out "$dir"
sums | cmp -s - "$tmp/sums3" || fail "a diverged run (a final result) was rewritten"
[ "$(grep -c ': skipped, complete log' "$tmp/err")" -eq 4 ] || fail "a diverged run was redone"

# without --seeds each rule runs once with its configured seed, in
# compare-FILE of the current directory
(cd "$tmp" && "$PLAST" compare m.ini --rules drtp --epochs 1 --progress=none > out2 2> err2) ||
  fail "default output directory: $(cat "$tmp/err2")"
[ -s "$tmp/compare-m/drtp-s7.jsonl" ] || fail "expected compare-m/drtp-s7.jsonl (the [run] seed)"
[ -s "$tmp/err2" ] && fail "--progress=none wrote: $(cat "$tmp/err2")"

# an unknown rule: train's one-line error and status, before any training
expect_exit 78 "$PLAST" train "$tmp/m.ini" --rule nosuch
cp "$tmp/err" "$tmp/train_err"
expect_exit 78 "$PLAST" compare "$tmp/m.ini" --rules bp,nosuch --out "$tmp/none"
cmp -s "$tmp/err" "$tmp/train_err" || fail "compare said '$(cat "$tmp/err")', train '$(cat "$tmp/train_err")'"
[ -e "$tmp/none" ] && fail "an output directory was made for a bad rule"

# usage errors name what was found
expect_exit 64 "$PLAST" compare "$tmp/m.ini" --rules bp --seeds 0,x,2
grep -q '"x"' "$tmp/err" || fail "bad seed not named: $(cat "$tmp/err")"
expect_exit 64 "$PLAST" compare "$tmp/m.ini" --rules bp --seeds 0,,1
expect_exit 64 "$PLAST" compare "$tmp/m.ini" --rules bp --seeds -1
expect_exit 64 "$PLAST" compare "$tmp/m.ini" --rules bp --seeds 1,1
expect_exit 64 "$PLAST" compare "$tmp/m.ini" --rules bp,,drtp
expect_exit 64 "$PLAST" compare "$tmp/m.ini" --rules bp --epochs 0
expect_exit 64 "$PLAST" compare "$tmp/m.ini"
grep -q 'missing --rules' "$tmp/err" || fail "missing --rules: $(cat "$tmp/err")"
expect_exit 64 "$PLAST" compare --rules bp
expect_exit 64 "$PLAST" compare "$tmp/m.ini" --rules
grep -q "option '--rules' needs a value" "$tmp/err" || fail "--rules without a value: $(cat "$tmp/err")"
expect_exit 0 "$PLAST" compare --help
grep -q '^Usage: plast compare' "$tmp/out" || fail "compare --help"
exit 0
