"""Reading and writing audio files, and conversion to and from the codec's 16 kHz mono."""

from pathlib import Path

import numpy as np
import soundfile
import soxr

from streaming_core.constants import SAMPLE_RATE
from streaming_core.errors import AudioInputError, AudioOutputError


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Samples (frames, channels) float32 and sample rate of any file libsndfile reads."""
    path = Path(path)
    if not path.exists():
        raise AudioInputError(f"no such file: {path}")
    if path.is_dir():
        raise AudioInputError(f"{path} is a folder, not an audio file")
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioInputError(f"{path} is not a readable audio file (WAV, FLAC, ...): {error}") from None
    if samples.size == 0:
        raise AudioInputError(f"{path} contains no audio samples")
    if not np.all(np.isfinite(samples)):
        raise AudioInputError(f"{path} contains NaN or infinite samples")
    return samples, int(rate)


def to_codec_rate(samples: np.ndarray, rate: int) -> np.ndarray:
    """Mix (frames, channels) or (frames,) to mono and resample to 16 kHz with soxr."""
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if rate == SAMPLE_RATE:
        return mono
    return soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)


def from_codec_rate(signal: np.ndarray, rate: int) -> np.ndarray:
    """Resample 16 kHz mono to `rate` with soxr."""
    if rate == SAMPLE_RATE:
        return signal.astype(np.float32)
    return soxr.resample(signal.astype(np.float32), SAMPLE_RATE, rate, quality="HQ").astype(np.float32)


def load_for_codec(path: str | Path) -> tuple[np.ndarray, int, int]:
    """(16 kHz mono signal, original rate, original length in samples) of an audio file."""
    samples, rate = read_audio(path)
    return to_codec_rate(samples, rate), rate, len(samples)


def write_wav(path: str | Path, signal: np.ndarray, rate: int) -> None:
    """Write mono float audio as 16-bit PCM WAV (clipped to full scale)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise AudioOutputError(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        soundfile.write(str(path), np.clip(signal, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
    except (soundfile.LibsndfileError, RuntimeError) as error:
        raise AudioOutputError(f"cannot write {path}: {error}") from None
