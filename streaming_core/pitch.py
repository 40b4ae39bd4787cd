"""Pitch period and pitch correlation per hop, from normalized cross-correlation.

For each hop the last WINDOW samples of a low-passed signal are correlated with the same span
PITCH_MIN_PERIOD..PITCH_MAX_PERIOD samples earlier (only past samples: no lookahead). The lag
with the highest normalized correlation wins, except that a sub-multiple of it (an octave-too-low
error) or a lag close to the previous hop's pitch (tracking) with almost the same correlation is
preferred. The peak is refined to a fraction of a sample by parabolic interpolation.
"""

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from streaming_core.constants import PITCH_MAX_PERIOD, PITCH_MIN_PERIOD, WINDOW

PITCH_HISTORY = WINDOW + PITCH_MAX_PERIOD
"""Samples of low-passed history the pitch search needs."""

SUBMULTIPLE_RATIO = 0.85
"""A sub-multiple lag is taken if its correlation reaches this fraction of the best."""

TRACKING_RATIO = 0.92
"""A lag near the previous pitch is kept if its correlation reaches this fraction of the best."""

TRACKING_TOLERANCE = 0.12
"""Relative distance from the previous pitch that counts as 'near'."""

VOICED_CORRELATION = 0.5

ENERGY_FLOOR = WINDOW * 1e-6
"""Added to both energies of the correlation (-60 dBFS): near-silence does not look voiced."""

_LAGS = np.arange(PITCH_MIN_PERIOD, PITCH_MAX_PERIOD + 1)


@dataclass
class PitchTrackerState:
    """What the tracker remembers between hops."""

    period: float = 0.0
    """Previous hop's pitch period in samples (0 before the first voiced hop)."""
    correlation: float = 0.0
    """Previous hop's pitch correlation."""


def normalized_correlation(history: np.ndarray) -> np.ndarray:
    """Normalized cross-correlation of the last WINDOW samples with each lag in _LAGS."""
    target = history[-WINDOW:]
    # Windows that start at s end at s + WINDOW; the lag is len(history) - WINDOW - s.
    earlier = sliding_window_view(history[: len(history) - PITCH_MIN_PERIOD], WINDOW)[::-1]
    cross = earlier @ target
    squares = np.concatenate(([0.0], np.cumsum(history * history)))
    starts = len(history) - WINDOW - _LAGS
    lagged_energy = squares[starts + WINDOW] - squares[starts]
    target_energy = squares[-1] - squares[-1 - WINDOW]
    return cross / np.sqrt((target_energy + ENERGY_FLOOR) * (lagged_energy + ENERGY_FLOOR))


def _local_peak(ncc: np.ndarray, centre: int, tolerance: float) -> int:
    """Index of the highest correlation within +-tolerance (relative) of lag index `centre`."""
    lag = _LAGS[centre]
    lo = max(0, int(np.floor(lag * (1 - tolerance))) - PITCH_MIN_PERIOD)
    hi = min(len(_LAGS), int(np.ceil(lag * (1 + tolerance))) - PITCH_MIN_PERIOD + 1)
    return lo + int(np.argmax(ncc[lo:hi]))


def _refine(ncc: np.ndarray, index: int) -> float:
    """Fractional lag at the parabolic peak through index-1, index, index+1."""
    if index == 0 or index == len(ncc) - 1:
        return float(_LAGS[index])
    left, mid, right = ncc[index - 1], ncc[index], ncc[index + 1]
    curvature = left - 2 * mid + right
    offset = 0.0 if curvature >= 0 else 0.5 * (left - right) / curvature
    return float(_LAGS[index] + np.clip(offset, -0.5, 0.5))


def track_pitch(history: np.ndarray, state: PitchTrackerState) -> tuple[float, float]:
    """Pitch period (samples) and correlation (0..1) of the hop ending `history`; updates state."""
    ncc = normalized_correlation(history)
    best = int(np.argmax(ncc))
    # Octave-too-low errors: a lag of best/k with nearly the same correlation is the period.
    for divisor in (4, 3, 2):
        lag = _LAGS[best] / divisor
        if lag < PITCH_MIN_PERIOD:
            continue
        candidate = _local_peak(ncc, int(round(lag)) - PITCH_MIN_PERIOD, 0.04)
        if ncc[candidate] >= SUBMULTIPLE_RATIO * ncc[best]:
            best = candidate
            break
    # Tracking: stay near the previous voiced pitch when it is almost as good.
    if state.correlation > VOICED_CORRELATION and state.period > 0:
        near = _local_peak(ncc, int(round(state.period)) - PITCH_MIN_PERIOD, TRACKING_TOLERANCE)
        if ncc[near] >= TRACKING_RATIO * ncc[best]:
            best = near
    period = _refine(ncc, best)
    correlation = float(np.clip(ncc[best], 0.0, 1.0))
    state.period, state.correlation = period, correlation
    return period, correlation
