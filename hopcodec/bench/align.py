"""Delay alignment: how many samples a codec's output lags its input, and undoing it."""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

from hopcodec.bench.audio import SR

MAX_DELAY_S = 0.1
ENVELOPE_S = 0.005  # smoothing of the energy envelope used for the coarse search
REFINE_S = 0.0025  # the waveform refinement searches this far around the coarse lag
WAVEFORM_MATCH = 0.5  # normalised waveform correlation above which the refinement is trusted


def _xcorr(ref: np.ndarray, deg: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Cross-correlation of `deg` against `ref` at lags -max_lag..max_lag (lags, values)."""
    full = fftconvolve(deg, ref[::-1], mode="full")  # index k <-> lag k - (len(ref) - 1)
    zero = len(ref) - 1
    lo, hi = max(0, zero - max_lag), min(len(full), zero + max_lag + 1)
    return np.arange(lo, hi) - zero, full[lo:hi]


def _envelope(x: np.ndarray, win: int) -> np.ndarray:
    """RMS envelope over `win` samples, mean removed."""
    env = np.sqrt(np.maximum(np.convolve(x * x, np.ones(win) / win, mode="same"), 0.0))
    return env - env.mean()


def estimate_delay(ref: np.ndarray, deg: np.ndarray, max_delay_s: float = MAX_DELAY_S,
                   sr: int = SR) -> int:
    """Lag in samples (positive: `deg` is late) of a codec's output against its input.

    Coarse: the peak of the cross-correlation of the RMS envelopes, which works for parametric
    codecs whose phase does not follow the input (Codec 2, vocoders). Fine: where the waveforms
    themselves correlate well (waveform codecs such as Opus), the waveform peak near the coarse
    lag, which is sample-exact. One clip can still be off: use :func:`codec_delay` over clips.
    """
    ref = np.asarray(ref, dtype=np.float64)
    deg = np.asarray(deg, dtype=np.float64)
    if len(ref) < 2 or len(deg) < 2 or not np.any(ref) or not np.any(deg):
        return 0
    max_lag = int(round(max_delay_s * sr))
    win = max(1, int(round(ENVELOPE_S * sr)))
    lags, corr = _xcorr(_envelope(ref, win), _envelope(deg, win), max_lag)
    coarse = int(lags[np.argmax(corr)])
    reach = int(round(REFINE_S * sr))
    lags, corr = _xcorr(ref, deg, max_lag + reach)
    near = np.abs(lags - coarse) <= reach
    best = int(np.argmax(np.where(near, corr, -np.inf)))
    match = corr[best] / np.sqrt(np.dot(ref, ref) * np.dot(deg, deg))
    return int(lags[best]) if match >= WAVEFORM_MATCH else coarse


def codec_delay(clip_delays: list[int]) -> int:
    """One delay per codec: the median of its clips' delays (robust to a few wrong clips)."""
    return int(round(float(np.median(clip_delays)))) if clip_delays else 0


def apply_delay(deg: np.ndarray, delay: int, n_samples: int) -> np.ndarray:
    """`deg` advanced by `delay` samples and cut or zero-padded to `n_samples`."""
    out = np.zeros(n_samples, dtype=np.float32)
    if delay >= 0:
        part = deg[delay : delay + n_samples]
        out[: len(part)] = part
    else:
        part = deg[: max(0, n_samples + delay)]
        out[-delay : -delay + len(part)] = part
    return out
