"""scripts/ab_decoder.py: decoder A/B on real speech with the bench's metrics."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "ab_decoder.py"
GRAPH = ROOT / "models" / "released" / "hopvocoder.onnx"


def run_ab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def pesq_of_one_clip(tmp_path: Path, tag: str, *options: str) -> tuple[str, dict]:
    """(stdout, saved JSON) of the released graph scored by PESQ-WB on one bundled clip."""
    out = tmp_path / f"ab-{tag}.json"
    result = run_ab("--set", "hopcodec/samples", "--max-clips", "1", "--mode", "hop-1600",
                    "--graph", f"neural={GRAPH}", "--metrics", "pesq_wb", "--workers", "1",
                    "--out", str(out), *options)
    assert result.returncode == 0, result.stderr
    return result.stdout, json.loads(out.read_text())


def test_ab_scores_each_variant_on_the_same_bits(tmp_path: Path) -> None:
    pytest.importorskip("pesq", reason="the bench extra (pesq) is not installed")
    out = tmp_path / "ab.json"
    result = run_ab("--set", "hopcodec/samples", "--max-clips", "1", "--mode", "hop-1600",
                    "--graph", "dsp=dsp", "--graph", f"neural={GRAPH}",
                    "--metrics", "pesq_wb", "--workers", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "| neural |" in result.stdout and "| dsp |" in result.stdout
    scores = json.loads(out.read_text())["scores"]
    dsp, neural = scores["dsp"][0]["pesq_wb"], scores["neural"][0]["pesq_wb"]
    assert 1.0 <= dsp <= 4.6 and 1.0 <= neural <= 4.6
    assert neural != dsp  # two decoders really ran


def test_ab_refuses_a_missing_graph() -> None:
    result = run_ab("--set", "hopcodec/samples", "--graph", "x=/no/such/graph.onnx")
    assert result.returncode != 0
    assert "decoder graph not found: /no/such/graph.onnx" in result.stderr


def test_ab_clean_shape_shows_what_coding_it_costs(tmp_path: Path) -> None:
    pytest.importorskip("pesq", reason="the bench extra (pesq) is not installed")
    scores = {clean: pesq_of_one_clip(tmp_path, clean, "--clean", clean)[1]["scores"]["neural"][0]
              ["pesq_wb"] for clean in ("", "shape")}
    assert scores["shape"] > scores[""] + 0.1  # the envelope bits are what hop-1600 lacks most


def test_ab_search_beam_changes_the_bits_not_the_decoder(tmp_path: Path) -> None:
    pytest.importorskip("pesq", reason="the bench extra (pesq) is not installed")
    scores = {}
    for beam in ("1", "8"):  # hop-2400: hop-1600 searches one codebook per path since format 8
        stdout, saved = pesq_of_one_clip(tmp_path, beam, "--search-beam", beam, "--mode", "hop-2400")
        assert f"search beam {beam}" in stdout and saved["search_beam"] == int(beam)
        scores[beam] = saved["scores"]["neural"][0]["pesq_wb"]
    assert scores["1"] != scores["8"]  # the greedy search chose other codewords


@pytest.mark.parametrize(("flag", "key", "label", "values"), [
    ("--search-weighting", "search_weighting", "search weighting", ("0", "0.15")),
    ("--high-band-weight", "high_band_weight", "high-band weight", ("1", "0.3")),
])
def test_ab_search_weights_change_the_bits(tmp_path: Path, flag: str, key: str, label: str,
                                           values: tuple[str, str]) -> None:
    pytest.importorskip("pesq", reason="the bench extra (pesq) is not installed")
    scores = {}
    for value in values:
        stdout, saved = pesq_of_one_clip(tmp_path, value, flag, value)
        assert f"{label} {float(value)}" in stdout and saved[key] == float(value)
        scores[value] = saved["scores"]["neural"][0]["pesq_wb"]
    assert scores[values[0]] != scores[values[1]]  # the other weights chose other codewords


def test_ab_refuses_a_search_beam_below_one() -> None:
    result = run_ab("--set", "hopcodec/samples", "--graph", f"neural={GRAPH}", "--search-beam", "0")
    assert result.returncode != 0
    assert "--search-beam must be at least 1" in result.stderr


def test_ab_error_feedback_changes_hop_1600s_bits(tmp_path: Path) -> None:
    pytest.importorskip("pesq", reason="the bench extra (pesq) is not installed")
    scores = {}
    for share in ("0", "0.5"):
        stdout, saved = pesq_of_one_clip(tmp_path, share, "--error-feedback", share,
                                         "--error-feedback-change", "0.3")
        assert f"error feedback {float(share)} (change 0.3)" in stdout
        assert saved["error_feedback"] == [float(share), 0.3]
        scores[share] = saved["scores"]["neural"][0]["pesq_wb"]
    assert scores["0"] != scores["0.5"]  # the search chose other codewords


def test_ab_error_feedback_alone_keeps_the_modes_change(tmp_path: Path) -> None:
    """hop-1600 codes with K = 0.5 and D = 0.3: `--error-feedback 0.5` alone (D left to the
    mode) codes as the release does, and D = 0 (no gate) codes otherwise."""
    pytest.importorskip("pesq", reason="the bench extra (pesq) is not installed")
    _, released = pesq_of_one_clip(tmp_path, "released")
    stdout, own = pesq_of_one_clip(tmp_path, "own", "--error-feedback", "0.5")
    assert "error feedback 0.5 (change the mode's own)" in stdout
    _, ungated = pesq_of_one_clip(tmp_path, "ungated", "--error-feedback", "0.5",
                                  "--error-feedback-change", "0")
    score = {name: saved["scores"]["neural"][0]["pesq_wb"]
             for name, saved in (("released", released), ("own", own), ("ungated", ungated))}
    assert score["own"] == score["released"]
    assert score["ungated"] != score["released"]


def test_ab_refuses_an_error_feedback_of_one() -> None:
    result = run_ab("--set", "hopcodec/samples", "--graph", f"neural={GRAPH}", "--error-feedback", "1")
    assert result.returncode != 0
    assert "--error-feedback must be at least 0 and below 1" in result.stderr


def test_ab_refuses_an_error_feedback_change_alone() -> None:
    result = run_ab("--set", "hopcodec/samples", "--graph", f"neural={GRAPH}",
                    "--error-feedback-change", "0.3")
    assert result.returncode != 0
    assert "--error-feedback-change needs --error-feedback" in result.stderr
