"""The codec interface of the bench and the registry of codec names."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from hopcodec.bench.errors import BenchError

SR = 16000


@dataclass
class Coded:
    """What one codec made of one clip.

    `audio` may run longer than the input (the codec's delay plus flushing); the bench removes
    the delay and cuts it to the input's length. `payload_bytes` counts what carries the signal
    (for Codec 2 the raw frame bytes, for Opus the whole packets); `overhead_bytes` is framing on
    top (hopcodec packet headers), reported apart.
    Times are wall-clock seconds of one thread.
    """

    audio: np.ndarray
    payload_bytes: int
    overhead_bytes: int
    encode_s: float
    decode_s: float


class Codec(ABC):
    """A codec under test: 16 kHz float32 mono in, 16 kHz float32 mono out."""

    name: str
    family: str
    nominal_bps: float | None = None

    @abstractmethod
    def encode(self, x: np.ndarray) -> object:
        """Code a clip; returns the codec's own coded form."""

    @abstractmethod
    def decode(self, coded: object, n_samples: int) -> np.ndarray:
        """Decode back to 16 kHz audio (at least `n_samples` long where the codec allows)."""

    @abstractmethod
    def sizes(self, coded: object) -> tuple[int, int]:
        """(payload bytes, overhead bytes) of the coded form."""

    def check(self) -> None:
        """Raise a :class:`BenchError` when the codec cannot run here (tool, library missing)."""
        return None

    def latency_ms(self) -> float | None:
        """Algorithmic latency in ms where the codec states it, else None."""
        return None

    def frame_ms(self) -> float | None:
        """Frame duration in ms (buffering latency) where known."""
        return None

    def run(self, x: np.ndarray) -> Coded:
        """Encode then decode `x`, timing each side."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        t0 = time.perf_counter()
        coded = self.encode(x)
        t1 = time.perf_counter()
        y = self.decode(coded, len(x))
        t2 = time.perf_counter()
        payload, overhead = self.sizes(coded)
        return Coded(np.asarray(y, dtype=np.float32), payload, overhead, t1 - t0, t2 - t1)


PEER_NAMES = (
    "codec2-3200",
    "codec2-1600",
    "codec2-1300",
    "codec2-700C",
    "opus-6k",
    "opus-8k",
    "opus-12k",
)
ALIASES = {"peers": PEER_NAMES, "codec2": PEER_NAMES[:4], "opus": PEER_NAMES[4:]}


def hopcodec_names() -> list[str]:
    """`hopcodec-<mode>` for every mode of the installed streaming core (empty if absent)."""
    from hopcodec.bench.ours import codec_names

    return codec_names()


def default_names() -> list[str]:
    """Every codec the bench knows: the reference, hopcodec's modes and the peers."""
    return ["reference", *hopcodec_names(), *PEER_NAMES]


def expand_names(names: list[str] | None) -> list[str]:
    """Resolve aliases (`all`, `peers`, `codec2`, `opus`, `hopcodec`) to codec names, in order."""
    if not names:
        return default_names()
    out: list[str] = []
    for n in names:
        if n == "all":
            group = default_names()
        elif n == "hopcodec":
            group = hopcodec_names()
        else:
            group = list(ALIASES.get(n, (n,)))
        out += [g for g in group if g not in out]
    return out


def make_codec(name: str) -> Codec:
    """Build the codec called `name` (see :data:`PEER_NAMES`, `reference`, `hopcodec-<mode>`)."""
    from hopcodec.bench import ours, peers

    if name == "reference":
        return peers.Reference()
    if name.startswith("codec2-"):
        mode = name.removeprefix("codec2-")
        if name in PEER_NAMES:
            return peers.Codec2(mode)
    if name.startswith("opus-") and name in PEER_NAMES:
        return peers.Opus(int(name.removeprefix("opus-").removesuffix("k")) * 1000)
    if name.startswith("hopcodec-"):
        return ours.Hopcodec(name.removeprefix("hopcodec-"))
    known = ", ".join(["reference", *PEER_NAMES, "hopcodec-<mode>"])
    raise BenchError(f"unknown codec {name!r} (known: {known})")
