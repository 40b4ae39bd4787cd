"""Convert a list of clips to 16 kHz mono 16-bit WAVs in parallel, reusing earlier work.

A corpus folder holds `wav/...`, `manifest.csv`, `dropped.csv`, `summary.json` and
`.convert_state.json`, the record that lets a re-run skip every clip whose source file is
unchanged (same size and modification time, same decoder, same conversion settings).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from models.data import audio
from models.data.progress import progress

#: Bump when decoding, resampling or the drop rules change: invalidates every reused clip.
SETTINGS_VERSION = 1
STATE_FILE = ".convert_state.json"
MANIFEST = "manifest.csv"
COLUMNS = ["path", "speaker", "group", "split", "duration_s", "source", "native_rate",
           "channels", "codec", "bandwidth_hz", "origin"]


@dataclass
class Clip:
    """One source file to convert, and what is known about it before decoding."""

    src: Path
    out: str  # output path relative to the corpus folder, "wav/<source>/..."
    speaker: str
    group: str
    source: str
    codec: str = "auto"  # see audio.read_audio
    split: str = ""  # a split given by the source ("" = assign by group hash)
    speaker_from_artist: bool = False  # refine the speaker with the file's ARTIST tag
    extra: dict[str, str] = field(default_factory=dict)  # more manifest columns (language...)


def slug(text: str) -> str:
    """ASCII file-name-safe form of `text` (accents dropped, runs of other chars -> "_")."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def out_path(source: str, rel: Path) -> str:
    """Output path for a source file at `rel` inside source `source`."""
    parts = [slug(p) for p in rel.with_suffix("").parts]
    return "/".join(["wav", slug(source), *parts]) + ".wav"


def _file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _stat_key(clip: Clip) -> str:
    st = clip.src.stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{clip.codec}:{SETTINGS_VERSION}"


def convert_one(task: tuple[str, str, str]) -> dict:
    """Worker: decode, mono 16 kHz, drop test, write. Returns facts or {"drop": reason}."""
    src, codec, dest = task
    try:
        dec = audio.read_audio(src, codec)
    except Exception as e:  # noqa: BLE001 - an unreadable file is dropped, not fatal
        return {"drop": f"unreadable: {e}"[:200]}
    y = audio.to_mono_16k(dec.samples, dec.rate)
    facts = {"duration_s": round(len(y) / audio.SAMPLE_RATE, 4), "native_rate": dec.rate,
             "channels": 1 if dec.samples.ndim == 1 else int(dec.samples.shape[1]),
             "artist": dec.artist}
    reason = audio.drop_reason(y)
    if reason:
        return {"drop": reason, **facts}
    audio.write_wav16(dest, y)
    return {**facts, "bandwidth_hz": audio.bandwidth_hz(y)}


def _load_state(out: Path) -> dict:
    try:
        return json.loads((out / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _save_state(out: Path, state: dict) -> None:
    tmp = out / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, out / STATE_FILE)


def artist_suffix(artist: str) -> str:
    """A speaker-id suffix from an ARTIST tag, or "" when it is absent or not a name."""
    if not artist or len(artist) > 40 or re.search(r"copyright|licen[cs]e|gpl|http", artist, re.I):
        return ""
    return slug(artist).lower()


def convert_clips(clips: Sequence[Clip], out: Path, *, workers: int = 2,
                  show_progress: bool = True) -> tuple[list[dict], list[dict]]:
    """Convert `clips` into `out`; return (manifest rows without split, dropped rows).

    Byte-identical sources are kept once (the first in `clips` order). Outputs of an earlier
    run that this run no longer produces are deleted.
    """
    out.mkdir(parents=True, exist_ok=True)
    old = _load_state(out)
    state: dict[str, dict] = {}
    seen_md5: dict[str, str] = {}
    used_out: set[str] = set()
    todo: list[tuple[Clip, str, str]] = []  # (clip, stat key, md5)
    dropped: list[dict] = []
    unique: list[tuple[Clip, str]] = []
    for clip in progress(clips, total=len(clips), desc="scan", enabled=show_progress):
        key = _stat_key(clip)
        prev = old.get(str(clip.src), {})
        md5 = prev["md5"] if prev.get("key") == key else _file_md5(clip.src)
        if md5 in seen_md5:
            dropped.append({"origin": str(clip.src), "source": clip.source,
                            "reason": f"duplicate of {seen_md5[md5]}", "duration_s": ""})
            continue
        seen_md5[md5] = str(clip.src)
        if clip.out in used_out:  # two sources slug to one name (a.flac and a.wav)
            clip.out = clip.out[: -len(".wav")] + f"_{md5[:8]}.wav"
        used_out.add(clip.out)
        done = prev.get("key") == key and prev.get("out") == clip.out and (
            "drop" in prev["result"] or (out / clip.out).exists())
        if done:
            state[str(clip.src)] = prev
        else:
            todo.append((clip, key, md5))
        unique.append((clip, md5))

    tasks = [(str(c.src), c.codec, str(out / c.out)) for c, _, _ in todo]
    try:
        if workers > 1 and len(tasks) > 1:
            with ProcessPoolExecutor(max_workers=workers) as ex:
                results = ex.map(convert_one, tasks, chunksize=8)
                _collect(todo, results, state, show_progress)
        else:
            _collect(todo, map(convert_one, tasks), state, show_progress)
    finally:
        _save_state(out, state)

    _remove_stale(out, old, state)
    rows = []
    for clip, _ in unique:
        res = state[str(clip.src)]["result"]
        origin = clip.extra.get("origin", str(clip.src))
        if "drop" in res:
            dropped.append({"origin": origin, "source": clip.source, "reason": res["drop"],
                            "duration_s": res.get("duration_s", "")})
            continue
        speaker = clip.speaker
        if clip.speaker_from_artist and artist_suffix(res.get("artist", "")):
            speaker = f"{speaker}_{artist_suffix(res['artist'])}"
        row = {"path": clip.out, "speaker": speaker, "group": clip.group, "split": clip.split,
               "duration_s": res["duration_s"], "source": clip.source,
               "native_rate": res["native_rate"], "channels": res["channels"],
               "codec": clip.codec, "bandwidth_hz": res.get("bandwidth_hz", ""),
               "origin": origin}
        row.update({k: v for k, v in clip.extra.items() if k not in row})
        rows.append(row)
    return rows, dropped


def _collect(todo, results, state: dict, show_progress: bool) -> None:
    for (clip, key, md5), res in progress(zip(todo, results, strict=True), total=len(todo),
                                          desc="convert", enabled=show_progress):
        state[str(clip.src)] = {"key": key, "md5": md5, "out": clip.out, "result": res}


def _remove_stale(out: Path, old: dict, new: dict) -> None:
    keep = {e["out"] for e in new.values() if "drop" not in e["result"]}
    for entry in old.values():
        rel = entry.get("out")
        if rel and rel not in keep and (out / rel).is_file():
            (out / rel).unlink()


def write_corpus(out: Path, rows: list[dict], dropped: list[dict],
                 notes: dict | None = None) -> dict:
    """Write manifest.csv (sorted by split, path), dropped.csv and summary.json (with `notes`
    added); return the summary."""
    rows = sorted(rows, key=lambda r: (r["split"], r["path"]))
    extra = sorted({k for r in rows for k in r} - set(COLUMNS))
    _write_csv(out / MANIFEST, COLUMNS + extra, rows)
    _write_csv(out / "dropped.csv", ["origin", "source", "reason", "duration_s"],
               sorted(dropped, key=lambda d: d["origin"]))
    summary = {**summarize(rows, dropped), **(notes or {})}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, columns, restval="")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def summarize(rows: list[dict], dropped: list[dict]) -> dict:
    """Files, hours, speakers and groups per split and per source; drop reasons."""
    def table(key: str) -> dict:
        agg: dict[str, dict] = {}
        for r in rows:
            a = agg.setdefault(r[key], {"files": 0, "hours": 0.0, "speakers": set(),
                                        "groups": set()})
            a["files"] += 1
            a["hours"] += float(r["duration_s"]) / 3600
            a["speakers"].add(r["speaker"])
            a["groups"].add(r["group"])
        return {k: {"files": a["files"], "hours": round(a["hours"], 3),
                    "speakers": len(a["speakers"]), "groups": len(a["groups"])}
                for k, a in sorted(agg.items())}

    reasons: dict[str, int] = {}
    for d in dropped:
        r = d["reason"].split(" ")[0].rstrip(":")
        reasons[r] = reasons.get(r, 0) + 1
    return {"files": len(rows), "hours": round(sum(float(r["duration_s"]) for r in rows) / 3600, 3),
            "speakers": len({r["speaker"] for r in rows}),
            "groups": len({r["group"] for r in rows}),
            "per_split": table("split"), "per_source": table("source"), "dropped": reasons}


def read_manifest(corpus: Path) -> list[dict]:
    """Rows of `corpus/manifest.csv` (needs at least path, speaker and split columns)."""
    from models.data import DataError

    path = corpus / MANIFEST
    if not path.is_file():
        raise DataError(f"{path} not found: prepare the corpus first (hopcodec data prepare)")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    missing = {"path", "speaker", "split"} - set(rows[0] if rows else {})
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    return rows
