#!/bin/sh
# cli_train.sh ECGPRUNE EXCERPT_DIR - `ecgprune train` and `ecgprune
# finetune` end to end on the shipped excerpt with a tiny U-Net: the model
# loads, the same seed gives the same bytes, a checkpoint resumes,
# progress lines appear in a log, fine-tuning writes a model, bad usage
# and missing records give the documented exit statuses, and unusable
# output paths and list files are refused before any training.
ecgprune=$1
excerpt=$2
. "$(dirname "$0")/cli_lib.sh"
cli_begin cli_train
tiny="--widths 4,8,16 --kernel 5 --window 512 --batch 2 --steps 3"

# shellcheck disable=SC2086
run "$ecgprune" train --data "$excerpt" --records 208,100 --epochs 2 \
    --seed 3 $tiny --out "$work/a.safetensors" 2> "$work/a.log"
check_status "train" 0
check "model loads" "$ecgprune" info "$work/a.safetensors"
check "progress lines in the log" grep -q "^epoch 2/2  step 6/6  loss" \
    "$work/a.log"
check "no terminal control codes in the log" \
    sh -c "! grep -q \"$(printf '\r')\" \"$work/a.log\""

# Same seed, same bytes; another seed, other bytes.
# shellcheck disable=SC2086
"$ecgprune" train --data "$excerpt" --records 208,100 --epochs 2 --seed 3 \
    $tiny --out "$work/b.safetensors" --quiet
check "same seed, same model" cmp -s "$work/a.safetensors" \
    "$work/b.safetensors"
# shellcheck disable=SC2086
"$ecgprune" train --data "$excerpt" --records 208,100 --epochs 2 --seed 4 \
    $tiny --out "$work/c.safetensors" --quiet
check "other seed, other model" sh -c "! cmp -s '$work/a.safetensors' \
    '$work/c.safetensors'"

# Checkpoint after 2 epochs, resume to 2 epochs again: nothing left to do,
# the same model; the .opt state sits beside it.
# shellcheck disable=SC2086
"$ecgprune" train --data "$excerpt" --records 208,100 --epochs 2 --seed 3 \
    $tiny --out "$work/d.safetensors" --checkpoint "$work/ck" --quiet
check "checkpoint and state written" test -s "$work/ck.opt"
# shellcheck disable=SC2086
run "$ecgprune" train --data "$excerpt" --records 208,100 --epochs 2 \
    --seed 3 $tiny --out "$work/e.safetensors" --checkpoint "$work/ck" \
    --resume --quiet
check_status "resume" 0
check "resumed run ends at the same model" cmp -s "$work/a.safetensors" \
    "$work/e.safetensors"

# Fine-tuning on the first minute of 208.
run "$ecgprune" finetune "$work/a.safetensors" "$excerpt/208" --minutes 1 \
    --epochs 1 --steps 2 --batch 2 --out "$work/f.safetensors" --quiet
check_status "finetune" 0
check "fine-tuned model differs" sh -c "! cmp -s '$work/a.safetensors' \
    '$work/f.safetensors'"
# The default 5 minutes of a 3-minute excerpt: all of it, with a warning
# that nothing is left to score on (--quiet silences progress only).
run "$ecgprune" finetune "$work/a.safetensors" "$excerpt/208" \
    --freeze-encoder --epochs 1 --steps 2 --batch 2 \
    --out "$work/g.safetensors" --quiet 2> "$work/g.err"
check_status "finetune --freeze-encoder" 0
check "finetune warns of a record shorter than --minutes" grep -q \
    "208 holds 3.0 minutes (180 s), not more than --minutes 5: all of it" \
    "$work/g.err"
# Another lead by name; the same run on it gives another model.
run "$ecgprune" finetune "$work/a.safetensors" "$excerpt/208" --minutes 1 \
    --epochs 1 --steps 2 --batch 2 --signal V1 --out "$work/v1.safetensors" \
    --quiet
check_status "finetune --signal V1" 0
check "finetune on V1 differs from MLII" sh -c "! cmp -s \
    '$work/f.safetensors' '$work/v1.safetensors'"
run "$ecgprune" finetune "$work/a.safetensors" "$excerpt/208" --foo 3 \
    --out "$work/x.safetensors" 2> "$work/foo.err"
check_status "finetune --foo" 2
check "unknown option named" grep -q "unknown option '--foo'" "$work/foo.err"
run "$ecgprune" finetune "$work/a.safetensors" "$excerpt/208" --epochs 1 \
    --epochs 2 --out "$work/x.safetensors" 2> "$work/twice.err"
check_status "finetune --epochs twice" 2
check "a repeated option named" grep -q "option '--epochs' given 2 times" \
    "$work/twice.err"
cp "$excerpt/208.hea" "$excerpt/208.dat" "$excerpt/208.atr" "$work/"
run "$ecgprune" finetune "$work/a.safetensors" "$work/208" \
    --out "$work/208.dat" 2> "$work/self.err"
check_status "finetune --out the record's signal" 2
check "the record's signal file named" grep -q \
    "is $work/208.dat, a file of the record being read" "$work/self.err"
check "the record's signal stays" cmp -s "$excerpt/208.dat" "$work/208.dat"

# Bad usage: 2; a missing record: 1 with its name in the message.
run "$ecgprune" train --records 208 2> /dev/null
check_status "train without --out" 2
run "$ecgprune" train --records 208 --widths 4,x --out "$work/x" \
    2> /dev/null
check_status "bad --widths" 2
run "$ecgprune" train --data "$excerpt" --records 999 \
    --out "$work/x.safetensors" 2> "$work/missing.err"
check_status "missing record" 1
check "message names the record" grep -q "999" "$work/missing.err"
check "no model written for a failed run" test ! -e "$work/x.safetensors"
run "$ecgprune" finetune "$work/a.safetensors" 2> /dev/null
check_status "finetune without RECORD" 2

# Output paths are checked before any record is read (these runs would
# otherwise train for the whole of 208 and 100): FIFOs, directories and
# missing directories give 1 and stay as they were, an empty name or
# --out naming the checkpoint's state file gives 2.  --list must be a
# regular file without NUL bytes (/dev/zero once read forever).
mkfifo "$work/fifo"
mkdir "$work/dir"
printf '208\0junk\n' > "$work/nul.list"
train_out() {  # train_out STATUS PATTERN ARGS...: a train run refused
    want=$1
    pattern=$2
    shift 2
    run timeout 20 "$ecgprune" train --data "$excerpt" --records 208,100 \
        "$@" 2> "$work/out.err"
    check_status "train $*" "$want"
    check "train $*: message '$pattern'" grep -q -- "$pattern" \
        "$work/out.err"
}
train_out 1 "--out $work/fifo: not a regular file" --out "$work/fifo"
train_out 1 "--out $work/dir: is a directory" --out "$work/dir"
train_out 1 "--out $work/nodir/m.safetensors: directory" \
    --out "$work/nodir/m.safetensors"
train_out 2 "--out needs a file name" --out ""
train_out 1 "--checkpoint $work/fifo: not a regular file" \
    --out "$work/y.safetensors" --checkpoint "$work/fifo"
train_out 1 "--checkpoint $work/nodir/ck: directory" \
    --out "$work/y.safetensors" --checkpoint "$work/nodir/ck"
mkfifo "$work/ck3.opt"
train_out 1 "--checkpoint $work/ck3.opt: not a regular file" \
    --out "$work/y.safetensors" --checkpoint "$work/ck3"
check "FIFO state file still a FIFO" test -p "$work/ck3.opt"
check "no checkpoint written beside it" test ! -e "$work/ck3"
train_out 2 "name the same file" --out "$work/ck2.opt" \
    --checkpoint "$work/ck2"
run timeout 20 "$ecgprune" train --data "$excerpt" --list /dev/zero \
    --out "$work/y.safetensors" 2> "$work/zero.err"
check_status "train --list /dev/zero" 2
check "/dev/zero list refused" grep -q "is not a regular file" \
    "$work/zero.err"
run timeout 20 "$ecgprune" train --data "$excerpt" --list "$work/nul.list" \
    --out "$work/y.safetensors" 2> "$work/nul.err"
check_status "train --list with a NUL byte" 2
check "NUL line named" grep -q "line 1: NUL byte" "$work/nul.err"
check "train: no model written by refused runs" \
    test ! -e "$work/y.safetensors"

# finetune: the same checks before the model is loaded and tuned.
for target in fifo dir nodir/m.safetensors; do
    run timeout 20 "$ecgprune" finetune "$work/a.safetensors" \
        "$excerpt/208" --out "$work/$target" --quiet 2> "$work/ft.err"
    check_status "finetune --out $target" 1
    check "finetune --out $target named" grep -q -- "--out $work/$target" \
        "$work/ft.err"
done
run "$ecgprune" finetune "$work/a.safetensors" "$excerpt/208" --out "" \
    2> /dev/null
check_status "finetune --out ''" 2
check "FIFO still a FIFO" test -p "$work/fifo"
check "directory still an empty directory" rmdir "$work/dir"

# Each numeric option names itself and its range when out of it.
for c in "--batch 0|bad --batch '0' (expected a whole number from 1 to 4096)" \
    "--epochs 0|bad --epochs '0' (expected a whole number from 1 to 100000)" \
    "--lr 10|bad --lr '10' (expected a number from 1e-7 to below 10)" \
    "--rate 10|bad --rate '10' (expected 50 to 10000 Hz)" \
    "--kernel 1025|bad --kernel '1025' (expected a whole number from 1 to 1024)"
do
    # shellcheck disable=SC2086
    run "$ecgprune" train --data "$excerpt" --records 100 \
        --out "$work/y.safetensors" ${c%%|*} 2> "$work/range.err"
    check_status "train ${c%%|*}" 2
    check "train ${c%%|*} named" grep -qF -- "${c#*|}" "$work/range.err"
done

# SIGTERM stops a run at its next step, --quiet or not (with --quiet
# nothing read the stop once), and writes no model.
for q in "" --quiet; do
    # shellcheck disable=SC2086
    "$ecgprune" train --data "$excerpt" --records 208 --epochs 100000 \
        --seed 3 $tiny --out "$work/term.safetensors" $q \
        2> "$work/term.err" &
    pid=$!
    sleep 1
    kill -TERM "$pid"
    status=0
    wait "$pid" || status=$?
    check_status "train ${q:-(with progress)} after SIGTERM" 1
    check "train ${q:-(with progress)}: cancelled" grep -q \
        "cancelled at step" "$work/term.err"
    check "train ${q:-(with progress)}: no model" \
        test ! -e "$work/term.safetensors"
done
cli_end
