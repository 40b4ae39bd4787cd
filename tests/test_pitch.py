"""Pitch accuracy on harmonic signals of known f0, plausibility on real speech."""

import numpy as np
import pytest

from streaming_core.analysis import analyze_signal
from streaming_core.constants import CORR_INDEX, PERIOD_INDEX, SAMPLE_RATE

VOICED = 0.5
GROSS = 0.2
"""A pitch estimate more than 20 % off is a gross error."""


def harmonic_signal(f0: np.ndarray, weights: np.ndarray, seed: int = 0) -> np.ndarray:
    """Sum of harmonics of an f0 track (Hz per sample), below 7 kHz, random phases."""
    rng = np.random.default_rng(seed)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    signal = np.zeros(len(f0))
    for k, weight in enumerate(weights, start=1):
        audible = (k * f0) < 7000
        signal += audible * weight * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return 0.3 * signal / np.max(np.abs(signal))


def gross_error_rate(signal: np.ndarray, f0: np.ndarray) -> tuple[float, float]:
    features = analyze_signal(signal)[3:]  # skip the start-up frames
    true = f0[np.arange(3, len(features) + 3) * 160 - 1][: len(features)]
    voiced = features[:, CORR_INDEX] > VOICED
    estimate = SAMPLE_RATE / features[voiced, PERIOD_INDEX]
    errors = np.abs(estimate / true[voiced] - 1) > GROSS
    return float(errors.mean()), float(voiced.mean())


SPECTRA = {
    "flat": np.ones(40),
    "falling": 1.0 / np.arange(1, 41),
    "weak_fundamental": np.r_[0.1, np.ones(39) / np.arange(2, 41) ** 0.5],
    "formant_like": np.exp(-0.5 * ((np.arange(1, 41) - 4) / 2.0) ** 2) + 0.05,
}


@pytest.mark.parametrize("f0", [65.0, 90.0, 120.0, 180.0, 250.0, 340.0, 480.0])
@pytest.mark.parametrize("spectrum", SPECTRA, ids=str)
def test_constant_f0(f0, spectrum):
    signal = harmonic_signal(np.full(SAMPLE_RATE, f0), SPECTRA[spectrum])
    gross, voiced = gross_error_rate(signal, np.full(SAMPLE_RATE, f0))
    assert voiced > 0.9
    assert gross < 0.02


@pytest.mark.parametrize(("start", "end"), [(80.0, 200.0), (300.0, 120.0), (150.0, 450.0)])
def test_gliding_f0(start, end):
    n = 2 * SAMPLE_RATE
    f0 = np.geomspace(start, end, n)
    signal = harmonic_signal(f0, SPECTRA["falling"], seed=3)
    gross, voiced = gross_error_rate(signal, f0)
    assert voiced > 0.9
    assert gross < 0.02


def test_vibrato_with_noise():
    n = 2 * SAMPLE_RATE
    t = np.arange(n) / SAMPLE_RATE
    f0 = 160.0 * (1 + 0.06 * np.sin(2 * np.pi * 5 * t))
    signal = harmonic_signal(f0, SPECTRA["formant_like"], seed=4)
    signal += 0.003 * np.random.default_rng(5).standard_normal(n)
    gross, voiced = gross_error_rate(signal, f0)
    assert voiced > 0.9
    assert gross < 0.02


def test_noise_is_not_voiced():
    noise = 0.1 * np.random.default_rng(6).standard_normal(SAMPLE_RATE)
    features = analyze_signal(noise)
    assert np.mean(features[:, CORR_INDEX] > VOICED) < 0.05


def test_real_speech_pitch_is_plausible(speech_clip):
    features = analyze_signal(speech_clip)
    frames = len(features)
    padded = np.pad(speech_clip, (0, frames * 160 - len(speech_clip)))
    level = 10 * np.log10(np.mean(padded.reshape(frames, 160) ** 2, axis=1) + 1e-10)
    speech_frames = level > level.max() - 30
    voiced = speech_frames & (features[:, CORR_INDEX] > VOICED)
    f0 = SAMPLE_RATE / features[voiced, PERIOD_INDEX]
    # Read speech is mostly voiced, in the range of human voices, and continuous.
    assert 0.4 < voiced.sum() / speech_frames.sum() < 0.98
    assert 70 < np.median(f0) < 320
    assert np.mean((f0 < 60) | (f0 > 450)) < 0.03
    runs = voiced[1:] & voiced[:-1]
    period = features[:, PERIOD_INDEX]
    jumps = np.abs(np.log(period[1:][runs] / period[:-1][runs])) > np.log(1.25)
    assert jumps.mean() < 0.05
