#!/bin/sh
# cli_infer.sh ECGPRUNE MAKE_TEST_MODEL EXCERPT_DIR - `ecgprune infer` and
# `ecgprune eval` on the shipped excerpt (records 100 and 208, 3 minutes
# each) with a tiny untrained model: the JSON fields, their consistency
# with each other and with the reference annotation counts that
# `ecgprune record` gives, progress lines, --list, and the errors.  The
# model is random, so its accuracy is not checked.  Needs jq.
ecgprune=$1
make_model=$2
excerpt=$3
# shellcheck source-path=SCRIPTDIR source=cli_lib.sh
. "$(dirname "$0")/cli_lib.sh"
cli_begin cli_infer

# A background bias of 3 makes the random net's beat probability cross
# the threshold around QRS complexes, so that the outputs are not empty.
"$make_model" "$work/tiny.safetensors" 3
model=$work/tiny.safetensors

# infer: one JSON object whose beats are consistent with the summary.
"$ecgprune" infer "$model" "$excerpt/100" --json --from 10 --to 70 \
    > "$work/infer.json"
check "infer record, rate and signal" jq -e '.record | endswith("100")' \
    "$work/infer.json"
check "infer rate and signal" jq -e '.sampling_rate == 360 and
    .signal == "MLII" and .from == 10 and .to == 70' "$work/infer.json"
check "infer beats inside the span, time = sample / 360" jq -e '
    [.beats[] | .sample >= 3600 and .sample < 25200
        and ((.time - .sample / 360) | fabs) < 1e-6] | all' \
    "$work/infer.json"
check "infer beats sorted" jq -e '[.beats[].sample] == ([.beats[].sample]
    | sort)' "$work/infer.json"
check "infer beat fields" jq -e '[.beats[] |
    (.class | IN("N","S","V","F","Q")) and
    (.symbol == ({"N":"N","S":"A","V":"V","F":"F","Q":"Q"}[.class])) and
    .confidence >= 0 and .confidence <= 1] | all' "$work/infer.json"
check "infer summary counts" jq -e '
    (.summary.counts | add) == (.beats | length) and
    .summary.beats == (.beats | length) and
    .summary.n_beats == (.beats | length) and
    ((.summary.duration_s - 60) | fabs) < 1e-9 and
    .summary.abnormal == ((.summary.counts.S + .summary.counts.V
                           + .summary.counts.F) > 0)' "$work/infer.json"
check "infer heart rate from the mean RR interval" jq -e '
    if (.beats | length) < 2 then .summary.heart_rate == null
    else ((.summary.heart_rate - 60 * ((.beats | length) - 1)
          / (.beats[-1].time - .beats[0].time)) | fabs) < 1e-6 end' \
    "$work/infer.json"

# The table prints the same number of beats.
"$ecgprune" infer "$model" "$excerpt/100" --from 10 --to 70 \
    > "$work/infer.txt"
n_json=$(jq '.beats | length' "$work/infer.json")
check "infer table beat count" grep -q ": $n_json beats" "$work/infer.txt"

# eval of the whole excerpt of 100: references from the annotations.
"$ecgprune" record "$excerpt/100" --json > "$work/rec100.json"
"$ecgprune" eval "$model" "$excerpt/100" --json > "$work/eval100.json"
"$ecgprune" infer "$model" "$excerpt/100" --json > "$work/infer100.json"
refs=$(jq '.aami_counts | add' "$work/rec100.json")
dets=$(jq '.beats | length' "$work/infer100.json")
check "eval tp + fn = reference beats ($refs)" jq -e \
    ".detection.tp + .detection.fn == $refs" "$work/eval100.json"
check "eval tp + fp = inferred beats ($dets)" jq -e \
    ".detection.tp + .detection.fp == $dets" "$work/eval100.json"
check "eval confusion and missed sum to the references" jq -e '
    ([.confusion.matrix[][]] | add) + (.confusion.missed | add)
    == .detection.tp + .detection.fn' "$work/eval100.json"
check "eval support per class = aami counts" jq -e --slurpfile r \
    "$work/rec100.json" '[.classes | to_entries[] |
    .value.support == $r[0].aami_counts[.key]] | all' "$work/eval100.json"
check "eval labels and rates in [0,1]" jq -e '
    .confusion.labels == ["N","S","V","F","Q"] and
    ([.detection.se, .detection.ppv, .macro_f1,
      (.classes[] | .se, .ppv, .f1)] | all(. >= 0 and . <= 1))' \
    "$work/eval100.json"
check "eval Se = tp / (tp + fn)" jq -e '.detection as $d |
    ($d.se - $d.tp / ($d.tp + $d.fn) | fabs) < 1e-9' "$work/eval100.json"

# Two records: progress per record on stderr, gross = sum of per-record.
printf '# the excerpt\n%s/100\n\n%s/208  # second\n' "$excerpt" \
    "$excerpt" > "$work/list"
"$ecgprune" eval "$model" --list "$work/list" --json --per-record \
    > "$work/eval2.json" 2> "$work/eval2.err"
check "two progress lines" test "$(grep -c '^\[[12]/2\]' \
    "$work/eval2.err")" -eq 2
check "two records listed" jq -e '.records | length == 2' \
    "$work/eval2.json"
check "gross tp is the sum of per-record tp" jq -e '.detection.tp ==
    ([.per_record[].detection.tp] | add)' "$work/eval2.json"
check "average Se is the mean of per-record Se" jq -e '
    ((.average.detection.se - ([.per_record[].detection.se] | add / 2))
     | fabs) < 1e-9' "$work/eval2.json"
"$ecgprune" eval "$model" "$excerpt/100" "$excerpt/208" --per-record \
    > "$work/eval2.txt" 2> /dev/null
check "table has the confusion matrix" grep -q '^reference' \
    "$work/eval2.txt"
check "table has per-record lines" grep -q '208' "$work/eval2.txt"

# Errors: exit status and message.
run "$ecgprune" infer "$model" "$excerpt/nonexistent" 2> "$work/err1"
check_status "missing record" 1
check "missing record: message" grep -q 'nonexistent' "$work/err1"
run "$ecgprune" eval "$model" "$excerpt/100" --from 50 --to 10 \
    2> "$work/err2"
check_status "--to before --from" 2
run "$ecgprune" infer "$model" "$excerpt/100" --from 170 --to 190 \
    2> "$work/err4"
check_status "--to past the end" 1
check "--to past the end: message" grep -q \
    'span to 190 s is past the end of the record (180 s)' "$work/err4"
run "$ecgprune" infer "$model" "$excerpt/100" --from 500 2> "$work/err3"
check_status "--from past the end" 1
check "--from past the end: message" grep -q 'holds no sample' "$work/err3"
run "$ecgprune" infer "$model" "$excerpt/100" --signal V9 2> "$work/err4"
check_status "unknown signal" 1
check "unknown signal lists the record's signals" \
    grep -q "the record has 'MLII', 'V5'" "$work/err4"
run "$ecgprune" eval "$model" 2> /dev/null
check_status "eval without records" 2
run "$ecgprune" eval "$model" --list "$work/absent" 2> /dev/null
check_status "eval with a missing list" 2

cli_end
