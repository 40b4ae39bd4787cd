"""Finding recorded audio in a reference piece by piece, for the tests whose audio passes
through real devices or a real browser (where a starved audio thread drops samples)."""

import numpy as np

from streaming_core.constants import SAMPLE_RATE


def found_fraction(reference: np.ndarray, recording: np.ndarray, threshold: float,
                   piece: int = SAMPLE_RATE // 10) -> float:
    """Fraction of the loud 100 ms pieces of `reference` whose best waveform match in
    `recording` has a normalized correlation above `threshold`. Piece by piece, so that a device
    xrun (this machine is shared; audio threads get starved) costs only the pieces it touches."""
    size = 1 << (len(recording) + piece).bit_length()
    spectrum = np.fft.rfft(recording, size)
    energy = np.concatenate(([0.0], np.cumsum(recording.astype(np.float64) ** 2)))
    scores = []
    for start in range(0, len(reference) - piece, piece):
        needle = reference[start : start + piece].astype(np.float64)
        if np.abs(needle).max() < 0.05:
            continue
        corr = np.fft.irfft(spectrum * np.conj(np.fft.rfft(needle, size)), size)[: len(recording) - piece + 1]
        norms = np.sqrt(np.maximum(energy[piece:] - energy[:-piece], 1e-12)) * np.linalg.norm(needle)
        scores.append(float(np.max(corr / norms)))
    assert len(scores) >= 10, "too little loud audio to compare"
    return float(np.mean(np.array(scores) > threshold))
