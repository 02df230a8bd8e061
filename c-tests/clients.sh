#!/usr/bin/env bash
# Client tests: libprocspy as its users get it.
#
#   1. `make install` into a DESTDIR (twice, for two prefixes), then checks
#      the installed tree: the .so with its SONAME and links, the .a, the
#      header, and a procspy.pc that names the prefix it was installed to.
#   2. From outside the project tree, with nothing but the installed files
#      and pkg-config: a C program linked against the .so, the same program
#      with libprocspy.a linked in statically (and libc dynamically), and
#      the README's fully static command. Each one opens its own loopback
#      listener and must find it, with its own pid, through the library.
#   3. The clients in examples/: Go (go vet, go test -race) and Python
#      (unittest) against the installed library, and again from the build
#      tree as a developer runs them (the Python layout check compares the
#      ctypes structs with the C harness, `make build/harness-so`, and with
#      a program compiled from the installed procspy.h); the C++ program.
#
# Usage: c-tests/clients.sh   (from anywhere; needs cc, g++, pkg-config, go, python3)
# Ends with "N passed, N failed"; exits non-zero if anything failed.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/procspy-clients.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

# run NAME CMD...: one test; its output is shown only when it fails.
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

need() {
    command -v "$1" >/dev/null 2>&1 || { echo "$1 not found${2:+ (install $2)}"; return 1; }
}

mkdir -p "$tmp/work"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)
major=${version%%.*}

# ---- 1. make install --------------------------------------------------------

dest=$tmp/dest           # DESTDIR for PREFIX=/usr/local
opt=$tmp/opt-dest        # DESTDIR for PREFIX=/opt/procspy
lib=$dest/usr/local/lib

run "make install DESTDIR=… PREFIX=/usr/local" make -C "$root" --no-print-directory install DESTDIR="$dest" PREFIX=/usr/local
run "make install DESTDIR=… PREFIX=/opt/procspy" make -C "$root" --no-print-directory install DESTDIR="$opt" PREFIX=/opt/procspy

check_tree() { # DESTDIR PREFIX
    local d=$1$2 soname
    for f in lib/libprocspy.so.$version lib/libprocspy.a include/procspy.h lib/pkgconfig/procspy.pc; do
        [ -f "$d/$f" ] || { echo "missing $d/$f"; return 1; }
    done
    [ "$(readlink "$d/lib/libprocspy.so.$major")" = "libprocspy.so.$version" ] || { echo "bad link libprocspy.so.$major"; return 1; }
    [ "$(readlink "$d/lib/libprocspy.so")" = "libprocspy.so.$major" ] || { echo "bad link libprocspy.so"; return 1; }
    soname=$(readelf -d "$d/lib/libprocspy.so.$version" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
    [ "$soname" = "libprocspy.so.$major" ] || { echo "SONAME '$soname'"; return 1; }
    cmp -s "$d/include/procspy.h" "$root/include/procspy.h" || { echo "installed header differs"; return 1; }
    # The .pc must describe where it was installed (read without the sysroot,
    # which pkgconf also prepends to variables).
    local pc=(env PKG_CONFIG_LIBDIR="$d/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR= pkg-config)
    [ "$("${pc[@]}" --modversion procspy)" = "$version" ] || { echo "pc version"; return 1; }
    [ "$("${pc[@]}" --variable=prefix procspy)" = "$2" ] || {
        echo "procspy.pc installed under $2 says prefix=$("${pc[@]}" --variable=prefix procspy):"
        cat "$d/lib/pkgconfig/procspy.pc"; return 1; }
    [ "$("${pc[@]}" --variable=libdir procspy)" = "$2/lib" ] || { echo "pc libdir"; return 1; }
    echo "tree ok: $d"
}
run "installed tree (PREFIX=/usr/local): files, links, SONAME, header, procspy.pc" check_tree "$dest" /usr/local
run "installed tree (PREFIX=/opt/procspy): procspy.pc names its own prefix" check_tree "$opt" /opt/procspy

# pkg-config against the /usr/local install only (PKG_CONFIG_LIBDIR: no host .pc files).
pc() { PKG_CONFIG_LIBDIR="$lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$dest" pkg-config "$@"; }

# ---- 2. C from outside the tree ---------------------------------------------

# A real client: includes the socket headers next to procspy.h, opens a
# loopback listener and finds it, owned by itself, through the library.
cat >"$tmp/work/prog.c" <<'CEOF'
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <procspy.h>

struct want { unsigned long long inode; int fd; unsigned port; int found; };

static int on_conn(void *userdata, const procspy_connection *c)
{
    struct want *w = userdata;
    if (c->inode == w->inode && c->owner && c->owner->pid == getpid() && c->owner->fd == w->fd &&
        c->local_port == w->port && c->state == PROCSPY_STATE_LISTEN)
        w->found = 1;
    return 0;
}

int main(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    struct stat st;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 1) ||
        getsockname(fd, (struct sockaddr *)&a, &len) || fstat(fd, &st)) {
        perror("listen on 127.0.0.1");
        return 2;
    }
    struct want w = { (unsigned long long)st.st_ino, fd, ntohs(a.sin_port), 0 };
    procspy_walker *walker;
    procspy_walk_stats stats;
    char msg[256];
    if (procspy_walker_new(NULL, &walker) != PROCSPY_OK) {
        procspy_last_error(msg, sizeof msg);
        fprintf(stderr, "%s\n", msg);
        return 1;
    }
    procspy_status s = procspy_walker_connections(walker, NULL, 0, PROCSPY_PROTO_TCP,
                                                  PROCSPY_STATES_LISTEN, on_conn, &w, &stats);
    procspy_walker_free(walker);
    printf("libprocspy %s: %s; 127.0.0.1:%u (fd %d) %s with pid %d\n", procspy_version(),
           procspy_status_str(s), w.port, fd, w.found ? "found" : "NOT found", (int)getpid());
    return s == PROCSPY_OK && w.found ? 0 : 1;
}
CEOF

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

# ---- 3. the clients in examples/ --------------------------------------------

export GOPROXY=off GOFLAGS= GO111MODULE=on GOTOOLCHAIN=local
[ -n "${HOME:-}${GOCACHE:-}${XDG_CACHE_HOME:-}" ] || export GOCACHE=$tmp/gocache
cp -r "$root/examples/go" "$tmp/work/go"
cp -r "$root/examples/python" "$tmp/work/python"
cp -r "$root/examples/cpp" "$tmp/work/cpp"

go_installed() { # go vet and go test -race, outside the tree, against the installed library
    need go golang-go || return 1
    cd go &&
    CGO_CFLAGS="$(pc --cflags procspy)" CGO_LDFLAGS="$(pc --libs procspy) -Wl,-rpath,$lib" go vet ./... &&
    CGO_CFLAGS="$(pc --cflags procspy)" CGO_LDFLAGS="$(pc --libs procspy) -Wl,-rpath,$lib" \
        go test -race -count=1 -timeout 120s -v ./...
}
run "Go (installed library, outside the tree): go vet; go test -race" go_installed
grep -E '^(ok|FAIL|---|panic)|procspy_test.go' "$tmp/log" | sed 's/^/     > /' | head -n 30

go_tree() { # as a developer runs it, in examples/go against target/release
    need go golang-go || return 1
    cd "$root/examples/go" &&
    CGO_CFLAGS="-I$root/include" CGO_LDFLAGS="-L$root/target/release -Wl,-rpath,$root/target/release" \
        go test -count=1 -timeout 120s ./...
}
run "Go (build tree, in examples/go): go test" go_tree

py_installed() { # every test must run: a skip (no harness, no cc) is a failure here
    need python3 python3 || return 1
    local out
    out=$(cd python && PROCSPY_LIB=$lib/libprocspy.so.$major PROCSPY_INCLUDE=$dest/usr/local/include \
        PROCSPY_HARNESS=$root/build/harness-so python3 -m unittest -v 2>&1)
    local rc=$?
    echo "$out"
    [ $rc -eq 0 ] && ! grep -q "skipped" <<<"$out"
}
run "C harness for the layout check: make build/harness-so" make -C "$root" --no-print-directory build/harness-so
run "Python (installed library, outside the tree): python3 -m unittest" py_installed

py_tree() { # the default search finds the build tree; no bytecode written into it
    need python3 python3 || return 1
    cd "$root/examples/python" &&
    env -u PROCSPY_LIB PYTHONDONTWRITEBYTECODE=1 python3 -c '
import os, procspy, sys
want = os.path.realpath("../../target/release/libprocspy.so")
sys.exit(0 if os.path.realpath(procspy.LIBRARY_PATH) == want else "loaded " + procspy.LIBRARY_PATH)' &&
    env -u PROCSPY_LIB PYTHONDONTWRITEBYTECODE=1 python3 -m unittest 2>&1
}
run "Python (build tree, in examples/python): default library search; python3 -m unittest" py_tree

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
