"""The LPC synthesis filter 1/A(z) and the de-emphasis filter, with memories carried across hops.

Both decoders (DSP and neural) end here: an excitation frame at the LPC residual's level goes
through the all-pole filter of that frame's predictor and then through 1 / (1 - 0.85 z^-1).
"""

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import lfilter

from streaming_core.constants import LPC_ORDER, PREEMPHASIS


@dataclass
class SynthesisFilterState:
    """Filter memories of one stream."""

    synthesis_memory: np.ndarray = field(default_factory=lambda: np.zeros(LPC_ORDER))
    """Last LPC_ORDER outputs of 1/A(z), newest first."""
    deemphasis_memory: float = 0.0
    """Last output of the de-emphasis filter."""


def synthesis_filter(excitation: np.ndarray, a: np.ndarray, state: SynthesisFilterState) -> np.ndarray:
    """Speech for one frame: excitation through 1/A(z) then de-emphasis; updates the memories.

    The all-pole filter's memory is kept as past outputs, so the predictor may change from
    frame to frame without a jump: the direct-form-II-transposed state for the new predictor
    is rebuilt from those outputs.
    """
    # zi[m] = -sum_j a[m + 1 + j] * y[-1 - j]: the transposed direct form's state for these
    # past outputs (a Hankel matrix product, written as a correlation).
    memory = -np.correlate(a[1:], state.synthesis_memory, "full")[LPC_ORDER - 1 :]
    emphasized, _ = lfilter([1.0], a, excitation, zi=memory)
    state.synthesis_memory = emphasized[: -LPC_ORDER - 1 : -1].copy()
    speech, _ = lfilter([1.0], [1.0, -PREEMPHASIS], emphasized,
                        zi=[PREEMPHASIS * state.deemphasis_memory])
    state.deemphasis_memory = float(speech[-1])
    return speech
