#!/bin/sh
# cli_hostile.sh ECGPRUNE MAKE_TEST_MODEL EXCERPT_DIR - `record`, `info`,
# `infer` and `eval` fed what a careless or hostile user might give them:
# devices, directories and FIFOs where files belong, header fields at and
# past their limits, model files that declare far more than they hold,
# broken list files and malformed options.  Each must end promptly with
# its exit status (1: bad input, 2: bad usage) and a message saying what
# is wrong.  Every case here was a crash, a hang, a multi-gigabyte
# allocation or a misleading message before it was fixed.  Needs jq.
ecgprune=$1
make_model=$2
excerpt=$3
# shellcheck source-path=SCRIPTDIR source=cli_lib.sh
. "$(dirname "$0")/cli_lib.sh"
cli_begin cli_hostile

# le64 N: N as 8 little-endian bytes (the safetensors header length).
le64() {
    n=$1
    for _ in 1 2 3 4 5 6 7 8; do
        printf '%b' "\\0$(printf '%03o' $((n % 256)))"
        n=$((n / 256))
    done
}

# safetensors HEADER_FILE DATA_FILE OUT: a model file from its parts.
safetensors() {
    { le64 "$(wc -c < "$1")"; cat "$1" "$2"; } > "$3"
}

# A record of one format-16 signal of 1000 zeros in $work/$1.
zero_record() {
    printf '%s 1 %s 1000\nz.dat 16 %s 16 0 0 0 0 MLII\n' "$1" "$2" "$3" \
        > "$work/$1.hea"
}
head -c 2000 /dev/zero > "$work/z.dat"

# Signal and header files that are not regular files: /dev/zero used to
# grow the reader's buffer to 2 GiB, a directory gave "cannot read".
zero_record dev 360 200
sed 's/^z.dat/dev.dat/' "$work/dev.hea" > "$work/dev2.hea"
mv "$work/dev2.hea" "$work/dev.hea"
ln -s /dev/zero "$work/dev.dat"
run "$ecgprune" record "$work/dev" 2> "$work/dev.err"
check_status "/dev/zero as signal file" 1
check "/dev/zero named as a device" grep -q "dev.dat is a device" \
    "$work/dev.err"
mkdir "$work/dir.hea"
run "$ecgprune" record "$work/dir" 2> "$work/dir.err"
check_status "directory as header" 1
check "directory named" grep -q "dir.hea is a directory" "$work/dir.err"
mkfifo "$work/fifo.hea"
run "$ecgprune" record "$work/fifo" 2> "$work/fifo.err"
check_status "FIFO as header (no writer: must not block)" 1
run "$ecgprune" info "$work/fifo.hea" 2> "$work/fifo2.err"
check_status "FIFO as model" 1
check "FIFO model named" grep -q "not a regular file" "$work/fifo2.err"

# The record where the model belongs, and a file that is no model: each
# message says which.
run "$ecgprune" infer "$excerpt/100" "$work/z" 2> "$work/swap.err"
check_status "record given as the model" 1
check "swapped arguments named" grep -q \
    "100 is a record (.*100.hea exists), not a model: the model comes first" \
    "$work/swap.err"
printf 'this is a text file, not a model\n' > "$work/text.bin"
run "$ecgprune" info "$work/text.bin" 2> "$work/notmodel.err"
check_status "text file given as the model" 1
check "not a safetensors file" grep -q "text.bin: not a safetensors file" \
    "$work/notmodel.err"

# The first 8 s of record 100 (2880 frames of two format-212 signals, 3
# bytes each; a header without the checksums of the whole) with the
# annotations of all 3 minutes: refused, not scored as missed beats.
printf '%s\n' 'short 2 360 2880' 'short.dat 212 200 11 1024 995' \
    'short.dat 212 200 11 1024 1011' > "$work/short.hea"
head -c 8640 "$excerpt/100.dat" > "$work/short.dat"
cp "$excerpt/100.atr" "$work/short.atr"
run "$ecgprune" record "$work/short" 2> "$work/short.err"
check_status "an .atr of a longer record" 1
check "the beat past the end named" grep -q \
    "short.atr: annotation [0-9]* of [0-9]*, a beat at sample [0-9]*, is \
outside the signal (0..2879): is it the annotation file of a longer" \
    "$work/short.err"

# Sampling rates and gains at and past the header's limits.  1e-300 Hz
# made the table's duration overflow a long ("-12:-55.-808").
zero_record tiny 1e-300 200
run "$ecgprune" record "$work/tiny" 2> "$work/tiny.err"
check_status "rate 1e-300 Hz" 1
check "rate 1e-300 Hz: field named" grep -q \
    "field 3 (sampling frequency) is '1e-300'" "$work/tiny.err"
zero_record slow 0.001 200
"$ecgprune" record "$work/slow" > "$work/slow.txt"
check "0.001 Hz: 1000 samples last 1e6 s = 277:46:40.000" \
    grep -q "(277:46:40.000)" "$work/slow.txt"
zero_record gain 360 1e-300
run "$ecgprune" record "$work/gain" 2> "$work/gain.err"
check_status "gain 1e-300" 1

# A description that is not UTF-8 once made `record --json` print
# "signals": [] (JSON cannot carry it, and the object was dropped).
printf 'latin 1 360\nz.dat 16 200 16 0 0 0 0 d\351riv\n' > "$work/latin.hea"
run "$ecgprune" record "$work/latin" --json > /dev/null 2> "$work/latin.err"
check_status "description in Latin-1" 1
check "Latin-1 byte named" grep -q "byte 0xe9 .* is not valid UTF-8" \
    "$work/latin.err"

# A 1-sample record and a record of zeros run through infer.
zero_record zeros 360 200
"$make_model" "$work/tiny.safetensors" 3
model=$work/tiny.safetensors

# A gain a million times too small gives values of 10^8 mV: the labels
# still come, with a warning naming the signal and the likely cause.
sed 's/^100.dat 212 200 /100.dat 212 0.000001 /' "$excerpt/100.hea" \
    > "$work/gain.hea"
sed -i 's/^100 /gain /; s/^100.dat /gain.dat /' "$work/gain.hea"
ln -s "$(cd "$excerpt" && pwd)/100.dat" "$work/gain.dat"
run "$ecgprune" infer "$model" "$work/gain" > /dev/null 2> "$work/gain.err"
check_status "a gain far too small" 0
check "amplitude warned of" grep -q \
    "gain, signal MLII, reaches .* mV (ECG is a few mV): is the gain" \
    "$work/gain.err"
"$ecgprune" infer "$model" "$work/zeros" --json > "$work/zeros.json"
check "all-zero signal: no beats" jq -e '.beats == []' "$work/zeros.json"
printf 'one 1 360 1\no.dat 16 200 16 0 0 0 0 MLII\n' > "$work/one.hea"
printf '\0\0' > "$work/o.dat"
run "$ecgprune" infer "$model" "$work/one" > /dev/null
check_status "1-sample record" 0

# Model files: 8192 x 8192 x 1024 weights declared in under 400 bytes
# (once a 256 GiB allocation), and a window of 2^26 samples (a 38 GiB
# plan at inference).
jq -cn '{__metadata__: {format: "ecgprune-1", architecture: ({
    layers: [{name: "input", op: "input", channels: 8192},
             {name: "c", op: "conv", inputs: [0], channels: 8192,
              kernel: 1024, stride: 1, dilation: 1, padding: "same"}],
    output: 1, sampling_rate: 360, window: 64, classes: ["a"],
    highpass_hz: 0.5, input_scale: 1} | tojson)}}' | tr -d '\n' \
    > "$work/bomb.json"
: > "$work/empty"
safetensors "$work/bomb.json" "$work/empty" "$work/bomb.safetensors"
run "$ecgprune" info "$work/bomb.safetensors" 2> "$work/bomb.err"
check_status "declared 256 GiB of weights" 1
check "weights checked against the data section" grep -q \
    "needs 68719484928 parameters, but the file's data section holds" \
    "$work/bomb.err"
hlen=$(od -An -tu1 -N8 "$model" \
    | awk '{ n = 0; for (i = NF; i >= 1; i--) n = n * 256 + $i; print n }')
dd if="$model" bs=1 skip=8 count="$hlen" 2> /dev/null \
    | jq -c '.__metadata__.architecture |= (fromjson | .window = 67108864
             | tojson)' | tr -d '\n' > "$work/window.json"
tail -c +$((9 + hlen)) "$model" > "$work/data.bin"
safetensors "$work/window.json" "$work/data.bin" "$work/window.safetensors"
run "$ecgprune" infer "$work/window.safetensors" "$excerpt/100" --to 10 \
    2> "$work/window.err"
check_status "window of 2^26 samples" 1
check "window refused with its size" grep -q "window of this model needs" \
    "$work/window.err"

# Spans and options.
run "$ecgprune" infer "$model" "$excerpt/100" --from 1000 2> "$work/span.err"
check_status "--from past the end" 1
check "span message names the end, not -1" grep -q \
    "span 1000 s to the end holds no sample; the record lasts 180 s" \
    "$work/span.err"
for bad in "--from 1x" "--from nan" "--to -3" "--from" "--bogus" \
           "--from 1 --from 2" "--json --json"; do
    # shellcheck disable=SC2086
    run "$ecgprune" infer "$model" "$excerpt/100" $bad 2> /dev/null
    check_status "infer $bad" 2
done

run "$ecgprune" record "$excerpt/100" --annotator atr --annotator qrs \
    2> "$work/twice.err"
check_status "record --annotator twice" 2
check "repeated option named" grep -q "'--annotator' given 2 times" \
    "$work/twice.err"

# eval --list files that are not lists.
run "$ecgprune" eval "$model" --list "$work" 2> "$work/list1.err"
check_status "directory as --list" 2
check "directory list named" grep -q "list .* is a directory" \
    "$work/list1.err"
run timeout 20 "$ecgprune" eval "$model" --list /dev/zero \
    2> "$work/list4.err"
check_status "/dev/zero as --list (once read forever)" 2
check "/dev/zero list named" grep -q "'/dev/zero' is not a regular file" \
    "$work/list4.err"
mkfifo "$work/list.fifo"
run timeout 20 "$ecgprune" eval "$model" --list "$work/list.fifo" \
    2> "$work/list5.err"
check_status "FIFO as --list (no writer: must not block)" 2
check "FIFO list named" grep -q "is not a regular file" "$work/list5.err"
{ printf '%s/100\n' "$excerpt"; printf '%s/100\0junk\n' "$excerpt"; } \
    > "$work/nul.list"
run "$ecgprune" eval "$model" --list "$work/nul.list" 2> "$work/list6.err"
check_status "--list with a NUL byte (once cut the name short)" 2
check "NUL line named" grep -q "line 2: NUL byte" "$work/list6.err"
printf 'abc\001def\n' > "$work/binary.list"
run "$ecgprune" eval "$model" --list "$work/binary.list" 2> "$work/list2.err"
check_status "binary --list" 2
check "binary list line named" grep -q "line 1: control byte" \
    "$work/list2.err"
{ printf '%s/100\n' "$excerpt"; head -c 5000 /dev/zero | tr '\0' a; echo; } \
    > "$work/long.list"
run "$ecgprune" eval "$model" --list "$work/long.list" 2> "$work/list3.err"
check_status "--list with a 5000-character line" 2
check "long line named" grep -q "line 2: longer than" "$work/list3.err"
printf '# no records here\n\n' > "$work/comments.list"
run "$ecgprune" eval "$model" --list "$work/comments.list" \
    2> "$work/list7.err"
check_status "--list of comments only" 2
check "list of comments named" grep -q \
    "names no record in its 2 lines (comments or blank)" "$work/list7.err"
: > "$work/empty.list"
run "$ecgprune" eval "$model" --list "$work/empty.list" 2> "$work/list8.err"
check_status "empty --list" 2
check "empty list named" grep -q "list '$work/empty.list' is empty" \
    "$work/list8.err"

# Numbers are decimal: strtod's hexadecimal ("0x10") is refused, as the
# daemon refuses it.
run "$ecgprune" infer "$model" "$excerpt/100" --to 0x10 2> "$work/hex.err"
check_status "hexadecimal --to" 2
check "hexadecimal --to named" grep -q "bad --to '0x10'" "$work/hex.err"

# Less than two seconds of ECG is read, with a warning that it is too
# short to find beats in (the daemon refuses it).
run "$ecgprune" infer "$model" "$excerpt/100" --to 1 > /dev/null \
    2> "$work/short.err"
check_status "one second of ECG" 0
check "one second of ECG warned of" grep -q \
    "360 samples (1 s) are less than 2 s of ECG" "$work/short.err"

cli_end
