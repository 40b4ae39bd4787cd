"""`hopcodec loadtest` against a real server on loopback: every frame sent comes back, and the
server's own figures (CPU, hop processing, graph batches) are read from its /metrics."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from server.config import Settings
from server.loadtest import histogram_quantile
from server.testing import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


def loadtest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hopcodec", "loadtest", *args],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)


def test_every_frame_comes_back_and_the_servers_figures_are_read() -> None:
    with ServerProcess(Settings()) as server:
        result = loadtest("--url", server.ws, "--streams", "3", "--seconds", "2", "--ramp", "0.2",
                          "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["streams_held"] == 3 and report["closes"] == {}
    assert report["frames_received"] == report["frames_sent"] >= 3 * 200
    assert report["frames_lost"] == 0 and report["error_replies"] == 0
    assert report["round_trip_p50_ms"] > 0
    # From the server's /metrics (one worker, so both scrapes come from it); how fast is the
    # business of docs/service.md's load tests, not of this test.
    assert report["server_cpu_percent"] > 0
    assert report["hop_processing_p50_ms"] > 0 and report["thread_wait_p50_ms"] is not None
    assert report["decoder_mean_batch"] >= 1 and report["predictor_mean_batch"] >= 1
    assert report["streams_per_pass"] >= 1
    assert report["frames_concealed"] == 0


def test_an_unreachable_server_is_reported_not_raised() -> None:
    result = loadtest("--url", "ws://127.0.0.1:9", "--streams", "2", "--seconds", "1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "connect failed" in result.stdout and "streams_held               0" in result.stdout


def test_histogram_quantiles_interpolate_inside_their_bucket() -> None:
    buckets = {0.001: 10.0, 0.002: 30.0, math.inf: 40.0}  # cumulative, as Prometheus keeps them
    assert histogram_quantile(buckets, 0.25) == pytest.approx(0.001)
    assert histogram_quantile(buckets, 0.5) == pytest.approx(0.0015)
    assert histogram_quantile(buckets, 0.125) == pytest.approx(0.0005)
    assert histogram_quantile(buckets, 0.99) == 0.002  # beyond the last finite edge: that edge
    assert histogram_quantile({}, 0.5) is None and histogram_quantile({math.inf: 0.0}, 0.5) is None
