#!/bin/sh
# bench/patient_specific.sh - the patient-specific protocol of Kiranyaz et
# al. (2016) on the MIT-BIH DS2 records: for each record, fine-tune the
# model on its first 5 minutes (`ecgprune finetune`), score the fine-tuned
# model on the remaining 25 (`ecgprune eval --from 300`), and sum the
# counts of all records into gross scores (EC57 rules, as ep_score does).
#
# usage: bench/patient_specific.sh ECGPRUNE MODEL DATA_DIR OUT_DIR
#                                  [TIME_LIMIT_S] [RECORD...]
#   ECGPRUNE      the ecgprune binary (e.g. build/clients/ecgprune)
#   MODEL         the inter-patient model to personalise
#   DATA_DIR      the MIT-BIH directory (e.g. ../shared/data/mitdb)
#   OUT_DIR       where the fine-tuned models, per-record JSON and the
#                 summary (summary.json, summary.txt) go
#   TIME_LIMIT_S  no record is started after this many seconds (default
#                 3600); the summary says which records ran
#   RECORD...     records (default: all 22 of DS2)
# Extra options for finetune can be given in FINETUNE_OPTS (e.g.
# "--epochs 8 --seed 1").  Needs jq.
set -eu

if [ $# -lt 4 ]; then
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
ecgprune=$1 model=$2 data=$3 out=$4
limit=${5:-3600}
shift 4
[ $# -gt 0 ] && shift
records=${*:-"100 103 105 111 113 117 121 123 200 202 210 212 213 214 219
221 222 228 231 232 233 234"}
mkdir -p "$out"
start=$(date +%s)
done_list=""

for r in $records; do
    now=$(date +%s)
    if [ $((now - start)) -ge "$limit" ]; then
        echo "time limit of ${limit} s reached; skipping $r and later" >&2
        break
    fi
    # shellcheck disable=SC2086
    "$ecgprune" finetune "$model" "$data/$r" --minutes 5 --quiet \
        --out "$out/$r.safetensors" ${FINETUNE_OPTS:-}
    "$ecgprune" eval "$out/$r.safetensors" "$data/$r" --from 300 --json \
        > "$out/$r.json"
    jq -r --arg r "$r" --arg t "$(( $(date +%s) - start ))" '
      def pct: . * 10000 | round / 100;
      def f3: . * 1000 | round / 1000;
      "\($r): \(.detection.tp + .detection.fn) beats, Se \(.detection.se | pct)"
      + " %, +P \(.detection.ppv | pct) %, V F1 \(.classes.V.f1 | f3),"
      + " S F1 \(.classes.S.f1 | f3)  [\($t) s]"' "$out/$r.json" >&2
    done_list="$done_list $r"
done

# Gross scores: sum the confusion matrices, misses and extras.
(cd "$out" && for r in $done_list; do cat "$r.json"; done) | jq -s '
  def ratio(a; b): if b == 0 then 0 else a / b end;
  (map(.confusion.matrix) | transpose | map(transpose | map(add))) as $m |
  (map(.confusion.missed) | transpose | map(add)) as $miss |
  (map(.confusion.extra) | transpose | map(add)) as $extra |
  ([range(5)] | map(. as $k | {
     tp: $m[$k][$k],
     fn: ($miss[$k] + ([range(5)] | map(select(. != $k) | $m[$k][.]) | add)),
     fp: ($extra[$k] + ([range(5)] | map(select(. != $k) | $m[.][$k]) | add))
   } | . + {se: ratio(.tp; .tp + .fn), ppv: ratio(.tp; .tp + .fp),
            f1: ratio(2 * .tp; 2 * .tp + .fn + .fp)})) as $cls |
  ($m | map(add) | add) as $tp |
  {records: length,
   detection: {se: ratio($tp; $tp + ($miss | add)),
               ppv: ratio($tp; $tp + ($extra | add)),
               tp: $tp, fn: ($miss | add), fp: ($extra | add)},
   classes: {N: $cls[0], S: $cls[1], V: $cls[2], F: $cls[3], Q: $cls[4]},
   confusion: {labels: ["N","S","V","F","Q"], matrix: $m, missed: $miss,
               extra: $extra}}' > "$out/summary.json"
jq --arg list "$done_list" '. + {record_list: ($list | ltrimstr(" "))}' \
    "$out/summary.json" > "$out/summary.tmp" &&
    mv "$out/summary.tmp" "$out/summary.json"
jq -r '
  def pct: . * 10000 | round / 100;
  def f3: . * 1000 | round / 1000;
  "records: \(.record_list)",
  "detection: Se \(.detection.se | pct) %  +P \(.detection.ppv | pct) %",
  (.classes | to_entries[] | "\(.key): Se \(.value.se | pct) %  "
    + "+P \(.value.ppv | pct) %  F1 \(.value.f1 | f3)")' \
    "$out/summary.json" | tee "$out/summary.txt"
