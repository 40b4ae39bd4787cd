"""Streaming feature analysis: one 10 ms hop in, one LPCNet-style feature vector out.

Per hop: pre-emphasis, the 20 ms power-complementary window over this hop and the previous one,
18 band energies, DCT to cepstrum, and pitch period/correlation from `pitch.track_pitch`.
Frame i therefore describes input samples [160 i - 160, 160 i + 160): no lookahead.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import butter, sosfilt, sosfilt_zi

from streaming_core.constants import (
    HOP,
    NB_BANDS,
    NB_FEATURES,
    PREEMPHASIS,
    SAMPLE_RATE,
    WINDOW,
)
from streaming_core.pitch import PITCH_HISTORY, PitchTrackerState, track_pitch
from streaming_core.spectrum import analysis_window, band_energies, cepstrum_from_energies

__all__ = ["Analyzer", "AnalyzerState", "NB_FEATURES", "analyze_signal"]

PITCH_LOWPASS_HZ = 1000.0
_PITCH_LOWPASS = butter(4, PITCH_LOWPASS_HZ, btype="low", fs=SAMPLE_RATE, output="sos")


@dataclass
class AnalyzerState:
    """Everything the analysis carries from one hop to the next."""

    last_input: float = 0.0
    """Previous input sample (pre-emphasis memory)."""
    window_buffer: np.ndarray = field(default_factory=lambda: np.zeros(WINDOW))
    """The last WINDOW pre-emphasized samples."""
    pitch_buffer: np.ndarray = field(default_factory=lambda: np.zeros(PITCH_HISTORY))
    """The last PITCH_HISTORY low-passed samples, for the pitch search."""
    lowpass_memory: np.ndarray = field(default_factory=lambda: sosfilt_zi(_PITCH_LOWPASS) * 0.0)
    """Low-pass filter state (second-order sections) of the pitch path."""
    pitch: PitchTrackerState = field(default_factory=PitchTrackerState)


class Analyzer:
    """Turns hops of 16 kHz audio (float, full scale 1.0) into feature vectors."""

    def __init__(self) -> None:
        self.state = AnalyzerState()

    def reset(self) -> None:
        """Forget all history, as if no audio had been seen."""
        self.state = AnalyzerState()

    def analyze_hop(self, hop: np.ndarray) -> np.ndarray:
        """Feature vector (NB_FEATURES,) of one hop of HOP samples."""
        if hop.shape != (HOP,):
            raise ValueError(f"a hop is {HOP} samples, got shape {hop.shape}")
        state = self.state
        hop = hop.astype(np.float64)
        emphasized = np.empty(HOP)
        emphasized[0] = hop[0] - PREEMPHASIS * state.last_input
        emphasized[1:] = hop[1:] - PREEMPHASIS * hop[:-1]
        state.last_input = float(hop[-1])
        state.window_buffer = np.concatenate((state.window_buffer[HOP:], emphasized))

        spectrum = np.fft.rfft(state.window_buffer * analysis_window())
        energies = band_energies(spectrum.real**2 + spectrum.imag**2)

        lowpassed, state.lowpass_memory = sosfilt(_PITCH_LOWPASS, hop, zi=state.lowpass_memory)
        state.pitch_buffer = np.concatenate((state.pitch_buffer[HOP:], lowpassed))
        period, correlation = track_pitch(state.pitch_buffer, state.pitch)

        features = np.empty(NB_FEATURES, dtype=np.float32)
        features[:NB_BANDS] = cepstrum_from_energies(energies)
        features[NB_BANDS] = period
        features[NB_BANDS + 1] = correlation
        return features


def analyze_signal(signal: np.ndarray) -> np.ndarray:
    """Features (n_frames, NB_FEATURES) of a whole 16 kHz signal; frame i ends at 160 (i + 1).

    The signal is zero-padded to whole hops: n_frames = ceil(len(signal) / HOP).
    """
    signal = np.asarray(signal, dtype=np.float64)
    n_frames = -(-len(signal) // HOP)
    padded = np.zeros(n_frames * HOP)
    padded[: len(signal)] = signal
    analyzer = Analyzer()
    return np.stack([analyzer.analyze_hop(padded[i * HOP : (i + 1) * HOP]) for i in range(n_frames)]) \
        if n_frames else np.zeros((0, NB_FEATURES), dtype=np.float32)
