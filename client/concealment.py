"""Concealment on decoded audio: continue the last pitch period of what was played, fading.

Used where no decoder state is at hand (the server decoded the audio) and to insert hops that
grow the jitter buffer's delay. The decoder's own concealment (`StreamDecoder.conceal`) is better
where the packets are decoded locally.
"""

from dataclasses import dataclass, field

import numpy as np

from streaming_core.constants import HOP, PITCH_MAX_PERIOD, PITCH_MIN_PERIOD

HISTORY = 3 * HOP
"""Samples of played audio remembered (enough for two periods of the lowest pitch)."""


@dataclass
class ConcealerState:
    """What the concealer remembers between hops."""

    history: np.ndarray = field(default_factory=lambda: np.zeros(HISTORY, np.float32))
    """The most recent samples played."""
    cycle: np.ndarray = field(default_factory=lambda: np.zeros(HOP, np.float32))
    """The period being repeated (the last period played before the loss)."""
    phase: int = 0
    """Position within the repeated period."""
    run: int = 0
    """Consecutive concealed hops so far."""


def pitch_period(signal: np.ndarray) -> int:
    """Lag in [PITCH_MIN_PERIOD, PITCH_MAX_PERIOD) of greatest normalized autocorrelation of the
    signal's tail, or HOP when the tail is not periodic."""
    tail = signal[-HOP:]
    best, best_score = HOP, 0.3
    for lag in range(PITCH_MIN_PERIOD, min(PITCH_MAX_PERIOD, len(signal) - HOP)):
        past = signal[-HOP - lag : len(signal) - lag]
        energy = np.sqrt((tail @ tail) * (past @ past))
        score = (tail @ past) / energy if energy > 0 else 0.0
        if score > best_score:
            best, best_score = lag, score
    return best


class RepeatConcealer:
    """Pitch-period repetition with a gain that falls by `decay` per concealed hop."""

    def __init__(self, decay: float = 0.6) -> None:
        self.decay = decay
        self.state = ConcealerState()

    def observe(self, hop: np.ndarray) -> None:
        """Remember audio that was played (real or concealed)."""
        state = self.state
        state.history = np.concatenate((state.history, hop.astype(np.float32)))[-HISTORY:]

    def played_real(self, hop: np.ndarray) -> None:
        """Remember a real (not concealed) hop; the next concealment starts afresh."""
        self.state.run = 0
        self.observe(hop)

    def conceal(self) -> np.ndarray:
        """One hop continuing the last period of the history, attenuated."""
        state = self.state
        if state.run == 0:
            state.cycle = state.history[-pitch_period(state.history.astype(np.float64)) :].copy()
            state.phase = 0
        period = len(state.cycle)
        index = (state.phase + np.arange(HOP)) % period
        start, end = self.decay**state.run, self.decay ** (state.run + 1)
        hop = state.cycle[index] * np.linspace(start, end, HOP, dtype=np.float32)
        state.phase = (state.phase + HOP) % period
        state.run += 1
        self.observe(hop)
        return hop.astype(np.float32)
