"""What a bench run writes: report.md, results.csv, summary.csv, results.json and the plots."""

from __future__ import annotations

import csv
import json
import math
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hopcodec.bench.audio import SR
from hopcodec.bench.metrics import METRICS
from hopcodec.bench.paired import clip_by_clip_section

if TYPE_CHECKING:
    from hopcodec.bench.runner import BenchResult, CodecInfo

ALL = "all clips"
VERSIONED = ("numpy", "soxr", "pesq", "pystoi", "visqol-python", "ai-edge-litert", "warpq",
             "speechmos", "onnxruntime", "librosa", "opuslib")
DECIMALS = {"stoi": 3, "estoi": 3, "lsd_8k": 1, "lsd_4k": 1, "f0_rmse_hz": 1, "f0_gross_pct": 1,
            "voicing_err_pct": 1}


def _finite(values: list[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return arr[np.isfinite(arr)]


def latency_of(info: CodecInfo) -> tuple[float | None, bool]:
    """(algorithmic latency in ms, whether it is an estimate: frame + measured delay)."""
    if info.latency_ms is not None:
        return info.latency_ms, False
    if info.frame_ms is not None:
        return info.frame_ms + 1000.0 * info.delay_samples / SR, True
    return None, False


def summarize(result: BenchResult) -> list[dict[str, Any]]:
    """One row per (clip group, codec), `all clips` first: rate, speed, mean and worst scores."""
    groups = [ALL, *sorted({r["group"] for r in result.rows})]
    out = []
    for group in groups:
        for name, info in result.codecs.items():
            rows = [r for r in result.rows
                    if r["codec"] == name and group in (ALL, r["group"])]
            if not rows:
                continue
            dur = sum(r["duration_s"] for r in rows)
            latency, estimated = latency_of(info)
            row: dict[str, Any] = {
                "group": group,
                "codec": name,
                "family": info.family,
                "clips": len(rows),
                "audio_s": round(dur, 2),
                "nominal_kbps": info.nominal_bps / 1000 if info.nominal_bps else None,
                "kbps": 8 * sum(r["payload_bytes"] for r in rows) / dur / 1000,
                "overhead_kbps": 8 * sum(r["overhead_bytes"] for r in rows) / dur / 1000,
                "delay_ms": 1000.0 * info.delay_samples / SR,
                "latency_ms": latency,
                "latency_estimated": estimated,
                "encode_rtf": sum(r["encode_s"] for r in rows) / dur,
                "decode_rtf": sum(r["decode_s"] for r in rows) / dur,
            }
            for m in result.metrics:
                vals = _finite([r[m] for r in rows])
                better_high = METRICS[m].higher_is_better
                row[f"{m}_mean"] = float(vals.mean()) if len(vals) else math.nan
                row[f"{m}_worst"] = (float(vals.min() if better_high else vals.max())
                                     if len(vals) else math.nan)
                row[f"{m}_failed"] = len(rows) - len(vals)
            out.append(row)
    return out


# --- markdown ----------------------------------------------------------------------------------

def _num(x: float | None, decimals: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{decimals}f}"


def _rtf(x: float) -> str:
    return f"{x:.4f}" if x >= 1e-4 else "<0.0001"


def _table(rows: list[dict[str, Any]], metrics: list[str]) -> list[str]:
    heads = ["codec", "kbps", "delay ms", "latency ms", "enc RTF", "dec RTF"]
    heads += [f"{METRICS[m].label} {'↑' if METRICS[m].higher_is_better else '↓'}"
              for m in metrics]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in rows:
        if r["family"] == "reference":
            kbps = "PCM"
        else:
            kbps = _num(r["kbps"])
            if r["overhead_kbps"] > 0:
                kbps += f" (+{_num(r['overhead_kbps'])} hdr)"
        latency = _num(r["latency_ms"], 1)
        if r["latency_estimated"]:
            latency = "≈" + latency
        cells = [f"`{r['codec']}`", kbps, _num(r["delay_ms"], 1), latency,
                 _rtf(r["encode_rtf"]), _rtf(r["decode_rtf"])]
        for m in metrics:
            d = DECIMALS.get(m, 2)
            cell = f"{_num(r[f'{m}_mean'], d)} / {_num(r[f'{m}_worst'], d)}"
            if r[f"{m}_failed"]:
                cell += f" ({r[f'{m}_failed']} n/a)"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _versions() -> dict[str, str]:
    found = {}
    for pkg in VERSIONED:
        try:
            found[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    try:
        import opuslib.api.info

        found["libopus"] = opuslib.api.info.get_version_string().decode()
    except Exception:  # noqa: BLE001 - informational only
        pass
    return found


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _markdown(result: BenchResult, summary: list[dict[str, Any]], example: str) -> str:
    meta = result.meta
    lines = ["# hopcodec bench report", ""]
    if meta.get("command"):
        lines += ["```sh", meta["command"], "```", ""]
    split = f", split `{meta['split']}`" if meta.get("split") else ""
    lines += [
        f"- set: `{meta['set']}`{split}: {meta['clips']} clips, {meta['audio_s']} s of audio",
        f"- date: {meta['date']}; machine: {meta['cpu']}, {meta['workers']} worker process(es), "
        f"one thread each; run took {meta['wall_s']} s",
        "- metrics: mean / worst over clips (↑ higher is better, ↓ lower is better); "
        "intrusive metrics compare with the input after removing each codec's delay",
        "",
    ]
    groups = sorted({r["group"] for r in result.rows})
    for group in [ALL, *groups] if len(groups) > 1 else [ALL]:
        rows = [r for r in summary if r["group"] == group]
        title = "All clips" if group == ALL else f"Group `{group}`"
        n = rows[0]["clips"]
        lines += [f"## {title} ({n} clip{'s' if n != 1 else ''}, {rows[0]['audio_s']} s)", ""]
        lines += _table(rows, result.metrics) + [""]
    lines += clip_by_clip_section(result.rows, list(result.codecs), result.metrics)
    if meta.get("decoder_speed"):
        from hopcodec.bench.speed import STREAMS_AT_ONCE, speed_table

        lines += ["## Decoder speed (one core, nothing else running)", "",
                  f"`{example}` coded in the default mode, decoded as one stream with packets of 1 "
                  "frame (a live stream: one decoder call per 10 ms hop) and of 20 frames (a coded "
                  f"file), and as {STREAMS_AT_ONCE} live streams whose hops are decoded together "
                  "(as a server's hop thread decodes the streams' messages that wait at the same "
                  "time: one graph run per stage for all of them); best of 3 runs, real-time "
                  "factor per stream.", ""]
        lines += speed_table(meta["decoder_speed"]) + [""]
    lines += [
        "## Plots",
        "",
        "![quality against bitrate](quality_vs_bitrate.png)",
        "",
        f"Spectrograms of `{example}` through each codec (delay removed):",
        "",
        "![spectrograms](spectrograms.png)",
        "",
        "## How to read this",
        "",
        "- **kbps**: measured from the bytes each codec produced, over the clip's duration. "
        "Codec 2: the raw frames as `c2enc` writes them, each frame byte-aligned (so 1300 reads "
        "1.40 and 700C 0.80). Opus: the sum of packet sizes (VBR, TOC bytes included). hopcodec: "
        "packet payloads, with the packet headers shown apart as `hdr`.",
        "- **delay ms**: the codec's output delay, from cross-correlation (energy envelopes, "
        "refined on the waveform where it matches), the median over clips; removed before "
        "scoring.",
        "- **latency ms**: algorithmic latency. Opus: 20 ms frame + encoder lookahead (from "
        "libopus); hopcodec: its stated latency budget; ≈: frame duration + measured delay.",
        "- **enc / dec RTF**: wall time over audio duration, one thread, one clip at a time. "
        "Codec 2 times include the start of a fresh `c2enc`/`c2dec` process and the 16↔8 kHz "
        "resampling.",
        "- **LSD**: log-spectral distance in dB on frames within 40 dB of the loudest; narrowband "
        "codecs (Codec 2, Opus at 6 and 8 kbps) lose 0–8 kHz for their bandwidth alone, so "
        "0–4 kHz is beside it. **F0**: a simple YIN tracker on input and output; fine RMSE "
        "leaves out gross (>20 %) errors, which are counted apart. **WARP-Q**: raw score, "
        "identical signals score about 0.5. **DNSMOS**: scores the output alone (no reference), "
        "so a codec can score above the unprocessed input.",
    ]
    notes = [r for r in result.rows if r.get("notes")]
    if notes:
        lines += ["", "## Metric failures", ""]
        lines += [f"- `{r['codec']}` on `{r['clip']}`: {r['notes']}" for r in notes[:50]]
        if len(notes) > 50:
            lines.append(f"- … and {len(notes) - 50} more (see results.csv)")
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
    lines += ["", f"Versions: Python {platform.python_version()}, {versions}.", ""]
    return "\n".join(lines)


# --- files -------------------------------------------------------------------------------------

def _clean(x: Any) -> Any:
    """JSON-safe: NaN/inf to null, numpy scalars to Python."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields = list(rows[0]) if rows else []
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def write_report(result: BenchResult, example_clip: str, example_ref: np.ndarray,
                 example_out: dict[str, np.ndarray]) -> None:
    """Write every output file of a run into `result.out_dir`."""
    from hopcodec.bench.plots import plot_quality_vs_bitrate, plot_spectrograms

    out = result.out_dir
    result.meta.update(date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), cpu=_cpu(),
                       versions=_versions())
    summary = summarize(result)
    _write_csv(out / "results.csv", result.rows)
    _write_csv(out / "summary.csv", summary)
    payload = {
        "meta": result.meta,
        "codecs": {n: vars(i) for n, i in result.codecs.items()},
        "metrics": {m: {"label": METRICS[m].label,
                        "higher_is_better": METRICS[m].higher_is_better}
                    for m in result.metrics},
        "summary": summary,
        "rows": result.rows,
    }
    (out / "results.json").write_text(json.dumps(_clean(payload), indent=1) + "\n")
    plot_quality_vs_bitrate([r for r in summary if r["group"] == ALL], result.metrics,
                            out / "quality_vs_bitrate.png")
    plot_spectrograms(example_clip, example_ref, example_out, out / "spectrograms.png")
    result.report.write_text(_markdown(result, summary, example_clip))
