"""Random training windows from a feature cache, numpy only.

    ds = FeatureDataset(Path("cache"), "train", seq_len=400, with_signal=True)
    for batch in ds.batches(64, seed=0):
        batch.features  # (64, 400, nb) float32
        batch.signal    # (64, 400 * 160) float32 in [-1, 1): samples of the same frames
        batch.clip_start  # (64, 400) bool: True on the first frame of a clip (reset state)

Every valid window is equally likely. With `cross_clips=True` (the default, as LPCNet-style
training does) a window may run over clip boundaries inside one copy block, so short clips are
used too and `clip_start` marks where a new clip begins; with `cross_clips=False` windows stay
inside one clip and clips shorter than `seq_len` are never drawn.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.data import DataError
from models.data.features_cache import HOP, open_split


@dataclass
class Batch:
    """One batch of windows; `signal` is None unless asked for."""

    features: np.ndarray  # (batch, seq_len, nb) float32
    clip_start: np.ndarray  # (batch, seq_len) bool
    start_frame: np.ndarray  # (batch,) int64: first frame of each window in the split
    signal: np.ndarray | None = None  # (batch, seq_len * 160) float32


class FeatureDataset:
    """Uniformly random (batch, seq_len) windows of one split of a cache."""

    def __init__(self, cache_dir: Path, split: str = "train", seq_len: int = 400, *,
                 copies: Sequence[int] | None = None, cross_clips: bool = True,
                 with_signal: bool = False) -> None:
        self.index, self.features, self._signal = open_split(Path(cache_dir), split)
        if with_signal and self._signal is None:
            raise DataError(f"{cache_dir}/{split} was built without the signal")
        if seq_len < 1:
            raise DataError("seq_len must be >= 1")
        self.seq_len, self.with_signal = seq_len, with_signal
        e = self.index["entries"]
        offs, lens, copy = (np.asarray(e[k], dtype=np.int64)
                            for k in ("frame_offset", "n_frames", "copy"))
        keep = np.ones(len(offs), bool) if copies is None else np.isin(copy, list(copies))
        self.clip_start = np.zeros(self.index["n_frames"], dtype=bool)
        self.clip_start[offs[lens > 0]] = True
        if cross_clips:  # one segment per copy block (entries are stored copy-major)
            blocks = [(offs[keep & (copy == c)], lens[keep & (copy == c)])
                      for c in np.unique(copy[keep])]
            seg_start = np.array([o[0] for o, _ in blocks], dtype=np.int64)
            seg_len = np.array([n.sum() for _, n in blocks], dtype=np.int64)
        else:
            seg_start, seg_len = offs[keep], lens[keep]
        weight = np.maximum(seg_len - seq_len + 1, 0)
        if weight.sum() == 0:
            raise DataError(f"{cache_dir}/{split}: no window of {seq_len} frames fits")
        self._seg_start, self._weight, self._cum = seg_start, weight, np.cumsum(weight)
        self._steps = np.arange(seq_len, dtype=np.int64)

    @property
    def n_windows(self) -> int:
        """How many distinct windows can be drawn."""
        return int(self._cum[-1])

    def sample_starts(self, rng: np.random.Generator, batch_size: int) -> np.ndarray:
        """First frames of `batch_size` uniformly drawn windows."""
        u = rng.integers(0, self._cum[-1], size=batch_size)
        seg = np.searchsorted(self._cum, u, side="right")
        return self._seg_start[seg] + u - (self._cum[seg] - self._weight[seg])

    def batch(self, rng: np.random.Generator, batch_size: int) -> Batch:
        """One batch of random windows."""
        starts = self.sample_starts(rng, batch_size)
        idx = starts[:, None] + self._steps
        sig = None
        if self.with_signal:
            n = self.seq_len * HOP
            sig = np.empty((batch_size, n), dtype=np.float32)
            for i, s in enumerate(starts):
                np.multiply(self._signal[s * HOP:s * HOP + n], 1.0 / 32768.0, out=sig[i])
        return Batch(np.asarray(self.features[idx]), self.clip_start[idx], starts, sig)

    def batches(self, batch_size: int, seed: int = 0,
                steps: int | None = None) -> Iterator[Batch]:
        """Endless (or `steps` long) stream of batches, reproducible from `seed`."""
        rng = np.random.default_rng(seed)
        i = 0
        while steps is None or i < steps:
            yield self.batch(rng, batch_size)
            i += 1
