"""Features (and the 16 kHz signal) of a whole corpus in memory-mapped arrays, for training.

    build_cache(Path("corpus"), Path("cache"), augment_copies=2)

Layout, one folder per split (`cache/train/`, `cache/valid/`, `cache/test/`):

- `features.f32`: raw float32, shape (n_frames, nb_features), C order;
- `signal.i16`: raw int16, shape (n_frames * 160,), when built with the signal;
- `index.json`: shapes, settings and one entry per (clip, copy): `path`, `speaker`, `copy`,
  `frame_offset`, `n_frames`, `sample_offset` (= 160 * frame_offset), `n_samples`.

Entries are stored copy-major: all clean clips (copy 0) first, then every clip's augmented
copy 1, and so on, so one copy is one contiguous block. Within an entry, feature frame `i`
covers input samples [160 i - 160, 160 i + 160) (10 ms hop, 20 ms window, no lookahead), and
the stored signal is trimmed or zero-padded to exactly 160 * n_frames samples, so frame `i`
lines up with samples [160 i, 160 i + 160) of the entry: its newest hop.

Re-runs reuse every entry whose clip file, copy, seed, augmentation settings and analysis are
unchanged (the analysis is identified by its output on a fixed probe signal). Work in progress
is kept in `<split>/.parts/` so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from models.data import DataError
from models.data.audio import SAMPLE_RATE, read_wav16
from models.data.augment import AugmentConfig, augment
from models.data.convert import read_manifest
from models.data.progress import Counter

HOP = 160
CACHE_VERSION = 1
SHARD_CLIPS = 32  # clips per unit of parallel work (and per resumable part file)
Analyze = Callable[[np.ndarray], np.ndarray]


def default_analyze() -> Analyze:
    """The streaming core's feature analysis."""
    try:
        from streaming_core.analysis import analyze_signal
    except ImportError as e:
        raise DataError(f"the core's analysis is not importable ({e}); pass analyze=") from e
    return analyze_signal


def analyzer_id(analyze: Analyze) -> str:
    """Identity of an analysis function: its name and a hash of its output on a probe signal,
    so that a changed analysis invalidates cached features."""
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    probe = (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t))
             + 0.01 * np.random.default_rng(1).standard_normal(len(t))).astype(np.float32)
    out = np.round(np.asarray(analyze(probe), dtype=np.float64), 4)
    name = f"{getattr(analyze, '__module__', '?')}.{getattr(analyze, '__qualname__', '?')}"
    return f"{name}:{out.shape}:{hashlib.sha256(out.tobytes()).hexdigest()[:16]}"


def entry_key(path: str, wav: Path, copy: int, seed: int, aug: str, analyzer: str) -> str:
    """What an entry's arrays depend on; equal keys mean reusable arrays."""
    st = wav.stat()
    return f"{path}|{st.st_size}|{st.st_mtime_ns}|{copy}|{seed}|{aug if copy else ''}|{analyzer}"


def clip_arrays(wav: Path, clip_id: str, copies: Sequence[int], seed: int,
                cfg: AugmentConfig, analyze: Analyze) -> list[tuple[np.ndarray, np.ndarray]]:
    """(features float32 (n, nb), signal int16 (160 n,)) of each copy of one clip; copy 0 is
    the clean clip."""
    x = read_wav16(wav)
    out = []
    for c in copies:
        y = x if c == 0 else augment(x, clip_id, c, seed, cfg)
        feats = np.ascontiguousarray(analyze(y), dtype=np.float32)
        if feats.ndim != 2:
            raise ValueError(f"analysis returned shape {feats.shape}, expected (frames, nb)")
        sig = np.zeros(len(feats) * HOP, dtype=np.int16)
        n = min(len(sig), len(y))
        sig[:n] = np.clip(np.round(y[:n] * 32768.0), -32768, 32767)
        out.append((feats, sig))
    return out


def _compute_part(task: tuple) -> str:
    """Worker: compute one shard of entries and save it as an .npz part file."""
    part, items, seed, cfg, analyze = task
    feats, sigs, keys, frames = [], [], [], []
    for wav, clip_id, copies, ckeys in items:
        for (f, s), key in zip(clip_arrays(Path(wav), clip_id, copies, seed, cfg, analyze),
                               ckeys, strict=True):
            feats.append(f)
            sigs.append(s)
            keys.append(key)
            frames.append(len(f))
    tmp = part + ".tmp.npz"
    np.savez(tmp, features=np.concatenate(feats), signal=np.concatenate(sigs),
             keys=np.array(keys), n_frames=np.array(frames, dtype=np.int64))
    os.replace(tmp, part)
    return part


def _open(split_dir: Path, index: dict) -> tuple[np.ndarray, np.ndarray | None]:
    feats = np.memmap(split_dir / "features.f32", dtype=np.float32, mode="r",
                      shape=(index["n_frames"], index["nb_features"]))
    sig = None
    if index["with_signal"]:
        sig = np.memmap(split_dir / "signal.i16", dtype=np.int16, mode="r",
                        shape=(index["n_frames"] * HOP,))
    return feats, sig


def load_index(cache_dir: Path, split: str) -> dict:
    """The index of one split of a cache (see the module doc)."""
    path = Path(cache_dir) / split / "index.json"
    if not path.is_file():
        raise DataError(f"{path} not found: build the cache first (hopcodec data features)")
    return json.loads(path.read_text())


def open_split(cache_dir: Path, split: str) -> tuple[dict, np.ndarray, np.ndarray | None]:
    """(index, features memmap (n_frames, nb), signal memmap (n_frames * 160,) or None)."""
    index = load_index(cache_dir, split)
    if index.get("version") != CACHE_VERSION:
        raise DataError(f"{cache_dir}/{split}: cache version {index.get('version')}, "
                        f"expected {CACHE_VERSION}: rebuild it")
    return (index, *_open(Path(cache_dir) / split, index))


def build_cache(corpus_dir: Path, out_dir: Path, *, augment_copies: int = 0,
                with_signal: bool = True, workers: int = 2, seed: int = 0,
                splits: Sequence[str] | None = None, analyze: Analyze | None = None,
                augment_config: AugmentConfig | None = None,
                show_progress: bool = True) -> dict[str, dict]:
    """Compute features of every clip of `corpus_dir/manifest.csv` (clean, plus
    `augment_copies` augmented copies each) into `out_dir/<split>/`; return a short summary
    per split (entries, frames, hours, reused entries)."""
    if augment_copies < 0:
        raise DataError("augment_copies must be >= 0")
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    rows = read_manifest(corpus_dir)
    analyze = analyze or default_analyze()
    cfg = augment_config or AugmentConfig()
    settings = {"analyzer": analyzer_id(analyze), "augment": cfg.fingerprint(), "seed": seed,
                "augment_config": asdict(cfg)}
    by_split: dict[str, list[dict]] = {}
    for r in rows:
        by_split.setdefault(r["split"], []).append(r)
    wanted = list(splits) if splits else sorted(by_split)
    missing = [s for s in wanted if s not in by_split]
    if missing:
        raise DataError(f"split(s) {', '.join(missing)} not in {corpus_dir / 'manifest.csv'}")
    summary = {}
    for split in wanted:
        summary[split] = _build_split(
            sorted(by_split[split], key=lambda r: r["path"]), corpus_dir, out_dir / split,
            split, augment_copies, with_signal, workers, settings, cfg, analyze, show_progress)
    return summary


def _build_split(rows: list[dict], corpus: Path, split_dir: Path, split: str, copies: int,
                 with_signal: bool, workers: int, settings: dict, cfg: AugmentConfig,
                 analyze: Analyze, show_progress: bool) -> dict:
    split_dir.mkdir(parents=True, exist_ok=True)
    entries = []  # (key, row, copy), copy-major
    for c in range(copies + 1):
        for r in rows:
            key = entry_key(r["path"], corpus / r["path"], c, settings["seed"],
                            settings["augment"], settings["analyzer"])
            entries.append((key, r, c))
    old_index, old_arrays = _old_cache(split_dir, with_signal)
    old_pos = {k: i for i, k in enumerate(old_index["entries"]["key"])} if old_index else {}
    todo: dict[str, tuple[Path, str, list[int], list[str]]] = {}
    for key, r, c in entries:
        if key not in old_pos:
            item = todo.setdefault(r["path"], (corpus / r["path"], r["path"], [], []))
            item[2].append(c)
            item[3].append(key)
    parts = _compute_parts(list(todo.values()), split_dir / ".parts", settings["seed"], cfg,
                           analyze, workers, show_progress, desc=f"features {split}")
    index = _assemble(entries, split_dir, split, with_signal, settings, copies, old_index,
                      old_pos, old_arrays, parts)
    shutil.rmtree(split_dir / ".parts", ignore_errors=True)
    return {"entries": len(entries), "frames": index["n_frames"],
            "hours": round(index["n_frames"] * HOP / SAMPLE_RATE / 3600, 3),
            "reused": len(entries) - sum(len(t[2]) for t in todo.values())}


def _old_cache(split_dir: Path, with_signal: bool):
    try:
        index = json.loads((split_dir / "index.json").read_text())
        if index.get("version") != CACHE_VERSION or (with_signal and not index["with_signal"]):
            return None, None
        return index, _open(split_dir, index)
    except (OSError, ValueError, KeyError):
        return None, None


def _compute_parts(items: list, parts_dir: Path, seed: int, cfg: AugmentConfig,
                   analyze: Analyze, workers: int, show_progress: bool, desc: str) -> list[Path]:
    """Compute missing entries in shards, reusing part files left by an interrupted run."""
    parts_dir.mkdir(exist_ok=True)
    tasks, done = [], []
    for i in range(0, len(items), SHARD_CLIPS):
        shard = items[i:i + SHARD_CLIPS]
        name = hashlib.sha256("\n".join(k for it in shard for k in it[3]).encode()).hexdigest()
        part = parts_dir / f"{name[:24]}.npz"
        done.append(part)
        if not part.is_file():
            tasks.append((str(part), [(str(w), cid, cs, ks) for w, cid, cs, ks in shard], seed,
                          cfg, analyze))
    sizes = {t[0]: len(t[1]) for t in tasks}
    with Counter(len(items), desc=desc, enabled=show_progress) as bar:
        bar.update(len(items) - sum(sizes.values()))
        if workers > 1 and len(tasks) > 1:
            with ProcessPoolExecutor(max_workers=workers) as ex:
                for part in ex.map(_compute_part, tasks):
                    bar.update(sizes[part])
        else:
            for t in tasks:
                bar.update(sizes[_compute_part(t)])
    return done


def _part_contents(parts: list[Path], nb: int | None, split_dir: Path):
    """key -> (part, frame offset in the part, n_frames) over all part files; and nb."""
    fresh: dict[str, tuple[Path, int, int]] = {}
    for part in parts:
        with np.load(part) as z:
            n_frames, width = z["n_frames"], int(z["features"].shape[1])
            offs = np.concatenate([[0], np.cumsum(n_frames)])
            for k, o, n in zip(z["keys"], offs[:-1], n_frames, strict=True):
                fresh[str(k)] = (part, int(o), int(n))
        if nb is not None and width != nb:
            raise DataError(f"analysis gives {width} features, the cache has {nb}: remove "
                            f"{split_dir} and rebuild")
        nb = width
    return fresh, nb


def _assemble(entries: list, split_dir: Path, split: str, with_signal: bool, settings: dict,
              copies: int, old_index: dict | None, old_pos: dict, old_arrays, parts: list[Path]):
    """Write the split's arrays and index from reused old entries and the new part files."""
    fresh, nb = _part_contents(parts, old_index["nb_features"] if old_index else None,
                               split_dir)
    old = old_index["entries"] if old_index else {"n_frames": [], "frame_offset": []}
    sizes = [fresh[k][2] if k in fresh else old["n_frames"][old_pos[k]] for k, _, _ in entries]
    dest = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    total = int(dest[-1])
    feats = _new_array(split_dir / "features.f32.tmp", np.float32, (total, nb or 0))
    sig = _new_array(split_dir / "signal.i16.tmp", np.int16, (total * HOP,)) if with_signal \
        else None

    def put(i: int, src_f: np.ndarray, src_s: np.ndarray, o: int) -> None:
        a, n = int(dest[i]), sizes[i]
        feats[a:a + n] = src_f[o:o + n]
        if sig is not None:
            sig[a * HOP:(a + n) * HOP] = src_s[o * HOP:(o + n) * HOP]

    by_part: dict[Path, list[tuple[int, int]]] = {}
    for i, (key, _, _) in enumerate(entries):
        if key in fresh:
            by_part.setdefault(fresh[key][0], []).append((i, fresh[key][1]))
        else:  # reused from the previous build
            put(i, *old_arrays, old["frame_offset"][old_pos[key]])
    for part, items in by_part.items():  # each part file is read once
        with np.load(part) as z:
            part_f, part_s = z["features"], z["signal"]
        for i, o in items:
            put(i, part_f, part_s, o)
    for arr in (feats, sig):
        if isinstance(arr, np.memmap):
            arr.flush()
    os.replace(split_dir / "features.f32.tmp", split_dir / "features.f32")
    if with_signal:
        os.replace(split_dir / "signal.i16.tmp", split_dir / "signal.i16")
    elif (split_dir / "signal.i16").exists():
        (split_dir / "signal.i16").unlink()
    offs = [int(o) for o in dest[:-1]]
    index = {
        "version": CACHE_VERSION, "split": split, "nb_features": nb or 0, "hop": HOP,
        "sample_rate": SAMPLE_RATE, "n_frames": total, "with_signal": with_signal,
        "augment_copies": copies, **settings,
        "entries": {
            "path": [r["path"] for _, r, _ in entries],
            "speaker": [r["speaker"] for _, r, _ in entries],
            "copy": [c for _, _, c in entries],
            "frame_offset": offs, "n_frames": [int(n) for n in sizes],
            "sample_offset": [o * HOP for o in offs], "n_samples": [int(n) * HOP for n in sizes],
            "key": [k for k, _, _ in entries]}}
    tmp = split_dir / "index.json.tmp"
    tmp.write_text(json.dumps(index))
    os.replace(tmp, split_dir / "index.json")
    return index


def _new_array(path: Path, dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A writable memmap (a plain empty array when it would hold no element)."""
    if int(np.prod(shape)) == 0:
        path.write_bytes(b"")
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="w+", shape=shape)
