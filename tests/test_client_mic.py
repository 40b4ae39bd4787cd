"""`hopcodec mic` through real PortAudio: a PulseAudio daemon (scripts/ci_audio_setup.sh) whose
microphone is a FIFO fed with real speech and whose speaker is a null sink recorded from its
monitor. Checks that what was captured is the speech, that what was played is the codec's
decoding of what was captured (the local codec, or the server's), that the speaker really
played it, and that the measured latency is within the budget."""

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from audio_match import found_fraction

from server.config import Settings
from server.testing import ServerProcess
from streaming_core.constants import HOP, SAMPLE_RATE
from streaming_core.decoder import StreamDecoder
from streaming_core.encoder import StreamEncoder
from streaming_core.modes import get_mode
from streaming_core.synthesizers import default_synthesizer

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "scripts" / "ci_audio_setup.sh"
BUDGET_MS = 150.0
SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
"""For processes run at real-time priority: BLAS worker threads spin while they wait, and at that
priority they starve the audio threads (the stream stalls)."""
LEAD_SECONDS = 3.0
"""Silence fed before the speech, so that the mic client is running when the speech starts."""


@pytest.fixture(scope="module")
def audio_env() -> dict[str, str]:
    """The environment of a running PulseAudio daemon with the FIFO mic and the null sink."""
    result = subprocess.run(["bash", str(SETUP), "--audio"], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail(f"scripts/ci_audio_setup.sh --audio failed (PulseAudio is required):\n{result.stderr}")
    values = dict(line.split("=", 1) for line in result.stdout.split() if "=" in line)
    return {**os.environ, **values, **SINGLE_THREADED, "PYTHONPATH": str(ROOT)}


FEEDER = """
import sys, time
fifo, raw = sys.argv[1], open(sys.argv[2], 'rb').read()
chunk, start, written = 640, time.monotonic(), 0
with open(fifo, 'wb', buffering=0) as out:
    while True:
        piece = raw[written : written + chunk]
        out.write(piece.ljust(chunk, bytes(1)))
        written += chunk
        time.sleep(max(start + written / 32000 - time.monotonic(), 0))
"""
"""Writes s16le 16 kHz audio into the FIFO at real-time pace in 20 ms pieces, then silence."""


def realtime(priority: int) -> list[str]:
    """A `chrt` prefix giving a command real-time priority, as audio threads have, where allowed
    (this machine is shared: without it a starved writer feeds the FIFO in bursts)."""
    allowed = subprocess.run(["chrt", "-f", str(priority), "true"], capture_output=True).returncode == 0
    return ["chrt", "-f", str(priority)] if allowed else []


class Feeder:
    """The microphone: a process writing the audio into the FIFO until stopped."""

    def __init__(self, fifo: str, signal_16k: np.ndarray, folder: Path) -> None:
        raw = folder / "microphone.raw"
        raw.write_bytes((np.clip(signal_16k, -1, 1) * 32767).astype("<i2").tobytes())
        # Opening a missing path for writing would create a plain file that nothing reads.
        assert stat.S_ISFIFO(os.stat(fifo).st_mode), f"{fifo} is not the microphone FIFO"
        self.process = subprocess.Popen([*realtime(20), sys.executable, "-c", FEEDER, fifo, str(raw)])

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


class SpeakerRecorder:
    """parec on the null sink's monitor (low latency keeps the null sink at real time)."""

    def __init__(self, env: dict[str, str], path: Path) -> None:
        self.path = path
        self.file = path.open("wb")
        self.process = subprocess.Popen(
            [*realtime(20), "parec", "--latency-msec=10", "-d", env["HOPCODEC_SPEAKER_MONITOR"], "--raw",
             "--format=s16le", "--rate=16000", "--channels=1"], stdout=self.file, env=env)

    def stop(self) -> np.ndarray:
        self.process.terminate()
        self.process.wait(10)
        self.file.close()
        return np.frombuffer(self.path.read_bytes(), "<i2").astype(np.float32) / 32768


def run_mic(env: dict[str, str], speech: np.ndarray, tmp: Path, *args: str) -> tuple[dict, np.ndarray, str]:
    """Run `hopcodec mic ... --record tmp` while the speech is fed; (report, speaker, stdout)."""
    feed = np.concatenate([np.zeros(int(LEAD_SECONDS * SAMPLE_RATE)), speech, np.zeros(SAMPLE_RATE)])
    feeder = Feeder(env["HOPCODEC_MIC_FIFO"], feed, tmp)
    recorder = SpeakerRecorder(env, tmp / "speaker.raw")
    try:
        duration = LEAD_SECONDS + len(speech) / SAMPLE_RATE
        command = [sys.executable, "-m", "hopcodec", "mic", "--duration", f"{duration:.1f}",
                   "--budget", str(BUDGET_MS), "--record", str(tmp), *args]
        result = subprocess.run([*realtime(10), *command],
                                capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    finally:
        feeder.stop()
        speaker = recorder.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return json.loads((tmp / "report.json").read_text()), speaker, result.stdout


def codec_hops(captured: np.ndarray, mode: str) -> np.ndarray:
    """(n, HOP): the offline encoder + decoder run on the captured audio, hop for hop."""
    encoder, decoder = StreamEncoder(mode), StreamDecoder(default_synthesizer())
    hops = captured[: len(captured) // HOP * HOP].reshape(-1, HOP)
    return np.stack([decoder.decode(p)[-HOP:] for hop in hops for p in encoder.push(hop)])


DEVICE_ATTEMPTS = 2
"""Runs of the client before the device checks fail. A stall of the shared VM can starve the
PulseAudio pipe source whatever the priorities (one CI run captured 51 % of the speech while
the same test passed 6 of 6 runs idle and beside 4 busy processes): it costs one more run, and
a client that loses audio fails both."""


def device_problem(tmp: Path, speech: np.ndarray, speaker: np.ndarray) -> str | None:
    """What went wrong between the devices and the client, or None."""
    captured, _ = soundfile.read(str(tmp / "captured.wav"), dtype="float32")
    played, _ = soundfile.read(str(tmp / "played.wav"), dtype="float32")
    assert len(captured) == len(played) > SAMPLE_RATE
    # What the client captured is the speech fed into the FIFO (16-bit copies of each other).
    captured_ok = found_fraction(speech, captured, 0.99)
    if captured_ok <= 0.8:
        level = float(np.sqrt(np.mean(captured**2)))
        return f"only {captured_ok:.0%} of the speech was captured (rms {level:.4f})"
    # What the speaker played is what the client played.
    played_ok = found_fraction(played, speaker, 0.95)
    if played_ok <= 0.7:
        return f"only {played_ok:.0%} of the client's output reached the null sink"
    return None


def run_and_check(env: dict[str, str], speech: np.ndarray, tmp: Path, *args: str
                  ) -> tuple[dict, str, np.ndarray, np.ndarray, list[str]]:
    """`run_mic` until the devices carried the audio (at most DEVICE_ATTEMPTS runs), then the
    latency checks; (report, stdout, captured, played, the jitter buffer's event per played hop)."""
    for attempt in range(1, DEVICE_ATTEMPTS + 1):
        folder = tmp / f"run{attempt}"
        folder.mkdir()
        report, speaker, stdout = run_mic(env, speech, folder, *args)
        problem = device_problem(folder, speech, speaker)
        if problem is None:
            break
        print(f"run {attempt}: {problem}")
    else:
        pytest.fail(f"{DEVICE_ATTEMPTS} runs, the last: {problem}")
    # Latency: measured inside the client, plus the device buffers PortAudio reports.
    assert report["measured_mouth_to_ear_ms"] <= BUDGET_MS
    assert report["mean_mouth_to_ear_ms"] <= BUDGET_MS
    captured, _ = soundfile.read(str(folder / "captured.wav"), dtype="float32")
    played, _ = soundfile.read(str(folder / "played.wav"), dtype="float32")
    events = (folder / "playout.txt").read_text().split()
    assert len(events) == len(played) // HOP
    return report, stdout, captured, played, events


def test_mic_local_plays_the_codecs_decoding_of_the_speech(audio_env, speech, tmp_path):
    report, stdout, captured, played, events = run_and_check(audio_env, speech, tmp_path, "--local",
                                                             "--mode", "scalar-4000")
    # In-process, every frame plays in the tick it was captured: the output is exactly the
    # offline codec's decoding of the captured audio.
    expected = codec_hops(captured, "scalar-4000").reshape(-1)
    np.testing.assert_allclose(played[: len(expected)], expected, atol=1.5 / 32768)
    assert report["events"].get("conceal", 0) == 0 and "conceal" not in events
    # The speech envelope's correlation scatters by about a millisecond with how the speech falls
    # on the hop grid (tests/test_latency.py): within 3 ms of the decoder delay.
    assert report["measured_internal_ms"] == pytest.approx(report["decoder_delay_ms"], abs=3.0)
    assert "mouth-to-ear" in stdout and "measured" in stdout


def test_mic_over_the_server_plays_the_servers_decoding(audio_env, speech, tmp_path, monkeypatch):
    for name, value in SINGLE_THREADED.items():
        monkeypatch.setenv(name, value)
    with ServerProcess(Settings()) as server:
        # The server's threads get the priority the audio threads have (see `realtime`).
        subprocess.run(["chrt", "-a", "-f", "-p", "10", str(server.process.pid)], capture_output=True)
        report, _, captured, played, events = run_and_check(audio_env, speech, tmp_path, "--server",
                                                            server.ws)
    expected = codec_hops(captured, get_mode("default").name)
    hops = played[: len(played) // HOP * HOP].reshape(-1, HOP)
    # Each hop the jitter buffer played (not concealed or inserted: a VM stall makes replies
    # late, and one CI run concealed 31 hops) is the server's decoding of the frame captured
    # `delay` ticks earlier. A few may differ: a packet the client skips as too late to send
    # leaves a gap that the server conceals, and its prediction differs from the offline
    # decoder's for a while.
    loud = [t for t, hop in enumerate(hops) if np.abs(hop).max() > 0.01]
    from_server = [t for t in loud if events[t] == "play"]
    concealed = len(loud) - len(from_server)
    assert len(from_server) >= 0.8 * len(loud), f"{concealed} of {len(loud)} loud hops concealed"
    wrong = [t for t in from_server
             if not np.any(np.all(np.abs(expected[max(t - report["max_delay_ticks"], 0) : t + 1] - hops[t])
                                  <= 1.5 / 32768, axis=1))]
    assert len(wrong) <= 0.05 * len(from_server), \
        f"{len(wrong)} of {len(from_server)} played hops are not the server's decoding"
    # The round trip is measured and in milliseconds; how short it is belongs to the bench (a
    # stalled CI VM once showed a 672 ms loopback round trip in the browser test).
    assert report["final"]["rtt_ms"] is not None and 0 < report["final"]["rtt_ms"] < 5000
    # The playout delay covers the round trip (a hop or two on loopback) within the budget.
    assert 0.9 <= report["mean_delay_ticks"] <= report["max_delay_ticks"]
    # Measured: the decoder delay plus at least the hop the reply takes, at most the largest
    # playout delay the budget allows.
    decoder = report["decoder_delay_ms"]
    assert decoder + 10 - 3 <= report["measured_internal_ms"] <= decoder + 10 * report["max_delay_ticks"] + 3


def _default_sigint() -> None:
    """In the child: Ctrl-C as a terminal delivers it. A test run in the background (`cmd &` in a
    script, as CI may start it) inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_cleanly(audio_env, tmp_path):
    feeder = Feeder(audio_env["HOPCODEC_MIC_FIFO"], np.zeros(SAMPLE_RATE), tmp_path)
    recorder = SpeakerRecorder(audio_env, tmp_path / "speaker.raw")
    # PYTHONFAULTHANDLER: if the shutdown hangs, SIGABRT makes it print where every thread is.
    process = subprocess.Popen([sys.executable, "-m", "hopcodec", "mic", "--local"],
                               env={**audio_env, "PYTHONFAULTHANDLER": "1"},
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=_default_sigint)
    try:
        lines = []  # wait for a status line: the loop is running (ALSA may print other lines)
        while not any("mouth-to-ear" in line for line in lines) and process.poll() is None:
            lines.append(process.stderr.readline())
        assert process.poll() is None, "".join(lines)
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            out, err = process.communicate(timeout=30)
            pytest.fail(f"the mic client did not stop within 30 s of Ctrl-C; its threads:\n{err[-6000:]}")
    finally:
        feeder.stop()
        recorder.stop()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "stopped       Ctrl-C" in out and "mouth-to-ear" in out


def test_no_audio_device_is_a_clear_error(tmp_path):
    env = {**os.environ, "PULSE_SERVER": f"unix:{tmp_path}/no-such-socket", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "hopcodec", "mic", "--local", "--duration", "1"],
                            capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("hopcodec: error:")]
    assert errors and "no audio input device found" in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_list_devices_shows_the_pulseaudio_devices(audio_env):
    result = subprocess.run([sys.executable, "-m", "hopcodec", "mic", "--list-devices"],
                            capture_output=True, text=True, timeout=60, env=audio_env, cwd=ROOT)
    assert result.returncode == 0 and "pulse" in result.stdout
