#!/usr/bin/env bash
# Fetches the kernels of the matrix (and the busybox the initramfs is made
# of) from Debian's archive, with `apt-get download` through an apt
# configuration of this script's own: a sources file and a lists directory
# per suite under the cache, so the host's sources and lists are never read
# or changed. Each package is unpacked with `dpkg-deb -x` into the cache,
# outside the tree. Idempotent and quiet once a kernel is there;
# KERNELS_REFRESH=1 looks again for a newer build.
#
# Usage: tests/kernels/fetch.sh KEY...   (KEY: a row of the table below, or busybox)
# Prints nothing on success but what it downloads; the unpacked tree of KEY
# is $CACHE/KEY/root, the kernel's release (uname -r) is in $CACHE/KEY/release.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/kernels/common.sh
. "$here/common.sh"

MIRROR=http://deb.debian.org
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

# key: the suites to look in (archive:suite), then the pattern of the
# package's name; the newest version matching it wins. The regular amd64
# flavour: it has BTF, and 9p, overlay and virtio as modules.
suites_of() {
    case $1 in
        5.10)    echo "debian:bullseye debian-security:bullseye-security" ;;
        6.1)     echo "debian:bookworm debian-security:bookworm-security" ;;
        6.12)    echo "debian-security:bookworm-security" ;;
        6.18)    echo "debian:trixie-backports" ;;
        sid)     echo "debian:sid" ;;
        busybox) echo "debian:bookworm" ;;
        *) return 1 ;;
    esac
}
pattern_of() {
    case $1 in
        5.10)    echo '^linux-image-5\.10\.0-[0-9]+-amd64$' ;;
        6.1)     echo '^linux-image-6\.1\.0-[0-9]+-amd64$' ;;
        6.12)    echo '^linux-image-6\.12\.[0-9]+\+deb12-amd64$' ;;
        6.18)    echo '^linux-image-6\.18\.[0-9]+\+deb13-amd64$' ;;
        sid)     echo '^linux-image-[0-9]+\.[0-9]+\.[0-9]+(\+deb[0-9]+)?-amd64$' ;;
        busybox) echo '^busybox-static$' ;;
    esac
}

# apt, with every directory it reads sources and lists from, or writes to,
# under $CACHE/apt/KEY; the host's apt.conf.d (network settings) still applies.
apt_for() {
    local key=$1; shift
    local d=$CACHE/apt/$key
    "$@" -q -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$d/sources" \
        -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts="$d/prefs" \
        -o Dir::State::Lists="$d/lists" -o Dir::Cache="$d/cache" \
        -o Dir::State::status=/dev/null \
        -o APT::Architecture=amd64 -o APT::Architectures::=amd64 \
        -o Acquire::Languages=none -o APT::Sandbox::User=root
}

setup_apt() {
    local key=$1 d=$CACHE/apt/$1 s
    mkdir -p "$d/sources" "$d/prefs" "$d/lists/partial" "$d/cache/archives/partial"
    {
        for s in $(suites_of "$key"); do
            printf 'Types: deb\nURIs: %s/%s\nSuites: %s\nComponents: main\nTargets: Packages\nSigned-By: %s\n\n' \
                "$MIRROR" "${s%%:*}" "${s#*:}" "$KEYRING"
        done
    } > "$d/sources/procspy-kernels.sources"
}

# The name and version of the newest package matching KEY's pattern.
newest() {
    local key=$1 best_name="" best_ver="" name ver
    while read -r name; do
        ver=$(apt_for "$key" apt-cache show --no-all-versions "$name" | sed -n 's/^Version: //p' | head -n1)
        [ -n "$ver" ] || continue
        if [ -z "$best_ver" ] || dpkg --compare-versions "$ver" gt "$best_ver"; then
            best_name=$name best_ver=$ver
        fi
    done < <(apt_for "$key" apt-cache --names-only search "$(pattern_of "$key")" | awk '{print $1}')
    [ -n "$best_name" ] || { echo "fetch: no package matches $(pattern_of "$key") in $(suites_of "$key")" >&2; return 1; }
    echo "$best_name $best_ver"
}

# Lays an unpacked kernel out the same way whatever its release: lib/modules
# (a link to usr/lib where the package is merged-/usr), modules.dep (the
# packages leave it to depmod in their postinst), the release (uname -r) and
# a link to the image (boot/vmlinuz-REL, or lib/modules/REL/vmlinuz).
prepare() {
    local dir=$1 name=$2 root=$1/root m rel="" f
    [ -e "$root/lib" ] || ln -s usr/lib "$root/lib"
    for m in "$root"/lib/modules/*; do
        [ -d "$m" ] && rel=${m##*/}
    done
    [ -n "$rel" ] || { echo "fetch: $name has no lib/modules" >&2; return 1; }
    depmod -b "$root" "$rel"
    for f in "boot/vmlinuz-$rel" "lib/modules/$rel/vmlinuz"; do
        [ -e "$root/$f" ] && ln -sfn "root/$f" "$dir/vmlinuz"
    done
    [ -e "$dir/vmlinuz" ] || { echo "fetch: $name has no vmlinuz" >&2; return 1; }
    echo "$rel" > "$dir/release"
}

fetch() {
    local key=$1 dir=$CACHE/$1 name ver deb
    suites_of "$key" >/dev/null || { echo "fetch: unknown kernel '$key' (one of: $ALL_KERNELS)" >&2; return 2; }
    if [ -s "$dir/package" ] && [ "${KERNELS_REFRESH:-0}" != 1 ]; then
        return 0
    fi
    setup_apt "$key"
    apt_for "$key" apt-get update -qq >/dev/null
    read -r name ver < <(newest "$key")
    if [ -s "$dir/package" ] && [ "$(cat "$dir/package")" = "$name $ver" ]; then
        return 0
    fi
    echo "fetch: $key: $name $ver" >&2
    rm -rf "$dir.new" && mkdir -p "$dir.new"
    # Newer packages (sid's) are an empty linux-image-ABI that depends on
    # linux-base-ABI, linux-binary-ABI (the image) and linux-modules-ABI:
    # take those parts, of the same version, too.
    local abi=${name#linux-image-} part
    local want=("$name=$ver")
    for part in $(apt_for "$key" apt-cache show --no-all-versions "$name=$ver" \
                  | sed -n 's/^Depends: //p' | tr ',' '\n' | sed 's/|.*//; s/(.*//'); do
        # (some are only provided by the image package itself)
        [[ $part == linux-*-"$abi" ]] && apt_for "$key" apt-cache madison "$part" | awk -F' *[|] *' '{print $2}' | grep -qxF "$ver" \
            && want+=("$part=$ver")
    done
    (cd "$dir.new" && apt_for "$key" apt-get download -qq "${want[@]}" >/dev/null)
    for deb in "$dir.new"/*.deb; do
        dpkg-deb -x "$deb" "$dir.new/root"
        rm -f "$deb"
    done
    [ "$key" = busybox ] || prepare "$dir.new" "$name"
    echo "$name $ver" > "$dir.new/package"
    rm -rf "$dir" && mv "$dir.new" "$dir"
}

for key in "$@"; do
    fetch "$key"
done
