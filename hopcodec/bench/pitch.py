"""A small YIN-style F0 tracker (numpy only) for the bench's F0 and voicing errors.

Not a reference pitch tracker: it is applied the same way to the input and to each codec's output,
so its own errors mostly cancel in the comparison.
"""

from __future__ import annotations

import numpy as np
import soxr

from hopcodec.bench.audio import SR

TRACK_SR = 8000
HOP_S = 0.010
WINDOW_S = 0.025
F0_MIN, F0_MAX = 60.0, 400.0
THRESHOLD = 0.15  # first dip of the normalised difference below this is the period
VOICED_MAX = 0.35  # a frame is voiced when its best dip is below this ...
SILENCE_DB = 40.0  # ... and its energy is within this many dB of the loudest frame
GROSS_RATIO = 0.2  # an F0 more than 20 % off is a gross error


def track_f0(x: np.ndarray, sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    """F0 in Hz and a voiced flag per 10 ms frame (F0 is 0 where unvoiced)."""
    y = soxr.resample(np.asarray(x, dtype=np.float64), sr, TRACK_SR) if sr != TRACK_SR else x
    y = np.asarray(y, dtype=np.float64)
    hop, win = int(HOP_S * TRACK_SR), int(WINDOW_S * TRACK_SR)
    lag_min, lag_max = int(TRACK_SR / F0_MAX), int(np.ceil(TRACK_SR / F0_MIN))
    span = win + lag_max
    n_frames = max(0, (len(y) - span) // hop + 1)
    if n_frames == 0:
        return np.zeros(0), np.zeros(0, dtype=bool)
    idx = np.arange(n_frames)[:, None] * hop + np.arange(span)[None, :]
    frames = y[idx]
    frames = frames - frames.mean(axis=1, keepdims=True)
    head = frames[:, :win]
    # YIN difference function d(tau) = sum_j (x_j - x_{j+tau})^2 for tau = 1..lag_max
    diff = np.stack([np.sum((head - frames[:, tau : tau + win]) ** 2, axis=1)
                     for tau in range(1, lag_max + 1)], axis=1)
    taus = np.arange(1, lag_max + 1)
    cmnd = diff * taus / np.maximum(np.cumsum(diff, axis=1), 1e-12)
    f0 = np.zeros(n_frames)
    best = np.ones(n_frames)
    for i in range(n_frames):
        d = cmnd[i, lag_min - 1 :]
        below = np.flatnonzero(d < THRESHOLD)
        k = below[0] if len(below) else int(np.argmin(d))
        while k + 1 < len(d) and d[k + 1] < d[k]:  # walk down to the dip's bottom
            k += 1
        shift = 0.0
        if 0 < k < len(d) - 1:  # parabolic interpolation of the dip
            a, b, c = d[k - 1], d[k], d[k + 1]
            denom = a - 2 * b + c
            shift = 0.5 * (a - c) / denom if denom > 0 else 0.0
        best[i] = d[k]
        f0[i] = TRACK_SR / (lag_min + k + shift)
    energy_db = 10 * np.log10(np.mean(head**2, axis=1) + 1e-12)
    voiced = (best < VOICED_MAX) & (energy_db > energy_db.max() - SILENCE_DB)
    return np.where(voiced, f0, 0.0), voiced


def f0_errors(ref: np.ndarray, deg: np.ndarray, sr: int = SR) -> dict[str, float]:
    """F0 errors of `deg` against `ref`, frame by frame.

    On frames voiced in both: the gross error rate (%, F0 off by more than 20 %) and the RMSE in
    Hz of the other frames (the fine error, not swamped by octave jumps). On all frames: the
    voicing decision error (% whose voiced/unvoiced decision differs).
    """
    f_ref, v_ref = track_f0(ref, sr)
    f_deg, v_deg = track_f0(deg, sr)
    n = min(len(f_ref), len(f_deg))
    f_ref, v_ref, f_deg, v_deg = f_ref[:n], v_ref[:n], f_deg[:n], v_deg[:n]
    both = v_ref & v_deg
    nan = float("nan")
    if not both.any():
        rmse = gross = nan
    else:
        err = f_deg[both] - f_ref[both]
        is_gross = np.abs(err) > GROSS_RATIO * f_ref[both]
        gross = float(100.0 * np.mean(is_gross))
        rmse = float(np.sqrt(np.mean(err[~is_gross] ** 2))) if not is_gross.all() else nan
    vde = float(100.0 * np.mean(v_ref != v_deg)) if n else nan
    return {"f0_rmse_hz": rmse, "f0_gross_pct": gross, "voicing_err_pct": vde}
