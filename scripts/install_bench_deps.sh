#!/bin/sh
# System packages the benchmark needs (Debian/Ubuntu): the Codec 2 command-line tools
# (c2enc, c2dec) and libopus, which the PyPI package opuslib loads.
# Python packages come with: pip install '.[bench]'
# Safe to re-run: does nothing when both are already there.
set -eu

if command -v c2enc >/dev/null 2>&1 && command -v c2dec >/dev/null 2>&1 \
    && ldconfig -p 2>/dev/null | grep -q 'libopus\.so\.0'; then
    echo "bench system deps: codec2 and libopus0 already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install_bench_deps: need root (or sudo) to apt-get install codec2 libopus0" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_bench_deps: no apt-get; install Codec 2 (c2enc, c2dec) and libopus yourself" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y --no-install-recommends codec2 libopus0 \
    || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends codec2 libopus0; }
echo "bench system deps: installed codec2 and libopus0"
