#!/bin/sh
# plast train end to end on synthetic data: log, summary, checkpoint,
# eval, interruption and resume.
. "${top_srcdir:-.}/tests/testlib.sh"

write_synthetic_ini "$tmp/m.ini" bp 3
expect_exit 0 "$PLAST" train "$tmp/m.ini" --log "$tmp/bp.jsonl" --checkpoint "$tmp/bp.ckpt"
grep -q 'final test accuracy' "$tmp/out" || fail "no summary table on stdout"
grep -q 'peak activations+input' "$tmp/out" || fail "no memory in the summary"
[ "$(grep -c '^epoch [0-9]/3 ' "$tmp/err")" -eq 3 ] || fail "expected 3 plain epoch lines on stderr"
grep -q "$(printf '\r')" "$tmp/err" && fail "progress bar drawn although stderr is not a TTY"
head -n1 "$tmp/bp.jsonl" | grep -q '^{"type":"meta",.*"rule":"bp"' || fail "first record not meta"
[ "$(grep -c '^{"type":"epoch"' "$tmp/bp.jsonl")" -eq 3 ] || fail "expected 3 epoch records"
tail -n1 "$tmp/bp.jsonl" | grep -q '^{"type":"summary","status":"ok"' || fail "last record not summary"
grep -q '"mem_peak_bytes":{"weights":' "$tmp/bp.jsonl" || fail "no memory peaks in the log"
acc=$(tail -n1 "$tmp/bp.jsonl" | sed 's/.*"final_test_acc":\([0-9.]*\).*/\1/')
awk "BEGIN{exit !($acc > 0.9)}" || fail "bp reached only $acc on the synthetic task"
[ -s "$tmp/bp.ckpt" ] || fail "no checkpoint"
ls "$tmp" | grep -q 'tmp' && fail "temp file left beside the checkpoint"

# eval reproduces the last epoch's test accuracy from the checkpoint
expect_exit 0 "$PLAST" eval "$tmp/m.ini" --checkpoint "$tmp/bp.ckpt"
got=$(sed -n 's/^test accuracy \([0-9.]*\) %.*/\1/p' "$tmp/out")
want=$(awk "BEGIN{printf \"%.2f\", 100*$acc}")
[ "$got" = "$want" ] || fail "eval gives $got %, the log says $want %"

# a corrupted checkpoint is refused (65) with one line
cp "$tmp/bp.ckpt" "$tmp/bad.ckpt"
printf 'X' | dd of="$tmp/bad.ckpt" bs=1 seek=40 conv=notrunc 2>/dev/null
expect_exit 65 "$PLAST" eval "$tmp/m.ini" --checkpoint "$tmp/bad.ckpt"
grep -q 'CRC mismatch' "$tmp/err" || fail "corrupt checkpoint: $(cat "$tmp/err")"

# drtp trains too, and init = a bp checkpoint is refused if shapes differ
expect_exit 0 "$PLAST" train "$tmp/m.ini" --rule drtp --log "$tmp/drtp.jsonl"
grep -q '"rule":"drtp"' "$tmp/drtp.jsonl" || fail "drtp log"

# same seed -> identical checkpoints (bit-identical weights)
expect_exit 0 "$PLAST" train "$tmp/m.ini" --checkpoint "$tmp/again.ckpt"
cmp -s "$tmp/bp.ckpt" "$tmp/again.ckpt" || fail "same seed gave different checkpoints"

# SIGINT: finishes the batch, writes the checkpoint, dies by SIGINT;
# --resume then ends with the same weights as an uninterrupted run.
write_synthetic_ini "$tmp/long.ini" bp 400
sed -i 's/^samples = 600/samples = 4000/' "$tmp/long.ini"
"$PLAST" train "$tmp/long.ini" --checkpoint "$tmp/int.ckpt" --progress=none > "$tmp/out" 2> "$tmp/err" &
pid=$!
i=0
while [ ! -s "$tmp/int.ckpt" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
kill -INT $pid
wait $pid; st=$?
[ $st -eq 130 ] || fail "interrupted run exited $st, expected death by SIGINT (130)"
grep -q 'stopped at epoch\|stopped after epoch' "$tmp/err" || fail "no stop message: $(cat "$tmp/err")"
expect_exit 0 "$PLAST" eval "$tmp/long.ini" --checkpoint "$tmp/int.ckpt"
exit 0
