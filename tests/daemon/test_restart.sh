#!/usr/bin/env bash
# test_restart.sh - restart safety.  kill -9 the daemon while a job runs
# and uploads are arriving; the database passes PRAGMA integrity_check,
# every upload acknowledged with 2xx is still there after the restart, and
# the interrupted job runs again to completion.  Then SIGTERM while a job
# runs: the daemon exits in time and the job is queued again, not lost.
# A second daemon on the same data directory is refused.
# shellcheck source=tests/daemon/lib.sh
. "$(dirname "$0")/lib.sh"

DB="$WORK/data/ecgpruned.sqlite3"
start_daemon
MODEL=$(test_model full)
req POST "/v1/models?name=restart" --data-binary "@$MODEL"
expect 201 "model upload"
MID=$(body .id)
BATCH=$(upload_record 100 subj-r1)
JOB_BODY=$(jq -cn --argjson m "$MID" --argjson b "$BATCH" \
    '{model_id: $m, batch_ids: [$b], method: "ising-kernel", keep: 0.5}')

# wait_running ID: until the job is on a worker.
wait_running() {
    local _
    for _ in $(seq 1 600); do
        req GET "/v1/jobs/$1"
        [ "$(body .state)" = running ] && return 0
        sleep 0.1
    done
    fail "job $1 never started"
}

# Uploads in the background; acknowledged ids are appended to a file.
"$ED_TESTTOOL" ecg-json "$EXCERPT/208" 0 3600 |
    jq -c '. + {subject: "subj-up"}' > "$WORK/up.json"
uploader() {
    local n=0 code
    while :; do
        n=$((n + 1))
        code=$(curl -s -o "$WORK/up.$n" -w '%{http_code}' -X POST \
            -H 'Content-Type: application/json' \
            --data-binary "@$WORK/up.json" "$URL/v1/batches") || code=000
        if [ "$code" = 201 ]; then
            jq -r .id "$WORK/up.$n" >> "$WORK/acked"
        fi
    done
}
: > "$WORK/acked"
uploader &
UPLOADER=$!

# kill -9 in the middle of a job.
req POST /v1/jobs -H 'Content-Type: application/json' -d "$JOB_BODY"
expect 202 "job submit"
JOB=$(body .id)
wait_running "$JOB"
sleep 0.5
kill9_daemon
sleep 0.3
kill "$UPLOADER" 2>/dev/null || true
wait "$UPLOADER" 2>/dev/null || true
note "killed with $(wc -l < "$WORK/acked") acknowledged uploads"
[ -s "$WORK/acked" ] || fail "no upload was acknowledged before the kill"

# The database file is sound and the job is recorded as running.
[ "$("$SQLITE3" "$DB" 'PRAGMA integrity_check')" = ok ] ||
    fail "integrity_check after kill -9"
[ "$("$SQLITE3" "$DB" "SELECT state FROM jobs WHERE id = $JOB")" = running ] ||
    fail "job state after kill -9 is not running"

# Restart: every acknowledged upload is there, the job completes.  The
# model given with --preload is recognised by its checksum, not stored
# twice.
start_daemon --preload "$MODEL"
grep -q 'event=jobs_requeued count=1' "$WORK/daemon.log" ||
    fail "the running job was not re-queued at start"
grep -q "event=preload_present model_id=$MID " "$WORK/daemon.log" ||
    fail "--preload did not find the stored model"
while read -r id; do
    req GET "/v1/batches/$id"
    expect 200 "acknowledged batch $id after the restart"
done < "$WORK/acked"
STATE=$(wait_job "$JOB" 900)
[ "$STATE" = succeeded ] || fail "job after restart: $STATE $(body .error)"
[ "$(body .attempts)" = 2 ] || fail "job attempts $(body .attempts), expected 2"

# SIGTERM in the middle of a job: exits in time, the job is queued again.
req POST /v1/jobs -H 'Content-Type: application/json' -d "$JOB_BODY"
expect 202 "second job"
JOB2=$(body .id)
wait_running "$JOB2"

# A second daemon on the same data directory is refused at start, with
# the first one's pid, and leaves the running job alone.
if "$ECGPRUNED" --listen 127.0.0.1:0 --data-dir "$WORK/data" \
        --log-file "$WORK/second.log" 2> "$WORK/second.err"; then
    fail "a second daemon started on a data directory in use"
fi
grep -q "data directory .* is in use by another ecgpruned (pid $DAEMON_PID)" \
    "$WORK/second.err" || fail "second daemon: $(cat "$WORK/second.err")"
# --check-config says so first, and takes nothing from the running one.
if "$ECGPRUNED" --data-dir "$WORK/data" --check-config \
        > /dev/null 2> "$WORK/check.err"; then
    fail "--check-config passed a data directory in use"
fi
grep -q "data_dir: data directory .* is in use by another ecgpruned (pid \
$DAEMON_PID)" "$WORK/check.err" || fail "check-config: $(cat "$WORK/check.err")"
req GET "/v1/jobs/$JOB2"
[ "$(body .state)" = running ] ||
    fail "job after a second daemon's start: $(body .state)"
T0=$(date +%s)
stop_daemon
note "stopped $(($(date +%s) - T0)) s after SIGTERM"
[ "$("$SQLITE3" "$DB" "SELECT state FROM jobs WHERE id = $JOB2")" = queued ] ||
    fail "job after SIGTERM is not queued"
[ "$("$SQLITE3" "$DB" 'PRAGMA integrity_check')" = ok ] ||
    fail "integrity_check after SIGTERM"
start_daemon
STATE=$(wait_job "$JOB2" 900)
[ "$STATE" = succeeded ] || fail "second job after restart: $STATE"

# The first job counts the one death of the daemon under it, the second,
# stopped cleanly, none.  A job the daemon died under on two earlier starts
# as well (as if it ran out of memory every time) is failed at the next
# start, not run again; clean stops in between do not count.
req GET "/v1/jobs/$JOB"
[ "$(body '[.attempts, .interrupted] | tojson')" = '[2,1]' ] ||
    fail "job killed once: attempts, interrupted $(body '[.attempts, .interrupted]')"
req GET "/v1/jobs/$JOB2"
[ "$(body '[.attempts, .interrupted] | tojson')" = '[2,0]' ] ||
    fail "job stopped once: attempts, interrupted $(body '[.attempts, .interrupted]')"
stop_daemon
"$SQLITE3" "$DB" "UPDATE jobs SET state = 'running', attempts = 9, \
    interrupted = 1 WHERE id = $JOB2; UPDATE jobs SET state = 'running', \
    attempts = 3, interrupted = 2 WHERE id = $JOB"
start_daemon
req GET "/v1/jobs/$JOB"
[ "$(body .state)" = failed ] || fail "job died under 3 times: $(body .state)"
body .error |
    grep -q "died or was stopped past its deadline while this job ran, 3 times" ||
    fail "job died under 3 times: error $(body .error)"
grep -q 'event=jobs_failed count=1 reason="interrupted 3 times"' \
    "$WORK/daemon.log" || fail "no jobs_failed line"
req GET "/v1/jobs/$JOB2"
[ "$(body .state)" != failed ] ||
    fail "a job with 9 starts but 2 deaths under it was failed"

# A job left queued with its cancel asked for (a stop whose deadline
# passed while it ran) is cancelled at the next start, not run again.
stop_daemon
"$SQLITE3" "$DB" "UPDATE jobs SET state = 'queued', cancel_requested = 1 \
    WHERE id = $JOB2"
start_daemon
req GET "/v1/jobs/$JOB2"
[ "$(body .state)" = cancelled ] ||
    fail "queued job with a cancel asked for: $(body .state)"

# Another process holds the database locked when a job's result is to be
# stored: the result is kept and stored once the lock goes, not lost.
# The lock is taken while the job runs and released only after the log
# shows the retry, so the path is exercised whatever the machine's speed.
req POST /v1/jobs -H 'Content-Type: application/json' \
    -d "$(jq -c '.method = "l1"' <<< "$JOB_BODY")"
expect 202 "job under a lock"
JOB3=$(body .id)
# The next job, queued behind it, cannot be marked running under the
# lock: it must stay queued (not run while the store says queued, where
# a cancel would miss it and the next look would start it twice).
req POST /v1/jobs -H 'Content-Type: application/json' \
    -d "$(jq -c '.method = "l1" | .seed = 5' <<< "$JOB_BODY")"
expect 202 "job queued behind it"
JOB4=$(body .id)
wait_running "$JOB3"
mkfifo "$WORK/lock.fifo"
"$SQLITE3" "$DB" < "$WORK/lock.fifo" &
LOCKER=$!
exec 9> "$WORK/lock.fifo"
echo 'BEGIN EXCLUSIVE; UPDATE models SET name = name;' >&9
for _ in $(seq 1 600); do
    grep -q "event=job_store_retry job=$JOB3 " "$WORK/daemon.log" &&
        grep -q "event=job_start_deferred job=$JOB4 " "$WORK/daemon.log" &&
        break
    sleep 0.5
done
grep -q "event=job_store_retry job=$JOB3 " "$WORK/daemon.log" ||
    fail "no job_store_retry while the store was locked"
grep -q "event=job_start_deferred job=$JOB4 " "$WORK/daemon.log" ||
    fail "no job_start_deferred while the store was locked"
echo 'COMMIT;' >&9
exec 9>&-
wait "$LOCKER"
STATE=$(wait_job "$JOB3" 120)
[ "$STATE" = succeeded ] || fail "job stored after a lock: $STATE $(body .error)"
STATE=$(wait_job "$JOB4" 120)
[ "$STATE/$(body .attempts)" = succeeded/1 ] ||
    fail "the job held off by the lock: $STATE, $(body .attempts) starts"
[ "$(grep -c "event=job_started job=$JOB4 " "$WORK/daemon.log")" = 1 ] ||
    fail "job $JOB4 was started more than once"
stop_daemon
echo "ok: restart"
