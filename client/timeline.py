"""PNG timeline of an end-to-end run (matplotlib, an optional dependency)."""

from pathlib import Path

import numpy as np

from client.e2e import SEGMENTS, EndToEndRun
from client.errors import ClientError

COLOURS = ("#9e9e9e", "#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd", "#8c564b")


def plot_timeline(run: EndToEndRun, path: Path, packets: int = 40) -> None:
    """Stacked per-packet segments of the first `packets` played packets, and every packet's
    mouth-to-ear time over the run."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ClientError("--png needs matplotlib: pip install matplotlib") from None
    played = run.played_packets()
    rows = [run.segments_ms(p) for p in played]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), height_ratios=(3, 2))
    for index, row in enumerate(rows[:packets]):
        left = 0.0
        for name, colour in zip(SEGMENTS, COLOURS, strict=True):
            top.barh(index, row[name], left=left, color=colour, label=name if index == 0 else None)
            left += row[name]
    top.invert_yaxis()
    top.set_xlabel("ms since the first sample of the packet's hop was spoken")
    top.set_ylabel("packet")
    top.set_title(f"hopcodec end to end: {run.server}, mode {run.mode}, decoder {run.synthesizer}")
    top.legend(loc="lower right", fontsize=8)
    totals = np.array([sum(row.values()) for row in rows])
    bottom.plot([p.frame for p in played], totals, lw=0.8, label="per packet (timestamps)")
    bottom.axhline(run.measured_mouth_to_ear_ms, color="k", ls="--",
                   label=f"cross-correlation {run.measured_mouth_to_ear_ms:.1f} ms")
    bottom.set_xlabel("packet")
    bottom.set_ylabel("mouth to ear, ms")
    bottom.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
