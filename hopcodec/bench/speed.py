"""Decoder speed of one stream on one core, the way a server meets it.

The bench's per-clip `dec RTF` column times whole clips while every core runs a worker; this
measures each hopcodec decoder alone, after the worker pool has stopped, with packets of 1
frame (a live stream: one call per 10 ms hop) and of 20 frames (a file), best of a few runs.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

PACKET_FRAMES = (1, 20)
"""Frames per packet measured: a live stream, and a coded file."""


def _best_decode_seconds(packets: list[bytes], synthesizer: Any, repeats: int) -> float:
    from streaming_core.decoder import StreamDecoder

    best = float("inf")
    for _ in range(repeats):
        decoder = StreamDecoder(synthesizer)
        started = time.perf_counter()
        for packet in packets:
            decoder.decode(packet)
        best = min(best, time.perf_counter() - started)
    return best


def decoder_speed(audio: np.ndarray, mode: str, repeats: int = 3) -> list[dict[str, Any]]:
    """Rows (decoder, frames per packet, real-time factor, parameters, FLOPs per hop) for every
    installed hopcodec decoder on `audio` (16 kHz mono) coded in `mode`."""
    from streaming_core.codec import encode_audio
    from streaming_core.synthesizers import available_synthesizers, load_synthesizer

    seconds = len(audio) / 16000
    rows = []
    for name in available_synthesizers()[::-1]:
        synthesizer = load_synthesizer(name)
        metadata = getattr(synthesizer, "metadata", {})
        for frames in PACKET_FRAMES:
            packets = encode_audio(audio, mode, frames_per_packet=frames)
            elapsed = _best_decode_seconds(packets, synthesizer, repeats)
            rows.append({"decoder": synthesizer.name, "mode": mode, "packet_frames": frames,
                         "rtf": elapsed / seconds, "streams_per_core": seconds / elapsed,
                         "parameters": metadata.get("parameters"),
                         "flops_per_hop": metadata.get("flops_per_hop")})
    return rows


def speed_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines of the decoder speed section."""
    lines = ["| decoder | mode | frames per packet | dec RTF | streams per core | parameters | "
             "MFLOP per hop |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        params = f"{r['parameters']:,}" if r["parameters"] else "-"
        flops = f"{r['flops_per_hop'] / 1e6:.2f}" if r["flops_per_hop"] else "-"
        lines.append(f"| `{r['decoder']}` | {r['mode']} | {r['packet_frames']} | {r['rtf']:.4f} | "
                     f"{r['streams_per_core']:.0f} | {params} | {flops} |")
    return lines
