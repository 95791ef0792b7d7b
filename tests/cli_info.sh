#!/bin/sh
# cli_info.sh ECGPRUNE MODEL - the `ecgprune info` subcommand on the tiny
# U-Net in tests/data/models (depth 2, widths 2 and 2, kernel 3, one conv
# per level, 6 classes): sizes worked out by hand, the layer table, and the
# exit status and message for a damaged copy, a missing file and bad usage.
# Needs jq.
#
# Parameters: enc0.conv0 1*2*3+2 = 8, enc1.conv0 4*2*3+2 = 26,
# up0 2*4*3+4 = 28, dec0.conv0 4*2*3+2 = 26, head 2*6+6 = 18, three BN of
# 4*2 = 24: 130.  MACs per second at 360 Hz: 2*1*3*360 + 2*4*3*180 +
# 4*2*3*180 + 2*4*3*360 + 6*2*360 = 23760.
ecgprune=$1
model=$2
# shellcheck source-path=SCRIPTDIR source=cli_lib.sh
. "$(dirname "$0")/cli_lib.sh"
cli_begin cli_info

"$ecgprune" info "$model" --json > "$work/info.json"
check "parameters and MACs" \
    jq -e '.parameters == 130 and .macs_per_second == 23760' "$work/info.json"
check "rate, window, classes" jq -e '.sampling_rate == 360 and .window == 64
    and .classes == ["bg","N","S","V","F","Q"]' "$work/info.json"
check "architecture object" jq -e '(.architecture.layers | length) == 15
    and .architecture.layers[.architecture.output].name == "head"
    and .architecture.layers[4].op == "dwt"' "$work/info.json"

"$ecgprune" info "$model" > "$work/info.txt"
check "table lists the head as output" grep -q "head .*(output)" \
    "$work/info.txt"
check "table lists idwt0" grep -q "idwt0 *idwt" "$work/info.txt"

# A copy cut in the middle of its tensor data: exit 1, and the message
# says that the layers' parameters no longer fit the file.
size=$(wc -c < "$model")
head -c $((size - 10)) "$model" > "$work/cut.safetensors"
run "$ecgprune" info "$work/cut.safetensors" 2> "$work/cut.err"
check_status "damaged model" 1
check "damaged model names a layer" grep -q "layer .*needs .* parameters" \
    "$work/cut.err"

run "$ecgprune" info "$work/absent" 2> /dev/null
check_status "missing model" 1
run "$ecgprune" info 2> /dev/null
check_status "no argument" 2
run "$ecgprune" info "$model" --bogus 2> /dev/null
check_status "unknown option" 2

cli_end
