#!/usr/bin/env bash
# run.sh SECONDS - build every tests/fuzz/fuzz_*.c as a libFuzzer target
# (clang, AddressSanitizer + UndefinedBehaviorSanitizer) against the
# library sources listed in lib/meson.build and the daemon's modules but
# its main, and run each for SECONDS divided by the number of
# targets, with a seed corpus.  Exits non-zero if a target does not build
# or finds a crash, a leak, undefined behaviour or a timeout; the
# reproducing input is kept and named.
#
# Seeds: tests/fuzz/corpus/TARGET/ when it exists, plus, for the WFDB
# targets, real headers and annotation files of the MIT-BIH database
# (MITDB, default ../shared/data/mitdb relative to the repository root)
# and of the excerpt in tests/data/mitdb-excerpt.
set -euo pipefail

total_seconds=${1:?usage: tests/fuzz/run.sh SECONDS}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
mitdb=${MITDB:-../shared/data/mitdb}
work=$(mktemp -d "${TMPDIR:-/tmp}/ecgprune-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

cc=${FUZZ_CC:-clang}
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
deps=(openblas lapacke jansson libmicrohttpd libuv sqlite3 gnutls)
cflags="-std=c11 -D_DEFAULT_SOURCE -D_FILE_OFFSET_BITS=64 -O1 -g
  -Ilib/include -Ilib/src -Idaemon $(pkg-config --cflags "${deps[@]}")"
libs="$(pkg-config --libs "${deps[@]}") -lm -lpthread"

targets=(tests/fuzz/fuzz_*.c)
if [ ! -e "${targets[0]}" ]; then
    echo "fuzz: no tests/fuzz/fuzz_*.c targets"
    exit 0
fi
per_target=$(( total_seconds / ${#targets[@]} ))
[ "$per_target" -ge 1 ] || per_target=1

# The library, once, instrumented for the fuzzer.
mkdir -p "$work/obj"
lib_sources=$(grep -o "src/[A-Za-z0-9_]*\.c" lib/meson.build | sort -u)
for src in $lib_sources; do
    obj="$work/obj/$(basename "$src" .c).o"
    # shellcheck disable=SC2086
    $cc $cflags $san -fsanitize=fuzzer-no-link -c "lib/$src" -o "$obj"
done

# The daemon's modules, never ed_main.c, with its schema files embedded as
# the build does.  An archive, so that a target takes only the modules it
# calls.
mkdir -p "$work/daemon"
python3 daemon/gen_schema.py "$work/ed_schema_files.c" schema/*.sql
for src in daemon/ed_*.c "$work/ed_schema_files.c"; do
    [ "$(basename "$src")" = ed_main.c ] && continue
    # shellcheck disable=SC2086
    $cc $cflags $san -fsanitize=fuzzer-no-link -c "$src" \
        -o "$work/daemon/$(basename "$src" .c).o"
done
ar rcs "$work/libdaemon.a" "$work"/daemon/*.o

# Seeds for the WFDB targets.
seed_fuzz_wfdb_header() {
    cp "$mitdb"/*.hea tests/data/mitdb-excerpt/*.hea "$1"/ 2>/dev/null || true
    printf 'r 3 500 0\r\na.dat 16+4 100(-5)/uV 14 3 7 -1 0 I\r\n' > "$1/crlf"
    printf 'a.dat 16+4\r\nb.dat 80x1:0 250.5/mmHg\r\n# note\r\n' >> "$1/crlf"
}
seed_fuzz_wfdb_annotations() {
    cp "$mitdb"/*.atr tests/data/mitdb-excerpt/*.atr "$1"/ 2>/dev/null \
        || true
}
seed_fuzz_wfdb_signals() {
    local f
    # Header, a NUL, then the signal bytes.
    printf 'r 2 360\nr.dat 212\nr.dat 212\n\0abcdefghijkl' > "$1/212"
    printf 'r 1 360 3\nr.dat 16 200 16 0 24930 0\n\0abcdef' > "$1/16"
    printf 'r 2 360 0\nr.dat 80+2\nr.dat 80\n\0xxabcdef' > "$1/80"
    if [ -f "$mitdb/100.hea" ]; then
        f="$1/mitdb100"
        sed -e '1s/ 650000/ 100/' "$mitdb/100.hea" > "$f"
        printf '\0' >> "$f"
        head -c 300 "$mitdb/100.dat" >> "$f"
    fi
}

failed=0
for target_src in "${targets[@]}"; do
    name=$(basename "$target_src" .c)
    exe="$work/$name"
    corpus="$work/corpus-$name"
    mkdir -p "$corpus" "$work/artifacts-$name"

    # Build against the instrumented library and daemon objects.
    # shellcheck disable=SC2086
    if ! $cc $cflags $san -fsanitize=fuzzer "$target_src" "$work"/obj/*.o \
            "$work/libdaemon.a" $libs -o "$exe"; then
        echo "fuzz: $name: build failed"
        failed=1
        continue
    fi
    if [ -d "tests/fuzz/corpus/$name" ]; then
        cp -r "tests/fuzz/corpus/$name/." "$corpus/"
    fi
    if declare -F "seed_$name" >/dev/null; then
        "seed_$name" "$corpus"
    fi

    # Run; keep the log and any crashing input.
    echo "fuzz: $name: ${per_target} s, $(find "$corpus" -type f | wc -l) seeds"
    if ASAN_OPTIONS=detect_leaks=1 \
       UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
       "$exe" -max_total_time="$per_target" -timeout=10 -rss_limit_mb=2048 \
           -print_final_stats=1 -artifact_prefix="$work/artifacts-$name/" \
           "$corpus" > "$work/$name.log" 2>&1; then
        runs=$(grep -o "stat::number_of_executed_units: *[0-9]*" \
                   "$work/$name.log" | grep -o "[0-9]*$" || echo "?")
        echo "fuzz: $name: ok, $runs runs"
    else
        echo "fuzz: $name: FAILED; last lines of its log:"
        tail -n 40 "$work/$name.log"
        mkdir -p fuzz-artifacts
        cp "$work/artifacts-$name"/* fuzz-artifacts/ 2>/dev/null || true
        echo "fuzz: $name: reproducing input(s) copied to fuzz-artifacts/"
        failed=1
    fi
done
exit "$failed"
