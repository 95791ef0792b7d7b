#!/usr/bin/env bash
# test_concurrency.sh - 32 inference requests, 8 at a time, on four
# different 10 s segments of record 208 while a pruning job runs: every
# answer is 200 and identical to the answer the same segment got alone,
# all within a time bound, and the job still completes.  Then cancelling,
# and the list routes' pages over the jobs and models made here.
# shellcheck source=tests/daemon/lib.sh
. "$(dirname "$0")/lib.sh"

LIMIT_S=${CONCURRENCY_LIMIT_S:-300}
start_daemon --workers 2
MODEL=$(test_model)
req POST "/v1/models?name=conc" --data-binary "@$MODEL"
expect 201 "model upload"
MID=$(body .id)
# The job prunes a larger network, so that it runs during the requests.
req POST "/v1/models?name=conc-job" --data-binary "@$(test_model full)"
expect 201 "job model upload"
JOB_MID=$(body .id)
BATCH=$(upload_record 100 subj-c)

# Reference answers, one request at a time, before the job starts.
for s in 0 1 2 3; do
    "$ED_TESTTOOL" ecg-json "$EXCERPT/208" $((s * 3600)) 3600 \
        > "$WORK/seg$s.json"
    req POST "/v1/models/$MID/infer" -H 'Content-Type: application/json' \
        --data-binary "@$WORK/seg$s.json"
    expect 200 "reference inference $s"
    jq -c .beats "$WORK/body" > "$WORK/ref$s"
done

req POST /v1/jobs -H 'Content-Type: application/json' -d "$(jq -cn \
    --argjson m "$JOB_MID" --argjson b "$BATCH" \
    '{model_id: $m, batch_ids: [$b], method: "ising-kernel", keep: 0.5}')"
expect 202 "job submit"
JOB=$(body .id)

# While the job is queued or running its model and batch cannot go.
req DELETE "/v1/models/$JOB_MID"
expect 409 "delete of a model in use"
body .detail | grep -q "used by job $JOB" || fail "409 detail: $(body .detail)"
req DELETE "/v1/batches/$BATCH"
expect 409 "delete of a batch in use"

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
    [ "$code" = 200 ] ||
        fail "request $n: status $code $(head -c 300 "$WORK/out$n")"
    jq -c .beats "$WORK/out$n" | cmp -s - "$WORK/ref$s" ||
        fail "request $n: beats differ from the lone answer for segment $s"
done < "$WORK/results"

# The job was not starved and finished.
STATE=$(wait_job "$JOB" 900)
[ "$STATE" = succeeded ] || fail "job: $STATE $(body .error)"

# Cancelling: a running job stops at its next round, a queued one at once,
# a finished one cannot be cancelled.
JOB_BODY=$(jq -cn --argjson m "$JOB_MID" --argjson b "$BATCH" \
    '{model_id: $m, batch_ids: [$b], method: "ising-kernel", keep: 0.5}')
req POST /v1/jobs -H 'Content-Type: application/json' -d "$JOB_BODY"
RUNNING=$(body .id)
req POST /v1/jobs -H 'Content-Type: application/json' -d "$JOB_BODY"
QUEUED=$(body .id)
for _ in $(seq 1 300); do
    req GET "/v1/jobs/$RUNNING"
    [ "$(body .state)" = running ] && break
    sleep 0.1
done
req DELETE "/v1/jobs/$QUEUED"
expect 200 "cancel of a queued job"
[ "$(body .state)" = cancelled ] || fail "queued job not cancelled at once"
req DELETE "/v1/jobs/$RUNNING"
expect 202 "cancel of a running job"
STATE=$(wait_job "$RUNNING" 120)
[ "$STATE" = cancelled ] || fail "running job ended $STATE after cancel"
req GET "/v1/jobs/$RUNNING/masks"
expect 409 "masks of a cancelled job"
req DELETE "/v1/jobs/$JOB"
expect 409 "cancel of a finished job"
req GET "/v1/jobs?state=cancelled"
[ "$(body '[.jobs[].id] | sort | tostring')" = "[$RUNNING,$QUEUED]" ] ||
    fail "jobs?state=cancelled: $(body '[.jobs[].id]')"

# Paging: small pages, followed by next_after, give every row once and in
# order, as the test created them.
req GET "/v1/jobs/$JOB"
PRUNED=$(body .result.model_id)
pages() {
    local path=$1 key=$2 after=0
    while [ "$after" != null ]; do
        req GET "$path&after=$after"
        expect 200 "page of $path after $after"
        body ".${key}[].id"
        after=$(body .next_after)
    done | paste -sd ' '
}
[ "$(pages '/v1/jobs?limit=2' jobs)" = "$JOB $RUNNING $QUEUED" ] ||
    fail "job pages: $(pages '/v1/jobs?limit=2' jobs)"
[ "$(pages '/v1/models?limit=1' models)" = "$MID $JOB_MID $PRUNED" ] ||
    fail "model pages: $(pages '/v1/models?limit=1' models)"
[ "$(pages '/v1/jobs?state=cancelled&limit=1' jobs)" = "$RUNNING $QUEUED" ] ||
    fail "cancelled job pages"
req GET "/v1/batches?after=$BATCH"
[ "$(body '.batches | length')/$(body .next_after)" = 0/null ] ||
    fail "batches after the last: $(cat "$WORK/body")"

# Model uploads are checked on the pool and stored on the loop: six
# uploads of the same bytes under one new name, at once, make one model
# (one 201, five 200 with its id), and a broken file sent among them gets
# its 422 without disturbing them.
head -c 1000 "$MODEL" > "$WORK/broken.safetensors"
upload() {
    local file=$1 name=$2
    curl -s -o /dev/null -w '%{http_code} ' -X POST \
        --data-binary "@$file" "$URL/v1/models?name=$name" || echo "000 "
}
export -f upload
# shellcheck disable=SC2016
{
    printf '%s\n' "$MODEL same" "$MODEL same" "$MODEL same" \
        "$WORK/broken.safetensors broken" "$MODEL same" "$MODEL same" \
        "$MODEL same" | xargs -P 7 -L 1 bash -c 'upload "$0" "$1"'
    echo
} > "$WORK/uploads"
[ "$(tr ' ' '\n' < "$WORK/uploads" | grep . | sort | uniq -c |
     awk '{print $2 "x" $1}' | paste -sd ' ')" = "200x5 201x1 422x1" ] ||
    fail "parallel uploads: $(cat "$WORK/uploads")"
req GET "/v1/models?limit=100"
[ "$(body '[.models[] | select(.name == "same")] | length')" = 1 ] ||
    fail "parallel uploads of one model made $(body \
        '[.models[] | select(.name == "same")] | length') models"
stop_daemon

# With one worker the loop checks an upload itself (a running job could
# hold the only worker for minutes): the same answers.
start_daemon --workers 1
req POST "/v1/models?name=one-worker" --data-binary "@$MODEL"
expect 201 "upload with one worker"
req POST "/v1/models?name=one-worker" --data-binary "@$MODEL"
expect 200 "the same upload again with one worker"
req POST "/v1/models?name=one-worker" \
    --data-binary "@$WORK/broken.safetensors"
expect 422 "broken upload with one worker"
body .detail | grep -q "not an ecgprune safetensors model" ||
    fail "one worker, broken upload: $(body .detail)"
stop_daemon
echo "ok: concurrency"
