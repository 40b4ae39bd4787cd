"""`hopcodec bench`: a short real run whose numbers must be sane, and its parts one by one."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import hopcodec
from hopcodec.bench import metrics
from hopcodec.bench.align import apply_delay, codec_delay, estimate_delay
from hopcodec.bench.audio import load_16k
from hopcodec.bench.clips import find_clips
from hopcodec.bench.errors import BenchError, MissingDependency
from hopcodec.bench.pitch import track_f0

SAMPLES = Path(hopcodec.__file__).parent / "samples"
FAST_METRICS = ["pesq", "stoi", "lsd"]


def _hopcodec_codecs() -> list[str]:
    from hopcodec.bench.codecs import hopcodec_names

    return hopcodec_names()


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - BenchResult
    """The bench on the two bundled real-speech clips, both cores, the quick metrics."""
    pytest.importorskip("pesq", reason="the bench extra (pesq) is not installed")
    pytest.importorskip("pystoi", reason="the bench extra (pystoi) is not installed")
    pytest.importorskip("opuslib", reason="the bench extra (opuslib) is not installed")
    from hopcodec.bench.runner import run_bench

    codecs = ["reference", "opus-6k", "opus-12k", *_hopcodec_codecs()]
    if shutil.which("c2enc") and shutil.which("c2dec"):
        codecs.append("codec2-3200")
    out = tmp_path_factory.mktemp("bench")
    return run_bench(SAMPLES, codecs=codecs, out_dir=out, metrics=FAST_METRICS, workers=2,
                     progress=False)


def _mean(result, codec: str, metric: str) -> float:  # noqa: ANN001
    return float(np.mean([r[metric] for r in result.rows if r["codec"] == codec]))


def test_bench_writes_every_output(bench_run) -> None:  # noqa: ANN001
    out = bench_run.out_dir
    for name in ("report.md", "results.csv", "summary.csv", "results.json",
                 "quality_vs_bitrate.png", "spectrograms.png"):
        assert (out / name).stat().st_size > 0, name
    n_codecs = len(bench_run.codecs)
    assert len(bench_run.rows) == 2 * n_codecs
    with (out / "results.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 2 * n_codecs
    data = json.loads((out / "results.json").read_text())
    assert data["meta"]["clips"] == 2
    assert not list(out.glob(".work-*")), "decoded audio is removed unless asked to keep it"
    report = (out / "report.md").read_text()
    assert "PESQ-WB" in report and "`opus-12k`" in report


def test_decoder_speed_is_measured_per_hop_per_file_and_for_streams_at_once(bench_run) -> None:  # noqa: ANN001
    rows = bench_run.meta["decoder_speed"]
    from hopcodec.bench.speed import STREAMS_AT_ONCE
    from streaming_core.synthesizers import available_synthesizers

    assert len(rows) == 3 * len(available_synthesizers())
    assert {(r["packet_frames"], r["streams"]) for r in rows} == {(1, 1), (20, 1),
                                                                   (1, STREAMS_AT_ONCE)}
    for r in rows:
        assert 0 < r["rtf"] < 1, r
    neural = [r for r in rows if r["parameters"]]
    assert all(r["flops_per_hop"] > 1e5 for r in neural)
    assert "## Decoder speed" in (bench_run.out_dir / "report.md").read_text()


def test_the_report_compares_each_neural_mode_with_its_dsp_decoder_clip_by_clip(bench_run) -> None:  # noqa: ANN001
    report = (bench_run.out_dir / "report.md").read_text()
    section = report.split("## Clip by clip", 1)[1].split("\n## ", 1)[0]
    neural = [n for n in bench_run.codecs if n.startswith("hopcodec-") and not n.endswith("-dsp")]
    for name in neural:
        assert f"| `{name}` | `{name}-dsp` |" in section, name
    if "codec2-3200" in bench_run.codecs and "hopcodec-hop-1600" in bench_run.codecs:
        assert "| `hopcodec-hop-1600` | `codec2-3200` |" in section


def _rows(codec: str, other: str, metric: str, a: list[float], b: list[float]) -> list[dict]:
    return ([{"clip": f"c{i}", "codec": codec, metric: v} for i, v in enumerate(a)]
            + [{"clip": f"c{i}", "codec": other, metric: v} for i, v in enumerate(b)])


def test_paired_differences_call_a_difference_within_two_standard_errors_level() -> None:
    from hopcodec.bench.paired import paired_differences

    rng = np.random.default_rng(0)
    base = rng.normal(2.5, 0.3, 40)
    noise = rng.normal(0.0, 0.05, 40)
    ahead = paired_differences(_rows("a", "b", "dnsmos_ovrl", base + 0.1 + noise, base), "a", "b",
                               ["dnsmos_ovrl"])[0]
    assert ahead.clips == 40 and ahead.mean == pytest.approx(0.1 + noise.mean())
    assert ahead.standard_error == pytest.approx(noise.std(ddof=1) / np.sqrt(40))
    assert ahead.verdict == "better"
    tied = paired_differences(_rows("a", "b", "dnsmos_ovrl", base + noise, base), "a", "b",
                              ["dnsmos_ovrl"])[0]
    assert tied.verdict == "level"
    # lower WARP-Q is better: a codec 0.1 higher on every clip is worse
    warpq = paired_differences(_rows("a", "b", "warpq", base + 0.1 + noise, base), "a", "b",
                               ["warpq"])[0]
    assert warpq.verdict == "worse"


def test_paired_differences_skip_clips_without_both_scores() -> None:
    from hopcodec.bench.paired import paired_differences

    rows = _rows("a", "b", "pesq_wb", [2.0, float("nan"), 3.0, 2.5], [1.0, 1.0, 2.0, 1.5])
    rows.append({"clip": "only-a", "codec": "a", "pesq_wb": 4.0})
    d = paired_differences(rows, "a", "b", ["pesq_wb"])[0]
    assert d.clips == 3 and d.mean == pytest.approx(1.0) and d.verdict == "better"
    one = paired_differences(rows[:1] + rows[4:5], "a", "b", ["pesq_wb"])[0]
    assert one.clips == 1 and one.verdict == "too few clips"


def test_reference_scores_best_on_every_metric(bench_run) -> None:  # noqa: ANN001
    for m in bench_run.metrics:
        better_high = metrics.METRICS[m].higher_is_better
        ref = _mean(bench_run, "reference", m)
        for codec in bench_run.codecs:
            if codec == "reference":
                continue
            other = _mean(bench_run, codec, m)
            assert (ref > other) if better_high else (ref < other), (m, codec, ref, other)


def test_opus_12k_beats_opus_6k_on_pesq(bench_run) -> None:  # noqa: ANN001
    assert _mean(bench_run, "opus-12k", "pesq_wb") > _mean(bench_run, "opus-6k", "pesq_wb")


def test_measured_bitrates_match_nominal(bench_run) -> None:  # noqa: ANN001
    modes = [n for n in bench_run.codecs if n.startswith("hopcodec-")]
    if not modes:
        pytest.skip("no hopcodec mode is built yet")
    for name in modes:
        nominal = bench_run.codecs[name].nominal_bps
        for r in (r for r in bench_run.rows if r["codec"] == name):
            assert abs(r["bitrate_bps"] - nominal) <= 0.05 * nominal, (name, r["bitrate_bps"])
    # Opus is VBR: near its target, not on it.
    for r in (r for r in bench_run.rows if r["codec"] == "opus-12k"):
        assert 0.7 * 12000 < r["bitrate_bps"] < 1.3 * 12000


def test_delays_found(bench_run) -> None:  # noqa: ANN001
    assert bench_run.codecs["reference"].delay_samples == 0
    # libopus at 16 kHz: 6.5 ms lookahead = 104 samples, found within a sample or two
    assert abs(bench_run.codecs["opus-12k"].delay_samples - 104) <= 2


def test_scores_do_not_depend_on_worker_count(bench_run, tmp_path: Path) -> None:  # noqa: ANN001
    from hopcodec.bench.runner import run_bench

    codecs = ["opus-6k", *_hopcodec_codecs()[:1]]
    again = run_bench(SAMPLES, codecs=codecs, out_dir=tmp_path, metrics=FAST_METRICS, workers=1,
                      progress=False)
    first = {(r["clip"], r["codec"]): r for r in bench_run.rows}
    for r in again.rows:
        before = first[(r["clip"], r["codec"])]
        for key in ["payload_bytes", "delay_samples"]:
            assert r[key] == before[key], key
        # Equal up to float summation order (BLAS threads differ between worker processes).
        for key in again.metrics:
            assert r[key] == pytest.approx(before[key], rel=1e-9, abs=1e-12, nan_ok=True), key


# --- parts -------------------------------------------------------------------------------------

def test_estimate_delay_recovers_a_shift() -> None:
    x = load_16k(sorted(SAMPLES.glob("*.wav"))[0])
    for shift in (0, 37, 300, -50):
        y = apply_delay(x, -shift, len(x) + abs(shift))  # y lags x by `shift`
        assert estimate_delay(x, y) == shift
    assert codec_delay([10, 12, 500]) == 12  # one wrong clip does not move it


def test_apply_delay_pads_and_cuts() -> None:
    x = np.arange(1, 6, dtype=np.float32)
    assert apply_delay(x, 2, 5).tolist() == [3, 4, 5, 0, 0]
    assert apply_delay(x, -2, 5).tolist() == [0, 0, 1, 2, 3]


def test_yin_tracks_a_pulse_train() -> None:
    sr, f0 = 16000, 160.0
    x = np.zeros(sr)
    x[:: int(sr / f0)] = 1.0
    x = np.convolve(x, np.hanning(40), mode="same")
    track, voiced = track_f0(x, sr)
    assert voiced.mean() > 0.9
    assert abs(np.median(track[voiced]) - f0) < 2.0


def test_lsd_is_zero_for_identical_and_grows_with_lowpass() -> None:
    x = load_16k(sorted(SAMPLES.glob("*.wav"))[0])
    assert metrics.lsd_8k(x, x) == 0.0
    spectrum = np.fft.rfft(x)
    spectrum[len(spectrum) // 2 :] = 0  # cut above 4 kHz
    y = np.fft.irfft(spectrum, len(x)).astype(np.float32)
    assert metrics.lsd_8k(x, y) > 5.0
    assert metrics.lsd_4k(x, y) < 1.0


def test_metric_selection() -> None:
    assert metrics.select(["pesq", "lsd"]) == ["pesq_wb", "lsd_8k", "lsd_4k"]
    assert "dnsmos_ovrl" not in metrics.select(None, skip=["dnsmos"])
    with pytest.raises(BenchError, match="unknown metric"):
        metrics.select(["nope"])


def test_missing_metric_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = metrics.Metric("fake", "Fake", metrics.lsd_8k, True, ("no_such_module_x",),
                          "no-such-package")
    monkeypatch.setitem(metrics.METRICS, "fake", fake)
    with pytest.raises(MissingDependency, match="no-such-package"):
        metrics.require("fake")


def _write_set(root: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for group, split in [("a", "test"), ("b", "test"), ("c", "train")]:
        for i in range(4):
            rel = f"wav/{group}/{i}.wav"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / rel, 0.1 * rng.standard_normal(16000 + 800 * i), 16000)
            rows.append({"path": rel, "split": split, "speaker": group, "group": group,
                         "duration_s": (16000 + 800 * i) / 16000})
    with (root / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_find_clips_uses_the_split_and_spreads_over_groups(tmp_path: Path) -> None:
    _write_set(tmp_path)
    clips = find_clips(tmp_path, "test")
    assert len(clips) == 8 and {c.group for c in clips} == {"a", "b"}
    picked = find_clips(tmp_path, "test", max_clips=3)
    assert [c.group for c in picked].count("a") == 2 and len(picked) == 3
    assert picked == find_clips(tmp_path, "test", max_clips=3)
    assert len(find_clips(tmp_path, None)) == 12
    with pytest.raises(BenchError, match="no rows in split"):
        find_clips(tmp_path, "valid")


def test_find_clips_errors(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="not found"):
        find_clips(tmp_path / "missing")
    with pytest.raises(BenchError, match="no audio files"):
        find_clips(tmp_path)


@pytest.mark.skipif(shutil.which("c2enc") is None, reason="codec2 tools not installed")
def test_codec2_bytes_are_whole_frames() -> None:
    from hopcodec.bench.codecs import make_codec

    x = load_16k(sorted(SAMPLES.glob("*.wav"))[0])
    coded = make_codec("codec2-3200").run(x)
    assert coded.payload_bytes % 8 == 0  # 64 bits per 20 ms frame
    assert abs(8 * coded.payload_bytes / (len(x) / 16000) - 3200) < 0.05 * 3200


def _cli(argv: list[str]) -> int:
    from hopcodec.bench.cli import register

    parser = argparse.ArgumentParser(prog="hopcodec")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


@pytest.mark.parametrize(
    "argv, message",
    [
        pytest.param(["bench", "--set", "/no/such/dir"], "not found", id="missing-dir"),
        pytest.param(["bench", "--set", "EMPTY"], "no audio files", id="no-audio"),
        pytest.param(["bench"], "--set DIR is required", id="no-set"),
        pytest.param(["bench", "--set", "SAMPLES", "--codecs", "mp3"], "unknown codec",
                     id="bad-codec"),
    ],
)
def test_cli_bad_input_is_one_line(argv: list[str], message: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(tmp_path) if a == "EMPTY" else str(SAMPLES) if a == "SAMPLES" else a
            for a in argv]
    assert _cli(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hopcodec: error:") and message in err[0]
