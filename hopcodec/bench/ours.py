"""hopcodec's own modes as bench codecs, through the streaming core's whole-clip API."""

from __future__ import annotations

import numpy as np

from hopcodec.bench.codecs import Codec
from hopcodec.bench.errors import BenchError, MissingDependency


def mode_names() -> list[str]:
    """Names of the streaming core's modes, lowest bitrate first; empty if it is not built."""
    try:
        from streaming_core.modes import list_modes
    except ImportError:
        return []
    return [m.name for m in list_modes()]


class Hopcodec(Codec):
    """One hopcodec mode: `encode_audio` -> packets -> `decode_packets`.

    Payload bytes are the packets' payloads; packet headers are counted as overhead.
    The decoder's output is already time-aligned to the input (delay 0 expected).
    """

    family = "hopcodec"

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.name = f"hopcodec-{mode}"
        self.nominal_bps = None
        try:
            from streaming_core.modes import list_modes
        except ImportError:
            return  # reported by check()
        modes = {m.name: m for m in list_modes()}
        if mode not in modes:
            raise BenchError(f"unknown hopcodec mode {mode!r} (modes: {', '.join(modes)})")
        self.nominal_bps = float(modes[mode].bitrate_bps)

    def check(self) -> None:
        try:
            import streaming_core.bitstream  # noqa: F401
            import streaming_core.codec  # noqa: F401
            import streaming_core.modes  # noqa: F401
        except ImportError as exc:
            raise MissingDependency(f"codec {self.name}", f"streaming_core ({exc})") from exc

    def frame_ms(self) -> float | None:
        return 10.0

    def latency_ms(self) -> float | None:
        try:
            from streaming_core.latency import latency_budget
        except ImportError:
            return None
        return float(latency_budget()["total_ms"])

    def encode(self, x: np.ndarray) -> list[bytes]:
        from streaming_core.codec import encode_audio

        return list(encode_audio(x, self.mode))

    def decode(self, coded: object, n_samples: int) -> np.ndarray:
        from streaming_core.codec import decode_packets

        return decode_packets(list(coded), n_samples)  # type: ignore[call-overload]

    def sizes(self, coded: object) -> tuple[int, int]:
        from streaming_core.bitstream import parse_packet

        payload = sum(len(parse_packet(p).payload) for p in coded)  # type: ignore[union-attr]
        total = sum(len(p) for p in coded)  # type: ignore[union-attr]
        return payload, total - payload
