#!/usr/bin/env bash
# test_concurrency.sh - 32 inference requests, 8 at a time, on four
# different 10 s segments of record 208 while a pruning job runs: every
# answer is 200 and identical to the answer the same segment got alone,
# all within a time bound, and the job still completes.
. "$(dirname "$0")/lib.sh"

LIMIT_S=${CONCURRENCY_LIMIT_S:-300}
start_daemon --workers 2
MODEL=$(test_model)
req POST "/v1/models?name=conc" --data-binary "@$MODEL"
expect 201 "model upload"
MID=$(body .id)
BATCH=$(upload_record 100 subj-c)

# Reference answers, one request at a time, before the job starts.
for s in 0 1 2 3; do
    "$ED_TESTTOOL" ecg-json "$EXCERPT/208" $((s * 3600)) 3600 > "$WORK/seg$s.json"
    req POST "/v1/models/$MID/infer" -H 'Content-Type: application/json' \
        --data-binary "@$WORK/seg$s.json"
    expect 200 "reference inference $s"
    jq -c .beats "$WORK/body" > "$WORK/ref$s"
done

req POST /v1/jobs -H 'Content-Type: application/json' -d "{\"model_id\": $MID,
    \"batch_ids\": [$BATCH], \"method\": \"ising-kernel\", \"keep\": 0.5}"
expect 202 "job submit"
JOB=$(body .id)

# 32 requests, 8 in parallel; each writes "STATUS SEGMENT" and its body.
one() {
    local n=$1 s=$(($1 % 4)) code
    code=$(curl -s -o "$WORK/out$n" -w '%{http_code}' -X POST \
        -H 'Content-Type: application/json' --data-binary "@$WORK/seg$s.json" \
        "$URL/v1/models/$MID/infer") || code=000
    echo "$code $s $n"
}
export -f one
export WORK URL MID
T0=$(date +%s)
seq 0 31 | xargs -P 8 -I{} bash -c 'one {}' > "$WORK/results"
ELAPSED=$(($(date +%s) - T0))
note "32 requests, 8 in parallel, while job $JOB ran: $ELAPSED s"
[ "$ELAPSED" -le "$LIMIT_S" ] || fail "took $ELAPSED s (limit $LIMIT_S s)"
[ "$(wc -l < "$WORK/results")" = 32 ] || fail "missing answers"
while read -r code s n; do
    [ "$code" = 200 ] || fail "request $n: status $code $(head -c 300 "$WORK/out$n")"
    jq -c .beats "$WORK/out$n" | cmp -s - "$WORK/ref$s" ||
        fail "request $n: beats differ from the lone answer for segment $s"
done < "$WORK/results"

# The job was not starved and finished.
STATE=$(wait_job "$JOB" 900)
[ "$STATE" = succeeded ] || fail "job: $STATE $(body .error)"
stop_daemon
echo "ok: concurrency"
