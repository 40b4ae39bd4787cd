"""Paired comparison of two codecs on the same clips: the mean of the per-clip differences, its
standard error, and whether one codec is better, level or worse on each metric.

Two codecs' means over a few dozen short clips differ by less than the clips' own spread more
often than not (DNSMOS moves by 0.07 on one clip shifted by a few samples), so a target such as
"better than Codec 2 3200 on every metric" is judged clip by clip: a difference counts as better
or worse only when it is more than `LEVEL_WITHIN_SE` standard errors from zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hopcodec.bench.metrics import METRICS
from hopcodec.bench.ours import DSP_SUFFIX

TARGET_PAIRS = (("hopcodec-hop-1600", "codec2-3200"),)
"""The quality target of the neural decoder (issue 5): 1.6 kbit/s against Codec 2 at 3.2."""
LEVEL_WITHIN_SE = 2.0
"""A mean difference within this many standard errors of zero is called level."""


@dataclass(frozen=True)
class PairedDifference:
    """`codec` minus `other` on one metric over the clips both were scored on."""

    metric: str
    clips: int
    mean: float
    standard_error: float

    @property
    def verdict(self) -> str:
        """'better', 'worse' or 'level' for `codec` (the metric's direction taken into account);
        'too few clips' below two."""
        if self.clips < 2 or not math.isfinite(self.standard_error):
            return "too few clips"
        if abs(self.mean) <= LEVEL_WITHIN_SE * self.standard_error:
            return "level"
        ahead = self.mean > 0 if METRICS[self.metric].higher_is_better else self.mean < 0
        return "better" if ahead else "worse"


def paired_differences(rows: list[dict[str, Any]], codec: str, other: str,
                       metrics: list[str]) -> list[PairedDifference]:
    """Per metric, the differences `codec` - `other` over the clips where both have a score."""
    scores: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        if row["codec"] in (codec, other):
            scores.setdefault(row["clip"], {})[row["codec"]] = row
    pairs = [(s[codec], s[other]) for s in scores.values() if codec in s and other in s]
    out = []
    for metric in metrics:
        diffs = np.array([float(a[metric]) - float(b[metric]) for a, b in pairs], dtype=float)
        diffs = diffs[np.isfinite(diffs)]
        n = len(diffs)
        mean = float(diffs.mean()) if n else math.nan
        error = float(diffs.std(ddof=1) / math.sqrt(n)) if n >= 2 else math.nan
        out.append(PairedDifference(metric, n, mean, error))
    return out


def comparison_pairs(codecs: list[str]) -> list[tuple[str, str]]:
    """The pairs a report compares: the target pairs, then each hopcodec mode against its DSP
    decoder on the same bits, where the run has both codecs."""
    present = set(codecs)
    pairs = [pair for pair in TARGET_PAIRS if set(pair) <= present]
    pairs += [(name.removesuffix(DSP_SUFFIX), name) for name in codecs
              if name.startswith("hopcodec-") and name.endswith(DSP_SUFFIX)
              and name.removesuffix(DSP_SUFFIX) in present]
    return pairs


def clip_by_clip_section(rows: list[dict[str, Any]], codecs: list[str],
                         metrics: list[str]) -> list[str]:
    """The report's "Clip by clip" section (markdown lines) for the `comparison_pairs` of
    `codecs`; empty when the run has none."""
    pairs = comparison_pairs(codecs)
    if not pairs:
        return []
    return ["## Clip by clip", "",
            "Mean of the per-clip differences (first codec minus second) and its standard error; "
            f"*level* where the mean is within {LEVEL_WITHIN_SE:g} standard errors of zero, "
            "*better* or *worse* for the first codec otherwise (the metric's direction taken "
            "into account).", "", *paired_table(rows, pairs, metrics), ""]


def paired_table(rows: list[dict[str, Any]], pairs: list[tuple[str, str]],
                 metrics: list[str]) -> list[str]:
    """Markdown: one line per pair, per metric the mean difference (standard error) and the
    verdict."""
    heads = ["codec", "against", *(METRICS[m].label for m in metrics)]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for codec, other in pairs:
        cells = []
        for d in paired_differences(rows, codec, other, metrics):
            digits = 3 if abs(d.mean) < 1 else 2
            cells.append(f"{d.mean:+.{digits}f} ({d.standard_error:.{digits}f}) {d.verdict}")
        lines.append(f"| `{codec}` | `{other}` | " + " | ".join(cells) + " |")
    return lines
