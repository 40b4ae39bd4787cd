"""Find the clips of a source folder and infer their speakers from its layout.

Layouts (checked in this order):

- **manifest**: the folder has a `manifest.csv` with at least `path` and `speaker` (paths
  relative to the folder); its `group` (default: the speaker) and `split` are kept, and so are
  its other columns (language, license, ...).
- **vctk**: a `wav48_silence_trimmed/`, `wav48/` or `wav/` sub-folder holding one folder per
  speaker (`wav48/p225/p225_001.wav`).
- **librispeech**: audio three or more levels deep, `speaker/chapter/utt.flac`; the speaker is
  the folder two levels above the file.
- **speaker-folders**: `speaker/utt.wav`; the speaker is the parent folder.
- **flat**: audio directly in the folder; the whole folder is one speaker named after it.

Without a manifest, speaker ids are prefixed with the source name (`<source>_<speaker>`) and
each speaker is its own group. `speaker_regex` overrides the inference: its first group (or
the group named `speaker`) taken from the file's path relative to the folder.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from models.data import DataError
from models.data.audio import AUDIO_SUFFIXES
from models.data.convert import Clip, out_path, slug

VCTK_DIRS = ("wav48_silence_trimmed", "wav48", "wav")
#: Manifest columns that conversion recomputes, so they are not carried over.
RECOMPUTED = {"path", "speaker", "group", "split", "duration_s", "native_rate", "channels",
              "codec", "bandwidth_hz", "source"}


def audio_files(root: Path) -> list[Path]:
    """Audio files under `root`, sorted, not following links, skipping hidden entries."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            p = Path(dirpath, f)
            if (not f.startswith(".") and f.lower().endswith(AUDIO_SUFFIXES)
                    and p.is_file() and not p.is_symlink()):
                found.append(p)
    return found


def detect_layout(root: Path) -> str:
    """Name of the layout of `root` (see the module doc)."""
    if (root / "manifest.csv").is_file():
        return "manifest"
    for d in VCTK_DIRS:
        if (root / d).is_dir() and any(p.is_dir() for p in (root / d).iterdir()):
            return "vctk"
    depths = {len(p.relative_to(root).parts) for p in audio_files(root)}
    if not depths:
        raise DataError(f"{root}: no audio files ({', '.join(AUDIO_SUFFIXES)}) found")
    if max(depths) >= 3:
        return "librispeech"
    return "speaker-folders" if max(depths) == 2 else "flat"


def scan_source(root: Path, name: str, speaker_regex: str | None = None) -> tuple[str, list[Clip]]:
    """Return (layout name, clips) of source folder `root`, whose source name is `name`."""
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    layout = detect_layout(root)
    if layout == "manifest":
        return layout, _scan_manifest(root, name)
    base = next(root / d for d in VCTK_DIRS if (root / d).is_dir()) if layout == "vctk" else root
    rx = re.compile(speaker_regex) if speaker_regex else None
    clips = []
    for p in audio_files(base):
        rel = p.relative_to(base)
        speaker = _layout_speaker(rel, name)
        if rx and (m := rx.search(rel.as_posix())):
            speaker = m.group("speaker") if "speaker" in rx.groupindex else m.group(1)
        spk = slug(name) if speaker == name else f"{slug(name)}_{slug(speaker)}"
        rel_root = p.relative_to(root)
        clips.append(Clip(src=p, out=out_path(name, rel_root), speaker=spk, group=spk,
                          source=name, extra={"origin": f"{name}:{rel_root.as_posix()}"}))
    if not clips:
        raise DataError(f"{root}: no audio files found")
    return layout, clips


def _layout_speaker(rel: Path, name: str) -> str:
    """Speaker folder of a file at `rel` (the source name for a flat folder)."""
    parts = rel.parts
    if len(parts) == 1:
        return name
    return parts[-2] if len(parts) == 2 else parts[-3]


def _scan_manifest(root: Path, name: str) -> list[Clip]:
    path = root / "manifest.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"path", "speaker"} <= set(rows[0]):
        raise DataError(f"{path}: needs rows with at least 'path' and 'speaker' columns")
    clips = []
    for i, r in enumerate(rows, start=2):
        src = root / r["path"]
        if not src.is_file():
            raise DataError(f"{path}, line {i}: {r['path']} does not exist")
        rel = Path(r["path"])
        if rel.parts and rel.parts[0] == "wav":  # corpora made by this module or its kin
            rel = Path(*rel.parts[1:])
        extra = {k: v for k, v in r.items() if k not in RECOMPUTED and k and v is not None}
        extra.setdefault("origin", f"{name}:{r['path']}")
        clips.append(Clip(src=src, out=out_path(name, rel), speaker=r["speaker"],
                          group=r.get("group") or r["speaker"], source=r.get("source") or name,
                          split=r.get("split", ""), extra=extra))
    return clips
