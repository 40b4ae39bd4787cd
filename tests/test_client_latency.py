"""`hopcodec latency`: algorithmic latency as configured and measured, and end-to-end latency
over a real server on loopback, whose per-packet timestamps agree with a cross-correlation of
what went in and what came out."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from client.e2e import KEPT_REAL_TIME, SEGMENTS
from client.latency_report import print_latency_report
from server.config import Settings
from server.testing import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


def latency_json(*args: str, attempts: int = 3) -> dict:
    """`hopcodec latency --json ...`, run again (up to `attempts` runs) while the report says the
    machine did not keep real time: in CI a stalled VM once left every packet of a run late (0 of
    200 played) and the next run on time; a run that kept real time is what the checks need."""
    for _ in range(attempts):
        result = subprocess.run([sys.executable, "-m", "hopcodec", "latency", "--json", *args],
                                capture_output=True, text=True, timeout=180, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        if report.get("end_to_end", {}).get("kept_real_time", True):
            break
    return report


def check_end_to_end(run: dict, algorithmic_ms: float) -> None:
    # Nearly every packet plays in time (on a busy machine the 10 ms ticks themselves slip).
    assert run["kept_real_time"] and run["played"] >= KEPT_REAL_TIME * run["packets"] > 100
    segments = run["segments_ms"]
    assert set(segments) == set(SEGMENTS)
    # The codec's own parts are the configured algorithmic latency.
    codec = segments["hop buffering"]["median"] + segments["decoder delay"]["median"]
    assert codec == pytest.approx(algorithmic_ms)
    # On loopback the network and the server's decode take well under a hop on an idle machine;
    # while the whole suite runs on a slow 2-core VM the loopback leg queued 18-70 ms (CI of
    # 2026-12-03), so the bound only catches packets that are stuck, not a busy machine.
    assert segments["network"]["median"] < 100 and segments["server decode"]["median"] < 100
    # Timestamps and cross-correlation tell the same mouth-to-ear time: the correlation's lag lies
    # within the per-packet totals (on an idle machine they agree to within a millisecond; on a
    # busy one the playout delay moves during the run and the correlation picks its usual value).
    total = run["mouth_to_ear_ms"]
    assert total["p5"] - 2 <= run["measured_mouth_to_ear_ms"] <= total["p95"] + 2
    # Algorithmic + a hop or so of jitter buffer for the round trip + the modelled playback buffer.
    fixed = algorithmic_ms + run["playback_buffer_ms"]
    assert fixed <= total["median"] <= fixed + 100


def test_latency_with_a_local_server_and_png(tmp_path, capsys):
    png = tmp_path / "timeline.png"
    report = latency_json("--mode", "scalar-2400", "--seconds", "2", "--png", str(png))
    algorithmic = report["algorithmic"]
    configured = algorithmic["configured"]["total_ms"]
    assert configured <= 20.0
    assert algorithmic["measured"]["scalar-2400"]["measured_ms"] == pytest.approx(configured, abs=1.0)
    check_end_to_end(report["end_to_end"], configured)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # The table says so when a run did not keep real time, and only then.
    print_latency_report(report)
    assert "warning" not in capsys.readouterr().out
    print_latency_report({**report, "end_to_end": {**report["end_to_end"], "kept_real_time": False}})
    assert "did not keep real time" in capsys.readouterr().out


def test_latency_over_a_given_server_with_a_token():
    with ServerProcess(Settings(token="lat-token")) as server:
        report = latency_json("--mode", "scalar-4000", "--seconds", "2", "--server", server.ws,
                              "--token", "lat-token")
    run = report["end_to_end"]
    assert run["server"].startswith("ws://127.0.0.1") and run["mode"] == "scalar-4000"
    check_end_to_end(run, report["algorithmic"]["configured"]["total_ms"])


def test_latency_table_and_clear_errors():
    table = subprocess.run([sys.executable, "-m", "hopcodec", "latency", "--algorithmic-only",
                            "--mode", "scalar-2400"],
                           capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert table.returncode == 0 and "configured" in table.stdout and "measured" in table.stdout
    refused = subprocess.run([sys.executable, "-m", "hopcodec", "latency", "--mode", "scalar-2400",
                              "--server", "ws://127.0.0.1:9"], capture_output=True, text=True,
                             timeout=180, cwd=ROOT)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("hopcodec: error: cannot reach ws://127.0.0.1:9")
