"""The bench run: code every clip with every codec, align, score, and write the report.

Two passes over (clip, codec) jobs share one process pool, one worker per core, every worker
single-threaded (so speeds are per stream on one core):
1. code: encode + decode, time both, count bytes, estimate the clip's delay;
2. score: shift each output by its codec's delay (the median over clips), compute the metrics.
Results are keyed by (clip, codec) and written in set order, so numbers do not depend on
which worker finished first; only the timings vary between runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from hopcodec.bench import metrics as metric_registry
from hopcodec.bench.align import apply_delay, codec_delay, estimate_delay
from hopcodec.bench.audio import SR, load_16k, save_16k
from hopcodec.bench.clips import Clip, find_clips
from hopcodec.bench.codecs import Codec, expand_names, make_codec
from hopcodec.bench.errors import BenchError

# Every library a worker might thread with, pinned to one thread.
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}  # onnxruntime (DNSMOS) and LiteRT (ViSQOL) sessions are made single-threaded in metrics.py


@dataclass
class CodecInfo:
    """What the report says about a codec apart from per-clip numbers."""

    name: str
    family: str
    nominal_bps: float | None
    frame_ms: float | None
    latency_ms: float | None  # stated by the codec; None: estimated as frame + delay
    delay_samples: int = 0


@dataclass
class BenchResult:
    """A finished run: where its files are, the per-clip rows and the run's description."""

    out_dir: Path
    report: Path
    rows: list[dict[str, Any]]
    codecs: dict[str, CodecInfo]
    metrics: list[str]
    meta: dict[str, Any] = field(default_factory=dict)


# --- work done in the workers ------------------------------------------------------------------

_codec_cache: dict[str, Codec] = {}


def _codec(name: str) -> Codec:
    if name not in _codec_cache:
        _codec_cache[name] = make_codec(name)
    return _codec_cache[name]


def _decoded_path(work: Path, codec: str, clip_id: str) -> Path:
    """Where a codec's output for a clip is kept: a readable name made unique by a hash."""
    digest = hashlib.blake2b(clip_id.encode(), digest_size=4).hexdigest()
    return work / codec / f"{Path(clip_id).stem}-{digest}.wav"


def code_job(clip_path: str, clip_id: str, codec: str, work: str) -> dict[str, Any]:
    """Pass 1 for one (clip, codec): code it, save the output, measure bytes, time and delay."""
    try:
        x = load_16k(clip_path)
        coded = _codec(codec).run(x)
        save_16k(_decoded_path(Path(work), codec, clip_id), coded.audio)
        delay = estimate_delay(x, coded.audio)
    except BenchError as exc:
        raise BenchError(f"{codec} on {clip_id}: {exc}") from None
    except Exception as exc:  # a codec bug: name the codec and clip, keep one line
        raise BenchError(f"{codec} failed on {clip_id}: {type(exc).__name__}: {exc}") from None
    return {
        "n_samples": len(x),
        "payload_bytes": coded.payload_bytes,
        "overhead_bytes": coded.overhead_bytes,
        "encode_s": coded.encode_s,
        "decode_s": coded.decode_s,
        "clip_delay_samples": delay,
    }


def score_job(clip_path: str, clip_id: str, codec: str, work: str, delay: int,
              metrics: list[str]) -> dict[str, Any]:
    """Pass 2 for one (clip, codec): align by the codec's delay and compute the metrics.

    A metric that fails on a clip (PESQ finds no speech, say) gives NaN and a note.
    """
    try:
        ref = load_16k(clip_path)
        deg = apply_delay(load_16k(_decoded_path(Path(work), codec, clip_id)), delay, len(ref))
    except Exception as exc:  # the decoded file vanished or is unreadable
        raise BenchError(f"cannot score {codec} on {clip_id}: {type(exc).__name__}: {exc}") from None
    scores: dict[str, Any] = {}
    notes = []
    for name in metrics:
        try:
            scores[name] = float(metric_registry.METRICS[name].fn(ref, deg, SR))
        except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
            scores[name] = math.nan
            notes.append(f"{name}: {type(exc).__name__}: {exc}".strip())
    scores["notes"] = "; ".join(notes)
    return scores


# --- orchestration -----------------------------------------------------------------------------

@contextlib.contextmanager
def _single_thread_env() -> Iterator[None]:
    """Set the one-thread variables for the workers this process spawns, then restore them."""
    saved = {k: os.environ.get(k) for k in SINGLE_THREAD_ENV}
    os.environ.update(SINGLE_THREAD_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _Inline:
    """A stand-in for the process pool when workers=1: runs each job on submit."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed back through the future
            fut.set_exception(exc)
        return fut


def _run_jobs(pool: Any, fn: Callable[..., Any], jobs: dict[tuple[str, str], tuple],
              desc: str, progress: bool) -> dict[tuple[str, str], Any]:
    """Submit every job, show progress, return results by key; the first error stops all."""
    from tqdm import tqdm

    futures = {pool.submit(fn, *args): key for key, args in jobs.items()}
    results: dict[tuple[str, str], Any] = {}
    with tqdm(total=len(futures), desc=desc, unit="job", disable=not progress,
              dynamic_ncols=True) as bar:
        for fut in as_completed(futures):
            try:
                results[futures[fut]] = fut.result()
            except BaseException as exc:
                for other in futures:
                    other.cancel()
                if isinstance(exc, BrokenProcessPool):
                    raise BenchError(f"a worker process died ({exc}); out of memory?") from None
                raise
            bar.update(1)
    return results


def _codec_infos(names: list[str]) -> dict[str, CodecInfo]:
    infos = {}
    for name in names:
        codec = make_codec(name)
        codec.check()
        infos[name] = CodecInfo(name, codec.family, codec.nominal_bps, codec.frame_ms(),
                                codec.latency_ms())
    return infos


def _rows(clips: list[Clip], infos: dict[str, CodecInfo], coded: dict, scored: dict,
          metrics: list[str]) -> list[dict[str, Any]]:
    rows = []
    for clip in clips:
        for name, info in infos.items():
            c = coded[(clip.clip_id, name)]
            dur = c["n_samples"] / SR
            row: dict[str, Any] = {
                "clip": clip.clip_id,
                "group": clip.group,
                "speaker": clip.speaker,
                "duration_s": round(dur, 4),
                "codec": name,
                "family": info.family,
                "nominal_bps": info.nominal_bps,
                "payload_bytes": c["payload_bytes"],
                "overhead_bytes": c["overhead_bytes"],
                "bitrate_bps": 8 * c["payload_bytes"] / dur,
                "overhead_bps": 8 * c["overhead_bytes"] / dur,
                "delay_samples": info.delay_samples,
                "clip_delay_samples": c["clip_delay_samples"],
                "encode_s": c["encode_s"],
                "decode_s": c["decode_s"],
                "encode_rtf": c["encode_s"] / dur,
                "decode_rtf": c["decode_s"] / dur,
            }
            s = scored[(clip.clip_id, name)]
            row.update({m: s[m] for m in metrics})
            row["notes"] = s["notes"]
            rows.append(row)
    return rows


def run_bench(
    set_dir: str | Path,
    codecs: list[str] | None = None,
    out_dir: str | Path = "out/bench",
    metrics: list[str] | None = None,
    max_clips: int | None = None,
    workers: int = 2,
    *,
    split: str | None = "test",
    skip_metrics: list[str] | None = None,
    min_duration_s: float = 1.0,
    max_duration_s: float | None = None,
    keep_audio: bool = False,
    command: str | None = None,
    progress: bool = True,
) -> BenchResult:
    """Benchmark `codecs` (default: all) on the clips of `set_dir`; write the report to `out_dir`.

    `set_dir` is a folder of audio files or a prepared corpus with a `manifest.csv` (then the
    rows of `split` are used). `metrics` are metric or family names (default: all); `workers`
    processes run the jobs (1: in this process). Decoded audio is kept in `out_dir/audio` with
    `keep_audio`. Raises :class:`BenchError` for bad input or a missing dependency.
    """
    from hopcodec.bench.report import write_report

    started = time.time()
    clips = find_clips(set_dir, split, max_clips, min_duration_s, max_duration_s)
    names = expand_names(codecs)
    if not names:
        raise BenchError("no codecs to run")
    infos = _codec_infos(names)
    chosen = metric_registry.select(metrics, skip_metrics)
    for m in chosen:
        metric_registry.require(m)
    if workers < 1:
        raise BenchError(f"workers must be at least 1, got {workers}")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "audio" if keep_audio else Path(tempfile.mkdtemp(prefix=".work-", dir=out))
    try:
        with _single_thread_env(), contextlib.ExitStack() as stack:
            pool: Any = _Inline()
            if workers > 1:
                pool = stack.enter_context(
                    ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
                )
            code_jobs = {
                (c.clip_id, n): (str(c.path), c.clip_id, n, str(work)) for c in clips for n in names
            }
            coded = _run_jobs(pool, code_job, code_jobs, "coding ", progress)
            for name, info in infos.items():
                info.delay_samples = codec_delay(
                    [coded[(c.clip_id, name)]["clip_delay_samples"] for c in clips]
                )
            score_jobs = {
                (c.clip_id, n): (str(c.path), c.clip_id, n, str(work), infos[n].delay_samples,
                                 chosen)
                for c in clips
                for n in names
            }
            scored = _run_jobs(pool, score_job, score_jobs, "scoring", progress)
        rows = _rows(clips, infos, coded, scored, chosen)
        meta = {
            "command": command,
            "set": str(set_dir),
            "split": split if (Path(set_dir) / "manifest.csv").is_file() else None,
            "clips": len(clips),
            "audio_s": round(sum(r["duration_s"] for r in rows if r["codec"] == names[0]), 2),
            "workers": workers,
            "wall_s": None,
        }
        result = BenchResult(out, out / "report.md", rows, infos, chosen, meta)
        example = _example_clip(clips)
        example_audio = {
            n: apply_delay(load_16k(_decoded_path(work, n, example.clip_id)),
                           infos[n].delay_samples, coded[(example.clip_id, n)]["n_samples"])
            for n in names
        }
        if any(n.startswith("hopcodec-") for n in names):
            from hopcodec.bench.speed import decoder_speed
            from streaming_core.modes import default_mode_name

            with _single_thread_env():
                meta["decoder_speed"] = decoder_speed(load_16k(example.path), default_mode_name())
        meta["wall_s"] = round(time.time() - started, 1)
        write_report(result, example.clip_id, load_16k(example.path), example_audio)
        return result
    finally:
        if not keep_audio:
            shutil.rmtree(work, ignore_errors=True)


def _example_clip(clips: list[Clip]) -> Clip:
    """The clip shown in the spectrogram panel: the first of the set lasting 2-5 s, else the
    longest."""
    for c in clips:
        if 2.0 <= c.duration_s <= 5.0:
            return c
    return max(clips, key=lambda c: c.duration_s)

