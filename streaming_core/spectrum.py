"""Band layout, analysis window and the cepstrum <-> band-energy transforms.

The representation follows LPCNet (Valin & Skoglund, ICASSP 2019): 18 band energies on
triangular bands spaced like the Bark scale, log10, then an orthonormal DCT-II to cepstrum.
The decoder inverts it: cepstrum -> log band energies -> band energies (see `lpc.py`).
"""

from functools import cache

import numpy as np
from scipy.fft import dct, idct

from streaming_core.constants import BAND_EDGES_200HZ, LOG_ENERGY_FLOOR, NB_BANDS, WINDOW

NB_BINS = WINDOW // 2 + 1
"""rfft bins of one analysis window (50 Hz apart)."""

BINS_PER_200HZ = WINDOW // 80


@cache
def analysis_window() -> np.ndarray:
    """Power-complementary (Vorbis) window of WINDOW samples: w[n]^2 + w[n + HOP]^2 = 1."""
    n = np.arange(WINDOW)
    return np.sin(0.5 * np.pi * np.sin(np.pi * (n + 0.5) / WINDOW) ** 2)


@cache
def band_interpolation() -> np.ndarray:
    """Matrix (NB_BINS, NB_BANDS): per-bin linear interpolation between band centres.

    Row k holds the weights of bin k on its two neighbouring bands; rows sum to 1. Its
    transpose, normalised per band, averages bin powers into band energies.
    """
    centres = np.array(BAND_EDGES_200HZ) * BINS_PER_200HZ
    weights = np.zeros((NB_BINS, NB_BANDS))
    for band in range(NB_BANDS - 1):
        lo, hi = centres[band], centres[band + 1]
        for k in range(lo, hi):
            frac = (k - lo) / (hi - lo)
            weights[k, band] = 1.0 - frac
            weights[k, band + 1] = frac
    weights[centres[-1]:, NB_BANDS - 1] = 1.0
    return weights


@cache
def band_averaging() -> np.ndarray:
    """Matrix (NB_BANDS, NB_BINS) giving each band's weighted mean bin power."""
    weights = band_interpolation().T
    return weights / weights.sum(axis=1, keepdims=True)


def band_energies(power_spectrum: np.ndarray) -> np.ndarray:
    """Mean power per band from an rfft power spectrum (..., NB_BINS)."""
    return power_spectrum @ band_averaging().T


def cepstrum_from_energies(energies: np.ndarray) -> np.ndarray:
    """Orthonormal DCT of log10 band energies (..., NB_BANDS)."""
    return dct(np.log10(energies + LOG_ENERGY_FLOOR), type=2, norm="ortho", axis=-1)


@cache
def inverse_dct_matrix() -> np.ndarray:
    """(NB_BANDS, NB_BANDS) cepstrum @ this = log10 band energies; its transpose maps back (the
    DCT is orthonormal). Per hop, one product costs a tenth of a `scipy.fft.dct` call."""
    return idct(np.eye(NB_BANDS), type=2, norm="ortho", axis=-1)


def log_energies_from_cepstrum(cepstrum: np.ndarray) -> np.ndarray:
    """Inverse of `cepstrum_from_energies` up to the log: log10 band energies."""
    return np.asarray(cepstrum) @ inverse_dct_matrix()
