"""Reading and writing audio for the bench: always 16 kHz float32 mono inside."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SR = 16000


def load_16k(path: str | Path) -> np.ndarray:
    """Read an audio file, mix it to mono and resample it to 16 kHz float32 (soxr HQ)."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if rate != SR:
        mono = soxr.resample(mono, rate, SR, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def save_16k(path: str | Path, x: np.ndarray) -> None:
    """Write 16 kHz mono audio as 32-bit float WAV (no clipping, no requantisation)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(x, dtype=np.float32), SR, subtype="FLOAT")


def to_int16(x: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] to int16 samples, clipping what is outside."""
    return np.clip(np.round(np.asarray(x) * 32768.0), -32768, 32767).astype(np.int16)


def from_int16(x: np.ndarray) -> np.ndarray:
    """int16 samples to float32 in [-1, 1)."""
    return np.asarray(x, dtype=np.float32) / 32768.0
