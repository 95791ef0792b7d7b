#!/bin/sh
# cli_train.sh ECGPRUNE EXCERPT_DIR - `ecgprune train` and `ecgprune
# finetune` end to end on the shipped excerpt with a tiny U-Net: the model
# loads, the same seed gives the same bytes, a checkpoint resumes,
# progress lines appear in a log, fine-tuning writes a model, and bad usage
# and missing records give the documented exit statuses.
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
run "$ecgprune" finetune "$work/a.safetensors" "$excerpt/208" \
    --freeze-encoder --epochs 1 --steps 2 --batch 2 \
    --out "$work/g.safetensors" --quiet
check_status "finetune --freeze-encoder" 0

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
cli_end
