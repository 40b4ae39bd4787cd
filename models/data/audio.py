"""Audio in and out for the corpus: decode, mono 16 kHz, silence test, 16-bit WAV.

Thresholds (documented in docs/data.md), measured on 20 ms frames with a 10 ms hop of the
16 kHz signal:

- a clip shorter than `MIN_DURATION_S` (0.5 s) is dropped as too short;
- a clip whose loudest frame is below `SILENT_PEAK_DBFS` (-60 dBFS) is silence;
- a clip with less than `MIN_ACTIVE_S` (0.15 s) of *active* frames is silence, where a frame is
  active when it is within `ACTIVE_RANGE_DB` (40 dB) of the loudest frame and above
  `ACTIVE_FLOOR_DBFS` (-70 dBFS).

Levels are left as recorded: the only change is the rounding to int16.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
MIN_DURATION_S = 0.5
SILENT_PEAK_DBFS = -60.0
MIN_ACTIVE_S = 0.15
ACTIVE_RANGE_DB = 40.0
ACTIVE_FLOOR_DBFS = -70.0
FRAME, HOP = 320, 160  # 20 ms frames, 10 ms hop at 16 kHz

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au")


@dataclass
class Decoded:
    """A decoded file: samples (n,) or (n, channels) float32, its rate and its ARTIST tag."""

    samples: np.ndarray
    rate: int
    artist: str = ""


def read_audio(path: str | Path, codec: str = "auto") -> Decoded:
    """Decode `path`. `codec`: "auto" (anything libsndfile reads), "g722" (raw G.722 at
    64 kbit/s, 16 kHz; needs the `G722` wheel) or "gsm" (raw GSM 06.10 at 8 kHz)."""
    import soundfile as sf

    if codec == "g722":
        try:
            import G722
        except ImportError as e:
            raise RuntimeError("decoding G.722 needs the G722 wheel: pip install G722") from e
        pcm = G722.G722(SAMPLE_RATE, 64000).decode(Path(path).read_bytes())
        return Decoded(np.asarray(pcm, dtype=np.int16).astype(np.float32) / 32768.0, SAMPLE_RATE)
    if codec == "gsm":
        x, rate = sf.read(path, format="RAW", subtype="GSM610", samplerate=8000, channels=1,
                          dtype="float32")
        return Decoded(x, int(rate))
    if codec != "auto":
        raise ValueError(f"unknown codec {codec!r}")
    with sf.SoundFile(path) as f:
        artist = (f.artist or "").strip()
        return Decoded(f.read(dtype="float32", always_2d=True), int(f.samplerate), artist)


def to_mono_16k(x: np.ndarray, rate: int) -> np.ndarray:
    """Average the channels and resample to 16 kHz with soxr (HQ)."""
    import soxr

    y = np.asarray(x, dtype=np.float32)
    if y.ndim == 2:
        y = y.mean(axis=1, dtype=np.float32)
    if rate != SAMPLE_RATE:
        y = soxr.resample(y, rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(y, dtype=np.float32)


def frame_levels_db(y: np.ndarray) -> np.ndarray:
    """Mean-square level in dBFS of each 20 ms frame (10 ms hop); empty if shorter than a frame."""
    if len(y) < FRAME:
        return np.zeros(0)
    frames = np.lib.stride_tricks.sliding_window_view(y, FRAME)[::HOP].astype(np.float64)
    return 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def active_frames(levels_db: np.ndarray) -> np.ndarray:
    """Boolean mask of active frames (within 40 dB of the loudest and above -70 dBFS)."""
    if len(levels_db) == 0:
        return np.zeros(0, dtype=bool)
    return levels_db > max(ACTIVE_FLOOR_DBFS, float(levels_db.max()) - ACTIVE_RANGE_DB)


def drop_reason(y: np.ndarray) -> str | None:
    """Why a 16 kHz clip should be dropped ("short" or "silence"), or None to keep it."""
    if len(y) < MIN_DURATION_S * SAMPLE_RATE:
        return "short"
    levels = frame_levels_db(y)
    if len(levels) == 0 or levels.max() < SILENT_PEAK_DBFS:
        return "silence"
    if active_frames(levels).sum() * HOP / SAMPLE_RATE < MIN_ACTIVE_S:
        return "silence"
    return None


def bandwidth_hz(y: np.ndarray, range_db: float = 50.0) -> int:
    """Rough bandwidth: highest frequency within `range_db` of the long-term spectral peak of
    the active frames."""
    levels = frame_levels_db(y)
    mask = active_frames(levels)
    if not mask.any():
        return 0
    frames = np.lib.stride_tricks.sliding_window_view(y, FRAME)[::HOP][mask]
    power = np.mean(np.abs(np.fft.rfft(frames * np.hanning(FRAME), axis=1)) ** 2, axis=0)
    db = 10.0 * np.log10(power + 1e-20)
    top = np.flatnonzero(db > db.max() - range_db).max()
    return int(top * SAMPLE_RATE / FRAME)


def write_wav16(path: str | Path, y: np.ndarray) -> None:
    """Write a 16 kHz mono 16-bit WAV atomically (rounded and clipped, no normalisation)."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.clip(np.round(np.asarray(y, dtype=np.float64) * 32768.0), -32768, 32767)
    tmp = path.with_name(path.name + ".tmp")
    sf.write(tmp, pcm.astype(np.int16), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def read_wav16(path: str | Path) -> np.ndarray:
    """Read a prepared corpus WAV as float32 in [-1, 1)."""
    import soundfile as sf

    x, rate = sf.read(path, dtype="float32", always_2d=False)
    if rate != SAMPLE_RATE or x.ndim != 1:
        raise ValueError(f"{path}: expected 16 kHz mono, got {rate} Hz, shape {x.shape}")
    return x
