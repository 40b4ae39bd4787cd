#!/usr/bin/env bash
# Debian packages the full test suite needs, idempotent (run as root): Codec 2 and libopus for
# the benchmark, PortAudio + a PulseAudio daemon with a FIFO microphone and a null-sink speaker
# for the microphone client, Chromium for the browser page.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
"$here/install_bench_deps.sh"
"$here/ci_audio_setup.sh" --audio --browser
