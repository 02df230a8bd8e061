#!/usr/bin/env bash
# Client tests: libprocspy as its users get it, each the way they use it.
#
#   1. `make install` into a DESTDIR (twice, for two prefixes): the .so with
#      its SONAME and links, the .a, the header, a procspy.pc that finds its
#      own prefix, the command (no rpath) and its man page; `make uninstall`
#      removes every file again.
#   2. The command and its man page, installed: the command runs through the
#      loader (LD_LIBRARY_PATH) and lists its own listener; the page renders
#      with `groff -ww` and `man -l` without a warning, `man` finds it in
#      the installed MANPATH, and it describes every option --help lists.
#   3. C from outside the tree, with nothing but the installed files and
#      pkg-config: shared, libprocspy.a static with libc dynamic, fully
#      static. Each opens a loopback listener and must find it, own pid.
#   4. Go: the module (bindings/go, copied out of the tree) through
#      `#cgo pkg-config: procspy` with PKG_CONFIG_PATH alone: gofmt, go vet,
#      go test -race; and a program of another module that requires it.
#   5. Python: `pip install` of bindings/python into a fresh venv, then
#      `import procspy` finds the installed library by its SONAME, and
#      PROCSPY_LIB overrides it; its pytest tests, `python -m procspy`
#      handing over to the installed command included; ruff check.
#   6. Rust: a crate outside the tree with `procspy = { path = ... }`.
#   7. C++: examples/cpp/walk.cpp through the installed procspy.hpp.
#
# Usage: c-tests/clients.sh   (from anywhere; needs cc, g++, pkg-config, go,
# python3 with venv, groff, man, cargo; PyPI for pytest, ruff and setuptools)
# Env: PROCSPY_TEST_VENV (default build/venv: the venv with pytest and ruff).
# Ends with "N passed, N failed"; exits non-zero if anything failed.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/procspy-clients.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=c-tests/runner.sh
. "$root/c-tests/runner.sh"

need() {
    command -v "$1" >/dev/null 2>&1 || { echo "$1 not found${2:+ (install $2)}"; return 1; }
}

mkdir -p "$tmp/work"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)
major=${version%%.*}

# ---- 1. make install, make uninstall ----------------------------------------

dest=$tmp/dest           # DESTDIR for PREFIX=/usr/local
opt=$tmp/opt-dest        # DESTDIR for PREFIX=/opt/procspy
prefix=$dest/usr/local
lib=$prefix/lib

run "make install DESTDIR=… PREFIX=/usr/local" make -C "$root" --no-print-directory install DESTDIR="$dest" PREFIX=/usr/local
run "make install DESTDIR=… PREFIX=/opt/procspy" make -C "$root" --no-print-directory install DESTDIR="$opt" PREFIX=/opt/procspy

installed_files="lib/libprocspy.so.$version lib/libprocspy.a include/procspy.h include/procspy.hpp lib/pkgconfig/procspy.pc
    bin/procspy share/man/man1/procspy.1"
check_tree() { # DESTDIR PREFIX
    local d=$1$2 soname f
    for f in $installed_files; do
        [ -f "$d/$f" ] || { echo "missing $d/$f"; return 1; }
    done
    [ "$(readlink "$d/lib/libprocspy.so.$major")" = "libprocspy.so.$version" ] || { echo "bad link libprocspy.so.$major"; return 1; }
    [ "$(readlink "$d/lib/libprocspy.so")" = "libprocspy.so.$major" ] || { echo "bad link libprocspy.so"; return 1; }
    soname=$(readelf -d "$d/lib/libprocspy.so.$version" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
    [ "$soname" = "libprocspy.so.$major" ] || { echo "SONAME '$soname'"; return 1; }
    cmp -s "$d/include/procspy.h" "$root/include/procspy.h" || { echo "installed header differs"; return 1; }
    cmp -s "$d/share/man/man1/procspy.1" "$root/build/procspy.1" || { echo "installed man page differs"; return 1; }
    # Stripped: no debug info, no symbol table beyond the dynamic one.
    if readelf -S "$d/lib/libprocspy.so.$version" "$d/bin/procspy" | grep -E '\.debug_info|\.symtab'; then
        echo "installed library or command not stripped"; return 1; fi
    if readelf -S "$d/lib/libprocspy.a" | grep -q '\.debug_info'; then echo "libprocspy.a has debug info"; return 1; fi
    # The installed command finds the library through the loader, not a path.
    if readelf -d "$d/bin/procspy" | grep -E 'R(UN)?PATH'; then echo "bin/procspy has an rpath"; return 1; fi
    readelf -d "$d/bin/procspy" | grep -q "Shared library: \[libprocspy.so.$major\]" || { echo "bin/procspy needs no libprocspy.so.$major"; return 1; }
    # The .pc finds its prefix from its own place: wherever the tree is.
    local pc=(env -u PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_LIBDIR="$d/lib/pkgconfig" pkg-config)
    [ "$("${pc[@]}" --modversion procspy)" = "$version" ] || { echo "pc version"; return 1; }
    [ "$(realpath "$("${pc[@]}" --variable=prefix procspy)")" = "$d" ] || {
        echo "procspy.pc installed under $d says prefix=$("${pc[@]}" --variable=prefix procspy):"
        cat "$d/lib/pkgconfig/procspy.pc"; return 1; }
    [ "$(realpath "$("${pc[@]}" --variable=libdir procspy)")" = "$d/lib" ] || { echo "pc libdir"; return 1; }
    [ "$(realpath "$("${pc[@]}" --variable=includedir procspy)")" = "$d/include" ] || { echo "pc includedir"; return 1; }
    echo "tree ok: $d"
}
run "installed tree (PREFIX=/usr/local): files, links, SONAME, header, command, man page, procspy.pc" check_tree "$dest" /usr/local
run "installed tree (PREFIX=/opt/procspy): procspy.pc finds its own prefix" check_tree "$opt" /opt/procspy

uninstall() {
    make -C "$root" --no-print-directory uninstall DESTDIR="$opt" PREFIX=/opt/procspy || return 1
    local left
    left=$(find "$opt" \( -type f -o -type l \) -print)
    [ -z "$left" ] || { echo "left after make uninstall:"; echo "$left"; return 1; }
}
run "make uninstall DESTDIR=… PREFIX=/opt/procspy removes every file" uninstall

# pkg-config against the /usr/local install only (PKG_CONFIG_LIBDIR: no host .pc files).
pc() { env -u PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_LIBDIR="$lib/pkgconfig" pkg-config "$@"; }

# ---- 2. the installed command and its man page ------------------------------

cmd=$prefix/bin/procspy
page=$prefix/share/man/man1/procspy.1

command_runs() { # its own listener: a python3 process holding one, found by pid
    need python3 python3 || return 1
    python3 -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(60)' \
        > port &
    local holder=$! port out
    for _ in $(seq 50); do [ -s port ] && break; sleep 0.1; done
    port=$(cat port)
    LD_LIBRARY_PATH=$lib "$cmd" --version | grep -qx "procspy $version" || { echo "--version"; kill $holder; return 1; }
    out=$(LD_LIBRARY_PATH=$lib "$cmd" -tl -p "$holder" 2>&1)
    kill $holder
    echo "$out"
    grep -Eq "^[0-9]+ +tcp +LISTEN +127\.0\.0\.1:$port +0\.0\.0\.0:\* +root +$holder +[0-9]+ +python3$" <<<"$out" &&
        { LD_LIBRARY_PATH=$lib ldd "$cmd" | grep "libprocspy.so.$major => $lib/"; }
}
run "installed command (LD_LIBRARY_PATH): procspy -tl -p PID finds a listener" command_runs

man_renders() {
    need groff groff-base && need man man-db || return 1
    local warn
    warn=$(groff -ww -man -Tutf8 -z "$page" 2>&1) && [ -z "$warn" ] || { echo "groff -ww: $warn"; return 1; }
    warn=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null) && [ -z "$warn" ] || { echo "man --warnings -l: $warn"; return 1; }
    # man finds it by name in the installed tree, as `man procspy` would.
    MANWIDTH=80 man -M "$prefix/share/man" procspy 2>&1 | grep -qE "procspy +- +list +every" || { echo "man -M: no page"; return 1; }
    grep -Eq "^\.TH PROCSPY 1 [0-9]{4}-[0-9]{2}-[0-9]{2} \"libprocspy $version\"" "$page" ||
        { echo ".TH does not name a date and libprocspy $version"; grep '^\.TH' "$page"; return 1; }
    echo "renders without warnings"
}
run "man page: groff -ww and man -l render it without a warning; man -M finds it" man_renders

man_lists_every_option() {
    local text opts opt missing=0
    # Rendered as text, wide and unhyphenated, so that no option is broken.
    text=$(groff -man -Tascii -rLL=200n -rHY=0 -P-cbou "$page" 2>&1)
    # Every option --help lists: the -x and --long at the head of its lines.
    opts=$(LD_LIBRARY_PATH=$lib "$cmd" --help | sed -nE 's/^ +(-[a-zA-Z], )?(--[a-z][a-z-]*).*/\1 \2/p' |
        tr -d ',' | tr ' ' '\n' | grep . | sort -u)
    [ "$(wc -l <<<"$opts")" -ge 20 ] || { echo "only these options in --help: $opts"; return 1; }
    for opt in $opts; do
        grep -qE -- "(^|[^a-zA-Z-])$opt([^a-zA-Z-]|\$)" <<<"$text" || { echo "not in the man page: $opt"; missing=1; }
    done
    echo "$(wc -l <<<"$opts") options, each in the page"
    return $missing
}
run "man page: every option procspy --help lists is described" man_lists_every_option

# ---- 3. C from outside the tree ---------------------------------------------

cp "$root/c-tests/client/prog.c" "$tmp/work/prog.c"

CFLAGS_T="-std=c99 -Wall -Wextra -Werror"
shared_build() {
    # shellcheck disable=SC2046,SC2086
    cc $CFLAGS_T prog.c $(pc --cflags --libs procspy) -o prog-shared &&
    LD_LIBRARY_PATH=$lib ./prog-shared &&
    { LD_LIBRARY_PATH=$lib ldd ./prog-shared | grep "libprocspy.so.$major => $lib/" ||
      { LD_LIBRARY_PATH=$lib ldd ./prog-shared; false; }; }
}
run "C, shared: cc prog.c \$(pkg-config --cflags --libs procspy)" shared_build

static_a_build() {
    local deps
    # libprocspy.a statically, libc and the rest dynamically: the Libs.private list
    # with -lprocspy wrapped in -Bstatic/-Bdynamic.
    local libs
    libs=$(pc --static --libs procspy | sed 's/-lprocspy/-Wl,-Bstatic -lprocspy -Wl,-Bdynamic/')
    echo "cc prog.c $(pc --cflags procspy) $libs"
    # shellcheck disable=SC2046,SC2086
    cc $CFLAGS_T prog.c $(pc --cflags procspy) $libs -o prog-static-a &&
    ./prog-static-a &&
    deps=$(ldd ./prog-static-a) &&
    if grep libprocspy <<<"$deps"; then echo "still needs libprocspy.so"; false; fi
}
run "C, libprocspy.a static + libc dynamic (pkg-config --static --libs)" static_a_build

full_static_build() {
    # The README's command, verbatim.
    # shellcheck disable=SC2046
    cc -static prog.c $(pc --static --cflags --libs procspy) -o prog-static &&
    ./prog-static &&
    { ldd ./prog-static 2>&1 || true; } | grep "not a dynamic executable"
}
run "C, fully static: cc -static prog.c \$(pkg-config --static --cflags --libs procspy)" full_static_build

# ---- 4. Go: the module through pkg-config ------------------------------------

export GOPROXY=off GOFLAGS= GO111MODULE=on GOTOOLCHAIN=local
[ -n "${HOME:-}${GOCACHE:-}${XDG_CACHE_HOME:-}" ] || export GOCACHE=$tmp/gocache
cp -r "$root/bindings/go" "$tmp/work/go"
cp -r "$root/bindings/python" "$tmp/work/python"
rm -rf "$tmp/work/python/build" "$tmp/work/python/src/"*.egg-info   # a developer's pip leftovers
cp -r "$root/examples/cpp" "$tmp/work/cpp"

# What a user's shell has: PKG_CONFIG_PATH for the DESTDIR install (and the
# loader's path to run what was built), no CGO_* flags at all.
go_env=(env -u CGO_CFLAGS -u CGO_LDFLAGS -u PKG_CONFIG_LIBDIR -u PKG_CONFIG_SYSROOT_DIR
        PKG_CONFIG_PATH="$lib/pkgconfig")

go_module() {
    need go golang-go || return 1
    cd go || return 1
    local unformatted
    unformatted=$(gofmt -l .) && [ -z "$unformatted" ] || { echo "gofmt -l: $unformatted"; return 1; }
    "${go_env[@]}" go vet ./... &&
    "${go_env[@]}" LD_LIBRARY_PATH="$lib" go test -race -count=1 -timeout 120s -v ./...
}
run "Go (bindings/go, PKG_CONFIG_PATH only): gofmt; go vet; go test -race" go_module
grep -E '^(ok|FAIL|---|panic)|procspy_test.go' "$tmp/log" | sed 's/^/     > /' | head -n 40

go_user() { # another module that requires it (replace: the module is not on a proxy)
    need go golang-go || return 1
    mkdir -p agent && cd agent || return 1
    cat > go.mod <<'EOF'
module example.com/agent

go 1.18

require libprocspy/procspy v0.0.0

replace libprocspy/procspy => ../go
EOF
    cat > main.go <<'EOF'
package main

import (
	"fmt"
	"os"

	"libprocspy/procspy"
)

func main() {
	w, err := procspy.New("")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer w.Close()
	n := 0
	if _, err := w.Connections(procspy.TCP|procspy.UDP, procspy.StatesAll, func(c procspy.Connection) bool {
		n++
		return true
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("agent: libprocspy %s, %d connections, %s\n", procspy.Version(), n, procspy.StateName(procspy.UDP, procspy.Close))
}
EOF
    "${go_env[@]}" go build -o agent . && "${go_env[@]}" LD_LIBRARY_PATH="$lib" ./agent | tee out &&
        grep -q "^agent: libprocspy $version, [0-9]* connections, UNCONN$" out
}
run "Go: a module that requires libprocspy/procspy builds and runs" go_user

# ---- 5. Python: pip install into a fresh venv --------------------------------

venv=${PROCSPY_TEST_VENV:-$root/build/venv}
lint_tools() { # pytest and ruff, pinned, in a venv of their own kept in build/
    need python3 python3 || return 1
    [ -x "$venv/bin/ruff" ] && [ -x "$venv/bin/pytest" ] &&
        cmp -s "$root/bindings/python/requirements-test.txt" "$venv/requirements-test.txt" && return 0
    rm -rf "$venv" && python3 -m venv "$venv" &&
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/bindings/python/requirements-test.txt" &&
        cp "$root/bindings/python/requirements-test.txt" "$venv/"
}
run "pytest and ruff (requirements-test.txt) in $venv" lint_tools
run "ruff check bindings/python" "$venv/bin/ruff" check --no-cache "$root/bindings/python"

user=$tmp/user-venv
py_install() { # the user's way: a fresh venv, pip install the folder, import
    python3 -m venv "$user" &&
    "$user/bin/pip" install --quiet --disable-pip-version-check ./python &&
    # By its SONAME, through the loader: the installed library.
    env -u PROCSPY_LIB LD_LIBRARY_PATH="$lib" "$user/bin/python" -c '
import os, sys, procspy
print(procspy.__file__, procspy.LIBRARY_PATH, procspy.version())
assert procspy.__file__.startswith(sys.prefix), procspy.__file__
assert os.path.realpath(procspy.LIBRARY_PATH) == os.path.realpath(sys.argv[1]), procspy.LIBRARY_PATH
assert procspy.version() == sys.argv[2]
from importlib.metadata import version
assert version("procspy") == sys.argv[2], version("procspy")' "$lib/libprocspy.so.$version" "$version" &&
    # PROCSPY_LIB overrides: the build tree's library, though the loader knows the installed one.
    PROCSPY_LIB=$root/target/release/libprocspy.so LD_LIBRARY_PATH="$lib" "$user/bin/python" -c '
import os, sys, procspy
assert os.path.realpath(procspy.LIBRARY_PATH) == os.path.realpath(sys.argv[1]), procspy.LIBRARY_PATH' \
        "$root/target/release/libprocspy.so" &&
    # Without either, import fails and says what to do.
    { ! env -u PROCSPY_LIB -u LD_LIBRARY_PATH "$user/bin/python" -c 'import procspy' 2>err ||
      ldconfig -p | grep -q libprocspy.so.$major; } && { [ ! -s err ] || grep -q "PROCSPY_LIB" err; }
}
run "Python: pip install into a fresh venv; import procspy finds libprocspy.so.$major by the loader; PROCSPY_LIB overrides" py_install

py_tests() { # every test must run: PROCSPY_NO_SKIP turns a skip into a failure
    "$user/bin/pip" install --quiet --disable-pip-version-check -r python/requirements-test.txt &&
    cd python && env -u PROCSPY_LIB LD_LIBRARY_PATH="$lib" PATH="$prefix/bin:$PATH" PROCSPY_NO_SKIP=1 PROCSPY_CLI="$cmd" \
        PROCSPY_INCLUDE="$prefix/include" PROCSPY_HARNESS="$root/build/harness-so" \
        "$user/bin/python" -m pytest -p no:cacheprovider -v tests
}
run "C harness for the layout check: make build/harness-so" make -C "$root" --no-print-directory build/harness-so
run "Python: pytest (the installed package; python -m procspy hands over to the installed command)" py_tests
grep -E '(PASSED|FAILED|ERROR|SKIPPED)|passed|failed' "$tmp/log" | sed 's/^/     > /' | head -n 40

# ---- 6. Rust: a crate that depends on procspy by path -------------------------

rust_user() {
    need cargo cargo || return 1
    mkdir -p agent-rs/src && cd agent-rs || return 1
    cat > Cargo.toml <<EOF
[package]
name = "agent"
version = "0.1.0"
edition = "2021"

[dependencies]
procspy = { path = "$root" }
EOF
    cat > src/main.rs <<'EOF'
use std::ops::ControlFlow;

fn main() -> Result<(), procspy::Error> {
    let walker = procspy::Walker::new(None)?;
    let mut stats = procspy::Stats::default();
    let mut n = 0;
    let both = procspy::Protocols::BOTH;
    walker.connections(None, both, procspy::StateMask::ALL, &mut stats, &mut |_| {
        n += 1;
        ControlFlow::Continue(())
    })?;
    println!("agent: {n} connections, {}", procspy::state_name(procspy::Protocol::Udp, 7).unwrap_or("?"));
    Ok(())
}
EOF
    # The crate's own dependencies are in cargo's cache already; its own
    # target dir is kept under target/, so a second run only links. It
    # builds the core alone: no libprocspy .so or .a among what cargo made.
    CARGO_TARGET_DIR=$root/target/agent cargo build --offline --quiet --message-format=json > built &&
        ! grep -Eq 'libprocspy[^"/]*\.(so|a)"' built &&
        CARGO_TARGET_DIR=$root/target/agent cargo run --offline --quiet | tee out &&
        grep -q "^agent: [0-9]* connections, UNCONN$" out
}
run "Rust: a crate with procspy = { path = ... } builds the core alone (no .so, no .a) and lists connections" rust_user

# ---- 7. C++ -------------------------------------------------------------------

cpp_installed() {
    need g++ g++ || return 1
    cd cpp &&
    # shellcheck disable=SC2046
    g++ -std=c++17 -Wall -Wextra -Werror walk.cpp $(pc --cflags --libs procspy) -o walk &&
    LD_LIBRARY_PATH=$lib timeout 60 ./walk
}
run "C++: g++ -std=c++17 -Wall -Wextra -Werror walk.cpp; ./walk" cpp_installed
sed 's/^/     > /' "$tmp/log" | head -n 20

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
