"""Decoder speed on one core, the way a server meets it.

The bench's per-clip `dec RTF` column times whole clips while every core runs a worker; this
measures each hopcodec decoder after the worker pool has stopped, on one core: one stream with
packets of 1 frame (a live stream: one call per 10 ms hop) and of 20 frames (a file), and
`STREAMS_AT_ONCE` live streams decoded hop by hop together, as a server's hop thread decodes
the messages of its streams that wait at the same time (`streaming_core/batch_decoder.py`,
`server/hop_scheduler.py`). Best of a few runs; the real-time factor is per stream.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

PACKET_FRAMES = (1, 20)
"""Frames per packet measured for one stream: a live stream, and a coded file."""
STREAMS_AT_ONCE = 20
"""Live streams decoded together on one core (the speed target: 20 streams per core)."""


def _decode_all(packets: list[bytes], synthesizer: Any) -> None:
    from streaming_core.decoder import StreamDecoder

    decoder = StreamDecoder(synthesizer)
    for packet in packets:
        decoder.decode(packet)


def _decode_together(packets: list[bytes], synthesizer: Any, streams: int) -> None:
    """`streams` streams of these packets, each hop of all of them decoded in one pass."""
    from streaming_core.batch_decoder import decode_together
    from streaming_core.decoder import StreamDecoder

    decoders = [StreamDecoder(synthesizer) for _ in range(streams)]
    for packet in packets:
        decode_together(decoders, [packet] * streams)


def _best_decode_seconds(packets: list[bytes], synthesizer: Any, repeats: int,
                         streams: int = 1) -> float:
    """Best wall time of decoding `packets` as `streams` streams at once (hop by hop together)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        if streams == 1:
            _decode_all(packets, synthesizer)
        else:
            _decode_together(packets, synthesizer, streams)
        best = min(best, time.perf_counter() - started)
    return best


@contextmanager
def _one_core() -> Iterator[None]:
    """Confine this thread to one CPU (Linux; elsewhere a no-op)."""
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
