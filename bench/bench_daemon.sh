#!/usr/bin/env bash
# bench_daemon.sh - inference throughput and latency of ecgpruned.
#
# Starts the daemon on a free loopback port, uploads a model of the default
# architecture and two MIT-BIH excerpts, prunes the model (ising-kernel,
# keep 0.5), then drives POST /v1/models/{id}/infer with wrk: 10-second
# ECG segments (3600 samples of record 100, JSON), for several concurrency
# levels, for the full and the pruned model, with and without a pruning
# job running on the pool.  Prints a Markdown table (requests/s, p50, p99).
#
# Usage: bench/bench_daemon.sh [BUILD_DIR]    (default: build)
# Environment: DURATION (seconds per run, default 10), CONNECTIONS (default
# "1 4 16"), WORKERS (daemon pool size, default 2), MODEL (a model file to
# use instead of an untrained default-architecture network).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
daemon=$build/daemon/ecgpruned
tool=$build/tests/daemon/ed_testtool
excerpt=$root/tests/data/mitdb-excerpt
duration=${DURATION:-10}
connections=${CONNECTIONS:-1 4 16}
workers=${WORKERS:-2}
for f in "$daemon" "$tool"; do
    [ -x "$f" ] || { echo "bench_daemon: $f not built" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "bench_daemon: needs wrk" >&2; exit 1; }

work=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# The daemon, on a port chosen by the kernel.
OPENBLAS_NUM_THREADS=1 "$daemon" --listen 127.0.0.1:0 \
    --port-file "$work/port" --data-dir "$work/data" \
    --log-file "$work/daemon.log" --workers "$workers" &
pid=$!
for _ in $(seq 1 50); do [ -s "$work/port" ] && break; sleep 0.1; done
url=http://127.0.0.1:$(cat "$work/port")

post() {
    curl -sf "$@"
}

# A model, two batches, a pruned model.
model=${MODEL:-$work/full.safetensors}
[ -n "${MODEL:-}" ] || "$tool" model "$model" 1 full >/dev/null
full=$(post -X POST --data-binary "@$model" "$url/v1/models?name=bench" |
    jq .id)
batches=()
for r in 100 208; do
    batches+=("$(post -X POST -F "header=@$excerpt/$r.hea" \
        -F "signal=@$excerpt/$r.dat" -F "annotations=@$excerpt/$r.atr" \
        -F "subject=bench-$r" "$url/v1/batches" | jq .id)")
done
job_body=$(jq -cn --argjson m "$full" --argjson b1 "${batches[0]}" \
    --argjson b2 "${batches[1]}" \
    '{model_id: $m, batch_ids: [$b1, $b2], method: "ising-kernel", keep: 0.5}')
job=$(post -X POST -H 'Content-Type: application/json' -d "$job_body" \
    "$url/v1/jobs" | jq .id)
while :; do
    state=$(post "$url/v1/jobs/$job" | jq -r .state)
    [ "$state" = succeeded ] && break
    [ "$state" = failed ] && { echo "bench_daemon: prune failed" >&2; exit 1; }
    sleep 1
done
pruned=$(post "$url/v1/jobs/$job" | jq .result.model_id)
params() {
    post "$url/v1/models/$1" | jq -r '"\(.parameters) parameters, " +
        "\(.macs_per_second / 1e6 | . * 10 | round / 10) MMAC/s"'
}

# The request body: 10 s of record 100 in mV.
"$tool" ecg-json "$excerpt/100" 36000 3600 > "$work/seg.json"
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$work/seg.json", "rb")
wrk.body = f:read("*a")
f:close()
LUA

# Keep pruning jobs queued so one is always running during a measurement.
start_jobs() {
    local _
    for _ in 1 2 3 4 5 6; do
        post -X POST -H 'Content-Type: application/json' -d "$job_body" \
            "$url/v1/jobs" | jq .id
    done > "$work/bg_jobs"
    sleep 1
}
stop_jobs() {
    local id
    while read -r id; do
        curl -s -o /dev/null -X DELETE "$url/v1/jobs/$id"
    done < "$work/bg_jobs"
    while [ "$(post "$url/v1/jobs?state=running" | jq '.jobs | length')" != 0 ]
    do
        sleep 0.5
    done
}

# ms VALUE: wrk's latency ("1.23ms", "456.78us", "1.02s") in ms.
ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.1f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.1f", v }
        else { sub(/s$/, "", v); printf "%.1f", v * 1000 } }'
}

echo "Full model: $(params "$full"); pruned (keep 0.5): $(params "$pruned")."
echo "$(nproc) cores, $workers pool workers, ${duration} s per run, 10-s" \
    "segments (3600 samples at 360 Hz)."
echo
echo "| model | pruning job | connections | req/s | p50 ms | p99 ms | errors |"
echo "|---|---|---|---|---|---|---|"
for m in full pruned; do
    id=$full
    [ "$m" = pruned ] && id=$pruned
    for jobs in no yes; do
        for c in $connections; do
            [ "$jobs" = yes ] && start_jobs
            wrk -t 1 -c "$c" -d "${duration}s" --timeout 30s --latency \
                -s "$work/post.lua" "$url/v1/models/$id/infer" \
                > "$work/wrk.txt"
            [ "$jobs" = yes ] && stop_jobs
            rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")
            p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.txt")
            p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")
            # Non-2xx answers plus socket errors (connect, read, write,
            # timeout).
            errors=$(awk '/Non-2xx/ {n += $NF}
                /Socket errors/ {gsub(/[^0-9 ]/, ""); n += $1 + $2 + $3 + $4}
                END {print n + 0}' "$work/wrk.txt")
            echo "| $m | $jobs | $c | $rps | $(ms "$p50") | $(ms "$p99") |" \
                "$errors |"
        done
    done
done
