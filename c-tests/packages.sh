#!/usr/bin/env bash
# Package tests: the .deb and the wheel of build/dist/ (make deb, make wheel)
# installed and used as their users would, on this machine, as root.
#
#   1. The .deb: `apt-get install ./procspy_*.deb`; its files, its
#      dependencies; C through the system's pkg-config, built and run with
#      no LD_LIBRARY_PATH (the ldconfig trigger made the SONAME known); the
#      command on PATH; `man procspy`. Then `apt-get purge`: every file it
#      installed is gone, and the loader forgot the library.
#   2. The wheel, once the .deb is gone: pip install into a fresh venv, with
#      no libprocspy installed anywhere the loader looks; import procspy
#      loads the library inside the wheel, python -m procspy runs the
#      command inside it; the binding's own pytest tests, run from it.
#
# Usage: c-tests/packages.sh   (from anywhere; root; needs apt-get, cc,
# pkg-config, man, python3 with venv; PyPI for pytest)
# Ends with "N passed, N failed"; exits non-zero if anything failed.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/procspy-packages.XXXXXX")
installed_deb=
cleanup() {
    # Never leave the package installed, whatever failed.
    if [ -n "$installed_deb" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq procspy > /dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# shellcheck source=c-tests/runner.sh
. "$root/c-tests/runner.sh"

mkdir -p "$tmp/work"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)
major=${version%%.*}
deb=$(ls "$root"/build/dist/procspy_"$version"_*.deb 2>/dev/null)
wheel=$(ls "$root"/build/dist/procspy-"$version"-*.whl 2>/dev/null)
cp "$root/c-tests/client/prog.c" "$tmp/work/prog.c"

# A listener of our own for the command to find: its port in $tmp/port.
listener() {
    python3 -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(60)' \
        > "$tmp/port" &
    LISTENER=$!
    for _ in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
}

# ---- 1. the .deb -------------------------------------------------------------

preconditions() {
    [ "$(id -u)" = 0 ] || { echo "needs root (apt-get install)"; return 1; }
    [ -f "$deb" ] || { echo "no build/dist/procspy_${version}_*.deb (make deb)"; return 1; }
    ! dpkg -s procspy > /dev/null 2>&1 || { echo "a procspy package is installed already"; return 1; }
}
run "root, the .deb built, no procspy package installed yet" preconditions

deb_contents() { # stripped, the dependencies dpkg-shlibdeps found, no self-dependency
    local depends
    depends=$(dpkg-deb -f "$deb" Depends)
    echo "Depends: $depends"
    grep -q "libc6 (>= " <<<"$depends" && ! grep -qw procspy <<<"$depends" || return 1
    dpkg-deb -x "$deb" "$tmp/x" &&
    if readelf -S "$tmp"/x/usr/lib/*/libprocspy.so."$version" "$tmp/x/usr/bin/procspy" |
        grep -E '\.debug_info|\.symtab'; then echo "not stripped"; return 1; fi
    [ "$(dpkg-deb -I "$deb" shlibs)" = "libprocspy $major procspy (>= $version)" ]
}
run ".deb: stripped, Depends from dpkg-shlibdeps, shlibs" deb_contents

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" > apt.log 2>&1 || { cat apt.log; return 1; }
    installed_deb=1
    dpkg -L procspy > "$tmp/files" && cat "$tmp/files"
}
run "apt-get install ./procspy_${version}_*.deb" apt_install
installed_deb=$(dpkg -s procspy > /dev/null 2>&1 && echo 1)

deb_c_client() { # the system's pkg-config, the loader's cache: nothing else
    local libdir
    # procspy.pc finds its prefix from its own place: a path through pkgconfig/../..
    libdir=$(realpath "$(env -u PKG_CONFIG_PATH pkg-config --variable=libdir procspy)") || return 1
    [ "$libdir" = "/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)" ] || { echo "libdir $libdir"; return 1; }
    [ "$(pkg-config --modversion procspy)" = "$version" ] || return 1
    # shellcheck disable=SC2046
    cc -std=c99 -Wall -Wextra -Werror prog.c $(env -u PKG_CONFIG_PATH pkg-config --cflags --libs procspy) -o prog &&
        env -u LD_LIBRARY_PATH ./prog || return 1
    local found
    found=$(env -u LD_LIBRARY_PATH ldd ./prog | sed -n "s/.*libprocspy.so.$major => \([^ ]*\).*/\1/p")
    echo "libprocspy.so.$major => $found"
    [ "$(realpath "$found")" = "$libdir/libprocspy.so.$version" ]
}
run ".deb: C through pkg-config, run through the loader's cache" deb_c_client

deb_command() {
    listener
    local port out
    port=$(cat "$tmp/port")
    [ "$(command -v procspy)" = /usr/bin/procspy ] || { echo "procspy is $(command -v procspy)"; kill $LISTENER; return 1; }
    out=$(env -u LD_LIBRARY_PATH procspy -tl -H --port "$port" 2>&1)
    kill $LISTENER
    echo "$out"
    grep -Eq "^[0-9]+ +tcp +LISTEN +127\.0\.0\.1:$port +0\.0\.0\.0:\* +root +$LISTENER +[0-9]+ +python3$" <<<"$out" &&
        [ "$(procspy --version)" = "procspy $version" ]
}
run ".deb: procspy -tl --port finds a listener" deb_command

deb_man() {
    [ "$(man -w procspy)" = /usr/share/man/man1/procspy.1.gz ] || { man -w procspy; return 1; }
    MANWIDTH=80 man procspy 2>/dev/null | grep -E "procspy +- +list +every" &&
        MANWIDTH=80 man procspy 2>/dev/null | grep -q -- "--port" &&
        zcat /usr/share/man/man1/procspy.1.gz | grep -Eq "^\.TH PROCSPY 1 [0-9]{4}-[0-9]{2}-[0-9]{2} \"libprocspy $version\""
}
run ".deb: man procspy (this version and date)" deb_man

apt_purge() {
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq procspy > apt.log 2>&1 || { cat apt.log; return 1; }
    installed_deb=
    local left=0 f
    while read -r f; do
        # Directories the system has anyway (/usr, /usr/lib, ...) stay.
        if [ -e "$f" ] && ! [ -d "$f" ]; then echo "left: $f"; left=1; fi
        if [ -d "$f" ] && [[ $f == *procspy* ]]; then echo "left: $f/"; left=1; fi
    done < "$tmp/files"
    if ldconfig -p | grep libprocspy; then echo "the loader still knows it"; left=1; fi
    ! dpkg -s procspy > /dev/null 2>&1 && [ "$left" = 0 ]
}
run "apt-get purge procspy leaves nothing behind" apt_purge

# ---- 2. the wheel ------------------------------------------------------------

venv=$tmp/venv
wheel_install() {
    [ -f "$wheel" ] || { echo "no build/dist/procspy-${version}-*.whl (make wheel)"; return 1; }
    echo "$wheel" | grep -q manylinux || { echo "no manylinux tag: $wheel"; return 1; }
    # Nowhere the loader looks has a libprocspy: what the wheel carries is all.
    if ldconfig -p | grep libprocspy; then
        echo "libprocspy is installed on this machine: the wheel's test needs one without (make uninstall first)"
        return 1
    fi
    python3 -m venv "$venv" &&
        "$venv/bin/pip" install --quiet --disable-pip-version-check --no-index "$wheel" &&
        env -u PROCSPY_LIB -u LD_LIBRARY_PATH PATH=/usr/bin:/bin "$venv/bin/python" -c '
import os, sys, procspy
from procspy.__main__ import command
site = os.path.dirname(procspy.__file__)
print(procspy.LIBRARY_PATH, command(), procspy.version())
assert site.startswith(sys.prefix), site
assert os.path.realpath(procspy.LIBRARY_PATH) == os.path.join(site, "libprocspy.so.0"), procspy.LIBRARY_PATH
assert command() == os.path.join(site, "bin", "procspy"), command()
assert procspy.version() == sys.argv[1]' "$version"
}
run "wheel: pip install into a fresh venv; the library and command inside it are the ones used" wheel_install

wheel_tests() { # the binding's tests, run against the installed wheel
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/bindings/python/requirements-test.txt" &&
    cp -r "$root/bindings/python/tests" "$tmp/work/tests" &&
    make -C "$root" --no-print-directory build/harness-so > /dev/null &&
    env -u PROCSPY_LIB -u LD_LIBRARY_PATH PATH="/usr/bin:/bin" PROCSPY_NO_SKIP=1 \
        PROCSPY_CLI="$(dirname "$("$venv/bin/python" -c 'import procspy; print(procspy.__file__)')")/bin/procspy" \
        PROCSPY_INCLUDE="$root/include" PROCSPY_HARNESS="$root/build/harness-so" \
        "$venv/bin/python" -m pytest -p no:cacheprovider -v tests
}
run "wheel: the binding's pytest tests, from the installed wheel" wheel_tests
grep -E '(PASSED|FAILED|ERROR|SKIPPED)|passed|failed' "$tmp/log" | sed 's/^/     > /' | tail -n 5

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
