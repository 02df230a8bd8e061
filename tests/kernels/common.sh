# Sourced by the scripts of tests/kernels: where the cache is, which kernels
# there are.
# shellcheck shell=bash

# Outside the tree: hundreds of MiB per kernel, kept between runs. A guest
# reads its modules and writes its results there through the host's root,
# so not under what a guest mounts afresh.
CACHE=${PROCSPY_KERNELS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/procspy-kernels}
case $CACHE in
    /*) ;;
    *) echo "kernels: the cache ($CACHE) must be an absolute path" >&2; exit 2 ;;
esac
case $CACHE in
    /tmp/* | /run/* | /dev/* | /proc/* | /sys/*)
        echo "kernels: the cache ($CACHE) can't be under /tmp, /run, /dev, /proc or /sys: a guest mounts those afresh" >&2
        exit 2 ;;
esac
# Every row of the matrix, oldest first; "host" is this machine's own kernel
# (no image of it to boot: the suite runs on the host itself).
ALL_KERNELS="5.10 6.1 6.12 6.18 sid host"
export CACHE ALL_KERNELS
