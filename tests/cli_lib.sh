# cli_lib.sh - shared by the tests/cli_*.sh scripts, which source it:
#   . "$(dirname "$0")/cli_lib.sh"
#   cli_begin NAME      scratch directory $work, removed on exit
#   check DESC CMD...   count a check; CMD's stdout is discarded
#   run CMD...          run CMD with `set -e` suspended; exit status in
#                       $status (redirect its output at the call)
#   check_status DESC N check that the last `run` exited with status N
#   cli_end             print the tally; fail if any check failed
# POSIX sh.
set -eu
failures=0
checks=0
status=0

cli_begin() {
    work=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

check() {
    desc=$1
    shift
    checks=$((checks + 1))
    if ! "$@" > /dev/null; then
        echo "FAILED: $desc" >&2
        failures=$((failures + 1))
    fi
}

run() {
    status=0
    "$@" || status=$?
}

check_status() {
    check "$1 (exit status $status, expected $2)" test "$status" -eq "$2"
}

cli_end() {
    echo "$((checks - failures)) of $checks checks passed"
    [ "$failures" -eq 0 ]
}
