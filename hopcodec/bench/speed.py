"""Decoder speed on one core, the way a server meets it.

The bench's per-clip `dec RTF` column times whole clips while every core runs a worker; this
measures each hopcodec decoder after the worker pool has stopped: one stream with packets of 1
frame (a live stream: one call per 10 ms hop) and of 20 frames (a file), and `STREAMS_AT_ONCE`
live streams decoded at once by as many threads confined to one core, as a server's hop threads
decode them (their overlapping hops share graph runs: `streaming_core/graph_batcher.py`).
Best of a few runs; the real-time factor is per stream.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

PACKET_FRAMES = (1, 20)
"""Frames per packet measured for one stream: a live stream, and a coded file."""
STREAMS_AT_ONCE = 16
"""Live streams decoded at once on one core (one thread each)."""


def _decode_all(packets: list[bytes], synthesizer: Any) -> None:
    from streaming_core.decoder import StreamDecoder

    decoder = StreamDecoder(synthesizer)
    for packet in packets:
        decoder.decode(packet)


def _best_decode_seconds(packets: list[bytes], synthesizer: Any, repeats: int,
                         streams: int = 1) -> float:
    """Best wall time of decoding `packets` as `streams` streams at once (one thread each)."""
    best = float("inf")
    for _ in range(repeats):
        threads = [threading.Thread(target=_decode_all, args=(packets, synthesizer))
                   for _ in range(streams - 1)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        _decode_all(packets, synthesizer)
        for t in threads:
            t.join()
        best = min(best, time.perf_counter() - started)
    return best


@contextmanager
def _one_core() -> Iterator[None]:
    """Confine this thread, and the threads it starts, to one CPU (Linux; elsewhere a no-op)."""
    if not hasattr(os, "sched_getaffinity"):
        yield
        return
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(saved)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def decoder_speed(audio: np.ndarray, mode: str, repeats: int = 3) -> list[dict[str, Any]]:
    """Rows (decoder, frames per packet, streams at once, real-time factor per stream,
    parameters, FLOPs per hop) for every installed hopcodec decoder on `audio` (16 kHz mono)
    coded in `mode`."""
    from streaming_core.codec import encode_audio
    from streaming_core.synthesizers import available_synthesizers, load_synthesizer

    seconds = len(audio) / 16000
    rows = []
    cases = [(frames, 1) for frames in PACKET_FRAMES] + [(1, STREAMS_AT_ONCE)]
    with _one_core():
        for name in available_synthesizers()[::-1]:
            synthesizer = load_synthesizer(name)
            metadata = getattr(synthesizer, "metadata", {})
            for frames, streams in cases:
                packets = encode_audio(audio, mode, frames_per_packet=frames)
                elapsed = _best_decode_seconds(packets, synthesizer, repeats, streams)
                rtf = elapsed / (seconds * streams)
                rows.append({"decoder": synthesizer.name, "mode": mode, "packet_frames": frames,
                             "streams": streams, "rtf": rtf, "streams_per_core": 1 / rtf,
                             "parameters": metadata.get("parameters"),
                             "flops_per_hop": metadata.get("flops_per_hop")})
    return rows


def speed_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines of the decoder speed section."""
    lines = ["| decoder | mode | frames per packet | streams at once | dec RTF per stream | "
             "streams per core | parameters | MFLOP per hop |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        params = f"{r['parameters']:,}" if r["parameters"] else "-"
        flops = f"{r['flops_per_hop'] / 1e6:.2f}" if r["flops_per_hop"] else "-"
        lines.append(f"| `{r['decoder']}` | {r['mode']} | {r['packet_frames']} | "
                     f"{r.get('streams', 1)} | {r['rtf']:.4f} | {r['streams_per_core']:.0f} | "
                     f"{params} | {flops} |")
    return lines
