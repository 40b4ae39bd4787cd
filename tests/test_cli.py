"""The command line: the main paths and every error path (one line, non-zero, no traceback)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from hopcodec.cli import DEFAULT_SAMPLE, main
from streaming_core.bitstream import FORMAT_VERSION
from streaming_core.latency import latency_budget
from streaming_core.modes import list_modes


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hopcodec", *args], capture_output=True,
                          text=True, timeout=120)


def assert_clean_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hopcodec: error:"), result.stderr
    assert fragment in lines[0]


def test_info_json_lists_modes_and_latency():
    result = run_cli("info", "--json")
    assert result.returncode == 0
    info = json.loads(result.stdout)
    assert info["sample_rate"] == 16000 and info["hop_samples"] == 160
    assert [m["name"] for m in info["modes"]] == [m.name for m in list_modes()]
    assert len(info["modes"]) >= 2
    latency = info["algorithmic_latency"]
    parts = latency["hop_buffering_ms"] + latency["encoder_lookahead_ms"] + latency["decoder_delay_ms"]
    assert latency["total_ms"] == pytest.approx(parts)
    assert latency["total_ms"] <= 20.0


def test_roundtrip_48k_stereo(tmp_path):
    speech, rate = soundfile.read(str(DEFAULT_SAMPLE))
    upsampled = soxr.resample(speech, rate, 48000)
    stereo = np.stack([upsampled, 0.3 * upsampled[::-1]], axis=1)
    source = tmp_path / "stereo48k.flac"
    soundfile.write(str(source), stereo, 48000)
    out = tmp_path / "out.wav"
    assert main(["roundtrip", str(source), str(out), "--bitrate", "4000"]) == 0
    decoded, out_rate = soundfile.read(str(out))
    assert out_rate == 48000 and decoded.ndim == 1 and len(decoded) == len(stereo)
    assert np.sqrt(np.mean(decoded**2)) > 0.02


def test_encode_then_decode_at_another_rate(tmp_path, capsys):
    coded = tmp_path / "clip.hop"
    assert main(["encode", str(DEFAULT_SAMPLE), str(coded), "--mode", "scalar-2400"]) == 0
    printed = capsys.readouterr().out
    payload_bps = float(re.search(r"(\d+) bps payload", printed).group(1))
    assert payload_bps == pytest.approx(2400, rel=0.02)
    out = tmp_path / "clip8k.wav"
    assert main(["decode", str(coded), str(out), "--rate", "8000"]) == 0
    decoded, rate = soundfile.read(str(out))
    seconds = soundfile.info(str(DEFAULT_SAMPLE)).duration
    assert rate == 8000 and abs(len(decoded) / rate - seconds) < 0.01


def test_encode_names_telephone_band_input(tmp_path, capsys):
    speech, rate = soundfile.read(str(DEFAULT_SAMPLE))
    phone = tmp_path / "phone8k.wav"
    soundfile.write(str(phone), soxr.resample(speech, rate, 8000), 8000)
    assert main(["encode", str(DEFAULT_SAMPLE), str(tmp_path / "wide.hop")]) == 0
    assert "bandwidth     wideband" in capsys.readouterr().out
    assert main(["encode", str(phone), str(tmp_path / "phone.hop")]) == 0
    share = re.search(r"telephone band \(nothing above 4 kHz\) in (\d+)% of the audio",
                      capsys.readouterr().out)
    assert share and 50 <= int(share.group(1)) <= 100


def test_demo_writes_decoded_speech(tmp_path):
    out = tmp_path / "demo.wav"
    result = run_cli("demo", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "bps payload" in result.stdout and "15.0 ms algorithmic" in result.stdout
    assert soundfile.info(str(out)).frames > 16000


BASE_INSTALL = """
import sys
for name in ("fastapi", "uvicorn", "websockets", "prometheus_client", "sounddevice"):
    sys.modules[name] = None  # importing it raises ImportError, as in a base install
from hopcodec.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_base_install(*args: str) -> subprocess.CompletedProcess:
    """The CLI as the README's first command installs it: no serve, client or train extra."""
    return subprocess.run([sys.executable, "-c", BASE_INSTALL, *args], capture_output=True,
                          text=True, timeout=300)


def test_the_base_install_runs_the_demo_and_names_the_missing_extras(tmp_path):
    out = tmp_path / "decoded.wav"
    demo = run_base_install("demo", "--out", str(out))
    assert demo.returncode == 0, demo.stderr
    assert soundfile.info(str(out)).frames > 16000
    for command, extra in (("serve", "serve"), ("loadtest", "serve"), ("mic", "client"),
                           ("latency", "client")):
        result = run_base_install(command)
        assert_clean_error(result, f"pip install 'hopcodec[{extra}]'")
    algorithmic = run_base_install("latency", "--algorithmic-only", "--mode", "hop-1600", "--json")
    assert algorithmic.returncode == 0, algorithmic.stderr
    measured = json.loads(algorithmic.stdout)["algorithmic"]["measured"]["hop-1600"]["measured_ms"]
    assert 5.0 < measured <= 20.0


@pytest.fixture()
def bad_inputs(tmp_path) -> dict[str, Path]:
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not audio")
    empty = tmp_path / "empty.wav"
    soundfile.write(str(empty), np.zeros((0, 1)), 16000)
    bad_hop = tmp_path / "bad.hop"
    bad_hop.write_bytes(b"HOPC" + bytes([FORMAT_VERSION, 1]) + bytes(5))
    forged_hop = tmp_path / "forged.hop"
    forged_hop.write_bytes(b"HOPC" + bytes([FORMAT_VERSION]) + b"\x01\x00\x00\x3e\x80" + bytes(8)
                           + b"\x00\x05" + bytes([FORMAT_VERSION << 4]) + b"\x09\x00\x00\x01")
    return {"not_audio": not_audio, "empty": empty, "bad_hop": bad_hop, "forged_hop": forged_hop,
            "missing": tmp_path / "missing.wav", "folder": tmp_path}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("encode", "{missing}", "{tmp}/x.hop"), "no such file"),
        (("encode", "{not_audio}", "{tmp}/x.hop"), "not a readable audio file"),
        (("encode", "{empty}", "{tmp}/x.hop"), "contains no audio samples"),
        (("encode", "{folder}", "{tmp}/x.hop"), "is a folder"),
        (("roundtrip", "{not_audio}", "{tmp}/x.wav"), "not a readable audio file"),
        (("roundtrip", "{sample}", "{tmp}/x.wav", "--mode", "nope"), "unknown mode 'nope'"),
        (("roundtrip", "{sample}", "{tmp}/x.wav", "--bitrate", "-5"), "--bitrate must be positive"),
        (("decode", "{bad_hop}", "{tmp}/x.wav"), "shorter than the 18-byte header"),
        (("decode", "{forged_hop}", "{tmp}/x.wav"), "unknown mode id 9"),
        (("decode", "{not_audio}", "{tmp}/x.wav"), "not a hopcodec file"),
        (("decode", "{missing}", "{tmp}/x.wav"), "no such file"),
        (("decode", "{sample}", "{tmp}/x.wav", "--rate", "5"), "--rate must be between"),
        (("roundtrip", "{sample}", "{tmp}/no/such/dir/x.wav"), "does not exist"),
    ],
)
def test_error_paths(bad_inputs, tmp_path, args, fragment):
    names = {k: str(v) for k, v in bad_inputs.items()} | {"tmp": str(tmp_path),
                                                           "sample": str(DEFAULT_SAMPLE)}
    assert_clean_error(run_cli(*(a.format(**names) for a in args)), fragment)


def test_latency_budget_within_20ms():
    assert latency_budget()["total_ms"] <= 20.0
