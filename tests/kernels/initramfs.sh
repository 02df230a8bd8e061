#!/usr/bin/env bash
# Builds the initramfs a kernel of the matrix boots: Debian's busybox-static,
# tests/kernels/init as /init, and the modules it needs before the host's
# root is mounted (virtio-pci, 9p over virtio, overlay) with the modules
# they depend on, in the order modprobe would load them. The modules are
# decompressed here (busybox insmod reads plain .ko only). Everything else
# the guest loads later through the host's own modprobe (see init).
#
# Usage: tests/kernels/initramfs.sh KEY   (after fetch.sh KEY busybox)
# Writes $CACHE/KEY/initrd.img; quiet, and does nothing when it is newer
# than what it is made of.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/kernels/common.sh
. "$here/common.sh"

key=$1
dir=$CACHE/$key
out=$dir/initrd.img
BUSYBOX=$CACHE/busybox/root/bin/busybox
MODULES="virtio_pci 9pnet_virtio 9p overlay"

if [ -s "$out" ] && [ "$out" -nt "$here/init" ] && [ "$out" -nt "$0" ] \
   && [ "$out" -nt "$dir/package" ] && [ "$out" -nt "$BUSYBOX" ]; then
    exit 0
fi

rel=$(cat "$dir/release")
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,dev,proc,sys,modules}
cp "$BUSYBOX" "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"
cp "$here/init" "$stage/init"
chmod 0755 "$stage/init"
# The kernel opens /dev/console for /init before anything is mounted.
mknod -m 0600 "$stage/dev/console" c 5 1

# `modprobe --show-depends` lists what to insmod, dependencies first, once
# per module asked for (so a shared one comes more than once: keep the
# first) and says "builtin" for what the image has built in.
n=0
for m in $MODULES; do
    /usr/sbin/modprobe -d "$dir/root" -S "$rel" --show-depends "$m"
done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' | while read -r ko; do
    n=$((n + 1))
    base=$(printf '%02d-%s' "$n" "$(basename "$ko")")
    case $ko in
        *.ko.xz)  xz -dc "$ko" > "$stage/modules/${base%.xz}" ;;
        *.ko.zst) zstd -qdc "$ko" > "$stage/modules/${base%.zst}" ;;
        *.ko.gz)  gzip -dc "$ko" > "$stage/modules/${base%.gz}" ;;
        *.ko)     cp "$ko" "$stage/modules/$base" ;;
        *) echo "initramfs: $ko: unknown module format" >&2; exit 1 ;;
    esac
done

(cd "$stage" && find . | LC_ALL=C sort | "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null) \
    | gzip -9 > "$out.new"
mv "$out.new" "$out"
