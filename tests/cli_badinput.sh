#!/bin/sh
# Bad inputs and what each gets: the exit code and the one line on stderr
# (the README's "Bad input" section is the table of these and more).
. "${top_srcdir:-.}/tests/testlib.sh"
cd "$tmp" || exit 99

# expect CODE TEXT ARGS...: plast ARGS exits CODE with TEXT in stderr's
# first line
expect() {
  code=$1 text=$2; shift 2
  expect_exit "$code" "$PLAST" "$@"
  head -n1 "$tmp/err" | grep -qF -- "$text" ||
    fail "plast $*: expected \"$text\", found \"$(head -n1 "$tmp/err")\""
}
write_synthetic_ini base.ini bp 1
edit() { sed "$1" base.ini > "$2"; }

# the INI file
expect 66 "plast: cannot open nosuch.ini: No such file or directory" train nosuch.ini
edit 's/^\[optimizer\]/[optimiser]/' sec.ini
expect 78 "plast:sec.ini:" train sec.ini
expect 78 "unknown section [optimiser]" train sec.ini
edit 's/^epochs = 1/epochs = 0/' range.ini
expect 78 '[run] epochs: expected an integer in [1, 1e+06], found "0"' train range.ini
edit 's/^batch = 32/batch = 3x/' type.ini
expect 78 '[run] batch: expected an integer in [1, 1e+06], found "3x"' train type.ini
{ cat base.ini; printf '; %0250d\n' 0; } > long.ini
expect 78 "line longer than 199 characters" train long.ini
{ cat base.ini; printf 'x = a\000b\n'; } > nul.ini
expect 78 "line contains a nul byte" train nul.ini
# control characters quoted from the file are shown, not sent to the terminal
printf '[run]\n\033[2Jepochs 3\n' > esc.ini
expect 78 'found "\x1b[2Jepochs 3"' train esc.ini
grep -q "$(printf '\033')" "$tmp/err" && fail "an escape character reached stderr"

# rule names
edit 's/^name = bp/name = ..\/bp/' rpath.ini
expect 78 '[rule] name: invalid rule name "../bp" (expected [a-z0-9_], at most 63 characters)' \
  train rpath.ini
expect 78 'invalid rule name "/tmp/evil"' train base.ini --rule /tmp/evil
expect 78 "no rule 'nosuch' found" train base.ini --rule nosuch

# data files
idx() { # IMAGES-HEX LABELS-HEX: IDX files from hex bytes, an INI naming them
  printf "$1" > img; printf "$2" > lab
  edit "s|^format = synthetic|format = idx\ntrain_images = img\ntrain_labels = lab|" idx.ini
}
idx '\0\0\10\3\0\0\0\3\0\0\0\2\0\0\0\2\1\2\3' '\0\0\10\1\0\0\0\3\0\1\2'
expect 65 "img: truncated: expected 28 bytes (header and image data), found 19" train idx.ini
idx '\0\0\10\3\0\17\102\100\0\0\0\34\0\0\0\34' '\0\0\10\1\0\0\0\3\0\1\2'
expect 65 "img: truncated: expected 784000016 bytes (header and image data), found 16" train idx.ini
idx '\0\0\10\1\0\0\0\3\0\0\0\2\0\0\0\2' '\0\0\10\1\0\0\0\3\0\1\2'
expect 65 "expected IDX image magic 0x00000803, found 0x00000801" train idx.ini
printf '1,2,0\n3,x4,1\n' > bad.csv
edit 's|^format = synthetic|format = csv\ntrain = bad.csv\nlabel_column = 2|' csv.ini
expect 65 'bad.csv:2: column 2: expected a number, found "x4"' train csv.ini

# checkpoints
expect_exit 0 "$PLAST" train base.ini --checkpoint good.ckpt --progress none
expect 66 "cannot open checkpoint: No such file or directory" train base.ini --resume no.ckpt
head -c 10 good.ckpt > short.ckpt
expect 65 "checkpoint is too short (10 bytes, at least 20 expected)" train base.ini --resume short.ckpt
printf 'hello, not a checkpoint' > text.ckpt
expect 65 "not a plast checkpoint (bad magic)" train base.ini --resume text.ckpt
expect 65 "checkpoint is for rule 'bp', this run uses 'drtp'" train base.ini --rule drtp \
  --resume good.ckpt

# a diverging run: exit 1, epoch and batch named, the checkpoint not written
sed 's/^type = tanh$/type = relu/; s/^type = adam/type = sgd/; s/^lr = 0.01/lr = 10/' \
  base.ini > div.ini
printf '[loss]\ntype = mse\n' >> div.ini
expect 1 "plast: training diverged at epoch 1, batch " train div.ini --checkpoint div.ckpt \
  --progress none
[ -e div.ckpt ] && fail "a diverged run wrote a checkpoint"
exit 0
