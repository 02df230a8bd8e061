#!/usr/bin/env bash
# Makes the .deb from a `make install` tree (the Makefile's deb target).
#
#   pkg/deb.sh WORK VERSION ARCH MAINTAINER OUTDIR
#
# WORK/debian/procspy holds the install (PREFIX=/usr, LIBDIR=/usr/lib/<multiarch>),
# laid out as debhelper would have it, so that dpkg-shlibdeps finds the
# package's own shlibs file there and resolves the command's libprocspy.so.0
# to this package. Adds what Debian's policy asks of a package holding a
# shared library: the man page gzipped, the copyright file, a shlibs file,
# the ldconfig trigger, md5sums; the dependencies are dpkg-shlibdeps's.
set -euo pipefail
work=$1 version=$2 arch=$3 maintainer=$4 out=$5
root=$work/debian/procspy
major=${version%%.*}
root_dir=$(cd "$(dirname "$0")/.." && pwd)

gzip -9n "$root/usr/share/man/man1/procspy.1"
doc=$root/usr/share/doc/procspy
install -d "$doc" "$root/DEBIAN"
{
    cat <<HEAD
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: libprocspy

Files: *
Copyright: The libprocspy authors
License: MIT or Apache-2.0

License: MIT
HEAD
    sed -e 's/^$/./' -e 's/^/ /' "$root_dir/LICENSE-MIT"
    cat <<'TAIL'

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
TAIL
} > "$doc/copyright"

# Other packages built against it depend on this version or later.
echo "libprocspy $major procspy (>= $version)" > "$root/DEBIAN/shlibs"
# The loader's cache learns the new SONAME once dpkg is done (and forgets
# it on removal): what dh_makeshlibs adds for a library package.
echo "activate-noawait ldconfig" > "$root/DEBIAN/triggers"

# dpkg-shlibdeps wants debian/control; the dependencies on other packages
# (-x: not on this one, which provides libprocspy.so.0 to the command).
printf 'Source: procspy\n\nPackage: procspy\nArchitecture: any\n' > "$work/debian/control"
so=$(cd "$work" && echo debian/procspy/usr/lib/*/"libprocspy.so.$version")
(cd "$work" && dpkg-shlibdeps -xprocspy -Tdebian/substvars -e"$so" -edebian/procspy/usr/bin/procspy \
    2> shlibdeps.err) ||
    { cat "$work/shlibdeps.err" >&2; exit 1; }
depends=$(sed -n 's/^shlibs:Depends=//p' "$work/debian/substvars")
[ -n "$depends" ] || { echo "deb.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

cat > "$root/DEBIAN/control" <<CONTROL
Package: procspy
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends
Suggests: pkg-config
Section: net
Priority: optional
Description: which process owns this socket, in every network namespace
 libprocspy maps every TCP and UDP socket on a Linux host to the process
 that holds it, in every network namespace, by walking /proc. This package
 has the shared library libprocspy.so.$major and libprocspy.a, the C header
 procspy.h (with procspy.pc for pkg-config), and the procspy command, which
 lists the host's sockets with their processes as ss and lsof users expect.
CONTROL
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
mkdir -p "$out"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out/procspy_${version}_$arch.deb" > /dev/null
