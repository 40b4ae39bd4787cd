"""`prepare_corpus`: folders of speech audio in, a 16 kHz mono corpus with a manifest out.

    from models.data.prepare import prepare_corpus
    summary = prepare_corpus([Path("LibriSpeech/dev-clean"), Path("VCTK")], Path("corpus"))

The output folder holds `wav/<source>/...` (16-bit mono 16 kHz), `manifest.csv` (path, speaker,
group, split, duration_s, source, native_rate, channels, codec, bandwidth_hz, origin, plus any
columns a source manifest carried), `dropped.csv` and `summary.json`. See `layouts` for how
speakers are found, `audio` for the drop thresholds and `splits` for the splits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from models.data import DataError
from models.data.convert import convert_clips, slug, write_corpus
from models.data.layouts import scan_source
from models.data.splits import assign_splits


def source_names(sources: Sequence[Path]) -> list[str]:
    """A distinct name per source folder: its folder name, with _2, _3... on clashes."""
    names: list[str] = []
    for s in sources:
        base = slug(s.resolve().name) or "source"
        name, i = base, 2
        while name in names:
            name, i = f"{base}_{i}", i + 1
        names.append(name)
    return names


def prepare_corpus(sources: Sequence[Path], out: Path, *,
                   split_map: Mapping[str, str] | None = None, valid_frac: float = 0.1,
                   test_frac: float = 0.1, speaker_regex: str | None = None, workers: int = 2,
                   show_progress: bool = True) -> dict:
    """Convert every clip of `sources` into `out`, assign speaker-group splits, write the
    manifest; return the summary (files, hours, speakers per split and source, drops).

    `split_map` maps a group (a speaker id, `<source>_<speaker>`, unless a source manifest
    names groups) to "train", "valid" or "test" and wins over everything else.
    """
    if not sources:
        raise DataError("no source folders given")
    out = Path(out)
    for s in sources:
        s = Path(s)
        if not s.is_dir():
            raise DataError(f"{s}: not a folder")
        if out.resolve().is_relative_to(s.resolve()):
            raise DataError(f"output {out} must not be inside source {s}")
    clips = []
    layouts = {}
    for src, name in zip(sources, source_names(sources), strict=True):
        layout, found = scan_source(Path(src), name, speaker_regex)
        layouts[name] = layout
        clips.extend(found)
    rows, dropped = convert_clips(clips, out, workers=workers, show_progress=show_progress)
    assign_splits(rows, split_map, valid_frac=valid_frac, test_frac=test_frac)
    summary = write_corpus(out, rows, dropped, {"layouts": layouts})
    if not rows:
        raise DataError("every clip was dropped (too short, silent or unreadable): see "
                        f"{out / 'dropped.csv'}")
    return summary
