"""Linear prediction from the decoded cepstrum: no LPC bits are sent.

Cepstrum -> band energies -> per-bin power spectrum -> autocorrelation (inverse FFT) -> lag
window -> Levinson-Durbin, as in LPCNet (Valin & Skoglund 2019). The resulting predictor
describes the pre-emphasized signal; `dsp_synth` and the neural decoder filter through it.
"""

import numpy as np

from streaming_core.constants import LPC_ORDER, SAMPLE_RATE
from streaming_core.spectrum import analysis_window, power_spectrum_from_cepstrum

LAG_WINDOW_HZ = 60.0
"""Gaussian lag-window bandwidth: widens formant peaks so the synthesis filter stays tame."""

WHITE_NOISE_CORRECTION = 1.0001
"""r[0] is scaled by this before Levinson (a -40 dB noise floor) for numerical safety."""

_LAGS = np.arange(LPC_ORDER + 1)
LAG_WINDOW = np.exp(-0.5 * (2 * np.pi * LAG_WINDOW_HZ * _LAGS / SAMPLE_RATE) ** 2)


def levinson(autocorrelation: np.ndarray, order: int = LPC_ORDER) -> tuple[np.ndarray, float]:
    """Levinson-Durbin recursion.

    Returns (a, error) with a = [1, a1, ..., a_order] such that the prediction error filter is
    A(z) = sum a_k z^-k, and the final prediction error power. A zero r[0] gives a = [1, 0, ...].
    """
    r = np.asarray(autocorrelation, dtype=np.float64)
    a = np.zeros(order + 1)
    a[0] = 1.0
    error = float(r[0])
    if error <= 0.0:
        return a, 0.0
    for i in range(1, order + 1):
        reflection = -(r[i] + a[1:i] @ r[i - 1 : 0 : -1]) / error
        a[1 : i + 1] = a[1 : i + 1] + reflection * a[i - 1 :: -1][: i]
        error *= 1.0 - reflection * reflection
        if error <= 0.0:
            break
    return a, error


def autocorrelation_from_cepstrum(cepstrum: np.ndarray) -> np.ndarray:
    """Lag-windowed autocorrelation r[0..LPC_ORDER] of the signal the cepstrum describes.

    Normalised so that r[0] is the mean power per sample of the (pre-emphasized) signal.
    Autocorrelations may be interpolated linearly between frames: the result stays valid.
    """
    power = power_spectrum_from_cepstrum(cepstrum)
    r = np.fft.irfft(power)[: LPC_ORDER + 1]
    return r * LAG_WINDOW / np.sum(analysis_window() ** 2)


def lpc_from_autocorrelation(autocorrelation: np.ndarray) -> tuple[np.ndarray, float]:
    """(a, residual_power) of the order-16 predictor, with white-noise correction."""
    r = np.array(autocorrelation, dtype=np.float64)
    r[0] *= WHITE_NOISE_CORRECTION
    return levinson(r)


def lpc_from_cepstrum(cepstrum: np.ndarray) -> tuple[np.ndarray, float]:
    """(a, residual_power) of the order-16 predictor for one frame's cepstrum."""
    return lpc_from_autocorrelation(autocorrelation_from_cepstrum(cepstrum))
