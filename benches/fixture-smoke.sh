#!/usr/bin/env bash
# benches/fixture-smoke.sh: the benchmark fixture works and leaves nothing
# behind. A tiny fixture (2 namespaces x 2 holders x 2 pairs, 1 holder in the
# root namespace) under its own state dir and namespace prefix, so it never
# touches a fixture someone has up: its counts, libprocspy's view of it
# (build/bench one walk + one connections call; build/procspy --json -n NS
# per namespace), up/down idempotence, and that down leaves no namespace and
# no running process; then the same tiny fixture with node helpers (a
# TIME_WAIT, a connection waiting to be accepted and a SYN_RECV request in
# each namespace, listed with no owner) up and down. Root only. Ends with
# "N passed, N failed". FIXTURE_SMOKE_DIR and FIXTURE_SMOKE_PREFIX move it
# apart from another smoke run on the same host.
set -uo pipefail
cd "$(dirname "$0")/.."
B=${BENCH_BUILD:-build}
export PROCSPY_FIXTURE_DIR=${FIXTURE_SMOKE_DIR:-/run/procspy-fixture-smoke}
export PROCSPY_FIXTURE_PREFIX=${FIXTURE_SMOKE_PREFIX:-procspy-fxs-}
FX=benches/fixture
pass=0 fail=0
ok()  { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
check() { # check DESC CMD...
    local d=$1; shift
    if "$@"; then ok "$d"; else bad "$d"; fi
}
finish() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}
if [ "$(id -u)" -ne 0 ]; then echo "fixture-smoke: needs root"; finish; fi
trap '$FX down >/dev/null 2>&1' EXIT
start=$(date +%s%N)

$FX down >/dev/null 2>&1   # a leftover of an interrupted run
out=$($FX up --tiny --ttl 120 2>&1); rc=$?
echo "$out"
check "fixture up --tiny exits 0" test $rc -eq 0
js=$($FX status --json)
val() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$js" "$1"; }
check "2 namespaces" test "$(val namespaces)" -eq 2
check "5 holder processes" test "$(val processes)" -eq 5
check "50 socket fds (10 per holder)" test "$(val socket_fds)" -eq 50
check "20 established TCP sockets, 30 TCP, 20 UDP" \
    test "$(val tcp_established),$(val tcp_sockets),$(val udp_sockets)" = "20,30,20"
check "fixture status agrees" $FX status
out=$($FX up --tiny --ttl 120 2>&1)
check "up when up verifies" grep -q "already up, verified" <<<"$out"

mapfile -t NSS < <(python3 -c 'import json,sys; print("\n".join(json.loads(sys.argv[1])["namespace_names"]))' "$js")
state_pids() { # the pids the state file lists, the supervisor's last
    python3 -c '
import json, sys
st = json.load(open(sys.argv[1]))
print("\n".join(str(e["pid"]) for e in st["pids"] + [st["supervisor"]]))' "$PROCSPY_FIXTURE_DIR/state"
}
mapfile -t PIDS < <(state_pids)
check "state lists 5 holders and the supervisor" test "${#PIDS[@]}" -eq 6

for ns in "${NSS[@]}"; do
    n=$(ip netns exec "$ns" ss -tan | tail -n +2 | wc -l)
    check "$ns: ss -tan sees 12 TCP sockets" test "$n" -eq 12
    ino=$(stat -L -c %i "/run/netns/$ns")
    js_lines=$("$B/procspy" --json -n "$ino" 2>/dev/null)
    n=$(grep -c '"name":"procspy-holder"' <<<"$js_lines")
    check "$ns: procspy --json -n $ino lists 20 sockets owned by procspy-holder" test "$n" -eq 20
done

# One walk and one connections call over the whole host (bench, -n 1).
if out=$("$B/bench" -n 1 --only walk,conn); then
    walk=$(grep '^row name=walk ' <<<"$out"); conn=$(grep '^row name=conn ' <<<"$out")
    get() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
    check "bench walk: >= 50 socket fds, >= 3 namespaces" \
        test "$(get records "$walk")" -ge 50 -a "$(get namespaces "$walk")" -ge 3
    check "bench connections: >= 50 records, >= 50 owned" \
        test "$(get records "$conn")" -ge 50 -a "$(get owned "$conn")" -ge 50
else
    bad "build/bench ran"
fi

down_leaves_nothing() { # down_leaves_nothing PID...: down, and nothing of it left
    local out rc left running=0 p s
    out=$($FX down 2>&1); rc=$?
    echo "$out"
    check "fixture down exits 0" test $rc -eq 0
    left=$(ip netns list | grep -c "^$PROCSPY_FIXTURE_PREFIX")
    check "no namespace left" test "$left" -eq 0
    for p in "$@"; do
        # A zombie waits for its parent; pid 1 of some sandboxes reaps late.
        s=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) || continue
        [ "$s" = Z ] || running=$((running + 1))
    done
    check "no process left running" test "$running" -eq 0
    check "no state file left" test ! -e "$PROCSPY_FIXTURE_DIR/state"
}
down_leaves_nothing "${PIDS[@]}"
out=$($FX down 2>&1)
check "down when down is a no-op" grep -q "nothing to do" <<<"$out"

# Node helpers: what no process holds, in each namespace.
out=$($FX up --tiny --tw 1 --accq 1 --synrecv 1 --pending-every 1 --churn 1 --ttl 120 2>&1); rc=$?
echo "$out"
check "fixture up --tiny with node helpers exits 0" test $rc -eq 0
js=$($FX status --json)
check "2 node helpers, 5 holders" test "$(val node_helpers),$(val processes)" = "2,5"
check ">= 2 TIME_WAIT, 2 SYN_RECV, 2 waiting to be accepted" \
    test "$(val tcp_time_wait)" -ge 2 -a "$(val tcp_syn_recv)" -ge 2 -a "$(val accept_queued)" -ge 2
mapfile -t PIDS < <(state_pids)
check "state lists 5 holders, 2 helpers and the supervisor" test "${#PIDS[@]}" -eq 8
for ns in "${NSS[@]}"; do
    ino=$(stat -L -c %i "/run/netns/$ns")
    js_lines=$("$B/procspy" --json -t -n "$ino" 2>/dev/null)
    for st in TIME_WAIT SYN_RECV; do
        n=$(grep "\"state_name\":\"$st\"" <<<"$js_lines" | grep -c '"pid":null')
        check "$ns: procspy lists a $st with no owner" test "$n" -ge 1
    done
    # The queued connection: the client end held by procspy-fxnode, the
    # server end by none.
    n=$(grep '"state_name":"ESTABLISHED"' <<<"$js_lines" | grep -c '"pid":null')
    check "$ns: procspy lists an established connection no one accepted" test "$n" -ge 1
done
down_leaves_nothing "${PIDS[@]}"

ms=$((($(date +%s%N) - start) / 1000000))
check "under 20 s (${ms} ms)" test "$ms" -lt 20000
trap - EXIT
finish
