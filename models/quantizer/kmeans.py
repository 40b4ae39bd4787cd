"""k-means (Lloyd, k-means++ initialisation) and residual-VQ codebook training, numpy only."""

import numpy as np


def kmeans(data: np.ndarray, entries: int, iterations: int = 25, seed: int = 0,
           init: np.ndarray | None = None) -> np.ndarray:
    """Codebook (entries, dim) minimising squared error on `data` (n, dim)."""
    rng = np.random.default_rng(seed)
    data = data.astype(np.float32)
    if init is None:
        codebook = np.empty((entries, data.shape[1]), dtype=np.float32)
        codebook[0] = data[rng.integers(len(data))]
        d2 = ((data - codebook[0]) ** 2).sum(1)
        for k in range(1, entries):
            codebook[k] = data[rng.choice(len(data), p=d2 / d2.sum())]
            d2 = np.minimum(d2, ((data - codebook[k]) ** 2).sum(1))
    else:
        codebook = init.astype(np.float32).copy()
    for _ in range(iterations):
        nearest = assign(data, codebook)
        counts = np.bincount(nearest, minlength=entries)
        sums = np.stack([np.bincount(nearest, weights=column, minlength=entries)
                         for column in data.T], axis=1)
        empty = counts == 0
        codebook[~empty] = sums[~empty] / counts[~empty, None]
        codebook[empty] = data[rng.integers(len(data), size=int(empty.sum()))]
    return codebook


def assign(data: np.ndarray, codebook: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Index of the nearest codeword for each row."""
    out = np.empty(len(data), dtype=np.int64)
    norms = (codebook**2).sum(1)
    for start in range(0, len(data), chunk):
        part = data[start : start + chunk]
        out[start : start + chunk] = (norms[None] - 2 * part @ codebook.T).argmin(1)
    return out


def train_rvq(residuals: np.ndarray, sizes: list[int], seed: int = 0,
              init: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """Stage codebooks of a greedy residual VQ, each trained on what the earlier stages leave."""
    remaining = residuals.astype(np.float32).copy()
    books = []
    for stage, size in enumerate(sizes):
        book = kmeans(remaining, size, seed=seed + stage, init=None if init is None else init[stage])
        remaining -= book[assign(remaining, book)]
        books.append(book)
    return books
