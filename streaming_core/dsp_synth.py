"""DSP baseline decoder: mixed pulse/noise excitation through the LPC synthesis filter.

The excitation follows the decoded pitch (a pulse train whose phase is carried across hops)
mixed with white noise by the decoded voicing, scaled to the LPC residual power, filtered by
1/A(z) and de-emphasized. This is the reference every trained decoder is measured against,
and the fallback where no model is installed.

Frame n's output stands for input samples [160 n - 80, 160 n + 80): it is centred on the
frame's analysis window, which costs DECODER_DELAY = 80 samples (5 ms) of latency. Parameters
are held for the whole frame, not interpolated from the previous one: without the next frame
(which would be lookahead) interpolation can only lean backwards and would delay the output's
energy by about 1 ms; the filter memories keep the waveform continuous across frames.
"""

from dataclasses import dataclass, field

import numpy as np

from streaming_core.constants import (
    CORR_INDEX,
    HOP,
    NB_BANDS,
    NB_FEATURES,
    PERIOD_INDEX,
    PITCH_MAX_PERIOD,
    PITCH_MIN_PERIOD,
)
from streaming_core.lpc import lpc_from_cepstrum
from streaming_core.synthesis_filter import SynthesisFilterState, synthesis_filter

DECODER_DELAY = HOP // 2
"""Samples by which the decoded signal lags the input, beyond hop buffering."""

VOICING_LOW, VOICING_HIGH = 0.3, 0.8
"""Pitch correlation mapped linearly to the pulse share of the excitation."""


@dataclass
class DspSynthState:
    """Per-stream state of the DSP decoder."""

    filters: SynthesisFilterState = field(default_factory=SynthesisFilterState)
    """LPC synthesis and de-emphasis memories."""
    samples_to_pulse: float = 0.0
    """Samples until the next excitation pulse."""
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0x4F50))
    """Noise source of the unvoiced excitation (seeded: decoding is deterministic)."""


def _pulse_train(state: DspSynthState, period: float, length: int) -> np.ndarray:
    """Unit-power pulses every `period` samples, continuing the phase kept in state."""
    pulses = np.zeros(length)
    position = state.samples_to_pulse
    while position < length:
        pulses[int(position)] = np.sqrt(period)
        position += period
    state.samples_to_pulse = position - length
    return pulses


class DspSynthesizer:
    """Stateless DSP synthesizer; all per-stream state lives in a `DspSynthState`."""

    name = "dsp"
    delay = DECODER_DELAY

    def new_state(self) -> DspSynthState:
        """A fresh per-stream state."""
        return DspSynthState()

    def synthesize(self, features: np.ndarray, state: DspSynthState,
                   bitrate_bps: float | None = None) -> np.ndarray:
        """Audio (n * HOP,) float32 for feature frames (n, NB_FEATURES); the bitrate is unused."""
        features = np.asarray(features, dtype=np.float64).reshape(-1, NB_FEATURES)
        return np.concatenate(
            [self._frame(frame, state) for frame in features] or [np.zeros(0)]
        ).astype(np.float32)

    def _frame(self, features: np.ndarray, state: DspSynthState) -> np.ndarray:
        period = float(np.clip(features[PERIOD_INDEX], PITCH_MIN_PERIOD, PITCH_MAX_PERIOD))
        voicing = np.clip((features[CORR_INDEX] - VOICING_LOW) / (VOICING_HIGH - VOICING_LOW), 0, 1)
        a, residual_power = lpc_from_cepstrum(features[:NB_BANDS])
        excitation = np.sqrt(voicing) * _pulse_train(state, period, HOP)
        excitation += np.sqrt(1.0 - voicing) * state.rng.standard_normal(HOP)
        excitation *= np.sqrt(max(residual_power, 0.0))
        speech = synthesis_filter(excitation, a, state.filters)
        return np.clip(speech, -1.0, 1.0)
