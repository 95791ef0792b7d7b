# shellcheck shell=bash disable=SC2120
# lib.sh - what the daemon's integration tests share: a scratch directory,
# starting and stopping the real ecgpruned on a loopback port chosen at
# run time (port 0, read back from --port-file), and HTTP helpers.
#
# Environment (set by tests/daemon/meson.build):
#   ECGPRUNED    the daemon executable
#   ED_TESTTOOL  the test helper (model files, ECG JSON, beat scoring)
#   EXCERPT      directory of the shipped MIT-BIH excerpt (100, 208)
#   DEFAULT_MODEL  optional trained model; a small untrained one otherwise

set -euo pipefail

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ecgpruned-test.XXXXXX")
DAEMON_PID=""
URL=""

cleanup() {
    if [ -n "$DAEMON_PID" ]; then
        kill -KILL "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    if [ -f "$WORK/daemon.log" ]; then
        echo "--- last lines of the daemon log:" >&2
        tail -n 30 "$WORK/daemon.log" >&2
    fi
    exit 1
}

note() {
    echo "# $*"
}

# start_daemon [extra options]: start and wait until /v2/health/ready.
start_daemon() {
    local _
    rm -f "$WORK/port"
    "$ECGPRUNED" --listen 127.0.0.1:0 --port-file "$WORK/port" \
        --data-dir "$WORK/data" --log-file "$WORK/daemon.log" \
        --log-level debug "$@" &
    DAEMON_PID=$!
    for _ in $(seq 1 100); do
        [ -s "$WORK/port" ] && break
        kill -0 "$DAEMON_PID" 2>/dev/null || fail "daemon exited at start"
        sleep 0.1
    done
    [ -s "$WORK/port" ] || fail "daemon wrote no port file"
    URL="http://127.0.0.1:$(cat "$WORK/port")"
    for _ in $(seq 1 100); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' \
                "$URL/v2/health/ready")" = 200 ]; then
            return 0
        fi
        sleep 0.1
    done
    fail "daemon never became ready"
}

# stop_daemon: SIGTERM and wait (it must exit within 30 s).
stop_daemon() {
    kill -TERM "$DAEMON_PID"
    for _ in $(seq 1 300); do
        if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
            wait "$DAEMON_PID" || fail "daemon exited with an error"
            DAEMON_PID=""
            return 0
        fi
        sleep 0.1
    done
    fail "daemon did not stop within 30 s of SIGTERM"
}

kill9_daemon() {
    kill -KILL "$DAEMON_PID"
    wait "$DAEMON_PID" 2>/dev/null || true
    DAEMON_PID=""
}

# req METHOD PATH [curl options]: STATUS gets the code, $WORK/body the body,
# $WORK/headers the headers.
req() {
    local method=$1 path=$2
    shift 2
    STATUS=$(curl -s -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' \
        -X "$method" "$URL$path" "$@") || STATUS=000
}

# body JQ: evaluate a jq filter on the last body.
body() {
    jq -r "$1" "$WORK/body"
}

expect() {
    local want=$1 what=$2
    [ "$STATUS" = "$want" ] ||
        fail "$what: status $STATUS, expected $want:" \
            "$(head -c 400 "$WORK/body")"
}

# test_model [full]: the model the tests run: the trained default if
# present, else an untrained network written by the helper (small, or of
# the default architecture with "full", for jobs that must run a while).
test_model() {
    local size=${1:-small}
    if [ -n "${DEFAULT_MODEL:-}" ] && [ -f "$DEFAULT_MODEL" ]; then
        echo "$DEFAULT_MODEL"
    else
        "$ED_TESTTOOL" model "$WORK/$size.safetensors" 7 \
            "$size" >/dev/null
        echo "$WORK/$size.safetensors"
    fi
}

# upload_record NAME SUBJECT: multipart WFDB upload of an excerpt record
# with its annotations; prints the new batch id.
upload_record() {
    local rec=$EXCERPT/$1
    req POST /v1/batches -F "header=@$rec.hea" -F "signal=@$rec.dat" \
        -F "annotations=@$rec.atr" -F "subject=$2"
    expect 201 "upload of record $1"
    body .id
}

# wait_job ID SECONDS: poll until the job leaves queued/running.
wait_job() {
    local id=$1 limit=$2 state
    for _ in $(seq 1 $((limit * 2))); do
        req GET "/v1/jobs/$id"
        state=$(body .state)
        case $state in
            succeeded|failed|cancelled) echo "$state"; return 0 ;;
        esac
        sleep 0.5
    done
    fail "job $id still $state after $limit s"
}
