"""16-bit little-endian PCM on the wire, and soxr streaming resamplers to and from 16 kHz."""

import numpy as np
import soxr

from streaming_core.errors import HopcodecError

MIN_RATE = 8_000
MAX_RATE = 192_000
FULL_SCALE = 32768.0


class PcmError(HopcodecError):
    """PCM bytes that are not whole 16-bit samples."""


def pcm_to_float(data: bytes) -> np.ndarray:
    """float32 samples (full scale 1.0) of s16le bytes."""
    if len(data) % 2:
        raise PcmError(f"PCM message of {len(data)} bytes: s16le needs an even number of bytes")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / FULL_SCALE


def float_to_pcm(signal: np.ndarray) -> bytes:
    """s16le bytes of float samples, rounded and clipped to full scale."""
    scaled = np.round(np.asarray(signal, dtype=np.float64) * FULL_SCALE)
    return np.clip(scaled, -32768, 32767).astype("<i2").tobytes()


class StreamResampler:
    """soxr HQ streaming resampler for one stream; a pass-through when the rates match.

    Its output, chunk after chunk and then `push(..., last=True)`, equals `soxr.resample` of
    the whole signal, sample for sample.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate, self.out_rate = in_rate, out_rate
        self._stream = None if in_rate == out_rate else soxr.ResampleStream(
            in_rate, out_rate, 1, dtype="float32", quality="HQ")

    def push(self, signal: np.ndarray, last: bool = False) -> np.ndarray:
        """Resampled audio available so far; `last` ends the stream and starts a new one."""
        signal = np.ascontiguousarray(signal, dtype=np.float32)
        if self._stream is None:
            return signal
        out = self._stream.resample_chunk(signal, last=last)
        if last:
            self._stream.clear()
        return out
