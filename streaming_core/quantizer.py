"""The training-free baseline quantizer: uniform scalar quantization of each feature.

Pitch period is quantized uniformly in the log domain over 32..256 samples, pitch correlation
uniformly over 0..1, and the first cepstral coefficients uniformly over ranges set by hand to
cover about +-2.5 standard deviations of speech; the coefficients a mode does not send decode
as their typical value. Trained, predictive quantizers implement the same `FrameQuantizer`
interface.
"""

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from streaming_core.bitpack import BitReader, BitWriter
from streaming_core.constants import (
    CORR_INDEX,
    NB_BANDS,
    NB_FEATURES,
    PERIOD_INDEX,
    PITCH_MAX_PERIOD,
    PITCH_MIN_PERIOD,
)

CEPSTRUM_CENTRE = np.array(
    [-8.0, 1.7, 0.6, 1.1, -0.2, -0.2, -0.3, -0.3, -0.2, -0.2, -0.3, -0.2, -0.3, 0.0, -0.2, -0.1,
     0.0, 0.0]
)
"""Typical value of each cepstral coefficient of speech (hand-set)."""

CEPSTRUM_HALF_RANGE = np.array(
    [16.0, 5.5, 4.0, 3.5, 2.5, 1.8, 1.6, 1.4, 1.4, 1.2, 1.0, 0.9, 0.7, 0.7, 0.7, 0.6, 0.6, 0.5]
)
"""Half width of the uniform quantizer of each cepstral coefficient (hand-set)."""

CONCEAL_FADE = 0.5
"""Each concealed frame lowers c0 by this much (about 1.2 dB per 10 ms)."""


class QuantizerState(Protocol):
    """What a quantizer carries from frame to frame in one stream."""

    def copy(self) -> "QuantizerState":
        """An independent copy: a decoder decodes each packet on one, so a packet that fails
        to parse leaves the stream's state as it was."""


class FrameQuantizer(Protocol):
    """Codes one feature frame to bits and back; the encoder mirrors the decoder exactly."""

    def new_state(self) -> QuantizerState:
        """Per-stream state."""

    def start_packet(self, state: Any) -> None:
        """Called by encoder and decoder before a packet's first frame (what a frame's fields
        may depend on must not reach across packets: a receiver that lost one parses the next)."""

    def encode(self, features: np.ndarray, writer: BitWriter, state: Any) -> np.ndarray:
        """Write one frame's bits; return the features the decoder will reconstruct."""

    def decode(self, reader: BitReader, state: Any) -> np.ndarray:
        """Read one frame's bits; return its features."""

    def conceal(self, state: Any) -> np.ndarray:
        """Best guess of a lost frame's features."""


def _uniform_index(value: float, low: float, high: float, bits: int) -> int:
    levels = (1 << bits) - 1
    return int(np.clip(np.round((value - low) / (high - low) * levels), 0, levels))


def _uniform_value(index: int, low: float, high: float, bits: int) -> float:
    return low + (high - low) * index / ((1 << bits) - 1)


@dataclass
class ScalarQuantizerState:
    """The last decoded frame (for concealment)."""

    last: np.ndarray | None = None

    def copy(self) -> "ScalarQuantizerState":
        """An independent copy."""
        return ScalarQuantizerState(None if self.last is None else self.last.copy())


@dataclass(frozen=True)
class ScalarQuantizer:
    """Fixed bit allocation: `cepstrum_bits[k]` bits for c_k, the rest not sent."""

    period_bits: int
    correlation_bits: int
    cepstrum_bits: tuple[int, ...]

    @property
    def bits_per_frame(self) -> int:
        """Payload bits of one frame."""
        return self.period_bits + self.correlation_bits + sum(self.cepstrum_bits)

    def new_state(self) -> ScalarQuantizerState:
        """A fresh per-stream state."""
        return ScalarQuantizerState()

    def start_packet(self, state: ScalarQuantizerState) -> None:
        """Nothing to do: every frame parses alone."""

    def _fields(self) -> list[tuple[int, float, float, int]]:
        """(feature index, low, high, bits) for every field, in bitstream order."""
        log_min, log_max = np.log(PITCH_MIN_PERIOD), np.log(PITCH_MAX_PERIOD)
        fields = [(PERIOD_INDEX, log_min, log_max, self.period_bits),
                  (CORR_INDEX, 0.0, 1.0, self.correlation_bits)]
        for k, bits in enumerate(self.cepstrum_bits):
            centre, half = CEPSTRUM_CENTRE[k], CEPSTRUM_HALF_RANGE[k]
            fields.append((k, centre - half, centre + half, bits))
        return fields

    def _dequantize(self, indices: list[int]) -> np.ndarray:
        features = np.zeros(NB_FEATURES, dtype=np.float32)
        features[:NB_BANDS] = CEPSTRUM_CENTRE
        for (where, low, high, bits), index in zip(self._fields(), indices, strict=True):
            features[where] = _uniform_value(index, low, high, bits)
        features[PERIOD_INDEX] = np.exp(features[PERIOD_INDEX])
        return features

    def encode(self, features: np.ndarray, writer: BitWriter, state: ScalarQuantizerState) -> np.ndarray:
        """Write one frame; return its decoded features."""
        values = np.asarray(features, dtype=np.float64).copy()
        values[PERIOD_INDEX] = np.log(np.clip(values[PERIOD_INDEX], PITCH_MIN_PERIOD, PITCH_MAX_PERIOD))
        indices = []
        for where, low, high, bits in self._fields():
            index = _uniform_index(values[where], low, high, bits)
            writer.write(index, bits)
            indices.append(index)
        state.last = self._dequantize(indices)
        return state.last

    def decode(self, reader: BitReader, state: ScalarQuantizerState) -> np.ndarray:
        """Read one frame."""
        state.last = self._dequantize([reader.read(bits) for _, _, _, bits in self._fields()])
        return state.last

    def conceal(self, state: ScalarQuantizerState) -> np.ndarray:
        """Repeat the last frame, fading its energy."""
        if state.last is None:
            state.last = self._dequantize([0] * len(self._fields()))
            state.last[:NB_BANDS] = CEPSTRUM_CENTRE
            state.last[0] = CEPSTRUM_CENTRE[0] - CEPSTRUM_HALF_RANGE[0]
        guess = state.last.copy()
        guess[0] -= CONCEAL_FADE
        state.last = guess
        return guess
