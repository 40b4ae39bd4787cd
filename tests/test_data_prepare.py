"""Corpus preparation, the Debian recipe's logic, the feature cache, augmentation and loader.

Trees of real speech are built at test time from the bundled clips in hopcodec/samples, in
flat, LibriSpeech-like and VCTK-like layouts, at other rates and channel counts.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from models.data import DataError, convert, recipe
from models.data.augment import augment
from models.data.cli import main as data_main
from models.data.features_cache import HOP, build_cache, open_split
from models.data.loader import FeatureDataset
from models.data.prepare import prepare_corpus
from models.data.splits import assign_splits, check_no_leak

SAMPLES = Path(__file__).resolve().parent.parent / "hopcodec" / "samples"
SR = 16000


def standin_analyze(x: np.ndarray) -> np.ndarray:
    """Cheap stand-in with the core's contract: ceil(len / 160) frames, frame i covering
    samples [160 i - 160, 160 i + 160); features = log energies of 4 sub-bands + 2 extras."""
    n = -(-len(x) // HOP)
    padded = np.zeros((n + 1) * HOP, dtype=np.float64)
    padded[HOP:HOP + len(x)] = x
    frames = np.lib.stride_tricks.sliding_window_view(padded, 2 * HOP)[::HOP][:n]
    spec = np.abs(np.fft.rfft(frames * np.hanning(2 * HOP), axis=1)) ** 2
    bands = np.log10(np.stack([b.sum(axis=1) for b in np.array_split(spec, 4, axis=1)], 1)
                     + 1e-9)
    extra = np.stack([frames.std(axis=1), frames[:, -1]], axis=1)
    return np.concatenate([bands, extra], axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """The bundled real speech clips, 16 kHz mono float32."""
    found = sorted(SAMPLES.glob("*.wav"))
    if not found:
        pytest.skip("no bundled clips in hopcodec/samples")
    return [sf.read(p, dtype="float32")[0] for p in found]


def piece(clips: list[np.ndarray], i: int, seconds: float = 1.2) -> np.ndarray:
    """A distinct speech excerpt: clip i % n, starting a little later for larger i."""
    x = clips[i % len(clips)]
    start = (i // len(clips)) * 4000 % max(1, len(x) - int(seconds * SR))
    return x[start:start + int(seconds * SR)]


def write(path: Path, x: np.ndarray, rate: int = SR, channels: int = 1) -> Path:
    """Write speech `x` (16 kHz) at `rate` with `channels` channels (format from suffix)."""
    y = soxr.resample(x, SR, rate) if rate != SR else x
    if channels > 1:
        y = np.stack([y * (0.5 + 0.5 * c / channels) for c in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y, rate)
    return path


@pytest.fixture()
def tree(tmp_path: Path, clips: list[np.ndarray]) -> dict[str, Path]:
    """Three sources: flat (44.1 kHz stereo FLAC + 8 kHz WAV + silence + too short),
    LibriSpeech-like (4 speakers, 22.05 kHz FLAC) and VCTK-like (2 speakers, 48 kHz WAV)."""
    flat = tmp_path / "src" / "flat"
    write(flat / "hello.flac", piece(clips, 0), 44100, channels=2)
    write(flat / "narrow.wav", piece(clips, 1), 8000)
    rng = np.random.default_rng(0)
    write(flat / "silence.wav", 1e-4 * rng.standard_normal(SR).astype(np.float32))
    write(flat / "short.wav", piece(clips, 2, seconds=0.3))
    libri = tmp_path / "src" / "libri"
    for s in range(4):
        for u in range(2):
            write(libri / f"{100 + s}" / "7" / f"{100 + s}-7-{u:04d}.flac",
                  piece(clips, 2 * s + u + 3), 22050)
    vctk = tmp_path / "src" / "vctk"
    for s, spk in enumerate(("p225", "p226")):
        for u in range(2):
            write(vctk / "wav48" / spk / f"{spk}_{u:03d}.wav", piece(clips, 2 * s + u + 11),
                  48000)
    (vctk / "txt").mkdir()
    return {"flat": flat, "libri": libri, "vctk": vctk, "root": tmp_path}


def read_rows(corpus: Path) -> list[dict]:
    with open(corpus / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_prepare_layouts_to_mono_16k(tree: dict[str, Path]) -> None:
    out = tree["root"] / "corpus"
    summary = prepare_corpus([tree["flat"], tree["libri"], tree["vctk"]], out, workers=2,
                             show_progress=False)
    assert summary["layouts"] == {"flat": "flat", "libri": "librispeech", "vctk": "vctk"}
    rows = read_rows(out)
    assert len(rows) == 2 + 8 + 4
    for r in rows:
        info = sf.info(out / r["path"])
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        assert abs(info.duration - float(r["duration_s"])) < 1e-3
        assert abs(info.duration - 1.2) < 0.01
    by_origin = {r["origin"]: r for r in rows}
    assert by_origin["flat:hello.flac"]["native_rate"] == "44100"
    assert by_origin["flat:hello.flac"]["channels"] == "2"
    assert by_origin["flat:narrow.wav"]["native_rate"] == "8000"
    assert by_origin["libri:101/7/101-7-0000.flac"]["speaker"] == "libri_101"
    assert by_origin["vctk:wav48/p226/p226_001.wav"]["speaker"] == "vctk_p226"
    assert by_origin["flat:hello.flac"]["speaker"] == "flat"
    with open(out / "dropped.csv", newline="") as f:
        dropped = {d["origin"]: d["reason"] for d in csv.DictReader(f)}
    assert dropped == {"flat:silence.wav": "silence", "flat:short.wav": "short"}
    # speakers (and groups) never in two splits, and small corpora still get valid and test
    check_no_leak(rows)
    assert {r["split"] for r in rows} == {"train", "valid", "test"}


def test_split_hash_is_stable_and_by_group() -> None:
    rows = [{"group": f"g{i}", "speaker": f"s{i}_{j}", "split": ""}
            for i in range(400) for j in range(2)]
    assign_splits(rows, valid_frac=0.1, test_frac=0.1)
    first = {r["group"]: r["split"] for r in rows}
    share = {s: sum(v == s for v in first.values()) / 400 for s in ("train", "valid", "test")}
    assert 0.05 < share["test"] < 0.15 and 0.05 < share["valid"] < 0.15
    more = [{"group": f"h{i}", "speaker": f"h{i}", "split": ""} for i in range(50)]
    rows2 = [dict(r, split="") for r in rows] + more
    assign_splits(rows2, valid_frac=0.1, test_frac=0.1)
    assert all(first[r["group"]] == r["split"] for r in rows2 if r["group"] in first)


def test_split_map_and_conflicts() -> None:
    rows = [{"group": "a", "speaker": "a", "split": ""}, {"group": "b", "speaker": "b",
                                                         "split": "valid"}]
    assign_splits(rows, {"a": "test"})
    assert [r["split"] for r in rows] == ["test", "valid"]
    with pytest.raises(DataError, match="two splits"):
        assign_splits([{"group": "a", "speaker": "a", "split": "train"},
                       {"group": "a", "speaker": "b", "split": "test"}])
    with pytest.raises(DataError, match="speaker"):
        assign_splits([{"group": "a", "speaker": "x", "split": "train"},
                       {"group": "b", "speaker": "x", "split": "test"}])


def test_manifest_source_keeps_speakers_groups_splits(tmp_path: Path,
                                                      clips: list[np.ndarray]) -> None:
    src = tmp_path / "ref"
    rows = []
    for i, (spk, group, split) in enumerate([("ann", "g1", "test"), ("bob", "g1", "test"),
                                              ("cid", "g2", "train"), ("dee", "g3", "valid")]):
        write(src / "wav" / f"{spk}.wav", piece(clips, i), 24000)
        rows.append({"path": f"wav/{spk}.wav", "split": split, "speaker": spk, "group": group,
                     "language": "xx"})
    with open(src / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "out"
    summary = prepare_corpus([src], out, workers=1, show_progress=False)
    assert summary["layouts"] == {"ref": "manifest"}
    got = {r["speaker"]: (r["group"], r["split"], r["language"]) for r in read_rows(out)}
    assert got == {r["speaker"]: (r["group"], r["split"], "xx") for r in rows}


def test_rerun_reuses_and_redoes_changed(tree: dict[str, Path], clips: list[np.ndarray],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    out = tree["root"] / "corpus"
    prepare_corpus([tree["libri"]], out, workers=1, show_progress=False)
    before = read_rows(out)
    calls: list[str] = []
    real = convert.convert_one
    monkeypatch.setattr(convert, "convert_one", lambda t: calls.append(t[0]) or real(t))
    prepare_corpus([tree["libri"]], out, workers=1, show_progress=False)
    assert calls == [] and read_rows(out) == before
    changed = tree["libri"] / "102" / "7" / "102-7-0001.flac"
    write(changed, piece(clips, 0, seconds=2.0), 22050)
    (tree["libri"] / "103" / "7" / "103-7-0000.flac").unlink()
    prepare_corpus([tree["libri"]], out, workers=1, show_progress=False)
    assert calls == [str(changed)]
    after = {r["origin"]: r for r in read_rows(out)}
    assert float(after["libri:102/7/102-7-0001.flac"]["duration_s"]) == pytest.approx(2.0)
    assert "libri:103/7/103-7-0000.flac" not in after
    assert not (out / "wav/libri/103/7/103-7-0000.wav").exists()  # stale output removed


def test_prepare_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a folder"):
        prepare_corpus([tmp_path / "missing"], tmp_path / "out", show_progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio"):
        prepare_corpus([tmp_path / "empty"], tmp_path / "out", show_progress=False)


def test_recipe_scanners_and_splits(tmp_path: Path, clips: list[np.ndarray],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe's scanning, filtering, speakers and group splits on fake unpacked packages
    (no network): Vorbis files written from the bundled speech."""
    fake = tmp_path / "unpacked"
    hw = fake / "hedgewars-data/usr/share/games/hedgewars/Data/Sounds/voices"
    write(hw / "Default" / "Amazing.ogg", piece(clips, 0), 44100)
    write(hw / "Default_uk" / "Amazing.ogg", piece(clips, 1), 48000)
    write(hw / "Default" / "Laugh.ogg", piece(clips, 2), 44100)  # not speech
    write(hw / "Robot" / "Amazing.ogg", piece(clips, 3), 44100)  # vocoded pack
    tux = fake / "tuxpaint-stamps-default/usr/share/tuxpaint/stamps/animals"
    write(tux / "cat_desc.ogg", piece(clips, 4), 44100)
    write(tux / "cat_desc_el.ogg", piece(clips, 5), 44100)
    write(tux / "cat_desc_be.ogg", piece(clips, 6), 44100)
    write(tux / "cat.ogg", piece(clips, 7), 44100)  # stamp sound effect
    shutil.copy(tux / "cat_desc.ogg", tux / "cat_desc_fr.ogg")  # byte-identical duplicate
    monkeypatch.setattr(recipe.debian, "require_tools", lambda: None)
    monkeypatch.setattr(recipe.debian, "download",
                        lambda pkgs, debdir: {p: Path(p) for p in pkgs})
    monkeypatch.setattr(recipe.debian, "unpack", lambda deb, dest: fake / deb.name)
    out = tmp_path / "open"
    summary = recipe.build_open_corpus(out, sources=["hedgewars", "tuxpaint"], workers=1,
                                       show_progress=False)
    got = {r["origin"]: (r["speaker"], r["group"], r["split"], r["language"])
           for r in read_rows(out)}
    assert got == {
        "hedgewars-data:Default/Amazing.ogg": ("hedgewars_Default", "hedgewars", "test", "en"),
        "hedgewars-data:Default_uk/Amazing.ogg": ("hedgewars_Default_uk", "hedgewars", "test",
                                                  "uk"),
        "tuxpaint-stamps-default:animals/cat_desc.ogg": ("tuxpaint_en", "community_en",
                                                         "train", "en"),
        "tuxpaint-stamps-default:animals/cat_desc_el.ogg": ("tuxpaint_el", "community_el",
                                                            "test", "el"),
        "tuxpaint-stamps-default:animals/cat_desc_be.ogg": ("tuxpaint_be", "community_be",
                                                            "valid", "be"),
    }
    assert summary["dropped"] == {"duplicate": 1}


def test_augment_deterministic_and_bounded(clips: list[np.ndarray]) -> None:
    x = clips[0]
    outs = [augment(x, "wav/a.wav", c) for c in range(1, 9)]
    assert np.array_equal(outs[0], augment(x, "wav/a.wav", 1))
    with ProcessPoolExecutor(max_workers=1) as ex:  # same result in another process
        assert np.array_equal(ex.submit(augment, x, "wav/a.wav", 1).result(), outs[0])
    assert not np.array_equal(outs[0], augment(x, "wav/b.wav", 1))
    assert not np.array_equal(outs[0], augment(x, "wav/a.wav", 1, seed=1))
    peaks_db = []
    for y in outs:
        assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
        peaks_db.append(20 * np.log10(np.abs(y).max()))
        assert np.corrcoef(x, y)[0, 1] > 0.2  # still the same speech
    assert min(peaks_db) >= -30.01 and max(peaks_db) <= -0.99
    assert max(peaks_db) - min(peaks_db) > 5  # the level really varies


@pytest.fixture()
def corpus(tree: dict[str, Path]) -> Path:
    out = tree["root"] / "corpus"
    prepare_corpus([tree["libri"], tree["vctk"]], out, split_map={
        "libri_100": "test", "vctk_p225": "valid"}, valid_frac=0, test_frac=0, workers=1,
        show_progress=False)
    return out


def test_feature_cache_shapes_offsets_and_reuse(corpus: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    summary = build_cache(corpus, cache, augment_copies=2, workers=2,
                          analyze=standin_analyze, show_progress=False)
    rows = read_rows(corpus)
    for split in ("train", "valid", "test"):
        index, feats, sig = open_split(cache, split)
        e = index["entries"]
        n_clips = sum(r["split"] == split for r in rows)
        assert len(e["path"]) == 3 * n_clips == summary[split]["entries"]
        assert e["copy"] == sorted(e["copy"])  # copy-major
        assert e["frame_offset"] == list(np.cumsum([0, *e["n_frames"]])[:-1])
        assert e["sample_offset"] == [HOP * o for o in e["frame_offset"]]
        assert e["n_samples"] == [HOP * n for n in e["n_frames"]]
        assert feats.shape == (sum(e["n_frames"]), 6) and sig.shape == (HOP * len(feats),)
        for i, path in enumerate(e["path"]):
            x = sf.read(corpus / path, dtype="int16")[0]
            a, n = e["frame_offset"][i], e["n_frames"][i]
            assert n == -(-len(x) // HOP)
            clip_sig = sig[HOP * a:HOP * (a + n)]
            if e["copy"][i] == 0:
                assert np.array_equal(clip_sig[:len(x)], x)
                want = standin_analyze(x.astype(np.float32) / 32768)
            else:
                want = standin_analyze(augment(x.astype(np.float32) / 32768, path,
                                               e["copy"][i]))
                assert not np.array_equal(clip_sig[:len(x)], x)
            np.testing.assert_allclose(feats[a:a + n], want, rtol=1e-5, atol=1e-5)

    import models.data.features_cache as fc
    calls: list[int] = []
    real = fc.clip_arrays
    monkeypatch.setattr(fc, "clip_arrays", lambda *a: calls.append(len(a[2])) or real(*a))
    again = build_cache(corpus, cache, augment_copies=2, workers=1, analyze=standin_analyze,
                        show_progress=False)
    assert calls == [] and all(s["reused"] == s["entries"] for s in again.values())
    more = build_cache(corpus, cache, augment_copies=3, workers=1, analyze=standin_analyze,
                       show_progress=False)
    assert calls == [1] * len(rows)  # only copy 3 of each clip is new
    assert more["train"]["reused"] == 3 * more["train"]["entries"] // 4


def test_feature_cache_with_core_analysis(corpus: Path, tmp_path: Path) -> None:
    core = pytest.importorskip("streaming_core.analysis")
    summary = build_cache(corpus, tmp_path / "cache", splits=["test"], workers=1,
                          show_progress=False)
    index, feats, _ = open_split(tmp_path / "cache", "test")
    assert feats.shape[1] == core.NB_FEATURES == index["nb_features"]
    assert summary["test"]["frames"] == len(feats) > 0


def test_loader_windows_aligned(corpus: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    build_cache(corpus, cache, augment_copies=1, workers=1, analyze=standin_analyze,
                show_progress=False)
    ds = FeatureDataset(cache, "train", seq_len=50, with_signal=True)
    index, feats, sig = open_split(cache, "train")
    b = ds.batch(np.random.default_rng(0), 16)
    assert b.features.shape == (16, 50, 6) and b.signal.shape == (16, 50 * HOP)
    for i, s in enumerate(b.start_frame):
        assert np.array_equal(b.features[i], feats[s:s + 50])
        assert np.array_equal(b.signal[i], sig[s * HOP:(s + 50) * HOP] / 32768.0)
        starts = set(index["entries"]["frame_offset"])
        assert [f in starts for f in range(s, s + 50)] == list(b.clip_start[i])
    one = [x.start_frame for x in ds.batches(8, seed=3, steps=2)]
    two = [x.start_frame for x in ds.batches(8, seed=3, steps=2)]
    assert all(np.array_equal(a, c) for a, c in zip(one, two, strict=True))
    inside = FeatureDataset(cache, "train", seq_len=100, cross_clips=False, copies=[0])
    offs, ns = (np.array(index["entries"][k]) for k in ("frame_offset", "n_frames"))
    clean = np.array(index["entries"]["copy"]) == 0
    for s in inside.sample_starts(np.random.default_rng(1), 200):
        k = np.searchsorted(offs, s, side="right") - 1
        assert clean[k] and s + 100 <= offs[k] + ns[k]
    with pytest.raises(DataError, match="no window"):
        FeatureDataset(cache, "train", seq_len=10**6)


def test_cli_prepare_and_errors(tree: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    out = tree["root"] / "cli_corpus"
    assert data_main(["prepare", str(tree["vctk"]), "--out", str(out), "--quiet",
                      "--workers", "1"]) == 0
    assert "4 clips" in capsys.readouterr().out
    assert data_main(["prepare", str(tree["root"] / "nope"), "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert data_main(["features", "--corpus", str(tree["root"]), "--out", str(out),
                      "--quiet"]) != 0
    assert "manifest.csv not found" in capsys.readouterr().err


def test_cli_registers_into_parent_parser() -> None:
    import argparse

    from models.data.cli import register

    parser = argparse.ArgumentParser(prog="hopcodec")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "features", "--corpus", "c", "--out", "o",
                              "--augment", "2"])
    assert args.augment == 2 and callable(args.handler)
    args = parser.parse_args(["data", "recipe", "--list-sources"])
    assert args.handler(args) == 0


def test_summary_json_written(corpus: Path) -> None:
    summary = json.loads((corpus / "summary.json").read_text())
    assert summary["files"] == 12 and set(summary["per_split"]) == {"train", "valid", "test"}
    assert os.path.exists(corpus / "dropped.csv")
