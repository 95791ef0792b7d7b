#!/usr/bin/env bash
# clients/demo.sh - the main job: start ecgpruned on its embedded defaults
# (loopback, SQLite under a local data directory, the bundled default model
# preloaded), then drive it with clients/ecgprunectl: upload three minutes
# of real ECG (MIT-BIH record 208), prune the model on its first two,
# infer with the pruned model and print the labelled beats beside the
# cardiologists' reference labels, with EC57 scores on the held-out last
# minute before and after pruning and the job's warnings.
#
# Environment: BUILD (build directory, default build), MODEL (a model file
# instead of models/default.safetensors), KEEP (default 0.5).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build}
model=${MODEL:-$root/models/default.safetensors}
keep=${KEEP:-0.5}
record=$root/tests/data/mitdb-excerpt/208
ctl=$root/clients/ecgprunectl
data=$build/demo-data

[ -x "$build/daemon/ecgpruned" ] || { echo "demo: build first" >&2; exit 1; }
[ -f "$model" ] || { echo "demo: no model at $model" >&2; exit 1; }

# The daemon: a fresh data directory, a port the kernel picks.
rm -rf "$data"
mkdir -p "$data"
OPENBLAS_NUM_THREADS=1 "$build/daemon/ecgpruned" --data-dir "$data" \
    --listen 127.0.0.1:0 --port-file "$data/port" \
    --log-file "$data/ecgpruned.log" --preload "$model" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [ -s "$data/port" ] && break; sleep 0.1; done
ECGPRUNE_URL=http://127.0.0.1:$(cat "$data/port")
export ECGPRUNE_URL
echo "== ecgpruned on $ECGPRUNE_URL (log: $data/ecgpruned.log)"
"$ctl" health

# The preloaded model, and the ECG as a pseudonymous batch.
echo "== models"
"$ctl" list models
model_id=$(curl -s "$ECGPRUNE_URL/v1/models" | jq '.models[0].id')
echo "== upload MIT-BIH 208 (3 min) as subject demo-208"
batch=$("$ctl" upload-batch demo-208 "$record" | jq .id)
"$ctl" list batches

# Prune on the first two minutes, scoring the last one before and after.
echo "== prune: ising-kernel, keep $keep"
job=$("$ctl" start-job "$model_id" "$batch" ising-kernel "$keep" \
    'holdout={"fraction":0.33}' | jq .id)
"$ctl" watch "$job" > "$data/job.json" || { cat "$data/job.json"; exit 1; }
curl -s "$ECGPRUNE_URL/v1/jobs/$job" | jq -r '.result | "pruned model " +
    "\(.model_id): \(.parameters) parameters, \(.macs_per_second / 1e6 |
    . * 100 | round / 100) MMAC/s, pruned in \(.seconds | . * 10 | round /
    10) s"'
pruned=$(curl -s "$ECGPRUNE_URL/v1/jobs/$job" | jq .result.model_id)
"$ctl" list models

# Labels of the pruned model beside the reference labels (150 ms).
echo "== inference with the pruned model on record 208 (first 20 beats)"
curl -s -X POST "$ECGPRUNE_URL/v1/models/$pruned/infer" \
    -F "header=@$record.hea" -F "signal=@$record.dat" > "$data/infer.json"
curl -s "$ECGPRUNE_URL/v1/batches/$batch" > "$data/batch.json"
jq -r --slurpfile b "$data/batch.json" '
    ($b[0].annotations | map(select(.symbol | IN("N","L","R","e","j",
        "A","a","J","S","V","E","F","/","f","Q")))) as $ref |
    ["time_s", "label", "confidence", "reference"],
    (.beats[:20][] as $x |
     ([$ref[] | select((.sample - $x.sample) | fabs <= 54)][0].symbol
      // "-") as $r |
     [($x.time * 100 | round / 100), $x.class, $x.confidence, $r])
    | @tsv' "$data/infer.json"
jq -r '.summary | "beats \(.n_beats), heart rate \(if .heart_rate then
    (.heart_rate * 10 | round / 10 | tostring) + " bpm" else "n/a" end), " +
    "counts \(.counts | tostring), abnormal \(.abnormal)"' \
    "$data/infer.json"

# EC57 scores on the held-out minute before and after pruning, and what
# the job warns about.
echo "== EC57 scores on the held-out last minute of 208 (reference annotations,"
echo "   150 ms window), before and after pruning on the first two minutes"
echo "   (208 is one of the default model's training records, so these scores"
echo "   are optimistic; models/README.md has the scores on unseen patients)"
curl -s "$ECGPRUNE_URL/v1/jobs/$job" | jq -r '.result.scores |
    ["", "det Se", "det PPV", "V Se", "V PPV", "macro F1 (classes present)"],
    (["before", "after"][] as $k | .[$k] | [$k, .det_se, .det_ppv,
      .classes.V.se, .classes.V.ppv, .macro_f1] |
      map(if type == "number" then . * 1000 | round / 1000 else . end))
    | @tsv'
echo "== the job's warnings (expected here: two minutes are short"
echo "   calibration, so the refit has few rows and sees no S beat; a real"
echo "   patient's batches of 5 minutes or more avoid the first, and the"
echo "   second says to check the model on held-out ECG, as above)"
curl -s "$ECGPRUNE_URL/v1/jobs/$job" |
    jq -r '.result.warnings[] | "job warning: " + .'
echo "== done; the daemon stops now"
