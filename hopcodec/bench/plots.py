"""The report's PNG plots: quality against bitrate per metric, and a spectrogram panel."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from hopcodec.bench.audio import SR
from hopcodec.bench.metrics import METRICS

FAMILY_STYLE = {"hopcodec": ("tab:red", "o"), "codec2": ("tab:blue", "s"),
                "opus": ("tab:green", "^")}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_quality_vs_bitrate(summary: list[dict[str, Any]], metrics: list[str],
                            path: Path) -> None:
    """One panel per metric: mean score against measured kbps, one line per codec family, the
    unprocessed reference as a dashed line."""
    plt = _pyplot()
    cols = min(4, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, m in zip(axes.flat, metrics, strict=False):
        for family, (color, marker) in FAMILY_STYLE.items():
            pts = sorted((r["kbps"], r[f"{m}_mean"], r["codec"]) for r in summary
                         if r["family"] == family and np.isfinite(r[f"{m}_mean"]))
            if not pts:
                continue
            xs, ys, names = zip(*pts, strict=True)
            ax.plot(xs, ys, marker=marker, color=color, label=family)
            for x, y, n in pts:
                ax.annotate(n.split("-", 1)[1], (x, y), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        for r in summary:
            if r["family"] == "reference" and np.isfinite(r[f"{m}_mean"]):
                ax.axhline(r[f"{m}_mean"], color="gray", linestyle="--", label="reference")
        ax.set_xscale("log")
        ax.set_xlabel("measured kbps")
        arrow = "higher is better" if METRICS[m].higher_is_better else "lower is better"
        ax.set_title(f"{METRICS[m].label} ({arrow})", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if labels:
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _log_spectrogram(x: np.ndarray, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    starts = np.arange(0, len(x) - n_fft + 1, hop)
    frames = x[starts[:, None] + np.arange(n_fft)[None, :]] * np.hanning(n_fft)
    return 10 * np.log10(np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-10).T


def plot_spectrograms(clip: str, ref: np.ndarray, outputs: dict[str, np.ndarray],
                      path: Path) -> None:
    """One spectrogram per codec of the same clip, the input on top, on one colour scale."""
    plt = _pyplot()
    panels = {"input": ref, **{n: y for n, y in outputs.items() if n != "reference"}}
    specs = {n: _log_spectrogram(np.asarray(y, dtype=np.float64)) for n, y in panels.items()}
    top = max(float(s.max()) for s in specs.values())
    fig, axes = plt.subplots(len(specs), 1, figsize=(9, 1.6 * len(specs)), sharex=True,
                             squeeze=False)
    extent = (0.0, len(ref) / SR, 0.0, SR / 2000)
    for ax, (name, spec) in zip(axes[:, 0], specs.items(), strict=True):
        ax.imshow(spec, origin="lower", aspect="auto", extent=extent, cmap="magma",
                  vmin=top - 80, vmax=top)
        ax.set_ylabel("kHz")
        ax.set_title(name, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel(f"seconds — {Path(clip).name}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
