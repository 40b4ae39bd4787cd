"""Signal augmentations that help a codec generalise, deterministic per (clip, copy, seed).

Applied to the 16 kHz signal before feature analysis, in this order:

1. EQ / spectral tilt: a low shelf and a high shelf (tilt), 0-2 peaking bands, and sometimes
   a 2nd-order high-pass (a small microphone or a phone's low cut); RBJ-cookbook biquads run
   with `scipy.signal.sosfilt`.
2. Reverb (with probability `reverb_prob`): convolution with a synthetic impulse response, a
   direct path plus exponentially decaying noise (RT60 0.1-0.6 s), causal and truncated to the
   input length so frames stay aligned.
3. Noise (with probability `noise_prob`): coloured Gaussian noise at 20-40 dB SNR relative to
   the power of the active speech frames.
4. Level: the peak is set to a random level in -30..-1 dBFS, so the output never clips.

`augment(x, clip_id, copy)` is a pure function of its arguments: the random generator is
seeded with a SHA-256 of (seed, copy, clip_id), the same in every process and on every run.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
from scipy import signal

from models.data.audio import SAMPLE_RATE, active_frames, frame_levels_db


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentations (uniform draws)."""

    peak_dbfs: tuple[float, float] = (-30.0, -1.0)
    shelf_gain_db: float = 8.0  # each shelf: gain in +-this
    peak_gain_db: float = 8.0  # each peaking band: gain in +-this
    max_peaking: int = 2
    highpass_prob: float = 0.3
    highpass_hz: tuple[float, float] = (50.0, 250.0)
    reverb_prob: float = 0.3
    rt60_s: tuple[float, float] = (0.1, 0.6)
    drr_db: tuple[float, float] = (0.0, 12.0)  # direct-to-reverberant energy ratio
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (20.0, 40.0)
    version: int = 1  # bump when the code changes what a config produces

    def fingerprint(self) -> str:
        """Short stable id of this config (used to invalidate cached features)."""
        return hashlib.sha256(repr(sorted(asdict(self).items())).encode()).hexdigest()[:16]


def clip_rng(clip_id: str, copy: int, seed: int = 0) -> np.random.Generator:
    """The generator for one augmented copy of one clip, stable across processes and runs."""
    digest = hashlib.sha256(f"{seed}\0{copy}\0{clip_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def peaking_sos(f0: float, gain_db: float, q: float, fs: int = SAMPLE_RATE) -> np.ndarray:
    """One peaking-EQ biquad as an sos row (RBJ audio EQ cookbook)."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * f0 / fs
    alpha = np.sin(w0) / (2.0 * q)
    b = [1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a]
    den = [1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a]
    return np.array([*b, *den]) / den[0]


def shelf_sos(f0: float, gain_db: float, high: bool, fs: int = SAMPLE_RATE) -> np.ndarray:
    """One low- or high-shelf biquad (slope 1) as an sos row (RBJ audio EQ cookbook)."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * f0 / fs
    cw, alpha = np.cos(w0), np.sin(w0) / np.sqrt(2.0)
    s = -1.0 if high else 1.0  # the high shelf is the low shelf with the signs of cos flipped
    ra = 2.0 * np.sqrt(a) * alpha
    b = [a * ((a + 1) - s * (a - 1) * cw + ra), s * 2 * a * ((a - 1) - s * (a + 1) * cw),
         a * ((a + 1) - s * (a - 1) * cw - ra)]
    den = [(a + 1) + s * (a - 1) * cw + ra, -s * 2 * ((a - 1) + s * (a + 1) * cw),
           (a + 1) + s * (a - 1) * cw - ra]
    return np.array([*b, *den]) / den[0]


def random_eq(rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """A random stack of biquads (sos array): tilt shelves, peaking bands, maybe a high-pass."""
    g = cfg.shelf_gain_db
    sections = [shelf_sos(rng.uniform(100, 800), rng.uniform(-g, g), high=False),
                shelf_sos(rng.uniform(1500, 6000), rng.uniform(-g, g), high=True)]
    for _ in range(rng.integers(0, cfg.max_peaking + 1)):
        f0 = float(np.exp(rng.uniform(np.log(150.0), np.log(6500.0))))
        sections.append(peaking_sos(f0, rng.uniform(-cfg.peak_gain_db, cfg.peak_gain_db),
                                    rng.uniform(0.5, 3.0)))
    if rng.random() < cfg.highpass_prob:
        sections.extend(signal.butter(2, rng.uniform(*cfg.highpass_hz), "highpass",
                                      fs=SAMPLE_RATE, output="sos"))
    return np.vstack(sections)


def reverb_ir(rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """A synthetic room response: a unit direct path, a short pre-delay, then exponentially
    decaying noise whose energy sits `drr_db` below the direct path."""
    rt60 = rng.uniform(*cfg.rt60_s)
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)  # -60 dB at t = rt60
    tail[: int(rng.uniform(0.001, 0.01) * SAMPLE_RATE)] = 0.0
    tail *= np.sqrt(10.0 ** (-rng.uniform(*cfg.drr_db) / 10.0) / (np.sum(tail**2) + 1e-12))
    tail[0] = 1.0
    return tail


def speech_power(x: np.ndarray) -> float:
    """Mean power of the active frames (all of `x` when none is active)."""
    levels = frame_levels_db(x)
    mask = active_frames(levels)
    if not mask.any():
        return float(np.mean(x.astype(np.float64) ** 2) + 1e-12)
    return float(np.mean(10.0 ** (levels[mask] / 10.0)))


def augment(x: np.ndarray, clip_id: str, copy: int, seed: int = 0,
            cfg: AugmentConfig | None = None) -> np.ndarray:
    """One augmented copy of `x` (16 kHz float32): same length, finite, peak <= -1 dBFS."""
    cfg = cfg or AugmentConfig()
    rng = clip_rng(clip_id, copy, seed)
    y = signal.sosfilt(random_eq(rng, cfg), x.astype(np.float64))
    if rng.random() < cfg.reverb_prob:
        y = signal.fftconvolve(y, reverb_ir(rng, cfg))[: len(y)]
    if rng.random() < cfg.noise_prob:
        noise = signal.lfilter([1.0], [1.0, -rng.uniform(-0.5, 0.95)],
                               rng.standard_normal(len(y)))
        snr = rng.uniform(*cfg.snr_db)
        noise *= np.sqrt(speech_power(y) / (np.mean(noise**2) + 1e-12) / 10.0 ** (snr / 10.0))
        y = y + noise
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    target = 10.0 ** (rng.uniform(*cfg.peak_dbfs) / 20.0)
    y = y * (target / peak) if peak > 0 else y
    return np.nan_to_num(y).astype(np.float32)
