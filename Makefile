# libprocspy. `make run` lists this host's connections with their processes;
# `make test` runs every test. Both install what a fresh machine lacks first.

CARGO      ?= cargo
CC         ?= cc
PREFIX     ?= /usr/local
DESTDIR    ?=
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
RUN_ARGS   ?=
FUZZ_SECONDS ?= 60
FUZZ_RUNS  ?=

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
MAJOR   := $(word 1,$(subst ., ,$(VERSION)))
REL     := target/release
SO      := $(REL)/libprocspy.so
A       := $(REL)/libprocspy.a
B       := build
HEADER  := include/procspy.h
SRC     := $(shell find src ffi/src -name '*.rs') Cargo.toml ffi/Cargo.toml ffi/build.rs
CWARN   := -Wall -Wextra -Werror
CFLAGS_C := -std=c99 $(CWARN) -g -O1 -Iinclude -D_GNU_SOURCE
NATIVE_LIBS = $(shell cat $(B)/native-static-libs)
HARNESS := $(wildcard c-tests/*.c)
VALGRIND := valgrind --quiet --error-exitcode=1 --leak-check=full \
	--errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect

DEPS_TEST := cbindgen deb:valgrind=valgrind deb:ip=iproute2 deb:pkg-config=pkg-config \
	deb:nm=binutils deb:g++=g++ deb:ss=iproute2 deb:setpriv=util-linux deb:go=golang-go \
	deb:/usr/bin/python3=python3 deb:/usr/share/doc/python3-venv/copyright=python3-venv \
	deb:groff=groff-base deb:man=man-db

.PHONY: all lib header deps wheel deb test test-lint test-rust test-doc test-crate test-packages test-header test-abi test-c test-clients run install \
	uninstall \
	clean fuzz stress bench fixture-smoke test-kernels FORCE

all: lib $(HEADER)

deps:
	@.ci/deps $(DEPS_TEST)

lib: $(SO) $(A)

# The C library is the crate in ffi/ (libprocspy), over the core; cargo
# names its artifacts after its Rust library, procspy_ffi. The SONAME link
# lets programs linked against the build tree run from it.
$(SO) $(A) &: $(SRC)
	$(CARGO) build --release --quiet -p libprocspy
	ln -sf libprocspy_ffi.so $(SO)
	ln -sf libprocspy_ffi.a $(A)
	ln -sf libprocspy.so $(REL)/libprocspy.so.$(MAJOR)

# The header is generated, never edited; `make header` after an ABI change.
header:
	@.ci/deps cbindgen
	cbindgen --quiet --config cbindgen.toml --crate libprocspy --output $(HEADER)

$(B)/native-static-libs: Cargo.toml ffi/Cargo.toml
	@mkdir -p $(B)
	$(CARGO) rustc --release --quiet -p libprocspy --lib --crate-type staticlib -- --print native-static-libs 2>&1 \
	  | sed -n 's/.*native-static-libs: //p' | tail -n1 > $@

# ---- examples: built against the header and library exactly as a user would

CLI_SRC := cli/procspy.c cli/json.c

$(B)/procspy: $(CLI_SRC) cli/json.h $(HEADER) $(SO)
	@mkdir -p $(B)
	$(CC) $(CFLAGS_C) -o $@ $(CLI_SRC) -L$(REL) -lprocspy -Wl,-rpath,'$$ORIGIN/../$(REL)'

run: lib $(B)/procspy
	@$(B)/procspy $(RUN_ARGS)

# ---- what is installed and packaged (build/dist/)

DIST    := $(B)/dist
DIST_SO := $(DIST)/libprocspy.so.$(VERSION)
DIST_A  := $(DIST)/libprocspy.a

# The command as installed: no rpath, it finds libprocspy.so.0 in LIBDIR
# through the loader, like any program linked against an installed library.
$(DIST)/procspy: $(CLI_SRC) cli/json.h $(HEADER) $(SO)
	@mkdir -p $(DIST)
	$(CC) $(CFLAGS_C) -o $@ $(CLI_SRC) -L$(REL) -lprocspy
	strip --strip-unneeded $@

# The library stripped (the release build keeps debug info: 6.5 MB against
# 0.6 MB), its debug info kept apart beside it, found through a debuglink;
# the .a without debug info.
$(DIST_SO): $(SO)
	@mkdir -p $(DIST)
	objcopy --only-keep-debug $< $@.debug
	objcopy --strip-unneeded --add-gnu-debuglink=$@.debug $< $@
$(DIST_A): $(A)
	@mkdir -p $(DIST)
	strip --strip-debug -o $@ $<

# The man page with this version, and the date of the commit it is built
# from (SOURCE_DATE_EPOCH where set; today outside a git checkout).
MAN_DATE = $(shell if [ -n "$$SOURCE_DATE_EPOCH" ]; then date -u -d "@$$SOURCE_DATE_EPOCH" +%F; \
	else git log -1 --format=%cs 2>/dev/null | grep . || date -u +%F; fi)
$(B)/procspy.1: man/procspy.1.in Cargo.toml FORCE
	@mkdir -p $(B)
	sed -e 's/@VERSION@/$(VERSION)/; s/@DATE@/$(MAN_DATE)/' $< > $@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

# ---- tests

test: deps test-lint test-doc test-crate test-header test-abi test-rust test-c test-clients test-packages fixture-smoke
	@echo "make test: all passed"

# Unit, integration and doc tests of the core and of the C ABI's crate;
# then the Rust example runs.
test-rust:
	$(CARGO) test --release --quiet --workspace
	$(CARGO) run --release --quiet --example connections > /dev/null

# The core's documentation builds without a warning (broken links
# included); the C library's is its header.
test-doc:
	RUSTDOCFLAGS=-Dwarnings $(CARGO) doc --no-deps --quiet -p procspy
	@echo "doc: cargo doc --no-deps, no warnings"

# The crates as crates.io would take them: their metadata, the files they
# ship (each Cargo.toml's include), and that they build on their own: the
# core, then the C ABI's crate against the core as packaged.
test-crate:
	$(CARGO) publish --dry-run --allow-dirty --quiet --workspace
	@echo "crate: cargo publish --dry-run --workspace passes (procspy, libprocspy)"

# fmt, clippy with warnings as errors, and the declared rust-version: built
# with that toolchain where rustup has it, else clippy's incompatible_msrv
# (on by default, denied here) flags any std API newer than it.
MSRV := $(shell sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
test-lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --quiet --workspace --all-targets -- -D warnings -D clippy::incompatible_msrv
	@if rustup toolchain list 2>/dev/null | grep -q "^$(MSRV)"; then \
	  $(CARGO) +$(MSRV) check --quiet --workspace --all-targets && echo "lint: builds with rust $(MSRV)"; \
	else echo "lint: fmt, clippy clean; no rust $(MSRV) toolchain here, std APIs checked against it by clippy"; fi

test-header: lib
	@.ci/deps cbindgen
	cbindgen --quiet --config cbindgen.toml --crate libprocspy --verify --output $(HEADER)
	@mkdir -p $(B)
	@printf '#include "procspy.h"\nint main(void) { return procspy_version() == 0; }\n' > $(B)/header_alone.c
	$(CC) -std=c99 -pedantic $(CWARN) -Iinclude -c $(B)/header_alone.c -o $(B)/header_alone_c.o
	g++ -std=c++11 -pedantic $(CWARN) -Iinclude -x c++ -c $(B)/header_alone.c -o $(B)/header_alone_cc.o
	@printf '#include "procspy.hpp"\nint main() { procspy::Walker w; return w.stats_ext().accounted != 0; }\n' \
	  > $(B)/hpp_alone.cpp
	g++ -std=c++17 -pedantic $(CWARN) -Iinclude -c $(B)/hpp_alone.cpp -o $(B)/hpp_alone.o
	@echo "header: fresh, compiles alone as C99 and C++11; procspy.hpp alone as C++17"

test-abi: lib
	nm -D --defined-only $(SO) | awk '{print $$3}' | sort | diff -u c-tests/abi/symbols.txt -
	readelf -d $(SO) | grep -q 'Library soname: \[libprocspy.so.$(MAJOR)\]'
	@echo "abi: exported symbols match c-tests/abi/symbols.txt; SONAME libprocspy.so.$(MAJOR)"

$(B)/harness-so: $(HARNESS) c-tests/harness.h $(HEADER) $(SO)
	@mkdir -p $(B)
	$(CC) $(CFLAGS_C) -pthread -o $@ $(HARNESS) -L$(REL) -lprocspy -Wl,-rpath,'$$ORIGIN/../$(REL)'

$(B)/harness-static: $(HARNESS) c-tests/harness.h $(HEADER) $(A) $(B)/native-static-libs
	$(CC) $(CFLAGS_C) -pthread -o $@ $(HARNESS) $(A) $(NATIVE_LIBS)

$(B)/harness-asan: $(HARNESS) c-tests/harness.h $(HEADER) $(A) $(B)/native-static-libs
	$(CC) $(CFLAGS_C) -pthread -fsanitize=address,undefined -fno-omit-frame-pointer \
	  -fno-sanitize-recover=all -o $@ $(HARNESS) $(A) $(NATIVE_LIBS)

test-c: $(B)/harness-so $(B)/harness-static $(B)/harness-asan $(B)/procspy
	$(B)/harness-so
	$(B)/harness-static
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 $(B)/harness-asan
	PROCSPY_TEST_UNDER_VALGRIND=1 $(VALGRIND) $(B)/harness-so
	c-tests/cli.sh $(B)/procspy

# The churn and soak tests at length (make test runs them for seconds).
STRESS_SECS ?= 60
stress: lib
	PROCSPY_CHURN_SECS=$(STRESS_SECS) PROCSPY_SOAK_WALKS=10000 PROCSPY_SOAK_WALKERS=10000 \
	  $(CARGO) test --release --workspace --test churn --test changes_churn --test soak -- --nocapture
	PROCSPY_TEST_SOAK=100 $(VALGRIND) $(B)/harness-so soak

# Coverage-guided fuzzing of the parsers (nightly + cargo-fuzz; not part of
# test). FUZZ_RUNS=N runs N executions per target instead of FUZZ_SECONDS.
fuzz:
	FUZZ_RUNS=$(FUZZ_RUNS) fuzz/run.sh $(FUZZ_SECONDS)

# ---- the kernel matrix (tests/kernels/): the suite on Debian's kernels
# booted in QEMU (software emulation), and on the host's own. KERNELS="5.10
# sid" runs a subset; the table lands in docs/kernels.md. As root.

KERNELS    ?=
DEPS_KERNELS := deb:qemu-system-x86_64=qemu-system-x86 deb:/usr/sbin/depmod=kmod \
	deb:xz=xz-utils deb:zstd=zstd

$(B)/openat2: tests/kernels/openat2.c
	@mkdir -p $(B)
	$(CC) $(CFLAGS_C) -o $@ $<

test-kernels: lib $(B)/procspy $(B)/harness-so $(B)/openat2
	@.ci/deps $(DEPS_TEST) $(DEPS_KERNELS)
	tests/kernels/matrix.sh $(KERNELS)

# ---- benchmarks (benches/RESULTS.md)

DEPS_BENCH := deb:ss=iproute2 deb:ip=iproute2 deb:netstat=net-tools deb:lsof=lsof \
	deb:strace=strace deb:perf=linux-perf deb:/usr/bin/time=time deb:/usr/bin/python3=python3

$(B)/bench: benches/bench.c $(HEADER) $(SO)
	@mkdir -p $(B)
	$(CC) -std=c99 $(CWARN) -O2 -Iinclude -D_GNU_SOURCE -o $@ $< -L$(REL) -lprocspy -Wl,-rpath,'$$ORIGIN/../$(REL)'

$(B)/procspy-holder: benches/holder.c
	@mkdir -p $(B)
	$(CC) -std=gnu11 $(CWARN) -O2 -o $@ $<

$(B)/events: benches/events.c $(HEADER) $(SO)
	@mkdir -p $(B)
	$(CC) -std=gnu11 $(CWARN) -O2 -pthread -Iinclude -o $@ $< -L$(REL) -lprocspy -Wl,-rpath,'$$ORIGIN/../$(REL)'

bench: lib $(B)/bench $(B)/procspy $(B)/procspy-holder $(B)/events
	@.ci/deps $(DEPS_BENCH)
	benches/bench.sh --full

# A tiny fixture up and down, in make test: the bench's own machinery works.
fixture-smoke: lib $(B)/bench $(B)/procspy $(B)/procspy-holder
	benches/fixture-smoke.sh

# Everything as its users get it (c-tests/clients.sh): make install into a
# DESTDIR; the installed command and man page; C, the Go module, the pip
# package, a Rust crate and C++ through what was installed; go vet, gofmt
# and ruff.
test-clients: lib
	c-tests/clients.sh

# The .deb installed, used and removed; then the wheel in a fresh venv on a
# machine without the library (c-tests/packages.sh). As root.
test-packages: deb wheel
	c-tests/packages.sh

# ---- install

# Made afresh each time: it names PREFIX. Relocatable: prefix is found from
# the .pc file's own place (${pcfiledir}), so an install moved whole or made
# into a DESTDIR works with PKG_CONFIG_PATH alone. -lgcc_s and -lc are left
# to the compiler driver (there is no static libgcc_s).
PC_PREFIX = $${pcfiledir}/$(shell realpath -m --relative-to='$(LIBDIR)/pkgconfig' '$(PREFIX)')
pc_under_prefix = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))
$(B)/procspy.pc: procspy.pc.in Cargo.toml $(B)/native-static-libs FORCE
	sed -e 's|@PREFIX@|$(PC_PREFIX)|; s|@LIBDIR@|$(call pc_under_prefix,$(LIBDIR))|' \
	    -e 's|@INCLUDEDIR@|$(call pc_under_prefix,$(INCLUDEDIR))|' \
	    -e 's|@VERSION@|$(VERSION)|; s|@LIBS_PRIVATE@|$(filter-out -lgcc_s -lc,$(NATIVE_LIBS))|' $< > $@

FORCE:

# ---- packages: a self-contained wheel, a .deb (build/dist/)

# The wheel: the binding with the stripped library and the command (rpath
# $ORIGIN/..) inside the package, built by setuptools from a copy of
# bindings/python, then auditwheel repair: a manylinux tag, checked to need
# nothing outside the wheel but what that tag promises. The library is the
# one already built, not built again. Tools in build/pkg-venv, pinned.
PKG_VENV := $(B)/pkg-venv
$(PKG_VENV)/requirements-wheel.txt: bindings/python/requirements-wheel.txt
	@.ci/deps deb:/usr/bin/python3=python3 deb:/usr/share/doc/python3-venv/copyright=python3-venv
	rm -rf $(PKG_VENV) && python3 -m venv $(PKG_VENV)
	$(PKG_VENV)/bin/pip install --quiet --disable-pip-version-check -r $<
	cp $< $@

WHEEL_SRC := $(shell find bindings/python/src bindings/python/pyproject.toml bindings/python/setup.py \
	bindings/python/README.md -type f -not -path '*/__pycache__/*' -not -path '*.egg-info*')
$(DIST)/wheel.stamp: $(WHEEL_SRC) $(DIST_SO) $(CLI_SRC) cli/json.h $(HEADER) $(PKG_VENV)/requirements-wheel.txt
	rm -rf $(B)/wheel $(DIST)/procspy-*.whl
	mkdir -p $(B)/wheel/src/src/procspy/bin $(DIST)
	cp -r bindings/python/pyproject.toml bindings/python/setup.py bindings/python/README.md $(B)/wheel/src/
	cp -r bindings/python/src/procspy/*.py bindings/python/src/procspy/py.typed $(B)/wheel/src/src/procspy/
	cp $(DIST_SO) $(B)/wheel/src/src/procspy/libprocspy.so.$(MAJOR)
	$(CC) $(CFLAGS_C) -o $(B)/wheel/src/src/procspy/bin/procspy $(CLI_SRC) -L$(REL) -lprocspy \
	  -Wl,-rpath,'$$ORIGIN/..'
	strip --strip-unneeded $(B)/wheel/src/src/procspy/bin/procspy
	$(PKG_VENV)/bin/pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation \
	  -w $(B)/wheel/raw $(B)/wheel/src
	PATH="$(abspath $(PKG_VENV))/bin:$$PATH" $(PKG_VENV)/bin/auditwheel repair --strip \
	  -w $(DIST) $(B)/wheel/raw/procspy-*.whl
	touch $@
wheel: $(DIST)/wheel.stamp
	@ls -s --block-size=K $(DIST)/procspy-*.whl

# The .deb: make install into a tree (PREFIX=/usr, Debian's multiarch
# LIBDIR), then dpkg-deb, with the dependencies dpkg-shlibdeps finds and
# the shlibs, ldconfig trigger and md5sums a library package has
# (pkg/deb.sh). Debian's own tools, no other.
DEPS_DEB := deb:dpkg-deb=dpkg deb:dpkg-shlibdeps=dpkg-dev deb:gzip=gzip
DEB_ARCH  = $(shell dpkg --print-architecture)
DEB_MULTIARCH = $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null)
DEB_MAINTAINER ?= libprocspy maintainers <libprocspy@users.noreply.invalid>
$(DIST)/deb.stamp: $(DIST_SO) $(DIST_A) $(HEADER) include/procspy.hpp $(DIST)/procspy $(B)/procspy.1 procspy.pc.in \
		pkg/deb.sh LICENSE-MIT LICENSE-APACHE
	@.ci/deps $(DEPS_DEB)
	rm -rf $(B)/deb $(DIST)/procspy_*.deb
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(B))/deb/debian/procspy PREFIX=/usr \
	  LIBDIR=/usr/lib/$(DEB_MULTIARCH) > /dev/null
	pkg/deb.sh $(B)/deb $(VERSION) $(DEB_ARCH) '$(DEB_MAINTAINER)' $(DIST)
	touch $@
deb: $(DIST)/deb.stamp
	@ls -s --block-size=K $(DIST)/procspy_*.deb

# The stripped library (its debug info stays in build/dist/), its links,
# the .a, the header and .pc, the command and its man page. As root and
# without DESTDIR, ldconfig then makes the new SONAME known to the loader.
LDCONFIG = @if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then ldconfig; fi
install: $(DIST_SO) $(DIST_A) $(HEADER) include/procspy.hpp $(B)/procspy.pc $(DIST)/procspy $(B)/procspy.1
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 0644 $(DIST_SO) $(DESTDIR)$(LIBDIR)/libprocspy.so.$(VERSION)
	ln -sf libprocspy.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libprocspy.so.$(MAJOR)
	ln -sf libprocspy.so.$(MAJOR) $(DESTDIR)$(LIBDIR)/libprocspy.so
	install -m 0644 $(DIST_A) $(DESTDIR)$(LIBDIR)/libprocspy.a
	install -m 0644 $(HEADER) $(DESTDIR)$(INCLUDEDIR)/procspy.h
	install -m 0644 include/procspy.hpp $(DESTDIR)$(INCLUDEDIR)/procspy.hpp
	install -m 0644 $(B)/procspy.pc $(DESTDIR)$(LIBDIR)/pkgconfig/procspy.pc
	install -m 0755 $(DIST)/procspy $(DESTDIR)$(BINDIR)/procspy
	install -m 0644 $(B)/procspy.1 $(DESTDIR)$(MANDIR)/man1/procspy.1
	$(LDCONFIG)

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libprocspy.so* $(DESTDIR)$(LIBDIR)/libprocspy.a \
	  $(DESTDIR)$(INCLUDEDIR)/procspy.h $(DESTDIR)$(INCLUDEDIR)/procspy.hpp $(DESTDIR)$(LIBDIR)/pkgconfig/procspy.pc \
	  $(DESTDIR)$(BINDIR)/procspy $(DESTDIR)$(MANDIR)/man1/procspy.1
	$(LDCONFIG)

clean:
	$(CARGO) clean --quiet
	rm -rf $(B)
