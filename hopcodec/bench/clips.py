"""Which clips the bench measures: a folder of audio files or a prepared corpus manifest."""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from hopcodec.bench.errors import BenchError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


@dataclass(frozen=True)
class Clip:
    """One clip of the set: `clip_id` is its path relative to the set, unique and stable."""

    clip_id: str
    path: Path
    group: str
    speaker: str
    duration_s: float


def _duration(path: Path) -> float:
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as exc:  # unreadable or not audio
        raise BenchError(f"cannot read audio file {path}: {exc}") from exc
    return info.frames / float(info.samplerate)


def _from_manifest(set_dir: Path, manifest: Path, split: str | None) -> list[Clip]:
    with manifest.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if rows and "path" not in rows[0]:
        raise BenchError(f"{manifest} has no 'path' column")
    if split is not None and rows and "split" in rows[0]:
        splits = sorted({r["split"] for r in rows})
        rows = [r for r in rows if r["split"] == split]
        if not rows:
            raise BenchError(f"{manifest} has no rows in split {split!r} (splits: {splits})")
    clips = []
    for r in rows:
        path = set_dir / r["path"]
        dur = float(r["duration_s"]) if r.get("duration_s") else _duration(path)
        group = r.get("group") or r.get("speaker") or "all"
        clips.append(Clip(r["path"], path, group, r.get("speaker") or group, dur))
    return clips


def _from_folder(set_dir: Path) -> list[Clip]:
    clips = []
    for path in sorted(p for p in set_dir.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        rel = path.relative_to(set_dir)
        group = rel.parts[0] if len(rel.parts) > 1 else set_dir.resolve().name
        clips.append(Clip(rel.as_posix(), path, group, group, _duration(path)))
    return clips


def _spread(clips: list[Clip], max_clips: int) -> list[Clip]:
    """Pick `max_clips` deterministically: round-robin over groups, evenly spaced in each."""
    by_group: dict[str, list[Clip]] = defaultdict(list)
    for c in sorted(clips, key=lambda c: c.clip_id):
        by_group[c.group].append(c)
    groups = sorted(by_group)
    quota = dict.fromkeys(groups, 0)
    left = max_clips
    while left > 0:
        moved = False
        for g in groups:
            if left > 0 and quota[g] < len(by_group[g]):
                quota[g] += 1
                left -= 1
                moved = True
        if not moved:
            break
    picked = []
    for g in groups:
        members, k = by_group[g], quota[g]
        step = len(members) / k if k else 0.0
        picked += [members[int((i + 0.5) * step)] for i in range(k)]
    return picked


def find_clips(
    set_dir: str | Path,
    split: str | None = "test",
    max_clips: int | None = None,
    min_duration_s: float = 1.0,
    max_duration_s: float | None = None,
) -> list[Clip]:
    """The clips of a set, filtered by duration and spread over groups when `max_clips` is set.

    With a `manifest.csv` in `set_dir`, its rows of `split` are used (`split=None`: all rows);
    otherwise every audio file under `set_dir`, grouped by its first sub-folder (files at the
    top level form one group named after `set_dir`).
    """
    root = Path(set_dir)
    if not root.is_dir():
        raise BenchError(f"set folder not found: {root}")
    manifest = root / "manifest.csv"
    clips = _from_manifest(root, manifest, split) if manifest.is_file() else _from_folder(root)
    if not clips:
        raise BenchError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) found in {root}")
    kept = [
        c
        for c in clips
        if c.duration_s >= min_duration_s
        and (max_duration_s is None or c.duration_s <= max_duration_s)
    ]
    if not kept:
        raise BenchError(
            f"none of the {len(clips)} clips in {root} is between {min_duration_s} s and "
            f"{max_duration_s or 'any'} s long (see --min-duration / --max-duration)"
        )
    if max_clips is not None:
        if max_clips < 1:
            raise BenchError(f"--max-clips must be at least 1, got {max_clips}")
        kept = _spread(kept, max_clips)
    kept = sorted(kept, key=lambda c: (c.group, c.clip_id))
    for c in kept:
        if not c.path.is_file():
            raise BenchError(f"clip listed in the manifest is missing: {c.path}")
    return kept
