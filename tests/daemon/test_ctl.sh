#!/usr/bin/env bash
# test_ctl.sh - clients/ecgprunectl, the administrators' client, against the
# real daemon: every command once on the shipped excerpt (record 100), the
# subject check of inference, its error messages and exit statuses.
# shellcheck source=tests/daemon/lib.sh
. "$(dirname "$0")/lib.sh"

ctl() {
    "$ECGPRUNECTL" "$@"
}

# ctl_fails STATUS PATTERN ARGS...: the command exits with STATUS and says
# PATTERN on stderr.
ctl_fails() {
    local want=$1 pattern=$2 got=0
    shift 2
    ctl "$@" > /dev/null 2> "$WORK/ctl.err" || got=$?
    [ "$got" = "$want" ] ||
        fail "ecgprunectl $*: exit $got, expected $want"
    grep -q -- "$pattern" "$WORK/ctl.err" ||
        fail "ecgprunectl $*: stderr lacks '$pattern': $(cat "$WORK/ctl.err")"
}

start_daemon
export ECGPRUNE_URL=$URL
MODEL=$(test_model)

ctl health > "$WORK/out" || fail "health: $(cat "$WORK/out")"
grep -q '^/v2/health/ready 200$' "$WORK/out" || fail "health output"

# Upload, batch, job to completion.
MID=$(ctl upload-model "$MODEL" ctl-model | jq -r .id)
[ "$MID" = 1 ] || fail "upload-model printed id $MID"
BID=$(ctl upload-batch p-7 "$EXCERPT/100" | jq -r .id)
[ "$(ctl show batch "$BID" | jq -r .subject)" = p-7 ] ||
    fail "show batch: subject"
# A span of the record, as the CLI writes it: seconds FROM-TO, either
# open.
SID=$(ctl upload-batch p-7 "$EXCERPT/100:60-120" | jq -r .id)
[ "$(ctl show batch "$SID" | jq -r .duration_s)" = 60 ] ||
    fail "upload-batch 100:60-120: not 60 s"
SID=$(ctl upload-batch p-7 "$EXCERPT/100:150-" | jq -r .id)
[ "$(ctl show batch "$SID" | jq -r .duration_s)" = 30 ] ||
    fail "upload-batch 100:150-: not 30 s"
ctl_fails 1 'error 422 .*past the end of the record' upload-batch p-7 \
    "$EXCERPT/100:0-999"
JOB=$(ctl start-job "$MID" "$BID" l1 0.5 seed=4 | jq -r .id)
ctl watch "$JOB" > "$WORK/watch" 2> "$WORK/progress" ||
    fail "watch: $(tail -n 5 "$WORK/progress")"
grep -q "^job $JOB succeeded 100%" "$WORK/progress" ||
    fail "watch progress: $(tail -n 5 "$WORK/progress")"
[ "$(jq -r .state "$WORK/watch")" = succeeded ] ||
    fail "watch: stdout is not the final JSON: $(cat "$WORK/watch")"
PRUNED=$(ctl show job "$JOB" | jq -r .result.model_id)
[ "$PRUNED" = 2 ] || fail "pruned model id $PRUNED"
[ "$(ctl masks "$JOB" | jq -r .seed)" = 4 ] || fail "masks: seed"

# The model list shows lineage and subjects, tab-separated.
ctl list models > "$WORK/models"
grep -q "^2	.*	1	p-7$" "$WORK/models" ||
    fail "list models: pruned row: $(cat "$WORK/models")"
grep -q "^1	ctl-model	.*	-	-$" "$WORK/models" ||
    fail "list models: upload row: $(cat "$WORK/models")"

# Pages of one row give the same list; a page size that would change the
# request ('#' ends a URL) is refused before any request.
ECGPRUNE_PAGE_SIZE=1 ctl list models | cmp -s - "$WORK/models" ||
    fail "list models in pages of one differs"
for size in 0 1001 abc '5#x' ' 1'; do
    ECGPRUNE_PAGE_SIZE=$size ctl_fails 1 \
        'ECGPRUNE_PAGE_SIZE=.*expected a number from 1 to 1000' list models
done
ctl_fails 2 'list models|batches|jobs' list models extra
ctl_fails 2 'list models|batches|jobs' list jobs ''

# The job list gives progress in percent.
ctl list jobs succeeded > "$WORK/jobs"
grep -q "^$JOB	succeeded	1	.*	100$" "$WORK/jobs" ||
    fail "list jobs: $(cat "$WORK/jobs")"

# Inference: one line per beat, then the summary, whose count matches;
# named for another subject the pruned model refuses.
ctl infer "$PRUNED" "$EXCERPT/100" p-7 > "$WORK/beats" ||
    fail "infer: $(cat "$WORK/beats")"
[ "$(head -n 1 "$WORK/beats")" = "$(printf 'time_s\tsample\tclass\tconfidence')" ] ||
    fail "infer: no column header: $(head -n 1 "$WORK/beats")"
N=$(grep -c '^[0-9.]*	[0-9]*	[NSVFQ]	' "$WORK/beats")
grep -q "^summary: $N beats" "$WORK/beats" ||
    fail "infer: $N beat lines, summary $(grep summary "$WORK/beats")"
[ "$N" -gt 150 ] || fail "infer: only $N beats in 3 minutes"
ctl infer --json "$PRUNED" "$EXCERPT/100" p-7 > "$WORK/beats.json" ||
    fail "infer --json: $(cat "$WORK/beats.json")"
[ "$(jq -c '[(.beats | length), .summary.n_beats] | unique' \
    "$WORK/beats.json")" = "[$N]" ] ||
    fail "infer --json: not $N beats: $(head -c 300 "$WORK/beats.json")"
ctl_fails 1 'error 409 .*calibrated on subject(s) \["p-7"\], not "p-8"' \
    infer "$PRUNED" "$EXCERPT/100" p-8
ctl infer "$MID" "$EXCERPT/100" p-8 > /dev/null ||
    fail "infer with the uploaded model refused a subject"
# A span of the record, as upload-batch takes it: its first minute holds
# a third of the beats of three minutes or so, all within it.
ctl infer "$PRUNED" "$EXCERPT/100:0-60" > "$WORK/minute" ||
    fail "infer of a span: $(cat "$WORK/minute")"
M=$(grep -c '^[0-9.]*	[0-9]*	[NSVFQ]	' "$WORK/minute")
if [ $((M * 3)) -lt $((N - 6)) ] || [ $((M * 3)) -gt $((N + 6)) ]; then
    fail "infer of the first minute: $M beats, of 3 minutes: $N"
fi
awk -F '\t' 'NR > 1 && /^[0-9]/ && $1 >= 60 { bad = 1 } END { exit bad }' \
    "$WORK/minute" || fail "infer of the first minute: a beat past 60 s"

# A model comes back byte for byte, into the file named, and a failed
# download leaves no file behind.
ctl download-model "$MID" "$WORK/back.safetensors" > "$WORK/out" ||
    fail "download-model: $(cat "$WORK/out")"
cmp -s "$MODEL" "$WORK/back.safetensors" ||
    fail "download-model: the file differs from the upload"
grep -q "^model $MID saved to $WORK/back.safetensors ($(wc -c < "$MODEL") \
bytes, sha256 $(sha256sum "$MODEL" | cut -d' ' -f1))$" "$WORK/out" ||
    fail "download-model: $(cat "$WORK/out")"
[ "$(stat -c %a "$WORK/back.safetensors")" = \
    "$(printf '%o' $((0666 & ~$(umask))))" ] ||
    fail "download-model: mode $(stat -c %a "$WORK/back.safetensors")"
mkdir "$WORK/dl"
ctl_fails 1 'is a directory: name the file to write' download-model "$MID" \
    "$WORK/dl"
[ -z "$(ls -A "$WORK/dl")" ] || fail "download into a directory left files"
# A FIFO is refused and stays a FIFO; a link is written through.
mkfifo "$WORK/dl/fifo"
ctl_fails 1 'is not a regular file' download-model "$MID" "$WORK/dl/fifo"
[ -p "$WORK/dl/fifo" ] || fail "download-model replaced a FIFO"
ln -s target.safetensors "$WORK/dl/link"
ctl download-model "$MID" "$WORK/dl/link" > /dev/null ||
    fail "download-model through a link"
[ -L "$WORK/dl/link" ] && cmp -s "$MODEL" "$WORK/dl/target.safetensors" ||
    fail "download-model did not write through the link"
ctl_fails 1 'error 404' download-model 99 "$WORK/none.safetensors"
[ ! -e "$WORK/none.safetensors" ] || fail "a failed download left a file"
[ -z "$(find "$WORK" -name '.ecgprunectl.*')" ] ||
    fail "download-model left a temporary file"

# Errors: usage (2, naming the word at fault), missing files and unknown
# ids (1).
ctl_fails 2 'ecgprunectl infer' infer
ctl_fails 2 "upload-model: 1 argument(s) is not what it takes" \
    upload-model "$MODEL"
grep -q '^  ecgprunectl upload-model FILE.safetensors NAME$' "$WORK/ctl.err" ||
    fail "a wrong count does not show the command's usage: \
$(cat "$WORK/ctl.err")"
[ "$(grep -c '^  ecgprunectl' "$WORK/ctl.err")" = 1 ] ||
    fail "a wrong count shows other commands' usage too"
ctl_fails 2 "unknown command 'bogus'" bogus
ctl_fails 2 "show: unknown kind 'widget' (model, batch or job)" show widget 1
ctl_fails 1 'no such file' upload-model "$WORK/none.safetensors" x
ctl_fails 1 'expected FILE.json or a WFDB record' infer 1 "$WORK/none"
ctl_fails 1 'error 404' show model 99
[ "$(ctl show job "$JOB" | jq '.result | has("model_deleted")')" = false ] ||
    fail "the result of job $JOB says its model is deleted before it is"
ctl delete model "$PRUNED" | grep -q "model $PRUNED deleted" ||
    fail "delete model"
ctl_fails 1 'error 404' show model "$PRUNED"
[ "$(ctl show job "$JOB" | jq -c '.result | [.model_id, .model_deleted]')" \
    = "[$PRUNED,true]" ] ||
    fail "job $JOB after its model was deleted: $(ctl show job "$JOB")"
ECGPRUNE_URL=http://127.0.0.1:1 ctl_fails 1 'cannot reach' list models
[ "$(grep -c 'cannot reach' "$WORK/ctl.err")" = 1 ] ||
    fail "an unreachable daemon is reported more than once: \
$(cat "$WORK/ctl.err")"

# An upload that gets no answer names its key; run again with it, twice,
# it stores one batch.
ECGPRUNE_URL=http://127.0.0.1:1 ctl_fails 1 \
    'ECGPRUNE_IDEMPOTENCY_KEY=ecgprunectl-' upload-batch p-8 "$EXCERPT/100"
B1=$(ECGPRUNE_IDEMPOTENCY_KEY=retry-1 ctl upload-batch p-8 "$EXCERPT/100" |
    jq -r .id)
B2=$(ECGPRUNE_IDEMPOTENCY_KEY=retry-1 ctl upload-batch p-8 "$EXCERPT/100" |
    jq -r .id)
[ "$B1" = "$B2" ] || fail "the same key stored batches $B1 and $B2"

# Arguments reach the daemon as typed: a subject of "@file" is not a file
# to upload, '&' and '#' do not cut a name or a subject short, an id is a
# number.
echo leak-1 > "$WORK/secret.txt"
ctl_fails 1 'error 422 .*"subject"' upload-batch "@$WORK/secret.txt" \
    "$EXCERPT/100"
ctl list batches | grep -q leak-1 && fail "a local file became a subject"
ctl_fails 1 'error 422 .*name "a&name=b"' upload-model "$MODEL" 'a&name=b'
ctl_fails 1 'error 422 .*"subject": expected a pseudonym' \
    infer "$MID" "$EXCERPT/100" 'p-7#x'
ctl_fails 1 'model id "../jobs/1": expected a number' show model ../jobs/1
ctl_fails 1 'keep "half": expected a number' start-job "$MID" "$BID" l1 half
ctl_fails 1 "\"seed=x\": the value after '=' is not JSON" \
    start-job "$MID" "$BID" l1 0.5 seed=x
ctl_fails 1 '"keep=1": keep is given by position' \
    start-job "$MID" "$BID" l1 0.5 keep=1
ctl_fails 1 '"Seed=1": KEY must be a parameter name' \
    start-job "$MID" "$BID" l1 0.5 Seed=1
# An integer past 2^53 (which jq would round to ...992) reaches the
# daemon exactly; the job is cancelled at once, only its parameters count.
BIG=$(ctl start-job "$MID" "$BID" l1 0.5 seed=9007199254740993 | jq -r .id)
curl -s "$URL/v1/jobs/$BIG" | grep -q '"seed":9007199254740993[,}]' ||
    fail "seed 2^53 + 1: $(curl -s "$URL/v1/jobs/$BIG")"
[ "$(ctl show job "$BIG" | jq -r .params.seed)" = 9007199254740993 ] ||
    fail "show job rounds the seed: $(ctl show job "$BIG" | jq .params.seed)"
ctl delete job "$BIG" > "$WORK/out"
grep -Eq "^job $BIG: (cancelled|cancel asked for; it stops at)" \
    "$WORK/out" || fail "delete job: $(cat "$WORK/out")"

# A URL with a trailing slash works; a failed JSON upload leaves no copy
# of the ECG in TMPDIR, an unreachable daemon no error file.
ECGPRUNE_URL=$URL/ ctl health > /dev/null || fail "URL with a trailing /"
mkdir "$WORK/tmp"
"$ED_TESTTOOL" ecg-json "$EXCERPT/100" 0 3600 > "$WORK/seg.json"
TMPDIR=$WORK/tmp ctl_fails 1 'error 422' upload-batch 'Bad Subject' \
    "$WORK/seg.json"
TMPDIR=$WORK/tmp ECGPRUNE_URL=http://127.0.0.1:1 ctl_fails 1 \
    'cannot reach' show job 1
[ -z "$(ls -A "$WORK/tmp")" ] ||
    fail "temporary files left behind: $(ls -A "$WORK/tmp")"
# A JSON file that names another subject than the one given is refused
# before anything is sent: which pseudonym the batch gets is not guessed.
jq '. + {subject: "p-9"}' "$WORK/seg.json" > "$WORK/p9.json"
ctl_fails 1 'p9.json names subject "p-9", not "p-8"' upload-batch p-8 \
    "$WORK/p9.json"
ctl list batches | awk '$2 == "p-9"' | grep -q . &&
    fail "a batch of the other subject was stored"
printf '[1, 2]' > "$WORK/array.json"
ctl_fails 1 'array.json: expected one JSON object' upload-batch p-9 \
    "$WORK/array.json"
ctl_fails 1 "the span after ':' is not FROM-TO in seconds" \
    infer "$MID" "$EXCERPT/100:abc"
ctl_fails 2 "health: 1 argument(s) is not what it takes" health now
SAME=$(ctl upload-batch p-9 "$WORK/p9.json" | jq -r .subject)
[ "$SAME" = p-9 ] || fail "upload with the file's own subject: $SAME"

stop_daemon
