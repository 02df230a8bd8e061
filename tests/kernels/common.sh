# Sourced by the scripts of tests/kernels: where the cache is, which kernels
# there are.
# shellcheck shell=bash

# Outside the tree: hundreds of MiB per kernel, kept between runs.
CACHE=${PROCSPY_KERNELS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/procspy-kernels}
# Every row of the matrix, oldest first; "host" is this machine's own kernel
# (no image of it to boot: the suite runs on the host itself).
ALL_KERNELS="5.10 6.1 6.12 6.18 sid host"
export CACHE ALL_KERNELS
