#!/bin/sh
# cli_record.sh ECGPRUNE EXCERPT_DIR - the `ecgprune record` subcommand on
# the shipped excerpt: JSON fields and their consistency, the table, and the
# exit status and message for a corrupted copy, a missing record and bad
# usage.  Needs jq.
ecgprune=$1
excerpt=$2
# shellcheck source-path=SCRIPTDIR source=cli_lib.sh
. "$(dirname "$0")/cli_lib.sh"
cli_begin cli_record

# JSON of record 208's excerpt: 3 minutes at 360 Hz, MLII and V1.
"$ecgprune" record "$excerpt/208" --json > "$work/208.json"
check "length is 180 s x 360 Hz" \
    jq -e '.length == 64800 and .sampling_rate == 360' "$work/208.json"
check "signal names and checks" jq -e '[.signals[].name] == ["MLII","V1"]
    and all(.signals[]; .checksum_ok and .gain == 200
            and .baseline == 1024)' "$work/208.json"
check "AAMI counts are the sums of their MIT symbols" jq -e '
    .beat_counts as $b | .aami_counts as $a
    | ($b.N // 0) + ($b.L // 0) + ($b.R // 0) + ($b.e // 0) + ($b.j // 0)
        == $a.N
    and ($b.A // 0) + ($b.a // 0) + ($b.J // 0) + ($b.S // 0) == $a.S
    and ($b.V // 0) + ($b.E // 0) == $a.V and ($b.F // 0) == $a.F
    and ($b["/"] // 0) + ($b.f // 0) + ($b.Q // 0) == $a.Q' "$work/208.json"
check "beat counts exclude non-beats" \
    jq -e '.annotation_counts["+"] > 0 and .beat_counts["+"] == null' \
    "$work/208.json"

# The readable table.
"$ecgprune" record "$excerpt/100" > "$work/100.txt"
check "table names the lead" grep -q "MLII" "$work/100.txt"
check "table has AAMI totals" grep -q "^AAMI classes:" "$work/100.txt"

# A corrupted copy: reported in the output, exit status 1, a message.
cp "$excerpt/100.hea" "$excerpt/100.dat" "$work/"
printf '\377' | dd of="$work/100.dat" bs=1 seek=1000 conv=notrunc 2>/dev/null
run "$ecgprune" record "$work/100" --json > "$work/bad.json" \
    2> "$work/bad.err"
check_status "corrupted copy" 1
check "corrupted copy names the checksum" grep -q "checksum" "$work/bad.err"
check "corrupted copy shows checksum_ok false" \
    jq -e 'any(.signals[]; .checksum_ok == false)' "$work/bad.json"
check "no annotation file gives null counts" \
    jq -e '.beat_counts == null and .aami_counts == null' "$work/bad.json"

# A missing record and bad usage.
run "$ecgprune" record "$work/none" 2> "$work/none.err"
check_status "missing record" 1
check "missing record names the header" grep -q "none.hea" "$work/none.err"
run "$ecgprune" record "$excerpt/100.hea" 2> "$work/ext.err"
check_status "record named with its extension" 1
check "extension slip gets a hint" \
    grep -q "path without the extension" "$work/ext.err"
run "$ecgprune" record 2>/dev/null
check_status "no RECORD" 2

cli_end
