#!/usr/bin/env bash
# test_bad_input.sh - malformed, mistyped, oversized, truncated and lying
# inputs: each must get a 4xx application/problem+json answer whose detail
# names the fault, and the daemon must keep serving after every one.
# shellcheck source=tests/daemon/lib.sh
. "$(dirname "$0")/lib.sh"

# --check-config: a valid file passes, a wrong one names the key at fault.
"$ECGPRUNED" --config "$(dirname "$0")/../../config/ecgpruned.json" \
    --check-config > "$WORK/check.txt" || fail "shipped config refused"
grep -q 'configuration ok: listen 127.0.0.1:8642' "$WORK/check.txt" ||
    fail "check-config: $(cat "$WORK/check.txt")"
# refused PATTERN ARGS...: ecgpruned ARGS must fail with PATTERN on stderr.
refused() {
    local pattern=$1
    shift
    if "$ECGPRUNED" "$@" 2> "$WORK/check.txt"; then
        fail "ecgpruned $* was accepted"
    fi
    grep -q -- "$pattern" "$WORK/check.txt" ||
        fail "ecgpruned $*: message $(cat "$WORK/check.txt")"
}
echo '{"limits": {"max_body_bytes": "big"}}' > "$WORK/wrong.json"
refused '"max_body_bytes": expected an integer' --config "$WORK/wrong.json" \
    --check-config
# The budget of buffered bodies must hold one body; left unset (or null)
# it grows to fit.
echo '{"limits": {"max_body_bytes": 2000000, "max_pending_bytes": 1000000}}' \
    > "$WORK/budget.json"
refused 'max_pending_bytes 1000000 is below max_body_bytes 2000000' \
    --config "$WORK/budget.json" --check-config
echo '{"limits": {"max_body_bytes": 300000000, "max_pending_bytes": null}}' \
    > "$WORK/budget.json"
"$ECGPRUNED" --config "$WORK/budget.json" --check-config |
    grep -q 'max_pending_bytes 300000000' ||
    fail "an unset budget did not grow to max_body_bytes"
refused '--listen "999.1.1.1:80"' --listen 999.1.1.1:80 --check-config
refused 'unknown option --no-such-option' --no-such-option
printf 'not a model' > "$WORK/not-a-model.safetensors"
refused "preload .*not-a-model.safetensors: not an ecgprune" \
    --preload "$WORK/not-a-model.safetensors" --check-config
refused "is not a directory" --data-dir "$WORK/not-a-model.safetensors" \
    --check-config
refused "cannot be created" --data-dir /proc/ecgpruned-test --check-config
# A data directory whose files the start would refuse: the check refuses
# them first, and writes nothing into them.
mkdir -p "$WORK/dd/junk" "$WORK/dd/newer" "$WORK/dd/foreign" "$WORK/dd/lock"
head -c 4096 /dev/urandom > "$WORK/dd/junk/ecgpruned.sqlite3"
sqlite3 "$WORK/dd/newer/ecgpruned.sqlite3" 'PRAGMA user_version = 99'
sqlite3 "$WORK/dd/foreign/ecgpruned.sqlite3" 'CREATE TABLE models (x)'
mkdir "$WORK/dd/lock/ecgpruned.lock"
for c in 'junk|file is not a database' \
    'newer|schema version 99 is newer than this daemon' \
    'foreign|holds 1 tables or indexes but no ecgpruned schema version' \
    'lock|ecgpruned.lock\( is not a regular file\|: Is a directory\)'; do
    refused "${c#*|}" --data-dir "$WORK/dd/${c%%|*}" --check-config
    refused "${c#*|}" --data-dir "$WORK/dd/${c%%|*}" --listen 127.0.0.1:0
done
[ "$(sqlite3 "$WORK/dd/foreign/ecgpruned.sqlite3" .tables)" = models ] ||
    fail "the check or the start changed another program's database"
# A store in WAL mode is read without a lock, and no -shm or -wal file is
# left behind (run as root, they would be root's).
mkdir "$WORK/dd/wal"
sqlite3 "$WORK/dd/wal/ecgpruned.sqlite3" \
    'PRAGMA journal_mode = WAL; PRAGMA user_version = 1' > /dev/null
"$ECGPRUNED" --data-dir "$WORK/dd/wal" --check-config > /dev/null ||
    fail "a WAL-mode store of version 1 was refused"
[ -z "$(find "$WORK/dd/wal" -name '*-shm' -o -name '*-wal')" ] ||
    fail "--check-config left $(ls "$WORK/dd/wal")"
# A log file in a missing directory, or a directory, would stop the start:
# the check says so first.
refused "log.file: $WORK/nodir/x.log cannot be opened for appending: No such" \
    --log-file "$WORK/nodir/x.log" --check-config
refused "log.file: $WORK is not a regular file (a directory)" \
    --log-file "$WORK" --check-config
# A FIFO would block the open (the check's and the start's): refused at
# once, as a log file, a TLS file or a preloaded model; a dangling link
# names the file that will be made, and passes.
mkfifo "$WORK/named.fifo"
refused "log.file: $WORK/named.fifo is not a regular file (a FIFO" \
    --log-file "$WORK/named.fifo" --check-config
refused "log.file: $WORK/named.fifo is not a regular file (a FIFO" \
    --log-file "$WORK/named.fifo" --data-dir "$WORK/fifo-data"
refused "preload $WORK/named.fifo is not a regular file" \
    --preload "$WORK/named.fifo" --check-config
mkdir "$WORK/logs"
ln -s "$WORK/logs/real.log" "$WORK/dangling.log"
"$ECGPRUNED" --log-file "$WORK/dangling.log" --data-dir "$WORK/new-data" \
    --check-config > /dev/null || fail "a dangling log link was refused"
[ ! -e "$WORK/logs/real.log" ] || fail "the check left the link's file"
"$ECGPRUNED" --log-file "$WORK/new.log" --data-dir "$WORK/new-data" \
    --check-config > /dev/null || fail "a new log file was refused"
if [ -e "$WORK/new.log" ] || [ -e "$WORK/new-data" ]; then
    fail "--check-config left files behind"
fi
# A preloaded model that loads but would be refused as an upload (a
# window shorter than one second) is refused by the check too.
"$ED_TESTTOOL" model "$WORK/short.safetensors" 7 window=8 \
    > /dev/null
refused "preload .*short.safetensors: the model's window of 8 samples" \
    --preload "$WORK/short.safetensors" --check-config

# TLS: a self-signed certificate made here serves HTTPS; a key of another
# certificate, or files that are not PEM, are refused by the check and at
# start with GnuTLS's reason, not as a port in use.
tls_config() {  # tls_config CERT KEY: a configuration file using them
    jq -n --arg c "$1" --arg k "$2" '{tls: {cert: $c, key: $k}}' \
        > "$WORK/tls.json"
}
certtool --generate-privkey --key-type ecdsa --outfile "$WORK/tls.key" \
    2> /dev/null
certtool --generate-privkey --key-type ecdsa --outfile "$WORK/other.key" \
    2> /dev/null
printf 'cn = 127.0.0.1\nip_address = 127.0.0.1\nexpiration_days = 2\n' \
    > "$WORK/tls.tmpl"
certtool --generate-self-signed --load-privkey "$WORK/tls.key" \
    --template "$WORK/tls.tmpl" --outfile "$WORK/tls.crt" 2> /dev/null
tls_config "$WORK/tls.crt" "$WORK/other.key"
refused "tls: certificate $WORK/tls.crt with key $WORK/other.key: " \
    --config "$WORK/tls.json" --check-config
refused "tls: certificate .*other.key: .*expected a PEM certificate" \
    --config "$WORK/tls.json" --data-dir "$WORK/tls-data" \
    --listen 127.0.0.1:0
tls_config "$WORK/named.fifo" "$WORK/tls.key"
refused "tls.cert $WORK/named.fifo is not a regular file" \
    --config "$WORK/tls.json" --check-config
tls_config "$WORK/tls.json" "$WORK/tls.json"
refused "tls: certificate $WORK/tls.json with key $WORK/tls.json: " \
    --config "$WORK/tls.json" --check-config
tls_config "$WORK/tls.crt" "$WORK/tls.key"
"$ECGPRUNED" --config "$WORK/tls.json" --check-config > "$WORK/check.txt" ||
    fail "a certificate and its key were refused"
grep -q "tls on" "$WORK/check.txt" || fail "check-config: $(cat "$WORK/check.txt")"
# A certificate near its end (2 days here) or past it is warned of, by
# the check and in the log at start; it still serves.
grep -q "warning: tls.cert $WORK/tls.crt expires on .*, in 2 days" \
    "$WORK/check.txt" || fail "no warning of a near end: $(cat "$WORK/check.txt")"
printf 'cn = 127.0.0.1\nactivation_date = "2020-01-01 00:00:00"\n%s\n' \
    'expiration_date = "2021-01-01 00:00:00"' > "$WORK/old.tmpl"
certtool --generate-self-signed --load-privkey "$WORK/tls.key" \
    --template "$WORK/old.tmpl" --outfile "$WORK/old.crt" 2> /dev/null
tls_config "$WORK/old.crt" "$WORK/tls.key"
"$ECGPRUNED" --config "$WORK/tls.json" --check-config |
    grep -q "warning: tls.cert $WORK/old.crt expired on 2021-01-01" ||
    fail "an expired certificate was not warned of"
tls_config "$WORK/tls.crt" "$WORK/tls.key"
rm -f "$WORK/port"
"$ECGPRUNED" --config "$WORK/tls.json" --data-dir "$WORK/tls-data" \
    --listen 127.0.0.1:0 --port-file "$WORK/port" \
    --log-file "$WORK/tls.log" &
TLS_PID=$!
for _ in $(seq 1 100); do
    [ -s "$WORK/port" ] && break
    sleep 0.1
done
TLS_URL="https://127.0.0.1:$(cat "$WORK/port")"
[ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$WORK/tls.crt" \
     "$TLS_URL/v2/health/live")" = 200 ] || fail "no answer over HTTPS"
if curl -s -o /dev/null "http://127.0.0.1:$(cat "$WORK/port")/v2/health/live"
then
    fail "plain HTTP was answered on the TLS port"
fi
kill -TERM "$TLS_PID"
wait "$TLS_PID" || fail "the TLS daemon exited with an error"
grep -q 'event=config_advice advice="tls.cert .* in 2 days' "$WORK/tls.log" ||
    fail "the start did not log the certificate's near end"

"$ECGPRUNED" --version | grep -q '^ecgpruned [0-9]' ||
    fail "--version does not print the version"

# A small body limit (above the default model's size) so that "huge" is
# quick to send.
cat > "$WORK/config.json" <<'JSON'
{ "limits": { "max_body_bytes": 4194304, "max_pending_bytes": 6291456,
              "max_samples": 50000, "max_connections_per_ip": 8 } }
JSON
start_daemon --config "$WORK/config.json"
MODEL=$(test_model)

# Eight idle connections from this address use up
# limits.max_connections_per_ip: a ninth is closed unanswered; once they
# are gone requests are served again.  The kernel completes the eight
# connects before the daemon has accepted them all, so a request sent at
# once may still find a free place: it gets a few tries to be refused.
for fd in 4 5 6 7 8 9 10 11; do
    eval "exec $fd<>/dev/tcp/127.0.0.1/${URL##*:}"
done
for _ in $(seq 1 20); do
    req GET /v2/health/live
    [ "$STATUS" = 000 ] && break
    sleep 0.1
done
[ "$STATUS" = 000 ] || fail "a ninth connection was served ($STATUS)"
for fd in 4 5 6 7 8 9 10 11; do
    eval "exec $fd>&-"
done
for _ in $(seq 1 50); do
    req GET /v2/health/live
    [ "$STATUS" = 200 ] && break
    sleep 0.1
done
expect 200 "served again once the idle connections closed"
req POST "/v1/models?name=m" --data-binary "@$MODEL"
expect 201 "model upload"
MID=$(body .id)
# The same bytes and name again: the model stored first (200), no copy;
# under another name, another model.
req POST "/v1/models?name=m" --data-binary "@$MODEL"
expect 200 "the same model again"
[ "$(body .id)" = "$MID" ] || fail "the same model again made id $(body .id)"
grep -qi "^Location: /v1/models/$MID" "$WORK/headers" ||
    fail "the same model again: Location"
req POST "/v1/models?name=m2" --data-binary "@$MODEL"
expect 201 "the same bytes under another name"
[ "$(body .id)" != "$MID" ] || fail "another name gave the same model"
req DELETE "/v1/models/$(body .id)"
expect 204 "delete the second name"
"$ED_TESTTOOL" ecg-json "$EXCERPT/100" 0 3600 > "$WORK/seg.json"
jq -c '. + {subject: "p1"}' "$WORK/seg.json" > "$WORK/batch.json"
req POST /v1/batches -H 'Content-Type: application/json' \
    --data-binary "@$WORK/batch.json"
expect 201 "batch upload"
BID=$(body .id)

CASES=0
# bad STATUS DETAIL_REGEX METHOD PATH [curl options]: one refused request.
bad() {
    local want=$1 pattern=$2 method=$3 path=$4
    shift 4
    CASES=$((CASES + 1))
    req "$method" "$path" "$@"
    expect "$want" "case $CASES ($method $path, /$pattern/)"
    grep -qi '^Content-Type: application/problem+json' "$WORK/headers" ||
        fail "case $CASES: not application/problem+json"
    [ "$(body .status)" = "$want" ] || fail "case $CASES: status member"
    [ -n "$(body .title)" ] || fail "case $CASES: no title"
    body .detail | grep -Eq -- "$pattern" ||
        fail "case $CASES: detail \"$(body .detail)\" does not match /$pattern/"
    req GET /v2/health/live
    expect 200 "daemon alive after case $CASES"
}
J=(-H 'Content-Type: application/json')

# Malformed and truncated JSON, NaN and infinities (not JSON numbers).
bad 400 'malformed JSON at line 1' POST "/v1/models/$MID/infer" "${J[@]}" \
    -d '{"sampling_rate": 360, "samples": [1, 2,'
bad 400 'malformed JSON' POST "/v1/models/$MID/infer" "${J[@]}" \
    -d '{"sampling_rate": 360, "samples": [NaN, 1]}'
bad 400 'malformed JSON' POST "/v1/models/$MID/infer" "${J[@]}" \
    -d '{"sampling_rate": 360, "samples": [1e999, 1]}'
head -c 5000 "$WORK/seg.json" > "$WORK/truncated.json"
bad 400 'malformed JSON' POST "/v1/models/$MID/infer" "${J[@]}" \
    --data-binary "@$WORK/truncated.json"
bad 400 'malformed JSON' POST /v1/jobs "${J[@]}" -d '{"model_id": 1,,}'
bad 400 'empty body: expected a JSON object' POST /v1/jobs "${J[@]}"
bad 415 'Content-Type "text/plain": expected application/json' POST \
    /v1/jobs -H 'Content-Type: text/plain' -d '{"model_id": 1}'

# Wrong types and names.
bad 400 '"sampling_rate": expected a number' POST "/v1/models/$MID/infer" \
    "${J[@]}" -d '{"sampling_rate": "360", "samples": [1]}'
jq -c '.samples[2] = "NaN"' "$WORK/seg.json" > "$WORK/strnan.json"
bad 400 'samples\[2\]: expected a number' POST "/v1/models/$MID/infer" \
    "${J[@]}" --data-binary "@$WORK/strnan.json"
bad 400 'unknown field "rate"' POST "/v1/models/$MID/infer" "${J[@]}" \
    -d '{"rate": 360, "samples": [1]}'
bad 400 'expected a JSON object' POST "/v1/models/$MID/infer" "${J[@]}" \
    -d '[1, 2, 3]'
bad 415 'Content-Type "text/plain"' POST "/v1/models/$MID/infer" \
    -H 'Content-Type: text/plain' -d 'hello'

# Absurd sampling rates and amplitudes.
for fs in 0 -360 1e9; do
    jq -c ".sampling_rate = $fs" "$WORK/seg.json" > "$WORK/fs.json"
    bad 422 '"sampling_rate" = .* Hz is outside' POST \
        "/v1/models/$MID/infer" "${J[@]}" --data-binary "@$WORK/fs.json"
done
# A batch is held to the rates inference takes (once 20 kHz batches were
# stored, and every job on them failed).
jq -c '.sampling_rate = 15000' "$WORK/batch.json" > "$WORK/fs.json"
bad 422 '"sampling_rate" = 15000 Hz is outside 50..10000 Hz' POST \
    /v1/batches "${J[@]}" --data-binary "@$WORK/fs.json"
jq -c '.samples[7] = 5000' "$WORK/seg.json" > "$WORK/adc.json"
bad 422 'samples\[7\] = 5000 mV' POST "/v1/models/$MID/infer" "${J[@]}" \
    --data-binary "@$WORK/adc.json"
for gain in 0 -200 1e308; do
    jq -c ".gain = $gain" "$WORK/seg.json" > "$WORK/gain.json"
    bad 422 '"gain" = .*: expected ADC units per mV in' POST \
        "/v1/models/$MID/infer" "${J[@]}" --data-binary "@$WORK/gain.json"
done
jq -c '.samples = .samples[0:100]' "$WORK/seg.json" > "$WORK/short.json"
bad 422 'less than two seconds' POST "/v1/models/$MID/infer" "${J[@]}" \
    --data-binary "@$WORK/short.json"

# upload_both STATUS PATTERN FILE: FILE as a model upload, announced
# (Content-Length) and streamed (chunked), refused alike.
upload_both() {
    bad "$1" "$2" POST "/v1/models?name=up" --data-binary "@$3"
    bad "$1" "$2" POST "/v1/models?name=up" -H 'Transfer-Encoding: chunked' \
        --data-binary "@$3"
}

# Huge bodies.
head -c 6000000 /dev/zero > "$WORK/huge.bin"
upload_both 413 'exceeds the limit of 4194304 bytes' "$WORK/huge.bin"

# A body shorter than its Content-Length, then the client hangs up.
exec 3<>"/dev/tcp/127.0.0.1/${URL##*:}"
printf '%s\r\n' 'POST /v1/batches HTTP/1.1' 'Host: x' \
    'Content-Type: application/json' 'Content-Length: 5000' '' >&3
printf '{"subj' >&3
exec 3>&-
req GET /v2/health/live
expect 200 "alive after a truncated upload"

# raw_status HEADER-LINES: the status line answering a POST of "{}" sent
# with those header lines (\r\n-separated), read for at most 5 s.
raw_status() {
    local line
    exec 3<>"/dev/tcp/127.0.0.1/${URL##*:}"
    printf 'POST /v1/batches HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\n%b\r\n%s\r\n\r\n{}' \
        application/json "$1" 'Connection: close' >&3
    IFS= read -r -t 5 line <&3 || line="(no answer)"
    exec 3<&-
    printf '%s\n' "${line%$'\r'}"
}
# Framing read one way here and another by a proxy (request smuggling),
# or waited on for ever, and encodings the daemon does not decode: each
# refused at once.
for c in '501|Transfer-Encoding: identity\r\nContent-Length: 2' \
    '501|Transfer-Encoding: gzip, chunked' \
    '400|Transfer-Encoding: chunked\r\nContent-Length: 2' \
    '400|Content-Length: 2\r\nContent-Length: 100' \
    '415|Content-Encoding: gzip\r\nContent-Length: 2' \
    '501|Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip' \
    '400|Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked' \
    '415|Content-Encoding: identity\r\nContent-Encoding: gzip\r\nContent-Length: 2'; do
    got=$(raw_status "${c#*|}")
    case $got in
    "HTTP/1.1 ${c%%|*} "*) ;;
    *) fail "framing ${c#*|}: $got, expected ${c%%|*}" ;;
    esac
done
req GET /v2/health/live
expect 200 "alive after the framing cases"

# Safetensors files that lie: offsets past the end, a header length
# beyond the file, garbage.
head -c $(($(stat -c %s "$MODEL") - 1000)) "$MODEL" > "$WORK/cut.safetensors"
bad 422 'not an ecgprune safetensors model: .+' POST "/v1/models?name=cut" \
    --data-binary "@$WORK/cut.safetensors"
{ printf '\377\377\377\377\000\000\000\000'; tail -c +9 "$MODEL"; } \
    > "$WORK/hdr.safetensors"
bad 422 'model: not a safetensors file: .*header length, read 4294967295' \
    POST "/v1/models?name=hdr" --data-binary "@$WORK/hdr.safetensors"
bad 415 'send the model file itself as the body.*--data-binary' \
    POST "/v1/models?name=form" -F "file=@$MODEL"
bad 415 'Content-Type multipart/mixed: send the model file' \
    POST "/v1/models?name=form" -H 'Content-Type: multipart/mixed; boundary=x' \
    --data-binary "@$MODEL"
# Models that load but would not detect: a window under one second (a
# 30-minute inference took 100 s with 8 samples), a high-pass that takes
# the QRS complexes away.
"$ED_TESTTOOL" model "$WORK/w256.safetensors" 1 window=256
bad 422 "window of 256 samples is shorter than one second at its 360 Hz" \
    POST "/v1/models?name=w256" --data-binary "@$WORK/w256.safetensors"
"$ED_TESTTOOL" model "$WORK/hp.safetensors" 1 highpass=40
bad 422 "high-pass cut-off 40 Hz is above 5 Hz" \
    POST "/v1/models?name=hp" --data-binary "@$WORK/hp.safetensors"
# Finite weights that overflow float: the test run on a stand-in ECG at
# upload finds it (such a model made beat picking loop forever).
"$ED_TESTTOOL" model "$WORK/ovf.safetensors" 1 overflow
bad 422 "cannot run on a test ECG .* output is not finite" \
    POST "/v1/models?name=ovf" --data-binary "@$WORK/ovf.safetensors"
bad 422 'not an ecgprune safetensors model' POST "/v1/models?name=junk" \
    -d 'this is not a model'
bad 422 'query parameter "name" is required' POST /v1/models \
    --data-binary "@$MODEL"
bad 422 'name "a b"' POST "/v1/models?name=a%20b" --data-binary "@$MODEL"

# Batches: identity fields, missing subject, bad annotations, bad WFDB.
jq -c '. + {subject: "p1", name: "Jane Doe"}' "$WORK/seg.json" > "$WORK/n.json"
bad 422 'field "name" is refused' POST /v1/batches "${J[@]}" \
    --data-binary "@$WORK/n.json"
bad 422 '"subject" .* is required' POST /v1/batches "${J[@]}" \
    --data-binary "@$WORK/seg.json"
jq -c '. + {subject: "Jane Doe"}' "$WORK/seg.json" > "$WORK/sp.json"
bad 422 'no spaces, no names' POST /v1/batches "${J[@]}" \
    --data-binary "@$WORK/sp.json"
jq -c '. + {subject: "p1", annotations: [{sample: 99999, symbol: "N"}]}' \
    "$WORK/seg.json" > "$WORK/an.json"
bad 422 'annotations\[0\].sample = 99999 is outside' POST /v1/batches \
    "${J[@]}" --data-binary "@$WORK/an.json"
jq -c '. + {subject: "p1", annotations: [{sample: 9, symbol: "?!"}]}' \
    "$WORK/seg.json" > "$WORK/as.json"
bad 422 'not an MIT annotation symbol' POST /v1/batches "${J[@]}" \
    --data-binary "@$WORK/as.json"
# One beat annotated twice (or as two classes) at one sample; a beat and
# a rhythm note there are fine.
jq -c '. + {subject: "p1", annotations: [{sample: 9, symbol: "N"},
    {sample: 400, symbol: "V"}, {sample: 9, symbol: "N"}]}' \
    "$WORK/seg.json" > "$WORK/dup.json"
bad 422 'two beats at sample 9 \(N and N\); expected one beat per sample' \
    POST /v1/batches "${J[@]}" --data-binary "@$WORK/dup.json"
jq -c '. + {subject: "p1", annotations: [{sample: 5, symbol: "N"},
    {sample: 5, symbol: "~"}, {sample: 5, symbol: "e"}]}' \
    "$WORK/seg.json" > "$WORK/dup2.json"
bad 422 'two beats at sample 5 \(N and e\)' POST /v1/batches "${J[@]}" \
    --data-binary "@$WORK/dup2.json"
jq -c '. + {subject: "p1", annotations: [{sample: 9, symbol: "N"},
    {sample: 9, symbol: "+"}]}' "$WORK/seg.json" > "$WORK/note.json"
req POST /v1/batches "${J[@]}" --data-binary "@$WORK/note.json"
expect 201 "a beat and a note at one sample"
[ "$(body .n_beats)" = 1 ] || fail "a beat and a note: n_beats $(body .n_beats)"
req DELETE "/v1/batches/$(body .id)"
expect 204 "delete that batch"
bad 422 'needs a "header" \(.hea\) and a "signal"' POST /v1/batches \
    -F "header=@$EXCERPT/100.hea" -F subject=p1
printf '100 2 360 64800\r\nnot a signal line\r\n' > "$WORK/bad.hea"
bad 422 'header' POST /v1/batches -F "header=@$WORK/bad.hea" \
    -F "signal=@$EXCERPT/100.dat" -F subject=p1
sed '1s/^100 2 360 64800/100 2 360 20000/' "$EXCERPT/100.hea" > "$WORK/100.hea"
head -c 1000 "$EXCERPT/100.dat" > "$WORK/short.dat"
bad 422 'signal \(100.dat\): .*1000 bytes' POST /v1/batches \
    -F "header=@$WORK/100.hea" -F "signal=@$WORK/short.dat;filename=100.dat" \
    -F subject=p1
# The first 20000 samples (3 bytes a frame of two format-212 signals;
# the header without checksums, which cover all 64800) with the
# annotations of all 64800: beats past the end are refused, as in JSON.
head -c 60000 "$EXCERPT/100.dat" > "$WORK/first.dat"
printf '%s\n' '100 2 360 20000' '100.dat 212 200 11 1024 995' \
    '100.dat 212 200 11 1024 1011' > "$WORK/first.hea"
bad 422 'a beat at sample [0-9]+, is outside the signal \(0..19999\)' \
    POST /v1/batches -F "header=@$WORK/first.hea;filename=100.hea" \
    -F "signal=@$WORK/first.dat;filename=100.dat" \
    -F "annotations=@$EXCERPT/100.atr" -F subject=p1
# Text fields hiding a NUL byte are refused, not cut; a field given twice
# is refused even when its first copy was empty; a field name says what a
# part is even when its file name's extension says otherwise.
printf 'p-3\0Jane Doe' > "$WORK/nul.txt"
bad 422 'multipart field "subject": a NUL byte at 3 of 12; expected text' \
    POST /v1/batches -F "header=@$WORK/first.hea;filename=100.hea" \
    -F "signal=@$WORK/first.dat;filename=100.dat" -F "subject=<$WORK/nul.txt"
bad 400 'multipart field "subject" is given twice' POST /v1/batches \
    -F "header=@$WORK/first.hea;filename=100.hea" \
    -F "signal=@$WORK/first.dat;filename=100.dat" -F subject= -F subject=p1
: > "$WORK/empty.atr"
bad 422 'multipart field "annotations" is empty; leave it out or fill it' \
    POST /v1/batches -F "header=@$WORK/first.hea;filename=100.hea" \
    -F "signal=@$WORK/first.dat;filename=100.dat" -F subject=p1 \
    -F "annotations=@$WORK/empty.atr"
bad 422 'multipart field "lead" is empty' POST /v1/batches \
    -F "header=@$WORK/first.hea;filename=100.hea" \
    -F "signal=@$WORK/first.dat;filename=100.dat" -F subject=p1 -F lead=
req POST /v1/batches -F "header=@$WORK/first.hea;filename=100.hea" \
    -F "signal=@$WORK/first.dat;filename=x.hea" -F subject=p1
expect 201 "a signal part named by its field, whatever its file name"
req DELETE "/v1/batches/$(body .id)"
expect 204 "delete that batch"
bad 400 'multipart field "lead" is given twice' POST /v1/batches \
    -F "header=@$EXCERPT/100.hea" -F "signal=@$EXCERPT/100.dat" \
    -F subject=p1 -F lead=MLII -F lead=V5
# Two parts that are annotations by their files' extension: the message
# names the part they both stand for, not the second field's name.
bad 400 'multipart field "annotations" is given twice \(by name, or by' \
    POST /v1/batches -F "header=@$EXCERPT/100.hea" \
    -F "signal=@$EXCERPT/100.dat" -F subject=p1 \
    -F "foo=@$EXCERPT/100.atr;filename=100.atr" \
    -F "bar=@$EXCERPT/100.atr;filename=100.atr"
bad 413 'declares 64800 samples, more than the limit of 50000' POST \
    /v1/batches -F "header=@$EXCERPT/100.hea" -F "signal=@$EXCERPT/100.dat" \
    -F subject=p1

# A part without a field name (once a crash), a header without signals,
# a near-miss Content-Type.
printf -- '--XX\r\nContent-Disposition: form-data\r\n\r\nab\r\n--XX--\r\n' \
    > "$WORK/nameless.txt"
bad 400 'multipart part has no field name' POST /v1/batches \
    -H 'Content-Type: multipart/form-data; boundary=XX' \
    --data-binary "@$WORK/nameless.txt"
bad 400 'multipart part has no field name' POST "/v1/models/$MID/infer" \
    -H 'Content-Type: multipart/form-data; boundary=XX' \
    --data-binary "@$WORK/nameless.txt"
printf '100 0 360 64800\n' > "$WORK/nosignals.hea"
bad 422 'declares no signals' POST /v1/batches \
    -F "header=@$WORK/nosignals.hea" -F "signal=@$EXCERPT/100.dat" \
    -F subject=p1
# Idempotency keys of 1..255 characters, on batches as on jobs.
LONGKEY=$(printf 'k%.0s' $(seq 256))
bad 400 'Idempotency-Key: expected 1..255 printable ASCII' POST \
    /v1/batches "${J[@]}" -H "Idempotency-Key: $LONGKEY" \
    --data-binary "@$WORK/batch.json"
bad 400 'Idempotency-Key: expected 1..255 printable ASCII' POST /v1/jobs \
    "${J[@]}" -H "Idempotency-Key: $LONGKEY" -d '{}'
bad 400 'Idempotency-Key: expected 1..255 printable ASCII' POST \
    /v1/batches "${J[@]}" -H "Idempotency-Key: k€y" \
    --data-binary "@$WORK/batch.json"
bad 400 'without spaces' POST /v1/batches "${J[@]}" \
    -H "Idempotency-Key: two words" --data-binary "@$WORK/batch.json"
# Bodies whose tree would dwarf them are refused before jansson builds
# it: 3-byte objects, nested arrays, more values than the sample limit.
jq -cn '{subject: "x", sampling_rate: 360, samples: [range(3000) | {}]}' \
    > "$WORK/objects.json"
bad 400 '3001 JSON objects in 9[0-9]+ bytes; an annotation takes at least 25' \
    POST /v1/batches "${J[@]}" --data-binary "@$WORK/objects.json"
jq -cn '{sampling_rate: 360, samples: [range(3000) | [0]]}' > "$WORK/nested.json"
bad 400 '3001 JSON arrays; expected at most 2' POST "/v1/models/$MID/infer" \
    "${J[@]}" --data-binary "@$WORK/nested.json"
jq -cn '{subject: "x", sampling_rate: 360, samples: [range(60000) | 0]}' \
    > "$WORK/zeros.json"
bad 413 'about 60001 values, more than the limit of 50000 samples' \
    POST /v1/batches "${J[@]}" --data-binary "@$WORK/zeros.json"
# Media types are case-insensitive.
req POST /v1/batches -H 'Content-Type: Application/JSON; charset=UTF-8' \
    --data-binary "@$WORK/batch.json"
expect 201 "a JSON batch with the media type in capitals"
bad 415 'Content-Type "application/jsonx"' POST "/v1/models/$MID/infer" \
    -H 'Content-Type: application/jsonx' --data-binary "@$WORK/seg.json"

# Text that is not UTF-8 where JSON answers carry it (once a crash: the
# problem document could not be built): a lead part quoted in a refusal,
# a long field name cut inside a character by the message buffer, a
# signal description cut to a 31-byte lead name.
printf 'V5\377' > "$WORK/lead.txt"
bad 422 "lead \"V5.?\" is not a signal of the header, which has 'MLII', 'V5'" \
    POST /v1/batches \
    -F "header=@$EXCERPT/100.hea" -F "signal=@$EXCERPT/100.dat" \
    -F subject=p1 -F "lead=<$WORK/lead.txt"
jq -cn '{("a" + ("é" * 400)): 1}' > "$WORK/longkey.json"
bad 400 'unknown field "aéé.*\?$' POST /v1/batches "${J[@]}" \
    --data-binary "@$WORK/longkey.json"
printf 'z 1 360 720\nz.dat 16 200 16 0 0 0 0 %s\n' \
    'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123é' > "$WORK/z.hea"
head -c 1440 /dev/zero > "$WORK/z.dat"
req POST /v1/batches -F "header=@$WORK/z.hea" -F "signal=@$WORK/z.dat" \
    -F subject=p1
expect 201 "batch with a long multibyte lead name"
[ "$(body .lead)" = ABCDEFGHIJKLMNOPQRSTUVWXYZ0123 ] ||
    fail "lead cut inside a character: $(body .lead)"
req DELETE "/v1/batches/$(body .id)"
expect 204 "delete the batch with the long lead name"
# A path or query that decodes to bytes that are not UTF-8 (once a crash
# of the daemon on every route): the refusal quotes them as '?'.
bad 404 'no route' GET /v1/%ff
bad 404 '"\?" in /v1/jobs/\? is not an id' GET /v1/jobs/%ff
bad 404 'is not an id' DELETE /v1/batches/%ff
bad 400 'state="\?"' GET '/v1/jobs?state=%ff'
bad 422 'name "\?"' POST '/v1/models?name=%ff' --data-binary "@$MODEL"

# A NUL escaped into a path or a query does not cut it short.
bad 404 'is not an id' DELETE "/v1/batches/$BID%00junk"
req GET "/v1/batches/$BID"
expect 200 "batch $BID still there after DELETE .../$BID%00junk"
bad 422 'name' POST "/v1/models?name=a%00b" \
    --data-binary "@$MODEL" -H 'Content-Type: application/octet-stream'

# Unknown ids and wrong methods.
bad 404 'no model with id 999' GET /v1/models/999
bad 404 'no model with id 999' POST /v1/models/999/infer "${J[@]}" \
    --data-binary "@$WORK/seg.json"
bad 404 '"abc" in /v1/jobs/abc is not an id' GET /v1/jobs/abc
bad 404 'no batch with id 555' DELETE /v1/batches/555
bad 404 'no route for /v1/nothing' GET /v1/nothing
bad 405 'method PUT is not allowed on /v1/models \(allowed: POST, GET, HEAD\)' \
    PUT /v1/models
bad 405 'allowed: GET, HEAD, DELETE' POST "/v1/models/$MID"
# HEAD is answered as GET, without a body.
got=$(curl -s -I -o "$WORK/head" -w '%{http_code} %{size_download}' \
    "$URL/v1/models/$MID")
[ "$got" = "200 0" ] || fail "HEAD of a model: $got (status, body bytes)"
grep -qi '^Content-Type: application/json' "$WORK/head" ||
    fail "HEAD: no Content-Type"

# Jobs: unknown method name, unknown parameter, ranges, missing pieces.
# job JQ_EDIT: a valid submission changed by a jq expression.
job() {
    jq -cn --argjson m "$MID" --argjson b "$BID" \
        "{model_id: \$m, batch_ids: [\$b], method: \"l1\", keep: 0.5} | $1"
}
bad 422 '"method" "magic" is not one of' POST /v1/jobs "${J[@]}" \
    -d "$(job '.method = "magic"')"
# An integer past 2^63-1 is well-formed JSON out of range, as -1 is.
bad 422 'integers are at most 9223372036854775807' POST /v1/jobs \
    "${J[@]}" -d "$(job '.' | sed 's/}$/,"seed":9223372036854775808}/')"
bad 422 '"distill_steps" = -1 is outside 0..100000' POST /v1/jobs \
    "${J[@]}" -d "$(job '.distill_steps = -1')"
bad 400 '"distill_steps": expected an integer' POST /v1/jobs "${J[@]}" \
    -d "$(job '.distill_steps = "many"')"
bad 422 '"distill_lr" = 0 is outside \(0, 1\]' POST /v1/jobs "${J[@]}" \
    -d "$(job '.distill_lr = 0')"
bad 422 '"distill_lr" given without "distill_steps" > 0' POST /v1/jobs \
    "${J[@]}" -d "$(job '.distill_lr = 0.5')"
bad 422 '"distill_lr" = 1.0000001 is outside' POST /v1/jobs "${J[@]}" \
    -d "$(job '.distill_lr = 1.0000001 | .distill_steps = 5')"
bad 404 'batch_ids\[0\]: no batch with id 77' POST /v1/jobs "${J[@]}" \
    -d "$(job '.batch_ids = [77]')"
bad 400 'unknown parameter "kepe"' POST /v1/jobs "${J[@]}" \
    -d "$(job '.kepe = .keep')"
bad 404 '"model_id": no model with id 12345' POST /v1/jobs "${J[@]}" \
    -d "$(job '.model_id = 12345')"
bad 400 '"batch_ids": expected a non-empty array' POST /v1/jobs "${J[@]}" \
    -d "$(job '.batch_ids = []')"
bad 422 '"keep" = 1.5 is outside \(0, 1\]' POST /v1/jobs "${J[@]}" \
    -d "$(job '.keep = 1.5')"
bad 400 '"mask_list": expected an integer' POST /v1/jobs "${J[@]}" \
    -d "$(job '.mask_list = "32"')"
bad 400 '"refit_drifted": expected true or false' POST /v1/jobs "${J[@]}" \
    -d "$(job '.refit_drifted = "yes"')"
bad 400 '"raw_norms": expected true or false' POST /v1/jobs "${J[@]}" \
    -d "$(job '.raw_norms = 1')"
# Query parameters: repeated, or a subject that breaks the pseudonym rule
# (not quoted back: it may be a name).
bad 400 'query parameter "subject" is given 2 times' POST \
    "/v1/models/$MID/infer?subject=a&subject=b" "${J[@]}" \
    --data-binary "@$WORK/seg.json"
bad 422 'query parameter "subject": expected a pseudonym' POST \
    "/v1/models/$MID/infer?subject" "${J[@]}" --data-binary "@$WORK/seg.json"
bad 422 'query parameter "subject": expected a pseudonym[^J]*$' POST \
    "/v1/models/$MID/infer?subject=Jane%20Doe" "${J[@]}" \
    --data-binary "@$WORK/seg.json"
! grep -q 'Jane' "$WORK/daemon.log" || fail "a name reached the log"
bad 400 'query parameter "name" is given 2 times' POST \
    "/v1/models?name=a&name=b" --data-binary "@$MODEL"
bad 400 'query parameter "state" is given 2 times' GET \
    '/v1/jobs?state=queued&state=failed'
# A misspelt parameter, or a subject sent as a form part, would switch
# the subject check off without a sign.
bad 400 'unknown query parameter "subjct"' POST \
    "/v1/models/$MID/infer?subjct=p1" "${J[@]}" --data-binary "@$WORK/seg.json"
bad 400 'unknown query parameter "stat"' GET '/v1/jobs?stat=running'
bad 400 'takes "state", "limit" and "after" only' GET '/v1/jobs?page=2'
bad 400 'limit="0": expected an integer from 1 to 1000' GET '/v1/jobs?limit=0'
bad 400 'limit="1001": expected an integer from 1' GET '/v1/models?limit=1001'
bad 400 'after="-1": expected an integer from 0' GET '/v1/batches?after=-1'
bad 400 'after="": expected an integer' GET '/v1/batches?after'
bad 400 'limit="2x"' GET '/v1/models?limit=2x'
bad 400 'limit="\+5"' GET '/v1/models?limit=%2B5'
# 900 parameters get their answer; 2,000 overflow libmicrohttpd's memory
# for the connection, which gets no answer (libmicrohttpd may hold it open
# until it next closes a timed-out connection, hence --max-time) and a
# warning in the log.
bad 400 'unknown query parameter "x"' GET \
    "/v1/models?$(printf 'x=1&%.0s' $(seq 900))"
req GET "/v1/models?$(printf 'x=1&%.0s' $(seq 2000))" --max-time 5
[ "$STATUS" = 000 ] || fail "2000 parameters: status $STATUS"
grep -q 'level=warn event=mhd msg="Not enough memory' "$WORK/daemon.log" ||
    fail "no warning for a request beyond the connection's memory"
req GET /v2/health/live
expect 200 "alive after 2000 parameters"
# Keys are matched exactly; empty keys are skipped.
bad 400 'unknown query parameter "LIMIT"' GET '/v1/models?LIMIT=1'
req GET '/v1/jobs?&limit=1&&'
expect 200 "empty query keys"
bad 400 'after="99999999999999999999"' GET \
    '/v1/jobs?after=99999999999999999999'
bad 400 'query parameter "limit" is given 2 times' GET \
    '/v1/batches?limit=1&limit=2'
bad 400 'multipart field "subject": an inference names its subject in the' \
    POST "/v1/models/$MID/infer" -F "header=@$EXCERPT/100.hea" \
    -F "signal=@$EXCERPT/100.dat" -F subject=p1

# The sample limit holds after resampling to the model's 360 Hz: 10,000
# samples at 50 Hz are 72,000 there, more than this daemon's 50,000; as a
# batch (8,000 at 50 Hz are 57,600) it is stored, but no job takes it.
jq -cn '{sampling_rate: 50, samples: [range(10000) | (. / 9 | sin)]}' \
    > "$WORK/slow.json"
bad 413 'resampled to the model.s 360 Hz, the ECG would be 72000 samples' \
    POST "/v1/models/$MID/infer" "${J[@]}" --data-binary "@$WORK/slow.json"
jq -cn '{subject: "p1", sampling_rate: 50,
         samples: [range(8000) | (. / 9 | sin)]}' > "$WORK/slowb.json"
req POST /v1/batches "${J[@]}" --data-binary "@$WORK/slowb.json"
expect 201 "a long batch at 50 Hz"
SLOW=$(body .id)
bad 422 "batch_ids\[0\]: batch $SLOW would be 57600 samples at the model" \
    POST /v1/jobs "${J[@]}" -d "$(jq -cn --argjson m "$MID" \
    --argjson b "$SLOW" '{model_id: $m, batch_ids: [$b], method: "l1",
    keep: 0.5}')"

# A model that loads but could never run is refused at upload: a rate of
# 1 MHz (the header edited in place, same length).
perl -0777 -pe 's/\\"sampling_rate\\":360\.0/\\"sampling_rate\\":1.0e6/' \
    "$MODEL" > "$WORK/fast.safetensors"
cmp -s "$MODEL" "$WORK/fast.safetensors" && fail "rate edit did nothing"
bad 422 "sampling rate 1e\+06 Hz is outside 50..10000 Hz" POST \
    "/v1/models?name=fast" --data-binary "@$WORK/fast.safetensors"

# A method name the message cuts inside a character (once a crash).
bad 422 '"method" "aé+\?" is not one of' POST /v1/jobs "${J[@]}" \
    -d "$(job '.method = ("a" + ("é" * 30))')"
bad 422 'holdout.batch_ids\[0\]: batch [0-9]+ has no beat annotations' \
    POST /v1/jobs "${J[@]}" -d "$(job '.holdout = {batch_ids: [$b]}')"
jq -c '. + {annotations: [{sample: 300, symbol: "N"}]}' "$WORK/batch.json" \
    > "$WORK/annotated.json"
req POST /v1/batches "${J[@]}" --data-binary "@$WORK/annotated.json"
expect 201 "annotated batch"
AID=$(body .id)
bad 422 "holdout.batch_ids: batch $AID is also a calibration batch" \
    POST /v1/jobs "${J[@]}" -d "$(job ".batch_ids = [$AID] |
    .holdout = {batch_ids: [$AID]}")"
bad 422 'holdout.fraction: 1e-09 of batch [0-9]+ is 0 samples, less than the 2 s' \
    POST /v1/jobs "${J[@]}" -d "$(job ".batch_ids = [$AID] |
    .holdout = {fraction: 1e-9}")"
# A job that could only fail is refused: the calibration left after the
# held-out tail (10 s batch, half held out), or a batch of 2047 samples,
# is shorter than one window of 2048 samples at 360 Hz; a batch of
# exactly 2048 samples is taken (and the job cancelled).
bad 422 "batch_ids\\[0\\]: batch $AID leaves 1800 samples \\(5.000 s\\) of \
calibration ECG after holdout.fraction, fewer than one model window of 2048 \
samples at 360 Hz \\(5.689 s\\)" \
    POST /v1/jobs "${J[@]}" -d "$(job ".batch_ids = [$AID] |
    .holdout = {fraction: 0.5}")"
for n in 2047 2048; do
    jq -c ".samples |= .[:$n]" "$WORK/batch.json" > "$WORK/short.json"
    req POST /v1/batches "${J[@]}" --data-binary "@$WORK/short.json"
    expect 201 "a batch of $n samples"
    eval "B$n=$(body .id)"
done
bad 422 "batch_ids\\[0\\]: batch $B2047 leaves 2047 samples \\(5.686 s\\) of \
calibration ECG, fewer than one model window" \
    POST /v1/jobs "${J[@]}" -d "$(job ".batch_ids = [$B2047]")"
req POST /v1/jobs "${J[@]}" -d "$(job ".batch_ids = [$B2048]")"
expect 202 "a calibration batch of exactly one window"
req DELETE "/v1/jobs/$(body .id)"
bad 422 '"finetune": no calibration batch has beat annotations' \
    POST /v1/jobs "${J[@]}" -d "$(job '.finetune = {epochs: 1}')"
# Its only beat (at 8.3 s of 10) lies in the held-out last quarter.
jq -c '. + {annotations: [{sample: 3000, symbol: "N"}]}' "$WORK/batch.json" \
    > "$WORK/late.json"
req POST /v1/batches "${J[@]}" --data-binary "@$WORK/late.json"
expect 201 "a batch annotated at its end"
LATE=$(body .id)
bad 422 '"finetune": no calibration batch has beat annotations before its held-out tail' \
    POST /v1/jobs "${J[@]}" -d "$(job ".batch_ids = [$LATE] |
    .holdout = {fraction: 0.25} | .finetune = {epochs: 1}")"
# A fine-tuning batch of 4096 windows would need tens of GiB: refused at
# submission, with what to lower (limits.max_job_bytes, 2 GiB).
bad 422 "the job would need about [0-9]+ MiB, more than limits.max_job_bytes \
\\(2048 MiB\\): pruning [0-9]+ MiB \\(1 calibration windows cached, \
batch_windows 1\\), fine-tuning [0-9]+ MiB \\(finetune.batch\\)" \
    POST /v1/jobs "${J[@]}" \
    -d "$(job ".batch_ids = [$LATE] | .finetune = {batch: 4096}")"
bad 400 'query parameter state="done"' GET '/v1/jobs?state=done'
# Routes without parameters refuse any (once ignored: ?subject= listed
# every subject's batches, ?force=1 looked as if it forced something).
bad 400 'unknown query parameter "subject" \(this route takes none\)' \
    GET "/v1/models/$MID?subject=x"
bad 400 'unknown query parameter "subject" \(this route takes "limit" and' \
    GET '/v1/batches?subject=x'
bad 400 'unknown query parameter "force"' DELETE '/v1/batches/99?force=1'
bad 400 'unknown query parameter "x"' GET "/v1/models/$MID?x=1&x=2"

# Bodies held at once are bounded by limits.max_pending_bytes (6 MiB
# here).  Buffers grow with the bytes received, up to the announced
# length: a connection that announced 3.5 MiB and sent one 64 KiB piece
# holds 64 KiB; once it has sent 3.4 MB it holds 3.5 MiB, so a 3 MiB upload
# meanwhile is refused as busy (503 with Retry-After).  Once that
# connection is gone the same upload is read (and refused for what it is,
# not for the budget).
pending() {
    curl -s "$URL/metrics" | awk '$1 == "ecgpruned_pending_upload_bytes" {
        print $2 }'
}
head -c 3145728 /dev/zero > "$WORK/3mib"
# wait_pending BYTES: until the gauge shows BYTES (5 s at most).
wait_pending() {
    for _ in $(seq 1 50); do
        [ "$(pending)" = "$1" ] && return 0
        sleep 0.1
    done
    fail "uploads hold $(pending) bytes, expected $1"
}
# An earlier connection may still hold its buffer (the truncated upload
# above, until libmicrohttpd notices the hang-up), so count from here.
held=$(pending)
exec 3<>"/dev/tcp/127.0.0.1/${URL##*:}"
printf 'POST /v1/models?name=slow HTTP/1.1\r\nHost: localhost\r\n' >&3
printf 'Content-Length: 3670016\r\n\r\n' >&3
head -c 65536 "$WORK/3mib" >&3
wait_pending $((held + 65536))
head -c 3400000 /dev/zero >&3
wait_pending $((held + 3670016))
req POST "/v1/models?name=big" --data-binary "@$WORK/3mib"
expect 503 "an upload over the budget of pending bodies"
grep -qi '^Retry-After: 5' "$WORK/headers" || fail "503 without Retry-After"
body .detail | grep -q 'more than 6291456 bytes (limits.max_pending_bytes)' ||
    fail "503 detail: $(body .detail)"
sleep 0.2
exec 3>&-
wait_pending "$held"
bad 422 'not an ecgprune safetensors model' POST "/v1/models?name=zeros" \
    --data-binary "@$WORK/3mib"
# A body of exactly max_body_bytes fits, announced or chunked (the
# budget once charged a byte more, and chunked buffers a power of two).
head -c 4194304 /dev/zero > "$WORK/4mib"
upload_both 422 'not an ecgprune safetensors model' "$WORK/4mib"

# Still fully working: a correct inference after all of the above.
req POST "/v1/models/$MID/infer" "${J[@]}" --data-binary "@$WORK/seg.json"
expect 200 "inference after the bad inputs"

# SIGHUP: the log is reopened (logrotate moved it) and tokens are re-read.
TOKEN=reload-token-0123456789
jq --arg t "$TOKEN" '. + {tokens: [$t]}' "$WORK/config.json" \
    > "$WORK/config.new"
mv "$WORK/config.new" "$WORK/config.json"
mv "$WORK/daemon.log" "$WORK/daemon.log.1"
kill -HUP "$DAEMON_PID"
for _ in $(seq 1 50); do
    grep -q 'event=reloaded tokens=1' "$WORK/daemon.log" 2>/dev/null && break
    sleep 0.1
done
grep -q 'event=reloaded tokens=1' "$WORK/daemon.log" ||
    fail "no reload logged in a new log file after SIGHUP"
bad 401 'missing or unknown bearer token' GET /v1/models
bad 401 'missing or unknown bearer token' GET /v1/models \
    -H "Authorization: Bearer $TOKEN-wrong"
req GET /v1/models -H "Authorization: Bearer $TOKEN"
expect 200 "request with the token"
req GET /v2/health/ready
expect 200 "health stays open with tokens"
# The "Bearer" scheme is case-insensitive (RFC 9110).
req GET /v1/models -H "Authorization: bearer $TOKEN"
expect 200 "request with the scheme in lower case"
# Whitespace around the token is not part of it (RFC 9110, 5.5).
req GET /v1/models -H "Authorization: Bearer  $TOKEN "
expect 200 "request with spaces around the token"
# Two tokens, either way round, are refused: which one counts would
# depend on who reads them (the daemon reads the first, a proxy may read
# the last).
bad 400 'Authorization given 2 times: send it once' GET /v1/models \
    -H "Authorization: Bearer $TOKEN-wrong" -H "Authorization: Bearer $TOKEN"
bad 400 'Authorization given 2 times: send it once' GET /v1/models \
    -H "Authorization: Bearer $TOKEN" -H "Authorization: Bearer $TOKEN-wrong"
bad 400 'Idempotency-Key given 2 times: send it once' POST /v1/batches \
    -H "Authorization: Bearer $TOKEN" -H 'Idempotency-Key: a' \
    -H 'Idempotency-Key: b' "${J[@]}" -d '{}'

# A setting only a restart applies (the pool size) is logged as ignored;
# a FIFO in the config file's place is refused at once (it once blocked
# the loop until something wrote to it), and the daemon keeps serving.
jq '. + {workers: 3} | .limits.max_connections_per_ip = 9' \
    "$WORK/config.json" > "$WORK/config.new"
mv "$WORK/config.new" "$WORK/config.json"
kill -HUP "$DAEMON_PID"
for _ in $(seq 1 50); do
    grep -q 'event=reload_ignored setting=workers' "$WORK/daemon.log" &&
        break
    sleep 0.1
done
grep -q 'setting=workers reason="takes effect at restart"' \
    "$WORK/daemon.log" || fail "a changed workers was not reported"
grep -q 'setting=limits.max_connections_per_ip reason=' "$WORK/daemon.log" ||
    fail "a changed max_connections_per_ip was not reported"
mv "$WORK/config.json" "$WORK/config.json.1"
mkfifo "$WORK/config.json"
kill -HUP "$DAEMON_PID"
for _ in $(seq 1 50); do
    grep -q 'event=reload_failed .*is not a regular file' \
        "$WORK/daemon.log" && break
    sleep 0.1
done
grep -q 'event=reload_failed .*is not a regular file' "$WORK/daemon.log" ||
    fail "a FIFO as config file was not refused on reload"
req GET /v2/health/live
expect 200 "alive after reloading from a FIFO"
rm "$WORK/config.json"
mv "$WORK/config.json.1" "$WORK/config.json"
stop_daemon
echo "ok: bad input ($CASES cases)"
