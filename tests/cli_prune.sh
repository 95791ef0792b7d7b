#!/bin/sh
# cli_prune.sh ECGPRUNE MAKE_TEST_MODEL EXCERPT_DIR DEFAULT_MODEL -
# `ecgprune prune` on the shipped excerpt with a tiny untrained model (and
# the default model, for its refit warnings): every method writes a
# smaller model that `info`, `infer`, `eval` and `finetune` accept, masks JSON
# consistent with the model, the same seed gives the same bytes, hostile
# parameters get a clear error, and unusable output paths (FIFOs,
# directories, missing directories, one file for two outputs) are refused
# before any work.  Needs jq.
ecgprune=$1
make_model=$2
excerpt=$3
default_model=$4
# shellcheck source-path=SCRIPTDIR source=cli_lib.sh
. "$(dirname "$0")/cli_lib.sh"
cli_begin cli_prune

"$make_model" "$work/tiny.safetensors" 3
model=$work/tiny.safetensors
"$ecgprune" info "$model" --json > "$work/info0.json"
params0=$(jq '.parameters' "$work/info0.json")
calib="--calib $excerpt/208:0-60 --calib $excerpt/100:0-60"

# Every method: a smaller model the other commands load, run and score.
for method in ising-kernel ising-filter l1 random coreset contrib; do
    # shellcheck disable=SC2086
    "$ecgprune" prune "$model" $calib --method "$method" --keep 0.5 \
        --out "$work/$method.safetensors" --masks "$work/$method.json" \
        --json > "$work/$method.report" 2> /dev/null
    check "$method: report method" jq -e ".method == \"$method\"" \
        "$work/$method.report"
    check "$method: refit lowers every group's error" jq -e \
        '[.groups[] | .err_after <= .err_before + 1e-9] | all' \
        "$work/$method.report"
    check "$method: masks name the method" jq -e \
        ".method == \"$method\" and .keep == 0.5 and .reconstruct" \
        "$work/$method.json"
    check "$method: kept lists sorted, in range, of the stated size" jq -e \
        '[.groups[] | (.kept | length) == .channels_after and
          .kept == (.kept | unique) and .kept[0] >= 0 and
          .kept[-1] < .channels_before] | all' "$work/$method.json"
    "$ecgprune" info "$work/$method.safetensors" --json > "$work/info.json"
    check "$method: fewer parameters" jq -e ".parameters < $params0 / 2" \
        "$work/info.json"
    check "$method: infer runs" "$ecgprune" infer \
        "$work/$method.safetensors" "$excerpt/100" --json --from 60 --to 120
    "$ecgprune" eval "$work/$method.safetensors" "$excerpt/208" --json \
        > "$work/eval.json"
    check "$method: eval scores" jq -e '.macro_f1 >= 0 and .macro_f1 <= 1' \
        "$work/eval.json"
done

# The pruned model (BN folded away) fine-tunes like any other.
"$ecgprune" finetune "$work/ising-kernel.safetensors" "$excerpt/208" \
    --minutes 1 --epochs 1 --steps 2 --batch 2 --quiet \
    --out "$work/tuned.safetensors" > /dev/null 2>&1
check "finetuned pruned model scores" "$ecgprune" eval \
    "$work/tuned.safetensors" "$excerpt/208" --from 60 --json

# The channel counts in the masks are the pruned model's.
# shellcheck disable=SC2016
check "masks agree with the model" jq -e --slurpfile m \
    "$work/contrib.json" '[.architecture.layers[]
    | select(.name == "enc0.conv0") | .channels]
    == [$m[0].groups[0].channels_after]' "$work/info.json"

# Same seed, same bytes (also when the stretches follow one --calib); the
# readable report has one line per group.
# shellcheck disable=SC2086
"$ecgprune" prune "$model" $calib --method ising-kernel --keep 0.3 \
    --seed 9 --out "$work/a.safetensors" --masks "$work/a.json" \
    > "$work/a.txt" 2> /dev/null
"$ecgprune" prune "$model" --calib "$excerpt/208:0-60" "$excerpt/100:0-60" \
    --method ising-kernel --keep 0.3 --seed 9 --out "$work/b.safetensors" \
    --masks "$work/b.json" > /dev/null 2>&1
check "same seed: same model bytes" cmp "$work/a.safetensors" \
    "$work/b.safetensors"
check "same seed: same masks" cmp "$work/a.json" "$work/b.json"

# The daemon's largest seed, 2^63-1, is taken as it is (a daemon job can
# be rerun here) and recorded exactly, as text.
# shellcheck disable=SC2086
"$ecgprune" prune "$model" $calib --method random --keep 0.5 \
    --seed 9223372036854775807 --out "$work/bigseed.safetensors" \
    --masks "$work/bigseed.json" > /dev/null 2>&1
check "seed 2^63-1 recorded exactly" jq -e \
    '.seed == "9223372036854775807"' "$work/bigseed.json"
check "report names each group" grep -q '^enc0.conv0 ' "$work/a.txt"
check "report gives the MAC ratio" grep -q '^MACs per second .*ratio' \
    "$work/a.txt"

# --refit-drifted refits the classifier head, whose input group is kept
# whole: it then reports an error before and a lower one after, where the
# default reports none; the masks record the option, and --raw-norms too.
# shellcheck disable=SC2086
"$ecgprune" prune "$model" $calib --method l1 --keep 0.5 --refit-drifted \
    --raw-norms \
    --out "$work/d.safetensors" --masks "$work/d.json" --json \
    > "$work/d.report" 2> /dev/null
check "refit-drifted: the whole group is refitted" jq -e \
    '[.groups[] | select(.channels_after == .channels_before)] | length == 1
     and .[0].err_before > 0 and .[0].err_after < .[0].err_before' \
    "$work/d.report"
check "default: the whole group is not refitted" jq -e \
    '[.groups[] | select(.channels_after == .channels_before)] | length == 1
     and .[0].err_before == 0 and .[0].err_after == 0' "$work/l1.report"
check "refit-drifted, raw-norms: masks say so" jq -e \
    '.refit_drifted == true and .raw_norms == true' "$work/d.json"
check "default: masks say not" jq -e \
    '.refit_drifted == false and .raw_norms == false' "$work/l1.json"

# --distill: the report gives the divergence on the held-out windows
# before and for the checkpoint kept (every 2nd step of 20 is one); it
# fell, and the model differs from the refitted one, with the same
# channels; the masks record the steps (test_prune checks the divergences
# against ones computed from the outputs).
# shellcheck disable=SC2086
"$ecgprune" prune "$model" $calib --method l1 --keep 0.5 --distill 20 \
    --distill-lr 1e-3 --out "$work/kd.safetensors" --masks "$work/kd.json" \
    --json > "$work/kd.report" 2> "$work/kd.err"
check "distill: progress from step 1 to 20, each once" sh -c \
    'grep "^distill step" "$1" | cut -d" " -f3 | paste -sd" " - |
     grep -qx "1/20 5/20 10/20 15/20 20/20"' sh "$work/kd.err"
check "distill: divergence fell and a checkpoint was kept" jq -e \
    '.distill.steps == 20 and .distill.best_step > 0 and
     .distill.best_step % 2 == 0 and .distill.validation_windows > 0 and
     .distill.held_out == true and
     .distill.kl_after < .distill.kl_before and .distill.kl_after >= 0' \
    "$work/kd.report"
check "distill: masks say so" jq -e '.distill_steps == 20' "$work/kd.json"
check "distill: the same channels as without" jq -e --slurpfile m \
    "$work/l1.json" '.groups == $m[0].groups' "$work/kd.json"
check "distill: another model than without" sh -c \
    '! cmp -s "$1" "$2"' sh "$work/kd.safetensors" "$work/l1.safetensors"
# The text report names the model the divergence is measured from.
# shellcheck disable=SC2086
"$ecgprune" prune "$model" $calib --method l1 --keep 0.5 --distill 2 \
    --out "$work/kd2.safetensors" > "$work/kd2.txt" 2> /dev/null
check "distill: text report names the model" grep -q \
    "^distillation: divergence from $model on held-out windows" \
    "$work/kd2.txt"

# Ten seconds of calibration for the default model (the tiny one has
# too few unknowns to run short of rows): the JSON report's warnings name
# every group refitted from fewer than 10 rows per unknown, as stderr
# does, after the one about the beats: the first ten seconds of record 100
# hold one atrial premature beat (code 8, "A", at sample 2044 of 100.atr)
# and otherwise normal beats; the report carries the seed.
"$ecgprune" prune "$default_model" --calib "$excerpt/100:0-10" --method l1 \
    --keep 0.5 --seed 4 --out "$work/ten.safetensors" --json \
    > "$work/ten.report" 2> "$work/ten.err"
check "short calibration: one warning per underdetermined group" jq -e \
    '([.groups[] | select(.underdetermined > 0)] | length) as $n |
     $n > 0 and (.warnings | length) == $n + 1 and
     (.warnings[1:] | all(test("rows per unknown"))) and .seed == "4"' \
    "$work/ten.report"
check "short calibration: the beats warned of" jq -e '.warnings[0] |
    startswith("the calibration ECG holds fewer than 5 beats of S (1), " +
               "V (0), F (0); the pruned model may lose those classes")' \
    "$work/ten.report"
check "short calibration: stderr warns the same" sh -c \
    '[ "$(grep -c "^ecgprune prune: warning: " "$1")" = \
       "$(jq ".warnings | length" "$2")" ]' sh "$work/ten.err" \
    "$work/ten.report"
check "default: no distillation" jq -e '.distill_steps == 0 and
    (has("distill") | not)' "$work/l1.json"

# Hostile parameters: usage errors (2) and run-time errors (1).
expect() {  # expect STATUS PATTERN ARGS...
    status=$1
    pattern=$2
    shift 2
    set +e
    "$ecgprune" prune "$@" > /dev/null 2> "$work/err"
    got=$?
    set -e
    check "prune $*: status $status" test "$got" -eq "$status"
    check "prune $*: message '$pattern'" grep -q -- "$pattern" "$work/err"
    check "prune $*: command named once" sh -c \
        '! grep -q "prune: prune:" "$1"' sh "$work/err"
}
out="--out $work/x.safetensors"
# shellcheck disable=SC2086
{
expect 2 "keep" "$model" $calib --keep 0 $out
expect 2 "keep" "$model" $calib --keep 1.5 $out
expect 2 "mask-list" "$model" $calib --mask-list 0 $out
expect 2 "unknown method" "$model" $calib --method best $out
expect 2 "distill -1: expected 0..100000" "$model" $calib --distill -1 $out
expect 2 "distill-lr 0: expected a rate" "$model" $calib --distill-lr 0 $out
expect 2 "distill-lr without --distill" "$model" $calib --distill-lr 1e-3 $out
expect 2 "required" "$model" $out
expect 2 "seed 9223372036854775808: expected 0..9223372036854775807" \
    "$model" $calib --seed 9223372036854775808 $out
expect 2 "seed -1: expected 0.." "$model" $calib --seed -1 $out
expect 1 "shorter than one model window" "$model" \
    --calib "$excerpt/100:0-1" $out
expect 1 "FROM < TO" "$model" --calib "$excerpt/100:10-10" $out
expect 1 "nonexistent" "$model" --calib "$excerpt/nonexistent" $out
expect 1 "absent.safetensors" "$work/absent.safetensors" $calib $out
}

# Output paths, checked before any pruning: FIFOs, directories and
# missing directories are refused (1) and left as they were, an empty
# name or --out and --masks naming one file is bad usage (2).  A missing
# --masks directory once failed only after the model had been written.
mkfifo "$work/fifo1" "$work/fifo2"
mkdir "$work/outdir"
cp "$model" "$work/target.safetensors"
ln -s target.safetensors "$work/link.safetensors"
# shellcheck disable=SC2086
{
expect 1 "--out $work/fifo1: not a regular file" "$model" $calib \
    --out "$work/fifo1"
expect 1 "--masks $work/fifo2: not a regular file" "$model" $calib $out \
    --masks "$work/fifo2"
expect 1 "--masks $work/nodir/m.json: directory .*nodir" "$model" $calib \
    $out --masks "$work/nodir/m.json"
expect 1 "--out $work/nodir/o.safetensors: directory" "$model" $calib \
    --out "$work/nodir/o.safetensors"
expect 1 "--out $work/outdir: is a directory" "$model" $calib \
    --out "$work/outdir"
expect 2 "--out needs a file name" "$model" $calib --out ""
expect 2 "name the same file" "$model" $calib $out --masks \
    "$work/x.safetensors"
expect 2 "name the same file" "$model" $calib $out --masks \
    "$work/outdir/../x.safetensors"
expect 2 "name the same file" "$model" $calib --out \
    "$work/link.safetensors" --masks "$work/target.safetensors"
expect 2 "MODEL '$model' and --masks .* name the same file" "$model" \
    $calib $out --masks "$model"
expect 2 "MODEL '$model' and --out .* name the same file" "$model" \
    $calib --out "$model"
expect 2 "option '--keep' given 2 times, expected at most once" "$model" \
    $calib $out --keep 0.5 --keep 0.7
cp "$excerpt/208.hea" "$excerpt/208.dat" "$excerpt/208.atr" "$work/"
expect 2 "--out '$work/208.dat' is $work/208.dat, a file of the record" \
    "$model" --calib "$work/208:0-10" --out "$work/208.dat"
expect 2 "--masks '$work/208.atr' is $work/208.atr, a file of the record" \
    "$model" --calib "$work/208:0-10" $out --masks "$work/208.atr"
check "the record's files stay" cmp -s "$excerpt/208.dat" "$work/208.dat"
}
check "no model left by failed runs" test ! -e "$work/x.safetensors"
check "FIFO --out is still a FIFO" test -p "$work/fifo1"
check "FIFO --masks is still a FIFO" test -p "$work/fifo2"
check "directory --out is still an empty directory" \
    rmdir "$work/outdir"

# A symbolic link as --out is written through: it stays a link and its
# target holds the pruned model.  --out may not be the input MODEL (above),
# which stays as it was.
# shellcheck disable=SC2086
run "$ecgprune" prune "$model" $calib --method l1 --keep 0.5 \
    --out "$work/link.safetensors" > /dev/null 2>&1
check_status "prune --out a symbolic link" 0
check "the link stays a link" test -L "$work/link.safetensors"
"$ecgprune" info "$work/link.safetensors" --json > "$work/link.json"
check "the link's target holds the pruned model" jq -e \
    ".parameters < $params0 / 2" "$work/link.json"
check "the target is a regular file, not a link" sh -c \
    "test -f '$work/target.safetensors' && ! test -L '$work/target.safetensors'"
"$ecgprune" info "$model" --json > "$work/info1.json"
check "MODEL is left as it was" jq -e ".parameters == $params0" \
    "$work/info1.json"
check "no temporary files left" sh -c \
    "! ls '$work' | grep -q '\\.tmp'"

cli_end
