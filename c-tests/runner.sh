# Sourced by clients.sh and packages.sh: their test runner. Each test runs
# in $tmp/work; its output is kept in $tmp/log and shown only when it fails.
passed=0
failed=0

# run NAME CMD...: one test.
run() {
    local name=$1
    shift
    if (cd "$tmp/work" && "$@") >"$tmp/log" 2>&1; then
        passed=$((passed + 1))
        echo "ok   $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name"
        sed 's/^/     | /' "$tmp/log" | tail -n 40
    fi
}
