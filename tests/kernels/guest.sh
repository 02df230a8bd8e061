#!/usr/bin/env bash
# The suite of the kernel matrix, on the running kernel: inside a guest
# (tests/kernels/init runs it, as root, from the project's root) or on the
# host itself for the host's row. Everything it finds goes into RESULTS:
#   probe-NAME.{out,rc}  what the command (build/procspy) and build/openat2
#                        say of the BPF owner scan, netlink, the text tables
#                        and openat2 on this kernel
#   SUITE.{log,rc}       each test binary named in RESULTS/suite.list
#                        ("NAME PATH" lines), then the C harness
#   started, done        their times (the host reads them as mtimes too)
# It prints one line per suite, and exits 0 only if every suite passed.
#
# Usage: tests/kernels/guest.sh RESULTS
set -uo pipefail
out=${1:?usage: guest.sh RESULTS}
# Bounds each test binary, well above the slowest one under emulation.
SUITE_TIMEOUT=${SUITE_TIMEOUT:-600}
# SUITES="walk harness" runs only those (to look into one failure).
SUITES=${SUITES:-}

say() { echo "procspy-kernels: $*"; }
date +%s > "$out/started"
uname -r > "$out/release"

# ---- probes: each way of reading, asked for explicitly, so a refusal
# shows as a failed exit and its message rather than as a quiet fallback.
probe() {
    local name=$1; shift
    timeout 120 "$@" > "$out/probe-$name.out" 2>&1
    echo $? > "$out/probe-$name.rc"
}
# A second network namespace, so netlink has to enter one.
unshare --net sleep 300 &
ns_holder=$!
probe bpf build/procspy --owners bpf
probe netlink build/procspy --source netlink --owners proc
probe text build/procspy --source text --owners proc
probe openat2 build/openat2
kill "$ns_holder"
wait "$ns_holder" 2>/dev/null

# ---- the suite
failed=0
run_suite() {
    local name=$1 rc summary; shift
    if [ -n "$SUITES" ] && [[ " $SUITES " != *" $name "* ]]; then
        return 0
    fi
    say "running $name"
    timeout "$SUITE_TIMEOUT" "$@" < /dev/null > "$out/$name.log" 2>&1
    rc=$?
    echo "$rc" > "$out/$name.rc"
    # cargo's test harness ends with "test result: ..."; the C harness with
    # "N passed, N failed".
    summary=$(grep -E '^test result: |^[0-9]+ passed, [0-9]+ failed' "$out/$name.log" | tail -n 1)
    [ "$rc" = 124 ] && summary="timed out after ${SUITE_TIMEOUT}s; $summary"
    say "$name: exit $rc: ${summary:-no summary line}"
    [ "$rc" = 0 ] || failed=1
}
while read -r name bin; do
    run_suite "$name" "$bin"
done < "$out/suite.list"
run_suite harness build/harness-so
# Not c-tests/cli.sh: under emulation it takes longer than its fixture's
# TIME_WAIT lives (60 s), and the command's ways of reading are the probes.

date +%s > "$out/done"
exit "$failed"
