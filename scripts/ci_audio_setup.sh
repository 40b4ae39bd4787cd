#!/usr/bin/env bash
# What the client tests need on a machine with no sound card and no browser, idempotent:
#   --audio    PortAudio, the ALSA->PulseAudio plugin and a PulseAudio daemon whose default
#              source is a FIFO (module-pipe-source: what is written to $DIR/mic.fifo as s16le
#              16 kHz mono is the microphone) and whose default sink is a null sink (its monitor,
#              hopcodec_speaker.monitor, records what was played)
#   --browser  Debian's Chromium
# (no option: both). Installs missing Debian packages (as root), starts the daemon if it does
# not answer, and prints the environment to use, e.g. PULSE_SERVER=unix:/tmp/hopcodec-audio/native
#
# The null sink renders ahead of real time by the latency its clients ask for; a recorder on
# its monitor that asks for a low latency (parec --latency-msec=10, as the tests run) keeps it
# at real time.
set -euo pipefail

DIR=${HOPCODEC_AUDIO_DIR:-/tmp/hopcodec-audio}
want_audio=0 want_browser=0
for arg in "$@"; do
  case "$arg" in
    --audio) want_audio=1 ;;
    --browser) want_browser=1 ;;
    *) echo "usage: $0 [--audio] [--browser]" >&2; exit 2 ;;
  esac
done
if [ $# -eq 0 ]; then want_audio=1 want_browser=1; fi

missing=()
have_lib() { ldconfig -p | grep -q "$1"; }
if [ $want_audio = 1 ]; then
  command -v pulseaudio >/dev/null || missing+=(pulseaudio)
  command -v parec >/dev/null || missing+=(pulseaudio-utils)
  have_lib libportaudio.so.2 || missing+=(libportaudio2)
  ls /usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so >/dev/null 2>&1 || missing+=(libasound2-plugins)
fi
if [ $want_browser = 1 ]; then
  command -v chromium >/dev/null || missing+=(chromium)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "ci_audio_setup: missing Debian packages ${missing[*]}; run this script as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
fi

# A daemon is usable when it answers, has both devices, and its microphone FIFO is still a FIFO
# (a FIFO deleted under a running daemon leaves a microphone that captures only silence).
healthy() {
  pactl info >/dev/null 2>&1 && [ -p "$DIR/mic.fifo" ] && fifo_is_the_daemons \
    && pactl list short sources 2>/dev/null | grep -q hopcodec_mic \
    && pactl list short sinks 2>/dev/null | grep -q hopcodec_speaker
}
# The FIFO at $DIR/mic.fifo is the one the daemon reads (not a new one made after the daemon's
# was deleted); when the daemon's pid or file descriptors cannot be read, assume it is.
fifo_is_the_daemons() {
  local pid inode fd
  pid=$(cat "$DIR/runtime/pid" 2>/dev/null) && [ -r "/proc/$pid/fd" ] || return 0
  inode=$(stat -c %i "$DIR/mic.fifo")
  for fd in /proc/"$pid"/fd/*; do
    [ "$(stat -L -c %i "$fd" 2>/dev/null)" = "$inode" ] && return 0
  done
  return 1
}

# What a daemon that no longer answers leaves behind: its FIFO (module-pipe-source makes the
# FIFO itself and refuses one that exists) and its pid file (a killed daemon can linger as a
# zombie, so the pid file still names a "running" daemon). Stop it if it is still there.
clear_dead_daemon() {
  local old_pid
  rm -f "$DIR/mic.fifo"
  old_pid=$(cat "$DIR/runtime/pid" 2>/dev/null || true)
  if [ -n "$old_pid" ] && [ "$(cat "/proc/$old_pid/comm" 2>/dev/null)" = pulseaudio ]; then
    kill -9 "$old_pid" >/dev/null 2>&1 || true
  fi
  rm -f "$DIR/runtime/pid"
}

if [ $want_audio = 1 ]; then
  export PULSE_SERVER="unix:$DIR/native"
  if pactl info >/dev/null 2>&1 && ! healthy; then
    echo "ci_audio_setup: restarting a stale PulseAudio daemon on $PULSE_SERVER" >&2
    pactl exit >/dev/null 2>&1 || true
    for _ in $(seq 50); do pactl info >/dev/null 2>&1 || break; sleep 0.2; done
  fi
  if ! pactl info >/dev/null 2>&1; then
    mkdir -p "$DIR"
    clear_dead_daemon
    cat > "$DIR/default.pa" <<PA
load-module module-native-protocol-unix auth-anonymous=1 socket=$DIR/native
load-module module-null-sink sink_name=hopcodec_speaker rate=16000 channels=1 format=s16le
load-module module-pipe-source source_name=hopcodec_mic file=$DIR/mic.fifo format=s16le rate=16000 channels=1
set-default-sink hopcodec_speaker
set-default-source hopcodec_mic
PA
    # -n: no default configuration; root is fine for a private daemon on its own socket.
    PULSE_RUNTIME_PATH="$DIR/runtime" HOME="$DIR" pulseaudio -n -F "$DIR/default.pa" \
      --exit-idle-time=-1 --daemonize=yes --use-pid-file=yes --log-target="file:$DIR/pulseaudio.log"
    for _ in $(seq 50); do pactl info >/dev/null 2>&1 && break; sleep 0.2; done
    healthy || { echo "ci_audio_setup: PulseAudio did not start with its devices; log: $DIR/pulseaudio.log" >&2; exit 1; }
    # Real-time priority for the daemon's threads, as a desktop's rtkit would give them (without
    # it, on a busy machine, the pipe source and the null sink glitch); best effort.
    chrt -a -f -p 30 "$(cat "$DIR/runtime/pid" 2>/dev/null || pgrep -x pulseaudio | head -1)" >/dev/null 2>&1 || true
  fi
  echo "PULSE_SERVER=$PULSE_SERVER"
  echo "HOPCODEC_MIC_FIFO=$DIR/mic.fifo"
  echo "HOPCODEC_SPEAKER_MONITOR=hopcodec_speaker.monitor"
fi
if [ $want_browser = 1 ]; then
  echo "CHROMIUM=$(command -v chromium)"
fi
