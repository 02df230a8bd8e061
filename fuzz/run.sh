#!/usr/bin/env bash
# Usage: fuzz/run.sh SECONDS — fuzzes every target for SECONDS each (or, with
# FUZZ_RUNS=N in the environment, for N executions each), prints executions
# and exec/s per target, exits non-zero if any target crashed.
set -uo pipefail

secs=${1:-}
[[ $secs =~ ^[0-9]+$ && $secs -gt 0 ]] || { echo "usage: $0 SECONDS" >&2; exit 2; }
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1  # the crate root, whatever the cwd

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "error: the nightly toolchain is missing; install it with:" >&2
    echo "    rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz..." >&2
    cargo install --locked cargo-fuzz || exit 1
fi

logs=fuzz/target/run-logs  # full libFuzzer output, kept for inspection
mkdir -p "$logs"
failed=()
limit=-max_total_time="$secs"
[[ -n ${FUZZ_RUNS:-} ]] && limit=-runs="$FUZZ_RUNS"
for t in parse_tcp parse_stat parse_sockstat parse_btf parse_mountinfo parse_diag; do
    mkdir -p "fuzz/corpus/$t"
    # The first corpus dir receives new inputs; the seeds are only read.
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        "$limit" -rss_limit_mb=2048 -print_final_stats=1 \
        >"$logs/$t" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t" | tail -n1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t" | tail -n1)
    echo "$t: ${execs:-?} executions, ${rate:-?} exec/s"
    if [[ $rc -ne 0 ]]; then
        failed+=("$t")
        # The panic message (up to 4 lines for assert_eq!'s left/right), then the input.
        grep -m1 -A4 'panicked at' "$logs/$t" | sed 's/^/    /'
        art=$(sed -n 's/.*Test unit written to //p' "$logs/$t" | tail -n1)
        if [[ -f $art ]]; then
            echo "    input: $art ($(wc -c <"$art") bytes), hex:"
            od -An -v -tx1 "$art" | head -n 16 | sed 's/^/   /'
            echo "    reproduce: cargo +nightly fuzz run $t $art"
        else
            echo "    no crash input found (exit $rc); see $logs/$t"
        fi
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
