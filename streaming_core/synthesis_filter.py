"""The LPC synthesis filter 1/A(z) and the de-emphasis filter, with memories carried across hops.

Both decoders (DSP and neural) end here: an excitation frame at the LPC residual's level goes
through the all-pole filter of that frame's predictor and then through 1 / (1 - 0.85 z^-1).
The two run as one all-pole filter, 1 / (A(z) (1 - 0.85 z^-1)): the same output (the cascade's
inner signal is y[n] - 0.85 y[n - 1] at every sample, whichever A made it), one `lfilter` call
instead of two.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import lfilter

from streaming_core.constants import LPC_ORDER, PREEMPHASIS

DEEMPHASIS = np.array([1.0, -PREEMPHASIS])
"""Denominator of the de-emphasis filter 1 / (1 - 0.85 z^-1)."""
ORDER = LPC_ORDER + 1
"""Order of the combined all-pole filter."""


@dataclass
class SynthesisFilterState:
    """Filter memory of one stream."""

    memory: np.ndarray = field(default_factory=lambda: np.zeros(ORDER))
    """Last ORDER output samples, newest first."""


def synthesis_filter(excitation: np.ndarray, a: np.ndarray, state: SynthesisFilterState) -> np.ndarray:
    """Speech for one frame (at least ORDER samples): excitation through 1/A(z) then
    de-emphasis; updates the memory.

    The memory is kept as past outputs, so the predictor may change from frame to frame without
    a jump: the direct-form-II-transposed state for the new filter is rebuilt from them.
    """
    denominator = np.convolve(a, DEEMPHASIS)
    # zi[m] = -sum_j d[m + 1 + j] * y[-1 - j]: the transposed direct form's state for these
    # past outputs (a Hankel matrix product, written as a correlation).
    zi = -np.correlate(denominator[1:], state.memory, "full")[ORDER - 1 :]
    speech, _ = lfilter([1.0], denominator, excitation, zi=zi)
    state.memory = speech[: -ORDER - 1 : -1].copy()
    return speech
