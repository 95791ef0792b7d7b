#!/usr/bin/env bash
# test_flow.sh - the whole path through the real daemon with real MIT-BIH
# data: model upload, WFDB batch uploads, a pruning job to completion with
# held-out scoring, masks, inference with the pruned model, labels checked
# against the record's reference annotations, metrics.
# shellcheck source=tests/daemon/lib.sh
. "$(dirname "$0")/lib.sh"

start_daemon
MODEL=$(test_model)

# Health endpoints answer with empty bodies.
req GET /v2/health/live
expect 200 "live"
[ ! -s "$WORK/body" ] || fail "live: body not empty"

# Upload the model: 201, Location, id, checksum of the bytes sent.
req POST "/v1/models?name=flow-model" --data-binary "@$MODEL" \
    -H 'Content-Type: application/octet-stream'
expect 201 "model upload"
MODEL_ID=$(body .id)
grep -qi "^Location: /v1/models/$MODEL_ID" "$WORK/headers" ||
    fail "model upload: no Location header"
[ "$(body .sha256)" = "$(sha256sum "$MODEL" | cut -d' ' -f1)" ] ||
    fail "model sha256 differs from the file's"
FULL_PARAMS=$(body .parameters)
req GET "/v1/models/$MODEL_ID/file"
expect 200 "model download"
cmp -s "$WORK/body" "$MODEL" || fail "downloaded model differs from upload"

# Two real records as WFDB multipart uploads.
B100=$(upload_record 100 subj-100)
B208=$(upload_record 208 subj-208)
req GET "/v1/batches/$B100"
expect 200 "batch show"
[ "$(body .n_samples)" = 64800 ] ||
    fail "batch 100: n_samples $(body .n_samples)"
[ "$(body .sampling_rate)" = 360 ] || fail "batch 100: rate"
[ "$(body .lead)" = MLII ] || fail "batch 100: lead $(body .lead)"
note "record 100 excerpt: $(body .n_beats) beats stored"
[ "$(body .n_beats)" -gt 150 ] || fail "batch 100: too few beats stored"

# A pruning job, scored on record 208 before and after.
JOB_BODY=$(jq -cn --argjson m "$MODEL_ID" --argjson b "$B100" \
    --argjson h "$B208" '{model_id: $m, batch_ids: [$b], method:
    "ising-kernel", keep: 0.5, seed: 3, holdout: {batch_ids: [$h]}}')
req POST /v1/jobs -H 'Content-Type: application/json' \
    -H 'Idempotency-Key: flow-1' -d "$JOB_BODY"
expect 202 "job submit"
JOB=$(body .id)
grep -qi "^Location: /v1/jobs/$JOB" "$WORK/headers" || fail "job: Location"
grep -qi "^Retry-After:" "$WORK/headers" || fail "job: Retry-After"

# The same submission again returns the same job.
req POST /v1/jobs -H 'Content-Type: application/json' \
    -H 'Idempotency-Key: flow-1' -d "$JOB_BODY"
expect 202 "job resubmit"
[ "$(body .id)" = "$JOB" ] || fail "idempotent resubmit made job $(body .id)"
# Spaces and tabs around the key are not part of it (RFC 9110, 5.5).
req POST /v1/jobs -H 'Content-Type: application/json' \
    -H "Idempotency-Key:  flow-1 $(printf '\t')" -d "$JOB_BODY"
expect 202 "job resubmit with spaces around the key"
[ "$(body .id)" = "$JOB" ] ||
    fail "a key with spaces around it made job $(body .id)"

# The model is in use: deleting it is refused while the job is queued or
# running (it may finish quickly, so accept 204 only after success).
STATE=$(wait_job "$JOB" 900)
[ "$STATE" = succeeded ] || fail "job ended $STATE: $(body .error)"
PRUNED=$(body .result.model_id)
[ "$(body .progress.fraction)" = 1 ] || fail "job progress not 1 at the end"
[ "$(body '.params | .distill_steps == 0 and (has("distill_lr") | not)')" = \
    true ] || fail "no distillation asked: params $(body .params)"
# The parameters show the library's defaults; lambda, a rule per layer,
# stays absent.
[ "$(body '.params | .batch_windows == 8 and .max_windows == 64 and
    .mask_list == 32 and .candidates == 8 and (has("lambda") | not)')" = \
    true ] || fail "defaults in params: $(body .params)"
[ "$(body '.result.scores.before.det_se | type')" = number ] ||
    fail "job result has no scores before"
[ "$(body '.result.scores.after.det_se | type')" = number ] ||
    fail "job result has no scores after"
note "held-out record 208, detection Se before/after pruning:" \
    "$(body .result.scores.before.det_se) / $(body .result.scores.after.det_se)"
# Warnings: record 100's excerpt holds no F beat, so the calibration is
# flagged; a fall of more than 0.02 on 208 in the mean F1 of the classes
# with 5 or more held-out beats must be flagged too.
body '.result.warnings[]' | grep -q "holds fewer than 5 beats of .*F (0)" ||
    fail "no calibration warning: $(body .result.warnings)"
FELL=$(body '[.result.scores.before, .result.scores.after] |
    map([.classes[] | select(.support >= 5) | .f1] | add / length) |
    .[0] - .[1] > 0.02')
WARNED=$(body '[.result.warnings[] | select(test("held-out scores fell:.*macro-F1"))]
    | length > 0')
[ "$FELL" = "$WARNED" ] ||
    fail "macro-F1 fell: $FELL, warned: $WARNED ($(body .result.warnings))"

# Lineage and size of the pruned model.
req GET "/v1/models/$PRUNED"
expect 200 "pruned model"
[ "$(body .lineage.parent_model_id)" = "$MODEL_ID" ] || fail "lineage model"
[ "$(body .lineage.parent_job_id)" = "$JOB" ] || fail "lineage job"
[ "$(body .parameters)" -lt "$FULL_PARAMS" ] ||
    fail "pruned model not smaller: $(body .parameters) vs $FULL_PARAMS"
# It belongs to the subject it was calibrated on (record 100's), not to
# the held-out one; the uploaded model belongs to nobody.
[ "$(body '.lineage.subjects | tojson')" = '["subj-100"]' ] ||
    fail "pruned model subjects: $(body '.lineage.subjects | tojson')"
req GET "/v1/models/$MODEL_ID"
expect 200 "uploaded model"
[ "$(body '.lineage.subjects | tojson')" = null ] ||
    fail "uploaded model subjects: $(body '.lineage.subjects | tojson')"

# Masks: per group, distinct increasing indices below channels_before,
# fewer kept than before.
req GET "/v1/jobs/$JOB/masks"
expect 200 "masks"
[ "$(body '.groups | length')" -gt 0 ] || fail "no mask groups"
body '.groups[] | select((.kept | length) == 0 or (.kept | length) >
    .channels_before or .kept != (.kept | unique) or (.kept | max) >=
    .channels_before or .channels_after != (.kept | length)) | .producer' \
    > "$WORK/badmasks"
[ ! -s "$WORK/badmasks" ] || fail "bad masks for $(cat "$WORK/badmasks")"
[ "$(body '.seed | tojson')" = '"3"' ] || fail "masks seed: $(body .seed)"
[ "$(body '[.reconstruct, .prune_head_input, .refit_drifted, .raw_norms,
    .distill_steps] | tojson')" = '[true,false,false,false,0]' ] ||
    fail "masks options: $(cat "$WORK/body")"
# Only the group the classifier reads keeps every channel (by default).
[ "$(body '[.groups[] | select((.kept | length) == .channels_before)
    | .producer] | join(",")')" = dec0.conv1 ] ||
    fail "groups kept whole: $(body '[.groups[] | select((.kept | length) ==
    .channels_before) | .producer]')"

# A job with distillation: the parameters, the masks and the result say
# so, and the pruned model's divergence from the original fell.
req POST /v1/jobs -H 'Content-Type: application/json' -d "$(jq -cn \
    --argjson m "$MODEL_ID" --argjson b "$B100" '{model_id: $m, batch_ids:
    [$b], method: "l1", keep: 0.5, distill_steps: 12, distill_lr: 0.0001}')"
expect 202 "job with distillation"
DJOB=$(body .id)
STATE=$(wait_job "$DJOB" 900)
[ "$STATE" = succeeded ] || fail "distillation job ended $STATE: $(body .error)"
[ "$(body '[.params.distill_steps, .params.distill_lr] | tojson')" = \
    '[12,0.0001]' ] || fail "distillation params: $(body .params)"
[ "$(body '.result.distill.steps')" = 12 ] ||
    fail "distillation result: $(body .result)"
[ "$(body '.result.distill | .best_step > 0 and .kl_after < .kl_before and
    .kl_after >= 0 and .validation_windows > 0 and .held_out == true')" = true ] ||
    fail "divergence did not fall: $(body .result.distill)"
note "distillation, 12 steps: divergence $(body .result.distill.kl_before)" \
    "-> $(body .result.distill.kl_after) (step $(body .result.distill.best_step))"
grep -q "event=job_started job=$DJOB .* distill_steps=12" "$WORK/daemon.log" ||
    fail "job_started does not log the distillation steps"
KL='[0-9.e-]+'
grep -Eq "event=job_finished job=$DJOB state=succeeded .*distill_kl_before=$KL\
 distill_kl_after=$KL distill_best_step=$(body .result.distill.best_step)( |$)" \
    "$WORK/daemon.log" || fail "job_finished does not log the distillation"
req GET "/v1/jobs/$DJOB/masks"
expect 200 "masks of the distillation job"
[ "$(body .distill_steps)" = 12 ] || fail "masks distill_steps"

# Inference with the pruned model on 10 s of record 100 (JSON body).
# Named as another subject's ECG it is refused; the general model takes
# anyone's.
"$ED_TESTTOOL" ecg-json "$EXCERPT/100" 3600 3600 > "$WORK/seg.json"
req POST "/v1/models/$PRUNED/infer?subject=subj-208" \
    -H 'Content-Type: application/json' --data-binary "@$WORK/seg.json"
expect 409 "inference with another subject's model"
body .detail | grep -q 'calibrated on subject(s) \["subj-100"\], not "subj-208"' ||
    fail "409 detail: $(body .detail)"
req POST "/v1/models/$MODEL_ID/infer?subject=subj-208" \
    -H 'Content-Type: application/json' --data-binary "@$WORK/seg.json"
expect 200 "inference with the general model, any subject"
req POST "/v1/models/$PRUNED/infer?subject=subj-100" \
    -H 'Content-Type: application/json' \
    --data-binary "@$WORK/seg.json"
expect 200 "inference"
cp "$WORK/body" "$WORK/infer.json"
N=$(body '.beats | length')
[ "$N" = "$(body .summary.n_beats)" ] || fail "summary.n_beats != beats"
# Beats are sorted, inside the segment, time = sample / fs, known classes.
body '[.beats[] | select(.sample < 0 or .sample >= 3600 or
    ((.time - .sample / 360) | fabs) > 1e-6 or
    (.class | IN("N", "S", "V", "F", "Q") | not) or
    .confidence < 0 or .confidence > 1)] | length' > "$WORK/bad"
[ "$(cat "$WORK/bad")" = 0 ] || fail "malformed beats in the answer"
[ "$(body '[.beats[].sample] == ([.beats[].sample] | sort)')" = true ] ||
    fail "beats not sorted"
# Counts per class sum to the beats; abnormal iff an S, V or F beat.
[ "$(body '[.summary.counts[]] | add')" = "$N" ] || fail "counts sum"
[ "$(body '.summary.abnormal == ([.beats[] | select(.class == "S" or
    .class == "V" or .class == "F")] | length > 0)')" = true ] ||
    fail "abnormal flag inconsistent"

# Labels against the reference annotations (150 ms, classes), for the
# pruned and the original model.
SCORE=$("$ED_TESTTOOL" score "$WORK/infer.json" "$EXCERPT/100" 3600 3600)
note "pruned model on 100 [10 s..20 s]: $SCORE"
req POST "/v1/models/$MODEL_ID/infer" -H 'Content-Type: application/json' \
    --data-binary "@$WORK/seg.json"
expect 200 "inference with the original model"
cp "$WORK/body" "$WORK/infer_full.json"
SCORE_FULL=$("$ED_TESTTOOL" score "$WORK/infer_full.json" "$EXCERPT/100" \
    3600 3600)
note "original model on 100 [10 s..20 s]: $SCORE_FULL"
if [ -n "${DEFAULT_MODEL:-}" ] && [ -f "$DEFAULT_MODEL" ]; then
    # The trained model finds the beats of a clean normal record, and
    # pruning to half the channels keeps most of them.
    echo "$SCORE_FULL" | jq -e '.se >= 0.9 and .ppv >= 0.9' >/dev/null ||
        fail "trained model missed beats: $SCORE_FULL"
    echo "$SCORE" | jq -e '.se >= 0.8 and .ppv >= 0.8' >/dev/null ||
        fail "pruned trained model missed beats: $SCORE"
fi
for s in "$SCORE" "$SCORE_FULL"; do
    echo "$s" | jq -e '.reference >= 8 and .tp + .fn == .reference and
        .tp + .fp == .detected' >/dev/null || fail "score counts: $s"
done

# Ten seconds of calibration: the job runs, and its warnings say that
# refits had too few rows per unknown to fit well.
jq -c '. + {subject: "subj-100"}' "$WORK/seg.json" > "$WORK/ten.json"
req POST /v1/batches -H 'Content-Type: application/json' \
    -H 'Idempotency-Key: ten-1' --data-binary "@$WORK/ten.json"
expect 201 "10-s batch"
TEN=$(body .id)
# A retried upload with the same key is the same batch, stored once,
# even written another way (pretty-printed JSON); the key with another
# batch is refused.  A multipart retry matches too, though curl draws a
# new boundary for it.
req GET /v1/batches
NB=$(body '.batches | length')
jq . "$WORK/ten.json" > "$WORK/ten-pretty.json"
req POST /v1/batches -H 'Content-Type: application/json' \
    -H 'Idempotency-Key: ten-1' --data-binary "@$WORK/ten-pretty.json"
expect 201 "10-s batch again"
[ "$(body .id)" = "$TEN" ] || fail "retried upload made batch $(body .id)"
grep -qi "^Location: /v1/batches/$TEN" "$WORK/headers" ||
    fail "retried upload: Location"
for try in 1 2; do
    req POST /v1/batches -H 'Idempotency-Key: mp-1' \
        -F "header=@$EXCERPT/100.hea" -F "signal=@$EXCERPT/100.dat" \
        -F "annotations=@$EXCERPT/100.atr" -F "subject=subj-100"
    expect 201 "multipart upload with a key, try $try"
    eval "MP$try=$(body .id)"
done
[ "$MP1" = "$MP2" ] || fail "multipart retry made batch $MP2, not $MP1"

req GET /v1/batches
[ "$(body '.batches | length')" = "$((NB + 1))" ] ||
    fail "a retried upload was stored twice"

# A span of a multipart upload ("from" and "to", seconds): the batch is
# that minute of the record, with the whole record's annotations that fall
# in it, counted from its start (360 Hz: 21600..43199).
req GET "/v1/batches/$MP1"
cp "$WORK/body" "$WORK/whole.json"
span() {
    req POST /v1/batches -F "header=@$EXCERPT/100.hea" \
        -F "signal=@$EXCERPT/100.dat" -F "annotations=@$EXCERPT/100.atr" \
        -F "subject=subj-100" "$@"
}
span -F from=60 -F to=120
expect 201 "a minute of the record"
req GET "/v1/batches/$(body .id)"
[ "$(body '[.duration_s, .sampling_rate] | tojson')" = '[60,360]' ] ||
    fail "span: $(body '[.duration_s, .sampling_rate]')"
[ "$(jq -c .annotations "$WORK/body")" = "$(jq -c '[.annotations[] |
    select(.sample >= 21600 and .sample < 43200) | .sample -= 21600]' \
    "$WORK/whole.json")" ] || fail "span annotations: $(body .annotations)"
[ "$(body .n_beats)" = "$(body '[.annotations[] |
    select(.symbol | test("^[NLRejAaJSVEF/fQ]$"))] | length')" ] ||
    fail "span: n_beats $(body .n_beats)"
span -F from=150
expect 201 "from a time to the end"
req GET "/v1/batches/$(body .id)"
[ "$(body .duration_s)" = 30 ] || fail "from 150 s: $(body .duration_s) s"
for bad in "from=abc|expected seconds" "to=999|past the end of the record" \
    "from=1e300|expected seconds" "from=90&to=30|expected a time before" \
    "from=0&to=1|less than two seconds" "to=-1|expected seconds" \
    "to=0x10|expected seconds" "from=10s|expected seconds" \
    "from=|is empty" "from=200|\"from\" = 200 s is past the end" \
    "from=99999999999999999999|expected seconds"; do
    fields=${bad%%|*}
    args=()
    IFS='&' read -ra kv <<< "$fields"
    for f in "${kv[@]}"; do
        args+=(-F "$f")
    done
    span "${args[@]}"
    expect 422 "span $fields"
    body .detail | grep -q "${bad#*|}" ||
        fail "span $fields: $(body .detail)"
done
jq -c '.samples[0] = 0.5' "$WORK/ten.json" > "$WORK/ten2.json"
req POST /v1/batches -H 'Content-Type: application/json' \
    -H 'Idempotency-Key: ten-1' --data-binary "@$WORK/ten2.json"
expect 422 "the key with another batch"
body .detail | grep -q "was used for batch $TEN with another batch" ||
    fail "422 detail: $(body .detail)"
req GET "/v1/batches/$TEN"
req POST /v1/jobs -H 'Content-Type: application/json' -d "$(jq -cn \
    --argjson m "$MODEL_ID" --argjson b "$(body .id)" '{model_id: $m,
    batch_ids: [$b], method: "l1", keep: 0.5}')"
expect 202 "job on 10 s of ECG"

STATE=$(wait_job "$(body .id)" 900)
[ "$STATE" = succeeded ] || fail "10-s job ended $STATE: $(body .error)"
body '.result.warnings[]' | grep -Eq "^[0-9]+ of [0-9]+ channel groups were \
refitted from fewer than 10 calibration rows per unknown \(fewest: [0-9.]+, \
group [a-z0-9.]+\)" || fail "no refit warning: $(body .result.warnings)"

# Fine-tuning after pruning (three steps): the parameters show the
# defaults of what was left out, the job runs through the stage.
req POST /v1/jobs -H 'Content-Type: application/json' -d "$(jq -cn \
    --argjson m "$MODEL_ID" --argjson b "$B100" '{model_id: $m,
    batch_ids: [$b], method: "l1", keep: 0.5,
    finetune: {epochs: 1, steps_per_epoch: 3}}')"
expect 202 "job with fine-tuning"
[ "$(body '.params.finetune == {epochs: 1, steps_per_epoch: 3, batch: 8,
    lr: 0.0005, weight_decay: 0.0001, seed: 1, freeze_encoder: false,
    augment: true}')" = true ] ||
    fail "fine-tuning defaults: $(body .params.finetune)"
STATE=$(wait_job "$(body .id)" 900)
[ "$STATE" = succeeded ] || fail "fine-tuning job ended $STATE: $(body .error)"

# Metrics mention what happened.
req GET /metrics
expect 200 "metrics"
INFER_ROUTE='route="/v1/models/{id}/infer",method="POST",status="200"'
# Four jobs succeeded.  Three inferences succeeded: the general model
# named for subj-208, the pruned one for subj-100, the general one again;
# the refusal is a 409.
grep -qF "ecgpruned_http_requests_total{$INFER_ROUTE} 3" "$WORK/body" ||
    fail "metrics: the infer requests are not counted"
grep -qF "${INFER_ROUTE/200/409}} 1" "$WORK/body" ||
    fail "metrics: the refused inference is not counted"
grep -q '^ecgpruned_job_duration_seconds_count{state="succeeded"} 4$' \
    "$WORK/body" || fail "metrics: job duration"
N_FULL=$(jq '.beats | length' "$WORK/infer_full.json")
# (the general model ran twice on the same segment)
grep -q "^ecgpruned_beats_inferred_total $((N + 2 * N_FULL))\$" \
    "$WORK/body" ||
    fail "metrics: beats inferred"

# Backup while serving (docs/daemon.md, "Backup and restore"): sqlite3's
# online backup of the store, owner-only as the umask makes it; restored
# below into a new data directory, it serves the same rows.
lists() {
    for kind in models batches jobs; do
        req GET "/v1/$kind?limit=1000"
        expect 200 "list of $kind"
        jq -c ".$kind | map(del(.progress, .timings))" "$WORK/body"
    done
}
lists > "$WORK/lists.before"
grep -q '"sha256"' "$WORK/lists.before" || fail "no model listed to back up"
(umask 077 && sqlite3 "$WORK/data/ecgpruned.sqlite3" \
    ".backup '$WORK/backup.sqlite3'") || fail "online backup"
[ "$(stat -c %a "$WORK/backup.sqlite3")" = 600 ] ||
    fail "backup mode $(stat -c %a "$WORK/backup.sqlite3")"
[ "$(sqlite3 "$WORK/backup.sqlite3" 'PRAGMA integrity_check')" = ok ] ||
    fail "the backup fails its integrity check"

# Deleting: the batch disappears, from the database file too.  Its
# samples are 4 s of a constant 1.25 mV: float32 bytes 00 00 a0 3f, which
# a run of 256 of cannot occur elsewhere in the file by chance.
jq -cn '{subject: "erase-me", sampling_rate: 360,
    samples: [range(1440) | 1.25]}' > "$WORK/const.json"
req POST /v1/batches -H 'Content-Type: application/json' \
    --data-binary "@$WORK/const.json"
expect 201 "constant batch"
BCONST=$(body .id)
DB="$WORK/data/ecgpruned.sqlite3"
has_samples() {
    cat "$DB" "$DB-wal" 2>/dev/null |
        LC_ALL=C grep -caP '(\x00\x00\xa0\x3f){256}' >/dev/null
}
has_samples || fail "the constant batch's samples are not in the store"

# Another process reading the database (a backup holding its snapshot)
# keeps the log from being emptied: the delete answers 202 at once, not
# after a stall, saying so, and the copy is erased when the reader is
# done (the daemon retries every second).
mkfifo "$WORK/reader.fifo"
sqlite3 "$DB" < "$WORK/reader.fifo" > "$WORK/reader.out" &
READER=$!
exec 9> "$WORK/reader.fifo"
echo 'BEGIN; SELECT count(*) FROM batches;' >&9
for _ in $(seq 1 100); do
    [ -s "$WORK/reader.out" ] && break
    sleep 0.1
done
[ -s "$WORK/reader.out" ] || fail "the reader never read"
req DELETE "/v1/batches/$BCONST"
expect 202 "batch delete while a reader holds the database"
[ "$(body '[.deleted, .log_purged] | tostring')" = '[true,false]' ] ||
    fail "202 body: $(cat "$WORK/body")"
req GET "/v1/batches/$BCONST"
expect 404 "deleted batch"
has_samples || fail "the samples left the log although a reader held it"
# A restart meanwhile (the unit restarted during a backup) must not lose
# the pending erasure: the new process tries at start, then every second.
# (9>&-: the daemon must not hold the reader's FIFO open.)
stop_daemon
start_daemon 9>&-
[ "$(grep -c 'event=log_purge_waiting' "$WORK/daemon.log")" = 2 ] ||
    fail "the restarted daemon does not wait to empty the log"
has_samples || fail "the restart emptied the log under the reader"
echo 'COMMIT;' >&9
exec 9>&-
wait "$READER"
for _ in $(seq 1 50); do
    grep -q 'event=log_purged' "$WORK/daemon.log" && break
    sleep 0.2
done
grep -q 'event=log_purged' "$WORK/daemon.log" ||
    fail "the log was not emptied after the reader finished"
! has_samples || fail "deleted samples are still in the database file"

req DELETE "/v1/batches/$B208"
expect 204 "batch delete"
req GET "/v1/batches/$B208"
expect 404 "deleted batch"
! has_samples || fail "deleted samples are still in the database file"
req DELETE "/v1/models/$MODEL_ID"
expect 204 "model delete"

stop_daemon
grep -q 'event=stopped' "$WORK/daemon.log" || fail "no orderly stop logged"

# Restore: the backup as the database of a new data directory.
mv "$WORK/data" "$WORK/data.deleted"
mkdir -m 700 "$WORK/data"
cp "$WORK/backup.sqlite3" "$WORK/data/ecgpruned.sqlite3"
start_daemon
lists > "$WORK/lists.after"
cmp -s "$WORK/lists.before" "$WORK/lists.after" ||
    fail "the restored store differs: $(diff "$WORK/lists.before" \
        "$WORK/lists.after" | head -c 600)"
req GET "/v1/models/$MODEL_ID/file"
expect 200 "a model's weights from the restored store"
stop_daemon
echo "ok: flow"
