#!/usr/bin/env bash
# benches/bench.sh: libprocspy against ss, netstat and lsof, measured alike.
#
#   benches/bench.sh [--runs N]          one pass on the fixture that is up now
#                                        (benches/fixture up ...): the table,
#                                        syscall counts, paced cost, peak RSS
#   benches/bench.sh ... --perf          also a perf profile of connections
#                                        (with --events: of the tracer's cost run)
#   benches/bench.sh --ns-cases          only the query and namespace cases on
#                                        the fixture that is up (one pid, no
#                                        owners, the namespace search; --full
#                                        runs them on the default fixture)
#   benches/bench.sh --fd-cases [--turns T]  only the fd cases: a pass while
#                                        processes of nobody's hold FD_CASE_N
#                                        (100,000) unix sockets, or as many
#                                        /dev/null fds, or nothing more, by
#                                        owner path (BPF, PID/fd), the cases
#                                        by turns (T, default 5); needs no
#                                        fixture (--full runs them too)
#   benches/bench.sh --events            only the live-events tracer under a
#                                        loopback connect/accept/close storm
#                                        (build/events): connections per second
#                                        and CPU per connection without it, with
#                                        a blocking reader and with one reading
#                                        every 2 ms, by turns (EV_ROUNDS rounds
#                                        of EV_SECONDS s windows: 5 x 5), the
#                                        close events' latency, and loss at
#                                        20,000 connections per second; needs no
#                                        fixture (--full runs it too)
#   benches/bench.sh --node [--runs N]   only the node fixture (issue 23: every
#                                        namespace has TIME_WAITs, some have
#                                        pending connections): brings it up and
#                                        down itself; its table and RSS, one
#                                        dump of an empty namespace by the size
#                                        of its TCP hash (without the fixture
#                                        and with it), then the fixture made
#                                        under tcp_child_ehash_entries 1024
#   benches/bench.sh --full [--runs N]   what `make bench` runs: the default
#                                        fixture (table, syscalls, pacing, RSS),
#                                        then dense, wide, big and node (table,
#                                        RSS), with --node's empty-namespace
#                                        dumps, then default with
#                                        net.ipv4.tcp_child_ehash_entries 1024 vs 0
#                                        and node with 1024; brings each fixture
#                                        up and down itself, setting the sysctl
#                                        only while a fixture comes up; then the
#                                        fd cases and the events
#
# Every figure is a median of RUNS (default 10) runs; the ss loop over every
# namespace runs 3 times (said in its row). Wall = CLOCK_MONOTONIC around the
# call (libprocspy) or fork..wait4 (commands); CPU = getrusage user+sys of the
# calling thread's process (RUSAGE_SELF delta) or of the child and what it
# reaped (wait4). Records = lines of output minus headers, or records
# delivered: a fast wrong answer shows there.
# Output also goes to build/bench-results.txt (build/events' own lines, each
# window's and row's key=value, to build/bench-events.raw).
# PROCSPY_FIXTURE_DIR and PROCSPY_FIXTURE_PREFIX (benches/fixture) keep a run
# apart from a fixture someone else has up; a pass still covers the host.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
B=${BENCH_BUILD:-build}
BENCH=$B/bench
CLI=$B/procspy
FX=benches/fixture
RUNS=10
LOOP_RUNS=3
FULL=0
NODE_ONLY=0
PERF=0
NS_ONLY=0
FD_ONLY=0
EV_ONLY=0
EVENTS=$B/events
EV_SECONDS=${EV_SECONDS:-5}      # each window of the events bench
EV_ROUNDS=${EV_ROUNDS:-5}        # rounds of its off / on / on-every-2-ms windows
FD_CASE_N=${FD_CASE_N:-100000}
FD_CASE_PER=${FD_CASE_PER:-10000}   # fds per holder process (RLIMIT_NOFILE's hard limit may be low)
FD_CASE_TURNS=5
HOLDER=$B/procspy-holder
PROBE_RUNS=${PROBE_RUNS:-200}     # dumps of each kind in ehash_probe
PROBE_NS=${PROCSPY_FIXTURE_PREFIX:-procspy-fx-}probe
OUT=${BENCH_OUT:-$B/bench-results.txt}

while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift ;;
        --loop-runs) LOOP_RUNS=$2; shift ;;
        --full) FULL=1 ;;
        --node) NODE_ONLY=1 ;;
        --perf) PERF=1 ;;
        --ns-cases) NS_ONLY=1 ;;
        --fd-cases) FD_ONLY=1 ;;
        --events) EV_ONLY=1 ;;
        --turns) FD_CASE_TURNS=$2; shift ;;
        -h|--help) sed -n '2,58p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

[ "$(id -u)" -eq 0 ] || { echo "bench.sh: needs root" >&2; exit 1; }
if [ "$EV_ONLY" = 1 ]; then NEED=("$EVENTS"); else NEED=("$BENCH" "$CLI" "$HOLDER"); fi
[ "$FULL" = 1 ] && NEED+=("$EVENTS")
for t in "${NEED[@]}"; do
    [ -x "$t" ] || { echo "bench.sh: $t missing (make bench builds it)" >&2; exit 1; }
done
if [ "$EV_ONLY" = 0 ]; then
    for c in ss ip netstat lsof strace; do
        command -v $c >/dev/null || { echo "bench.sh: $c missing (iproute2 net-tools lsof strace)" >&2; exit 1; }
    done
fi

mkdir -p "$B"
exec > >(tee "$OUT") 2>&1
TMP=$(mktemp -d)
ROWS=$TMP/rows        # preset \t tool \t runs \t wall \t cpu \t records \t note
: > "$ROWS"
ORIG_EHASH=$(sysctl -n net.ipv4.tcp_child_ehash_entries 2>/dev/null || echo "")
PROBE_MADE=0
cleanup() {
    if [ "$FULL" = 1 ] || [ "$NODE_ONLY" = 1 ]; then
        $FX down >/dev/null 2>&1
        [ -n "$ORIG_EHASH" ] && sysctl -qw net.ipv4.tcp_child_ehash_entries="$ORIG_EHASH"
    fi
    [ "$PROBE_MADE" = 1 ] && ip netns delete "$PROBE_NS" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

kv() { # kv KEY LINE -> value of KEY=... in a row line
    printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n1
}

add_row() { # add_row PRESET TOOL ROWLINE [NOTE] [RECORDS-OVERRIDE]
    local rec
    rec=${5:-$(kv records "$3")}
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$(kv runs "$3")" "$(kv wall_ms "$3")" \
        "$(kv cpu_ms "$3")" "$rec" "${4:-}" >> "$ROWS"
}

fixture_names() { # the fixture's namespace names, one a line
    $FX status --json 2>/dev/null | python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["namespace_names"]))'
}

# --- one table on the fixture that is up -----------------------------------
table() { # table PRESET
    local p=$1 line nsn
    echo "== $p: $($FX status 2>/dev/null)"
    mapfile -t NSS < <(fixture_names)
    nsn=${#NSS[@]}

    line=$("$BENCH" -n "$RUNS" --only conn,changes-vs-conn,netlink,procscan,text,walk | tee -a "$TMP/lib-$p")
    local conn changes netlink procscan text walk
    conn=$(grep '^row name=conn ' <<<"$line"); text=$(grep '^row name=text ' <<<"$line")
    changes=$(grep '^row name=changes-vs-conn ' <<<"$line")
    netlink=$(grep '^row name=netlink ' <<<"$line"); procscan=$(grep '^row name=procscan ' <<<"$line")
    walk=$(grep '^row name=walk ' <<<"$line")
    echo "$conn"; echo "$changes"; echo "$netlink"; echo "$procscan"; echo "$text"; echo "$walk"
    add_row "$p" "libprocspy connections (default), all ns" "$conn" \
        "tcp $(kv tcp "$conn"); tables read in $(($(kv namespaces "$conn") - $(kv accounted "$conn"))) of $(kv namespaces "$conn") ns"
    printf '%s\n' "$conn" > "$TMP/last-conn"; printf '%s\n' "$netlink" > "$TMP/last-netlink"
    printf '%s\n' "$procscan" > "$TMP/last-procscan"
    add_row "$p" "libprocspy changes on an unchanged fixture (default), all ns" "$changes" \
        "events; CPU $(kv cpu_ratio "$changes")x connections in the same run (by pairs $(kv pair_cpu_ratio "$changes")x)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$p" "$(kv conn_records "$changes")" "$(kv conn_cpu_ms "$changes")" \
        "$(kv cpu_ms "$changes")" "$(kv cpu_ratio "$changes")" "$(kv pair_cpu_ratio "$changes")" >> "$TMP/changes"
    add_row "$p" "libprocspy connections, every ns's tables by netlink" "$netlink" "tcp $(kv tcp "$netlink")"
    add_row "$p" "libprocspy connections, PID/fd owners + netlink (no CAP_BPF)" "$procscan" \
        "tcp $(kv tcp "$procscan")"
    add_row "$p" "libprocspy connections, every ns's tables as text" "$text" "tcp $(kv tcp "$text")"
    add_row "$p" "libprocspy walk (socket fds), all ns" "$walk" "socket fds"

    line=$("$BENCH" --exec -n "$RUNS" --headers 1 -- ss -tanp); echo "ss: $line"
    add_row "$p" "ss -tanp (root ns only)" "$line"
    printf '%s\n' "$line" > "$TMP/last-ss"
    line=$("$BENCH" --exec -n "$LOOP_RUNS" --headers $((nsn + 1)) -- \
        sh -c 'ss -tanp; for ns; do ip netns exec "$ns" ss -tanp; done' sh "${NSS[@]}")
    echo "ss loop: $line"
    add_row "$p" "ss -tanp + ip netns exec NS ss -tanp x$nsn" "$line" "$LOOP_RUNS runs"
    line=$("$BENCH" --exec -n "$RUNS" --headers 2 --max-seconds 120 -- netstat -tanp)
    echo "netstat: $line"
    add_row "$p" "netstat -tanp (root ns only)" "$line"
    line=$("$BENCH" --exec -n "$RUNS" --headers 1 --max-seconds 120 -- lsof -nP -i)
    echo "lsof: $line"
    add_row "$p" "lsof -nP -i (root ns only; TCP+UDP)" "$line"
    line=$("$BENCH" --exec -n "$RUNS" --headers 1 -- "$CLI" -t)
    echo "procspy -t: $line"
    add_row "$p" "build/procspy -t (CLI process; TCP, all ns)" "$line"
}

# --- what one namespace's dump costs -------------------------------------------
# One dump of an empty namespace as a pass makes it (TCP of both families in
# one request, states 1 to 12; UDP by family), PROBE_RUNS times in a row:
# the kernel walks the namespace's TCP hash, which is the host's (with every
# namespace's sockets in it) unless the namespace was made while
# net.ipv4.tcp_child_ehash_entries = E, which gives it E buckets of its own.
# The sysctl is set only while the namespace is made.
ehash_probe() { # ehash_probe LABEL
    local e hash out alloc
    if [ -e "/run/netns/$PROBE_NS" ]; then
        echo "bench.sh: namespace $PROBE_NS exists and is not ours: no probe" >&2; return 0
    fi
    for e in 0 128 1024 16384 262144; do
        sysctl -qw net.ipv4.tcp_child_ehash_entries=$e
        ip netns add "$PROBE_NS" && PROBE_MADE=1
        sysctl -qw net.ipv4.tcp_child_ehash_entries="${ORIG_EHASH:-0}"
        [ "$PROBE_MADE" = 1 ] || return 0
        hash=$(ip netns exec "$PROBE_NS" sysctl -n net.ipv4.tcp_ehash_entries)
        alloc=$(awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "alloc") print $(i + 1) }' /proc/net/sockstat)
        out=$(ip netns exec "$PROBE_NS" python3 - "$PROBE_RUNS" <<'EOF'
import resource, socket, struct, sys, time
n = int(sys.argv[1])
NLMSG_ERROR, NLMSG_DONE, TCPDIAG_GETSOCK, SOCK_DIAG_BY_FAMILY = 2, 3, 18, 20
STATES = 0x1FFE  # 1 to 12, as the library asks: 13 (BOUND_INACTIVE) walks the bind hash too
sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)  # NETLINK_SOCK_DIAG
sock.bind((0, 0))
buf = bytearray(1 << 17)


def dump(kind, body, seq):
    sock.send(struct.pack("=IHHII", 16 + len(body), kind, 0x301, seq, 0) + body)  # REQUEST | DUMP
    while True:
        got, off = sock.recv_into(buf), 0
        while off + 16 <= got:
            ln, typ = struct.unpack_from("=IH", buf, off)
            if typ in (NLMSG_DONE, NLMSG_ERROR):
                return
            off += (ln + 3) & ~3


sockid = bytes(48)
tcp = [(TCPDIAG_GETSOCK, struct.pack("=BBBB", 0, 0, 0, 0) + sockid + struct.pack("=II", STATES, 0))]
udp = [(SOCK_DIAG_BY_FAMILY, struct.pack("=BBBxI", f, socket.IPPROTO_UDP, 0, STATES) + sockid)
       for f in (socket.AF_INET, socket.AF_INET6)]


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


out = []
for reqs in (tcp, udp):
    for i in range(3):
        for k, b in reqs:
            dump(k, b, i)
    c0, t0 = cpu(), time.monotonic()
    for i in range(n):
        for k, b in reqs:
            dump(k, b, i)
    out += [(cpu() - c0) / n * 1e6, (time.monotonic() - t0) / n * 1e6]
print("probe tcp_cpu_us=%.1f tcp_wall_us=%.1f udp_cpu_us=%.1f udp_wall_us=%.1f" % tuple(out))
EOF
)
        ip netns delete "$PROBE_NS" && PROBE_MADE=0
        echo "$1: ehash=$e hash=$hash alloc=$alloc $out"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$e" "$hash" "$alloc" "$(kv tcp_cpu_us "$out")" \
            "$(kv udp_cpu_us "$out")" "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$TMP/probe"
    done
}

print_probe() {
    [ -s "$TMP/probe" ] || return 0
    echo
    echo "### one dump of an empty namespace, by its TCP hash (CPU us per dump, mean of $PROBE_RUNS; the 128-bucket row is mostly the python loop's own cost)"
    echo
    echo "| host | tcp_child_ehash_entries when made | its TCP hash, buckets | host's TCP sockets (sockstat alloc) | TCP dump, CPU us | UDP v4 + v6 dumps, CPU us | load average |"
    echo "|---|---:|---:|---:|---:|---:|---|"
    awk -F'\t' '{ printf "| %s | %s | %s | %s | %.1f | %.1f | %s |\n", $1, $2,
        ($3 < 0 ? -$3 " (the host'"'"'s)" : $3), $4, $5, $6, $7 }' "$TMP/probe"
}

# The node fixture made while tcp_child_ehash_entries = E (set while it
# comes up only): the three paths and ss -tanp, in one run.
node_child() { # node_child E
    local line hash rc
    sysctl -qw net.ipv4.tcp_child_ehash_entries="$1"
    echo
    echo "== fixture up --preset node (tcp_child_ehash_entries $1 while it comes up)"
    $FX up --preset node; rc=$?
    sysctl -qw net.ipv4.tcp_child_ehash_entries="${ORIG_EHASH:-0}"
    [ $rc -eq 0 ] || { echo "bench.sh: fixture up node failed" >&2; exit 1; }
    hash=$(ip netns exec "$(fixture_names | sed -n 1p)" sysctl -n net.ipv4.tcp_ehash_entries)
    line=$("$BENCH" -n "$RUNS" --only conn,netlink,procscan); echo "$line"
    grep '^row name=conn ' <<<"$line" > "$TMP/last-conn"
    grep '^row name=netlink ' <<<"$line" > "$TMP/last-netlink"
    grep '^row name=procscan ' <<<"$line" > "$TMP/last-procscan"
    line=$("$BENCH" --exec -n "$RUNS" --headers 1 -- ss -tanp); echo "ss: $line"
    printf '%s\n' "$line" > "$TMP/last-ss"
    hash_row "$1 ($(hash_name "$hash"))"
    $FX down
}

hash_row() { # hash_row LABEL: the figures of the last table or node_child
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$(cat "$TMP/last-conn")" "$(cat "$TMP/last-netlink")" \
        "$(cat "$TMP/last-procscan")" "$(cat "$TMP/last-ss")" "$(cut -d' ' -f1-3 /proc/loadavg)" >> "$TMP/nodehash"
}

print_nodehash() {
    [ -s "$TMP/nodehash" ] || return 0
    echo
    echo "### node by tcp_child_ehash_entries when it was made (median CPU ms; x = vs ss -tanp in the same run)"
    echo
    echo "| ehash entries | default pass | every ns dumped (netlink) | PID/fd owners + netlink | ss -tanp (root ns only) | tables read | load average after |"
    echo "|---:|---:|---:|---:|---:|---:|---|"
    local e c n p x la sc
    while IFS=$'\t' read -r e c n p x la; do
        sc=$(kv cpu_ms "$x")
        printf '| %s | %.1f (%s) | %.1f (%s) | %.1f (%s) | %.1f | %s of %s ns | %s |\n' "$e" \
            "$(kv cpu_ms "$c")" "$(ratio "$(kv cpu_ms "$c")" "$sc")" \
            "$(kv cpu_ms "$n")" "$(ratio "$(kv cpu_ms "$n")" "$sc")" \
            "$(kv cpu_ms "$p")" "$(ratio "$(kv cpu_ms "$p")" "$sc")" \
            "$sc" "$(($(kv namespaces "$c") - $(kv accounted "$c")))" "$(kv namespaces "$c")" "$la"
    done < "$TMP/nodehash"
}

# A namespace's tcp_ehash_entries: negative where it shares the host's.
hash_name() { if [ "${1:-0}" -lt 0 ]; then echo "the host's hash, ${1#-}"; else echo "its own hash, $1"; fi; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }

# --- peak RSS ----------------------------------------------------------------
rss() { # rss PRESET
    local p=$1 out s e
    for w in conn changes walk; do
        out=$("$BENCH" --once $w)
        s=$(grep '^rss when=start' <<<"$out"); e=$(grep '^rss when=end' <<<"$out")
        printf '%s\t%s\t%s\t%s\n' "$p" "$w" "$(kv vmhwm_kib "$s")" "$(kv vmhwm_kib "$e")" >> "$TMP/rss"
    done
    out=$(/usr/bin/time -f '%M' "$CLI" 2>&1 >/dev/null | tail -n1)
    printf '%s\t%s\t%s\t%s\n' "$p" "procspy CLI (/usr/bin/time %M)" "-" "$out" >> "$TMP/rss"
}

# --- syscalls ---------------------------------------------------------------
syscalls() {
    local w
    for w in none conn netlink procscan text walk; do
        strace -c -f -o "$TMP/strace-$w" "$BENCH" --once $w > "$TMP/once-$w" 2>&1
    done
    strace -c -f -o "$TMP/strace-ss" ss -tanp > /dev/null 2>&1
    python3 - "$TMP" <<'EOF'
import sys, re, os
d = sys.argv[1]
def load(name):
    calls = {}
    for line in open(os.path.join(d, "strace-" + name)):
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and not line.startswith("100.00"):
            name_ = f[-1]
            try:
                calls[name_] = int(f[3])
            except ValueError:
                pass
    return calls
def stats(w):
    for line in open(os.path.join(d, "once-" + w)):
        if line.startswith("row "):
            return dict(kv.split("=", 1) for kv in line.split()[1:])
    return {}
base = load("none")
ss = load("ss")
W = ("conn", "netlink", "procscan", "text", "walk")
cols = {w: load(w) for w in W}
st = stats("conn")
P, F, N = int(st.get("processes", 0)), int(st.get("fds", 0)), int(st.get("namespaces", 0))
print("syscalls of one call, minus those of the same program making no call (strace -c -f):")
print("  host: %d processes, %d fd entries, %d namespaces" % (P, F, N))
names = set()
for c in cols.values():
    names |= set(c)
rows = []
for n in names:
    v = [max(cols[w].get(n, 0) - base.get(n, 0), 0) for w in W]
    if any(v):
        rows.append((n, v))
rows.sort(key=lambda r: -r[1][0])
floor = {
    "getdents64": "BPF: the root listing; PID/fd: %d (>= 1 per fd dir)" % P,
    "newfstatat": "BPF: %d (1 ns/net per pid); PID/fd: +%d (1 per fd)" % (P, F),
    "openat": "1 stat per socket holder; PID/fd: +%d (1 per fd dir)" % P,
    "bpf": "BPF: 1 iterator per call (+3 to load, once per walker)",
    "statx": "(counted with newfstatat)",
    "read": "text tables: >= 1 per table per ns; stat once per socket holder",
    "sendmsg": "netlink: 1 dump request per family/proto per ns",
    "recvmsg": "netlink: replies (~1 per 30-60 sockets)",
    "setns": "netlink: 2 per ns (in and back)",
    "close": "1 per openat",
}
print("  %-16s %10s %10s %10s %10s %10s %10s   %s" % (("syscall",) + W + ("ss -tanp", "floor (for conn)")))
tot = [0] * len(W)
for n, v in rows:
    for i in range(len(W)):
        tot[i] += v[i]
    print("  %-16s %10d %10d %10d %10d %10d %10s   %s" % ((n,) + tuple(v) + (ss.get(n, "-"), floor.get(n, ""))))
print("  %-16s %10d %10d %10d %10d %10d %10d" % (("total",) + tuple(tot) + (sum(ss.values()),)))
EOF
}

# --- pacing --------------------------------------------------------------------
# The query and namespace cases, by turns in one process (bench.c ns-cases):
# each ratio is the median of the per-turn CPU ratios, against its target.
nscases() {
    local pid line
    pid=$(ip netns pids "$(fixture_names | sed -n 1p)" | head -n1)
    line=$("$BENCH" -n "$RUNS" --only ns-cases --pid "$pid")
    printf '%s\n' "$line" | grep '^row ' > "$TMP/nscases.rows"
    {
        echo "| case (CPU, by turns, median of $RUNS per-turn ratios) | ratio | target |"
        echo "|---|---:|---:|"
        echo "| one pid's connections (pid $pid, $(kv onepid_records "$(grep name=ns-cases <<<"$line")") lines) vs a default pass | $(kv onepid_vs_conn_cpu "$(grep name=ns-cases <<<"$line")")x | <= 0.02x |"
        echo "| a no-owners pass over every namespace vs the owners pass with --source netlink | $(kv noowners_vs_netlink_cpu "$(grep name=ns-cases <<<"$line")")x | <= 1x |"
        echo "| a default pass vs one that looks for no namespace without a process | $(kv conn_vs_procns_cpu "$(grep name=ns-cases <<<"$line")")x | <= 1.05x |"
        echo
        for n in conn procns onepid noowners netlink; do
            l=$(grep "^row name=$n " "$TMP/nscases.rows")
            echo "- $n: median CPU $(kv cpu_ms "$l") ms, wall $(kv wall_ms "$l") ms, $(kv records "$l") lines, $(kv namespaces "$l") namespaces, $(kv processes "$l") processes, $(kv fds "$l") fds"
        done
    } > "$TMP/nscases"
    cat "$TMP/nscases"
}

paced() {
    local line
    line=$("$BENCH" --only paced --fd-block 1000 --tick-ms 10 | grep '^row name=paced')
    echo "$line"
    echo "paced connections (fd_block 1000, tick 10 ms): wall $(kv wall_ms "$line") ms, CPU $(kv cpu_ms "$line") ms," \
         "$(kv ticks "$line") ticks: $(kv cpu_ms_per_wall_s "$line") ms CPU per second of wall" >> "$TMP/paced"
}

# --- fd cases -------------------------------------------------------------------
# What an unprivileged user's fds cost a pass: processes of nobody's (in the
# root namespace, FD_CASE_PER fds each) hold FD_CASE_N unix sockets, or as
# many /dev/null fds, or nothing more; for each, conn (BPF owners) and
# procscan (PID/fd owners). By turns: each turn brings up each case in
# turn and takes RUNS passes of each; a turn whose background (the fds and
# sockets a pass saw beyond the holders') differs from the most common one
# (another job's fixture came or went on a shared machine) is set aside,
# and the figures are the medians of the other turns' medians.
fdcases() {
    local kind line w i t pids procs=$(((FD_CASE_N + FD_CASE_PER - 1) / FD_CASE_PER))
    : > "$TMP/fdcases"
    for t in $(seq "$FD_CASE_TURNS"); do
        for kind in none null unix; do
            pids=()
            if [ "$kind" != none ]; then
                for i in $(seq "$procs"); do
                    prlimit --nofile=$((FD_CASE_PER + 64)) setpriv --reuid=nobody --regid=nogroup --clear-groups \
                        "$HOLDER" --ttl 900 --fds "$kind" "$FD_CASE_PER" > "$TMP/fdholder.$i" &
                    pids+=($!)
                done
                for i in $(seq "$procs"); do
                    for _ in $(seq 600); do grep -q '^[RE] ' "$TMP/fdholder.$i" && break; sleep 0.1; done
                    grep -q '^R ' "$TMP/fdholder.$i" || {
                        echo "bench.sh: fd holder ($kind): $(cat "$TMP/fdholder.$i")" >&2; kill "${pids[@]}"; return 1; }
                done
            fi
            line=$("$BENCH" -n "$RUNS" --only conn,procscan)
            for w in conn procscan; do
                printf '%s\t%s\t%s\t%s\n' "$t" "$kind" "$w" "$(grep "^row name=$w " <<<"$line")" >> "$TMP/fdcases"
            done
            [ ${#pids[@]} -gt 0 ] && { kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null; }
        done
    done
    python3 - "$TMP/fdcases" "$((procs * FD_CASE_PER))" "$procs" "$RUNS" "$FD_CASE_TURNS" <<'EOF'
import sys
from statistics import median
n, procs, runs, turns = int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
rows = {}
for l in open(sys.argv[1]):
    t, kind, w, row = l.rstrip("\n").split("\t")
    rows[(int(t), kind, w)] = dict(kv.split("=", 1) for kv in row.split()[1:])
# What a turn's passes saw beyond the holders' fds (the unix sockets are
# socket fds to both scans; the /dev/null fds are fds to the PID/fd scan
# only); two turns saw the same background where no count differs by 1,000.
def background(t):
    seen = []
    for kind in ("none", "null", "unix"):
        for w in ("conn", "procscan"):
            r = rows[(t, kind, w)]
            fds, socks = int(r["fds"]), int(r["sockets"])
            if kind == "unix":
                fds, socks = fds - n, socks - n
            if kind == "null" and w == "procscan":
                fds -= n
            seen += [fds, socks]
    return seen
def same(a, b):
    return all(abs(x - y) < 1000 for x, y in zip(background(a), background(b)))
all_turns = range(1, turns + 1)
ref = max(all_turns, key=lambda t: sum(same(t, u) for u in all_turns))
kept = [t for t in all_turns if same(ref, t)]
dropped = ", ".join(str(t) for t in range(1, turns + 1) if t not in kept) or "none"
what = {"none": "nothing more", "null": "%d /dev/null fds in %s processes" % (n, procs),
        "unix": "%d unix sockets in %s processes" % (n, procs)}
path = {"conn": "BPF (default)", "procscan": "PID/fd (+ netlink)"}
print("%d of %d turns kept (set aside for another background: %s), %s passes of each case a turn"
      % (len(kept), turns, dropped, runs))
print()
print("| held by nobody | owner scan | median CPU ms | each turn's median | median wall ms | fds | sockets |")
print("|---|---|---:|---|---:|---:|---:|")
cpu = {}
for kind in ("none", "null", "unix"):
    for w in ("conn", "procscan"):
        rs = [rows[(t, kind, w)] for t in kept]
        c = [float(r["cpu_ms"]) for r in rs]
        cpu[(kind, w)] = median(c)
        print("| %s | %s | %.1f | %s | %.1f | %s | %s |" % (what[kind], path[w], median(c),
              " ".join("%.1f" % x for x in c), median(float(r["wall_ms"]) for r in rs), rs[0]["fds"],
              rs[0]["sockets"]))
print()
for w in ("conn", "procscan"):
    u, z = cpu[("unix", w)] - cpu[("none", w)], cpu[("null", w)] - cpu[("none", w)]
    print("- %s: the unix sockets add %.1f ms of CPU to a pass, the /dev/null fds %.1f ms"
          % (path[w], u, z))
EOF
}

# --- live events ----------------------------------------------------------------
# The tracer under a loopback connect/accept/close storm (build/events, whose
# comment says how): EV_ROUNDS rounds of EV_SECONDS s windows without it, with
# a blocking reader and with one reading every 2 ms; its close events'
# latency; loss at 20,000 conn/s.
events_cases() {
    local run=("$EVENTS" --seconds "$EV_SECONDS" --rounds "$EV_ROUNDS")
    if [ "$PERF" = 1 ] && command -v perf >/dev/null; then
        run=(perf record -q -a -g -F 1000 -k CLOCK_MONOTONIC -o "$TMP/events.perf" -- "${run[@]}")
    fi
    "${run[@]}" > "$TMP/events.raw" || {
        echo "bench.sh: build/events failed: $(tail -n1 "$TMP/events.raw")" >&2; return 1; }
    cp "$TMP/events.raw" "$B/bench-events.raw"
    python3 - "$TMP/events.raw" <<'EOF'
import os, sys
rows, hooks, windows, skip = {}, [], [], None
for l in open(sys.argv[1]):
    l = l.rstrip("\n")
    if l.startswith("hook "):
        hooks.append(l[5:].replace("BPF tracer ", "", 1))
    elif l.startswith("skip: "):
        skip = l[6:]
    elif l.startswith(("row ", "window ")):
        kv = dict(x.split("=", 1) for x in l.split()[1:] if "=" in x)
        if l.startswith("row "):
            rows[kv["name"]] = kv
        else:
            windows.append(kv)
if skip:
    print("the tracer does not run here, nothing measured: %s" % skip)
    sys.exit(0)
f = lambda v, d=0: "{:,.{}f}".format(float(v), d)
c = rows["events-cost"]
lat = {"on": rows["events-latency-storm"], "batch": rows.get("events-latency-batch")}
kinds = ["on"] + (["batch"] if lat["batch"] else [])
head = {"on": "on: a blocking events call in a loop", "batch": "on: a call every %s ms" % c["batch_ms"]}
print("Hooks (procspy_walker_diagnose):")
for h in hooks:
    print("- " + h)
print()
print("Flat-out storm (%s client processes, 1 server), tracer off and on by turns: %s rounds of %s s windows, medians."
      % (c["clients"], c["rounds"], c["seconds"]))
print()
print("| measure | off | " + " | ".join(head[k] for k in kinds) + " | target |")
print("|---|---:|" + "---:|" * len(kinds) + "---|")
def line(what, off, fn, target=""):
    print("| %s | %s | %s | %s |" % (what, off, " | ".join(fn(k) for k in kinds), target))
line("connections per second", f(c["off_rate"]), lambda k: f(c[k + "_rate"]))
line("vs off: ratio of medians (median of the per-round ratios)", "1", lambda k: "**%.3fx** (%.3fx)"
     % (float(c[k + "_ratio"]), float(c[k + "_pair_ratio"])), ">= 0.97x")
line("CPU us per connection (storm processes + reader thread)", f(c["off_cpu_us"], 1), lambda k: f(c[k + "_cpu_us"], 1))
line("vs off: ratio of medians (median of the per-round ratios)", "1", lambda k: "**%.3fx** (%.3fx)"
     % (float(c[k + "_cpu_ratio"]), float(c[k + "_cpu_pair_ratio"])))
line("CPU used, cores (storm processes + reader thread; %d on this machine)" % os.cpu_count(), c["off_cores"],
     lambda k: c[k + "_cores"])
line("IRQ work interrupts per connection (/proc/interrupts IWI: ring buffer wakeups)", c["off_irq_work_per_conn"],
     lambda k: c[k + "_irq_work_per_conn"])
line("events read per second (all of the host's TCP); reader thread CPU", "-", lambda k: "%s; %s%% of a core"
     % (f(c[k + "_events_per_s"]), c[k + "_reader_cpu_pct"]))
line("client close -> callback (event time_ns): median / p99 / max ms", "-", lambda k: "**%s** / %s / %s"
     % (f(lat[k]["kernel_median_ms"], 2), f(lat[k]["kernel_p99_ms"], 2), f(lat[k]["kernel_max_ms"], 2)),
     "median < 10 ms")
line("client close() returned -> callback: median / p99 ms (matched)", "-", lambda k: "%s / %s (%s of %s)"
     % (f(lat[k]["close_median_ms"], 2), f(lat[k]["close_p99_ms"], 2), f(lat[k]["matched"]), f(lat[k]["events"])))
line("other processes' programs on inet_sock_set_state (most in a window)", c["foreign_tracers_off"],
     lambda k: c["foreign_tracers_" + k])
print()
print("Paced storm under a fresh tracer (default 4 MiB ring, a blocking reader), drained after:")
print()
print("| target conn/s | reached | connections | events delivered | PROCSPY_EVENT_LOST (events) | stats_ext.events_lost "
      "| client closes without their event | close -> callback median / p99 ms | close() returned -> callback median / p99 ms |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name in ("events-loss", "events-light"):
    r, l = rows[name], rows[name + "-latency"]
    print("| %s | %s | %s | %s | **%s (%s)** | **%s** | **%s** | %s / %s | %s / %s |" % (
        f(r["target_rate"]), f(r["rate"]), f(r["connections"]), f(r["events"]), r["lost_events"], r["lost_in_events"],
        r["ext_lost"], r["closes_without_event"], f(l["kernel_median_ms"], 3), f(l["kernel_p99_ms"], 2),
        f(l["close_median_ms"], 3), f(l["close_p99_ms"], 2)))
print()
print("- per round, " + " -> ".join(["off"] + kinds) + ", conn/s (CPU us per connection): " + "; ".join(
    " -> ".join("%s (%s)" % (f(w["rate"]), f(w["cpu_us_per_conn"], 1)) for w in windows[i:i + 1 + len(kinds)])
    for i in range(0, len(windows), 1 + len(kinds))))
lo = rows["events-loss"]
print("- client closes whose event named no process / another process: %s / %s (flat out), %s / %s (paced; "
      "another = the socket's last reference was that process's, such as a copy a libprocspy pass took with "
      "pidfd_getfd; build/bench-events.raw's odd lines name them); connect errors %s"
      % (c["closes_unowned"], c["closes_other_pid"], lo["closes_unowned"], lo["closes_other_pid"], c["connect_errors"]))
EOF
}

# With --perf: the events' cost run under perf record -a (CLOCK_MONOTONIC, so
# each window's samples are told by its t0..t1): per connection, the storm's
# CPU, the part in this tracer's program (its tag from build/events) and in
# its ring buffer's wakeups, the part in other processes' programs on the
# same hook, and the reader's.
events_profile() {
    [ -s "$TMP/events.perf" ] || return 0
    echo
    echo "perf record -a -g -F 1000 of the cost run, samples by window (us per connection, from sample periods):"
    echo
    perf script -i "$TMP/events.perf" -F comm,tid,time,period,ip,sym 2>/dev/null | python3 -c '
import re, sys
wins, tag = [], "-"
for l in open(sys.argv[1]):
    if l.startswith("info ") and "prog_tag=" in l:
        tag = l.split("prog_tag=")[1].split()[0]
    if l.startswith("window "):
        kv = dict(x.split("=", 1) for x in l.split()[1:] if "=" in x)
        wins.append((kv["phase"], float(kv["t0"]), float(kv["t1"]), float(kv["rate"]) * float(kv["seconds"])))
keys = ("storm", "ours", "wakeup", "others", "reader")
tot = {}
def flush(comm, t, period, chain):
    for phase, a, b, n in wins:
        if a <= t <= b:
            c = tot.setdefault(phase, dict.fromkeys(keys + ("conns",), 0.0))
            storm = comm.startswith("storm-")
            c["storm"] += period * storm
            c["reader"] += period * (comm == "events")
            if storm and any("bpf_prog_" + tag in f for f in chain):
                c["ours"] += period
                c["wakeup"] += period * any("irq_work_queue" in f for f in chain)
            elif storm and any("_procspy_state" in f or "bpf_trace_run" in f for f in chain):
                c["others"] += period
head = re.compile(r"^(.*?)\s+(\d+)\s+([\d.]+):\s+(\d+)\s*$")
cur, chain = None, []
for line in sys.stdin:
    m = head.match(line)
    if m and not line.startswith("\t"):
        if cur: flush(*cur, chain)
        cur, chain = (m.group(1), float(m.group(3)), int(m.group(4))), []
    elif line.strip():
        chain.append(line)
if cur: flush(*cur, chain)
conns = {}
for phase, a, b, n in wins:
    conns[phase] = conns.get(phase, 0) + n
print("| window | storm processes | in this tracer (bpf_prog_%s) | of it, ring buffer wakeups (irq_work_queue) | in other programs on the hook | reader thread |" % tag)
print("|---|---:|---:|---:|---:|---:|")
for phase in ("off", "on", "batch"):
    if phase in tot:
        c, n = tot[phase], conns[phase] or 1
        print("| %s | %s |" % (phase, " | ".join("%.1f" % (c[k] / n / 1e3) for k in keys)))
' "$TMP/events.raw"
}

# --- profile ------------------------------------------------------------------
profile() { # profile WHAT (conn|text|walk)
    command -v perf >/dev/null || { echo "(perf missing: no profile)"; return 0; }
    perf record -q -g -o "$TMP/perf.data" "$BENCH" -n 20 --only "$1" >/dev/null 2>&1 || {
        echo "(perf record failed)"; return 0; }
    echo "perf record -g build/bench -n 20 --only $1; perf report --no-children (flat, >= 1.5%):"
    perf report -i "$TMP/perf.data" --stdio --no-children -g none --percent-limit 1.5 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -n 25
}

# --- printing ---------------------------------------------------------------
print_tables() {
    python3 - "$ROWS" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
presets = []
for r in rows:
    if r[0] not in presets:
        presets.append(r[0])
for p in presets:
    rs = [r for r in rows if r[0] == p]
    ref = next((r for r in rs if r[1].startswith("ss -tanp (root")), None)
    loop = next((r for r in rs if r[1].startswith("ss -tanp + ip netns")), None)
    print()
    print("### %s" % p)
    print()
    print("| tool | runs | median wall ms | median CPU ms | wall vs ss -tanp | CPU vs ss -tanp "
          "| ss loop / this, wall | ss loop / this, CPU | records | note |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rs:
        _, tool, runs, wall, cpu, rec, note = (r + [""] * 7)[:7]
        def ratio(i):
            try:
                return "%.2fx" % (float(r[i]) / float(ref[i]))
            except (TypeError, ValueError, ZeroDivisionError):
                return "-"
        def cheaper(i):
            try:
                return "%.1fx" % (float(loop[i]) / float(r[i])) if r[1].startswith("libprocspy") else ""
            except (TypeError, ValueError, ZeroDivisionError):
                return "-"
        print("| %s | %s | %.1f | %.1f | %s | %s | %s | %s | %s | %s |" % (tool, runs, float(wall or 0),
              float(cpu or 0), ratio(3), ratio(4), cheaper(3), cheaper(4), rec, note))
EOF
}

print_changes() {
    [ -s "$TMP/changes" ] || return 0
    echo
    echo "### changes on an unchanged fixture vs connections (same run: a call of each by turns, $RUNS pairs)"
    echo
    echo "| fixture | connections | connections CPU ms | changes CPU ms | ratio of medians | median of pair ratios |"
    echo "|---|---:|---:|---:|---:|---:|"
    awk -F'\t' '{ printf "| %s | %s | %.1f | %.1f | %.3fx | %.3fx |\n", $1, $2, $3, $4, $5, $6 }' "$TMP/changes"
}

print_rss() {
    [ -s "$TMP/rss" ] || return 0
    echo
    echo "### peak RSS (VmHWM of build/bench doing one call, changes two; before the first -> after)"
    echo
    echo "| fixture | call | before KiB | peak KiB | peak MiB |"
    echo "|---|---|---:|---:|---:|"
    awk -F'\t' '{ printf "| %s | %s | %s | %s | %.1f |\n", $1, $2, $3, $4, $4/1024 }' "$TMP/rss"
}

# --- main -----------------------------------------------------------------------
echo "# bench $(date -u +%FT%TZ): $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"\
     "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)," \
     "libprocspy $("$CLI" -V 2>/dev/null | tail -n1), runs $RUNS (ss loop $LOOP_RUNS)," \
     "tcp_child_ehash_entries $ORIG_EHASH, tcp_ehash_entries $(sysctl -n net.ipv4.tcp_ehash_entries 2>/dev/null)," \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# host before: $(ip netns list | wc -l) named network namespaces; root namespace $(grep '^TCP:' /proc/net/sockstat)"

if [ "$FD_ONLY" = 1 ]; then
    fdcases
    echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    exit 0
fi

if [ "$EV_ONLY" = 1 ]; then
    events_cases || exit 1
    events_profile
    echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    exit 0
fi

up() { # up PRESET [ARGS]
    echo
    echo "== fixture up $*"
    $FX up --preset "$@" || { echo "bench.sh: fixture up $* failed" >&2; exit 1; }
}

# The node fixture: its table, RSS, the probe with it up.
node_run() {
    $FX down
    up node
    table node; rss node
    hash_row "${ORIG_EHASH:-0} ($(hash_name "$(ip netns exec "$(fixture_names | sed -n 1p)" sysctl -n net.ipv4.tcp_ehash_entries)"))"
    echo "== $($FX status 2>/dev/null | tail -n1)"
    ehash_probe "node fixture up"
    $FX down
}

if [ "$NODE_ONLY" = 1 ]; then
    sysctl -qw net.ipv4.tcp_child_ehash_entries="${ORIG_EHASH:-0}"
    ehash_probe "no fixture"
    node_run
    node_child 1024
    echo
    echo "######## results"
    print_tables; print_changes; print_rss; print_nodehash; print_probe
    echo
    echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    exit 0
fi

if [ "$FULL" = 0 ]; then
    $FX status >/dev/null 2>&1 || { echo "bench.sh: no fixture is up (benches/fixture up, or --full)" >&2; exit 1; }
    if [ "$NS_ONLY" = 1 ]; then
        nscases
        echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
        exit 0
    fi
    P=$($FX status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["preset"])')
    table "$P"; rss "$P"; syscalls; paced
    [ "$PERF" = 1 ] && { profile conn; profile netlink; }
    print_tables; print_changes; print_rss
    echo; cat "$TMP/paced"
    echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    exit 0
fi

sysctl -qw net.ipv4.tcp_child_ehash_entries="${ORIG_EHASH:-0}"
ehash_probe "no fixture"
up default
table default; rss default; syscalls > "$TMP/syscalls"; cat "$TMP/syscalls"; paced; nscases > /dev/null
{ profile conn; profile netlink; } > "$TMP/perf" 2>&1; cat "$TMP/perf"
for p in dense wide big; do
    $FX down
    up $p
    table $p; rss $p
done
node_run

# The ehash: namespaces made while tcp_child_ehash_entries = E get their own
# hash of E buckets; 0 = they share the host-wide one.
for e in 1024 0; do
    sysctl -qw net.ipv4.tcp_child_ehash_entries=$e
    up default
    sysctl -qw net.ipv4.tcp_child_ehash_entries="${ORIG_EHASH:-0}"
    line=$("$BENCH" -n "$RUNS" --only netlink,text)
    mapfile -t NSS < <(fixture_names)
    loop=$("$BENCH" --exec -n "$LOOP_RUNS" --headers $((${#NSS[@]} + 1)) -- \
        sh -c 'ss -tanp; for ns; do ip netns exec "$ns" ss -tanp; done' sh "${NSS[@]}")
    hash=$(ip netns exec "${NSS[0]}" sysctl -n net.ipv4.tcp_ehash_entries)
    printf '%s\t%s\t%s\t%s\n' "$e (ns hash $hash)" "$(grep '^row name=netlink ' <<<"$line")" \
        "$(grep '^row name=text ' <<<"$line")" "$loop" >> "$TMP/ehash"
    $FX down
done
node_child 1024
fdcases > "$TMP/fdresults"
{ events_cases && events_profile; } > "$TMP/events" || exit 1

echo
echo "######## results"
print_tables
print_changes
print_rss
echo
echo "### syscalls (default fixture)"
echo
cat "$TMP/syscalls"
echo
echo "### profile (default fixture)"
echo
cat "$TMP/perf"
echo
echo "### pacing (default fixture)"
echo
cat "$TMP/paced"
echo
echo "### queries and the namespace search (default fixture)"
echo
cat "$TMP/nscases"
echo
echo "### fds of an unprivileged user (no fixture)"
echo
cat "$TMP/fdresults"
echo
echo "### live events: the tracer under a loopback storm (no fixture)"
echo
cat "$TMP/events"
echo
echo "### net.ipv4.tcp_child_ehash_entries (default fixture)"
echo
echo "| ehash entries | every ns by netlink: wall / CPU ms | every ns as text: wall / CPU ms | ss loop wall / CPU ms (runs) |"
echo "|---:|---:|---:|---:|"
while IFS=$'\t' read -r e c t l; do
    printf '| %s | %.1f / %.1f | %.1f / %.1f | %.1f / %.1f (%s) |\n' "$e" \
        "$(kv wall_ms "$c")" "$(kv cpu_ms "$c")" "$(kv wall_ms "$t")" "$(kv cpu_ms "$t")" \
        "$(kv wall_ms "$l")" "$(kv cpu_ms "$l")" "$(kv runs "$l")"
done < "$TMP/ehash"
print_nodehash
print_probe
echo
echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
