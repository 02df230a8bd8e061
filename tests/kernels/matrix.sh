#!/usr/bin/env bash
# The kernel matrix (`make test-kernels`): runs the Rust integration tests
# and the C harness (tests/kernels/guest.sh) on each of
# Debian's kernels, booted in QEMU under software emulation, and on the
# host's own kernel directly (there is no image of it to boot), then
# writes the table into docs/kernels.md (and tests/kernels/matrix.tsv, which
# keeps the rows of kernels not run this time).
#
# Usage: tests/kernels/matrix.sh [KEY...]   (default: $KERNELS, else all)
#   KEY: 5.10 6.1 6.12 6.18 sid host
#        tests/kernels/matrix.sh --table     (docs/kernels.md's table again,
#                                             from matrix.tsv, running nothing)
#        tests/kernels/matrix.sh --reread KEY...  (KEY's row again from the
#                                             logs of its last run)
# Env: KERNEL_TIMEOUT (s, one guest from boot to power-off, default 900),
#      SUITE_TIMEOUT (s, one test binary, default 600), GUEST_MEM (3G),
#      KERNELS_REFRESH=1 (look for newer kernel builds), PROCSPY_KERNELS_CACHE,
#      SUITES="walk harness" (only those suites: to look into a failure).
# Run from the project's root, as root, after `make lib build/procspy
# build/harness-so build/openat2` (the Makefile's test-kernels does that).
# Exits non-zero if any suite failed or any guest gave no result.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/kernels/common.sh
. "$here/common.sh"
cd "$here/../.."
project=$PWD

KERNEL_TIMEOUT=${KERNEL_TIMEOUT:-900}
export SUITE_TIMEOUT=${SUITE_TIMEOUT:-600}
GUEST_MEM=${GUEST_MEM:-3G}
TSV=tests/kernels/matrix.tsv
DOC=docs/kernels.md

log() { echo "matrix: $*" >&2; }

# ---- the test binaries, built once on the host: what `cargo test --release
# --workspace` would run, one "NAME PATH" line each (the core's unit tests
# as "unit", the C ABI crate's, in ffi/, as "unit-ffi").
build_suite_list() {
    log "building the test binaries (cargo test --release --workspace --no-run)"
    cargo test --release --workspace --no-run --quiet --message-format=json | python3 -c '
import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["profile"]["test"] and m.get("executable"):
        kind = m["target"]["kind"]
        here = os.path.relpath(os.path.dirname(m["manifest_path"]))
        unit = "unit" if here == "." else "unit-" + here.replace("/", "-")
        print(unit if "test" not in kind else m["target"]["name"], m["executable"])
' | sort > "$suite_list"
    [ -s "$suite_list" ] || { log "no test binaries"; exit 1; }
}

# ---- one row: boot a kernel (or use the host's) and run guest.sh there.

# A guest: QEMU in software emulation (the KVM device of these machines
# cannot boot one), 2 CPUs, no network device (loopback only), the serial
# console into console.log. The host's / is shared read-only (the guest
# puts a tmpfs overlay over it), the run's directory read-write.
# follow PID RUN KEY: RUN's console progress lines, labelled KEY, as they
# come, until PID ends; PID's exit status.
follow() {
    local rc=0 tpid
    tail -n +1 -F --pid="$1" "$2/console.log" 2>/dev/null \
        | grep --line-buffered '^procspy-kernels: ' | sed -u "s/^procspy-kernels:/  $3:/" >&2 &
    tpid=$!
    wait "$1" || rc=$?
    wait "$tpid" 2>/dev/null || true
    return "$rc"
}

boot() {
    local key=$1 run=$2 kdir=$CACHE/$1 rel launched rc=0
    tests/kernels/fetch.sh "$key" busybox
    tests/kernels/initramfs.sh "$key"
    rel=$(cat "$kdir/release")
    # Under emulation a walk is too slow to catch a churn child that holds
    # its sockets for the usual few milliseconds: they hold them longer, and
    # the 10 ms stop bound of ffi/tests/signal.rs is scaled.
    cat > "$run/run.env" <<EOF
PROJECT='$project'
RESULTS='$run'
MODULES='$kdir/root/lib/modules/$rel'
GUEST_PATH='$PATH'
CI='${CI:-}'
SUITES='${SUITES:-}'
SUITE_TIMEOUT='$SUITE_TIMEOUT'
CMD='PROCSPY_CHURN_HOLD_MS=\${PROCSPY_CHURN_HOLD_MS:-200} PROCSPY_TEST_TIME_SCALE=\${PROCSPY_TEST_TIME_SCALE:-5} tests/kernels/guest.sh "$run"'
EOF
    log "$key: booting $rel (timeout ${KERNEL_TIMEOUT}s)"
    launched=$(date +%s)
    echo "$launched" > "$run/launched"
    # timeout ends the one qemu it started, and only it.
    timeout --kill-after=10 "$KERNEL_TIMEOUT" qemu-system-x86_64 \
        -accel tcg -cpu max -smp 2 -m "$GUEST_MEM" \
        -nographic -monitor none -serial "file:$run/console.log" -no-reboot -nic none \
        -kernel "$kdir/vmlinuz" -initrd "$kdir/initrd.img" \
        -append "console=ttyS0 panic=-1 quiet" \
        -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
        -virtfs "local,path=$run,mount_tag=results,security_model=none" \
        < /dev/null > "$run/qemu.log" 2>&1 &
    # The guest's progress lines, as they come.
    follow $! "$run" "$key" || rc=$?
    [ "$rc" = 124 ] || [ "$rc" = 137 ] && log "$key: no power-off within ${KERNEL_TIMEOUT}s: ended"
    [ "$rc" = 0 ] || [ "$rc" = 124 ] || [ "$rc" = 137 ] || log "$key: qemu exited $rc: $(tail -n 3 "$run/qemu.log")"
    return 0
}

on_host() {
    local run=$1 rc=0
    log "host: $(uname -r): no image of it to boot, so the suite runs on the host itself"
    date +%s > "$run/launched"
    date +%s > "$run/booted"
    tests/kernels/guest.sh "$run" < /dev/null > "$run/console.log" 2>&1 &
    follow $! "$run" host || rc=$?
    echo "$rc" > "$run/exit-status"
    return 0
}

# ---- reading a run's directory into cells

cell() { tr '\n|' '  ' | sed 's/  */ /g; s/^ //; s/ $//' | cut -c1-"${2:-160}"; }
probe_cell() {
    local run=$1 name=$2 yes=$3
    [ -f "$run/probe-$name.rc" ] || { echo "-"; return; }
    if [ "$(cat "$run/probe-$name.rc")" = 0 ]; then
        echo "$yes"
    else
        # The command's message is its last line on stderr.
        echo "no: $(tail -n 1 "$run/probe-$name.out" | sed 's/^procspy: //; s/^procspy_walker_[a-z_]*: //' | cell - 200)"
    fi
}
mtime() { [ -e "$1" ] && cat "$1" || echo ""; }
duration() {
    local a=$1 b=$2 s
    { [ -n "$a" ] && [ -n "$b" ]; } || { echo "-"; return; }
    s=$((b - a))
    if [ "$s" -ge 60 ]; then printf '%dm%02ds\n' $((s / 60)) $((s % 60)); else printf '%ds\n' "$s"; fi
}

# Adds up what the suites said; names each failed test ("BINARY: TEST").
tests_cell() {
    local run=$1 passed=0 failed=0 problems="" name p f rc
    while read -r name _; do
        [ -f "$run/$name.rc" ] || { problems+="$name: not run; "; continue; }
        rc=$(cat "$run/$name.rc")
        if [ "$name" = harness ]; then
            read -r p f < <(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p' "$run/$name.log" | tail -n 1) || true
        else
            # The binary's own line is its last (a test may print a child's).
            read -r p f < <(sed -n 's/^test result: .* \([0-9]*\) passed; \([0-9]*\) failed;.*/\1 \2/p' "$run/$name.log" \
                | tail -n 1) || true
        fi
        passed=$((passed + ${p:-0})) failed=$((failed + ${f:-0}))
        if [ "$rc" = 124 ]; then problems+="$name: timed out; "
        elif [ "$rc" != 0 ] && [ "${f:-0}" = 0 ]; then problems+="$name: exit $rc; "
        fi
        p="" f=""
    done < <(cat "$run/suite.list"; echo 'harness -')
    echo "$passed passed, $failed failed${problems:+; ${problems%; }}"
}
failures_of() {
    local run=$1 name
    while read -r name _; do
        [ -f "$run/$name.log" ] || continue
        case $name in
            harness) sed -n 's/^FAIL \([^ ]*\).*/\1/p' "$run/$name.log" ;;
            # cargo's harness closes with a "failures:" block of indented
            # names, then its "test result:" line (a failure's output before
            # it may hold a child test binary's own).
            *)       awk '/^failures:$/ { n = 0; next } /^    [^ ]/ { names[n++] = $1; next }
                          /^test result: / { last = ""; for (i = 0; i < n; i++) last = last names[i] "\n"; n = 0 }
                          END { printf "%s", last }' "$run/$name.log" ;;
        esac | sed "s|^|$name: |"
    done < <(cat "$run/suite.list"; echo 'harness -')
}

row() {
    local key=$1 run=$2 build tests
    if [ "$key" = host ]; then
        build="$(uname -r) (this machine; run on the host, no image to boot)"
    else
        build="$(cut -d' ' -f1 "$CACHE/$key/package") $(cut -d' ' -f2 "$CACHE/$key/package")"
    fi
    if [ -f "$run/exit-status" ] && [ -f "$run/done" ]; then
        tests=$(tests_cell "$run")
    elif [ -f "$run/init-failed" ]; then
        tests="no result: $(cell < "$run/init-failed")"
    else
        tests="no result: the guest did not finish (see the run's console.log)"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$key" "$build" \
        "$(probe_cell "$run" bpf loads)" "$(probe_cell "$run" netlink yes)" \
        "$(probe_cell "$run" text yes)" "$(probe_cell "$run" openat2 yes)" "$tests" \
        "$(duration "$(mtime "$run/launched")" "$(mtime "$run/started")")" \
        "$(duration "$(mtime "$run/started")" "$(mtime "$run/done")")" \
        "$(date -u -d "@$(cat "$run/launched")" +%Y-%m-%d) $(cat "$run/commit")" \
        "$(failures_of "$run" | tr '|\t' '  ' | paste -sd';' | sed 's/;/; /g' | cut -c1-2000)"
}

# ---- the table, in docs/kernels.md between its markers

render() {
    echo '| kernel | build | BPF owner scan | netlink | text tables | openat2 | tests | boot | suite | run |'
    echo '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |'
    local key
    for key in $ALL_KERNELS; do
        awk -F'\t' -v k="$key" '$1 == k {
            printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }' "$TSV"
    done
    local failures
    failures=$(for key in $ALL_KERNELS; do
        awk -F'\t' -v k="$key" '$1 == k && $11 != "" { printf "- %s: %s\n", $1, $11 }' "$TSV"
    done)
    if [ -n "$failures" ]; then
        echo
        echo 'Failed tests, by kernel:'
        echo
        echo "$failures"
    fi
}
update_doc() {
    local table
    table=$(mktemp)
    render > "$table"
    awk -v table="$table" '
        /^<!-- kernels:begin/ { print; while ((getline l < table) > 0) print l; skip = 1; next }
        /^<!-- kernels:end/ { skip = 0 }
        !skip { print }' "$DOC" > "$DOC.new"
    mv "$DOC.new" "$DOC"
    rm -f "$table"
}

# ---- the runs, one guest at a time (each takes both cores)

# Puts KEY's row, read from its run's directory, into the TSV (but for a
# partial run).
record() {
    local key=$1 run=$CACHE/runs/$1
    [ -z "${SUITES:-}" ] || return 0
    { [ -f "$TSV" ] && awk -F'\t' -v k="$key" '$1 != k' "$TSV"; row "$key" "$run"; } > "$TSV.new"
    mv "$TSV.new" "$TSV"
}
case ${1:-} in
    --table)
        update_doc
        exit 0 ;;
    --reread)
        # The rows of the last runs again, from their logs (after a change
        # to how they are read).
        shift
        for key in "$@"; do
            if [ -d "$CACHE/runs/$key" ]; then record "$key"; else log "$key: no run to read"; fi
        done
        update_doc
        exit 0 ;;
esac
read -r -a keys <<< "${*:-${KERNELS:-$ALL_KERNELS}}"
for key in "${keys[@]}"; do
    case " $ALL_KERNELS " in
        *" $key "*) ;;
        *) echo "matrix: unknown kernel '$key' (one of: $ALL_KERNELS)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "matrix: run as root (the suite makes namespaces, loads BPF)" >&2; exit 2; }
suite_list=$(mktemp)
trap 'rm -f "$suite_list"' EXIT
build_suite_list
# The commit measured; "+changes" if the tree differs from it (but for
# what this script writes).
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- . ":!$DOC" ":!$TSV" 2>/dev/null || commit="$commit+changes"

ok=0 bad=0
for key in "${keys[@]}"; do
    run=$CACHE/runs/$key
    rm -rf "$run" && mkdir -p "$run"
    cp "$suite_list" "$run/suite.list"
    echo "$commit" > "$run/commit"
    if [ "$key" = host ]; then
        on_host "$run"
    else
        boot "$key" "$run"
        # A kernel that died before it reached the init ran nothing of the
        # project's (under emulation, sid's boot now and then hits an Oops
        # in text it is patching): booted once more, and said so.
        if [ ! -f "$run/booted" ]; then
            why=$(grep -m1 -o 'Oops: [^[]*\|Kernel panic[^[]*' "$run/console.log" | sed 's/ *$//' || true)
            log "$key: the kernel died before the init (${why:-no message}): booting it once more"
            mv "$run/console.log" "$run/console-first-boot.log"
            boot "$key" "$run"
        fi
    fi
    record "$key"
    line=$(row "$key" "$run")
    if [ "$(cat "$run/exit-status" 2>/dev/null)" = 0 ]; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
    log "$key: $(echo "$line" | cut -f7) (boot $(echo "$line" | cut -f8), suite $(echo "$line" | cut -f9)); logs in $run"
done
if [ -n "${SUITES:-}" ]; then
    log "SUITES=$SUITES: a partial run, the table is left as it was"
else
    update_doc
    render
fi
# One line for CI's reader: kernels whose every suite passed, and the others.
echo "kernels: $ok passed, $bad failed"
[ "$bad" = 0 ]
