#!/usr/bin/env bash
# build.sh - set up, build and run ecgprune on a Debian 12 machine.
#
#   ./build.sh demo    install packages, build, run the main job
#   ./build.sh test    install packages, build, run the test suite
#   ./build.sh build   install packages and build only
#
# Installing packages needs root (it uses apt-get); run as root or with sudo.
# JOBS=N limits the compile jobs (ninja's default is one per core, plus 2)
# and the tests run at once (default 2).
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES="build-essential meson ninja-build pkg-config libopenblas-dev
liblapacke-dev libjansson-dev libuv1-dev libsqlite3-dev libmicrohttpd-dev
libsystemd-dev libgnutls28-dev gnutls-bin curl jq sqlite3 gnuplot-nox
python3-yaml"

install_packages() {
    local missing=()
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "build.sh: missing packages: ${missing[*]}; rerun as root" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}

build() {
    [ -d build ] || meson setup build -Dwerror=true --buildtype=release
    ninja -C build ${JOBS:+-j "$JOBS"}
}

# The tests read the whole MIT-BIH database; without it most would fail
# one by one, so its absence is said once, with what to do.
check_mitdb() {
    local dir
    dir=$(meson introspect build --buildoptions |
        jq -r '.[] | select(.name == "mitdb") | .value')
    [ -n "$dir" ] || dir=../shared/data/mitdb
    [ -f "$dir/100.hea" ] && return 0
    echo "build.sh: the tests read the MIT-BIH Arrhythmia Database, which" \
        "is not at $dir (no 100.hea there); put it at ../shared/data/mitdb" \
        "beside this folder, or point the tests at a copy with" \
        "'meson configure build -Dmitdb=DIR'" >&2
    exit 1
}

# Meson prints its own summary; this adds the plain "N passed, N failed"
# line that CI systems read.
run_tests() {
    local rc=0
    check_mitdb
    meson test -C build --print-errorlogs --num-processes "${JOBS:-2}" \
        --timeout-multiplier 3 "$@" || rc=$?
    python3 - build/meson-logs/testlog.json <<'PY' || true
import json, sys
ok = bad = skip = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"):
        ok += 1
    elif r == "SKIP":
        skip += 1
    else:
        bad += 1
print(f"{ok} passed, {bad} failed" + (f", {skip} skipped" if skip else ""))
PY
    return $rc
}

case "${1:-}" in
    demo) install_packages; build; exec ./clients/demo.sh ;;
    test) install_packages; build; run_tests ;;
    build) install_packages; build ;;
    *) echo "usage: $0 demo|test|build" >&2; exit 2 ;;
esac
