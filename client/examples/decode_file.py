"""Decode a .hop file through a hopcodec server, packet by packet over `WS /v1/decode`.

    python client/examples/decode_file.py speech.hop speech.wav --server ws://127.0.0.1:8000

Sends as fast as the server's rate limit allows (read from its ready message), trims the
decoder delay and writes a WAV at the file's original rate.
"""

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np

from client.stream import DecodeStream
from streaming_core.audio_io import write_wav
from streaming_core.bitstream import iter_file_packets, parse_file_header, parse_packet
from streaming_core.constants import HOP, SAMPLE_RATE
from streaming_core.errors import HopcodecError


async def decode_file(server: str, coded: bytes, token: str | None = None) -> tuple[np.ndarray, int]:
    """(audio, rate) of a coded file decoded by the server."""
    header = parse_file_header(coded)
    packets = list(iter_file_packets(coded))
    async with DecodeStream(server, rate=header.sample_rate, token=token) as stream:
        limits = stream.ready.extra.get("limits", {})
        multiple = 0.9 * float(limits.get("rate_multiple", 1.0))
        burst = 0.9 * float(limits.get("rate_burst_seconds", 0.0))
        started, sent_seconds, blocks = time.monotonic(), 0.0, []
        for packet in packets:
            ahead = sent_seconds - burst - multiple * (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead / multiple)
            blocks.append(await stream.decode(packet))
            sent_seconds += parse_packet(packet).frame_count * HOP / SAMPLE_RATE
        delay_ms = stream.ready.algorithmic_latency_ms - stream.ready.hop_ms
    audio = np.concatenate(blocks)[round(delay_ms * header.sample_rate / 1000) :]
    if header.input_samples is not None:
        audio = np.pad(audio, (0, max(header.input_samples - len(audio), 0)))[: header.input_samples]
    return audio, header.sample_rate


def main() -> int:
    """Command line of the example."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help=".hop file (hopcodec encode)")
    parser.add_argument("output", type=Path, help="WAV to write")
    parser.add_argument("--server", default="ws://127.0.0.1:8000")
    parser.add_argument("--token", default=os.environ.get("HOPCODEC_TOKEN"))
    args = parser.parse_args()
    try:
        audio, rate = asyncio.run(decode_file(args.server, args.input.read_bytes(), args.token))
        write_wav(args.output, audio, rate)
    except (HopcodecError, OSError) as error:
        print(f"decode_file: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}: {len(audio) / rate:.2f} s at {rate} Hz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
