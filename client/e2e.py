"""End-to-end latency over a real server: a probe streamed in real time through the local
encoder, `WS /v1/decode` and the jitter buffer, with a timestamp per packet at each step.

The audio clock is simulated (one tick per 10 ms of wall time, as a sound card would call back);
the output device's buffer is modelled (`playback_buffer_ms`), since no sound card is needed.
The server does not report its decode time per packet; it is timed by decoding the same
packets with the same decoder here, and subtracted from the round trip.
"""

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from client.backoff import Backoff
from client.jitter import JitterBuffer, JitterConfig
from client.playout import PcmPlayout
from client.stream import DecodeStream
from streaming_core.constants import HOP, SAMPLE_RATE
from streaming_core.decoder import StreamDecoder
from streaming_core.encoder import StreamEncoder
from streaming_core.latency import latency_probe, measure_delay
from streaming_core.synthesizers import available_synthesizers, default_synthesizer, load_synthesizer

HOP_SECONDS = HOP / SAMPLE_RATE
SEGMENTS = ("hop buffering", "encode", "network", "server decode", "jitter buffer", "decoder delay",
            "playback buffer")
"""The parts of each packet's mouth-to-ear time, in order."""
WARM_UP = SAMPLE_RATE
"""Silence streamed before the probe (1 s): the server's first decode of a stream and the jitter
buffer's first estimates are start-up, not steady state, and are not reported."""
KEPT_REAL_TIME = 0.8
"""Fraction of the probe's packets that must play in time for a run to describe the codec: a
machine too busy to encode, decode and send a hop every 10 ms makes every packet late."""


@dataclass
class PacketTiming:
    """Timestamps of one packet, in seconds since the run started."""

    frame: int
    captured: float
    """The hop is complete (its last sample was captured)."""
    encoded: float
    sent: float
    """The send call returned (network time counts from `encoded`)."""
    received: float | None = None
    played: float | None = None
    """Its audio left the jitter buffer for the output device."""
    decode_ms: float = 0.0
    """Server-side decode time (timed here with the same decoder)."""


def _stats(values: list[float]) -> dict[str, float]:
    array = np.asarray(values) if values else np.zeros(1)
    return {"median": round(float(np.median(array)), 2), "p5": round(float(np.percentile(array, 5)), 2),
            "p95": round(float(np.percentile(array, 95)), 2), "max": round(float(array.max()), 2)}


@dataclass
class EndToEndRun:
    """Everything one run measured."""

    server: str
    mode: str
    synthesizer: str
    decoder_delay_ms: float
    playback_buffer_ms: float
    packets: list[PacketTiming]
    jitter: dict[str, int]
    measured_mouth_to_ear_ms: float
    """Cross-correlation of the probe's and the playback's energy envelopes."""
    probe_frames: int = 0
    """Frames of the probe (the run goes on a little longer to play them all)."""
    played: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    def segments_ms(self, packet: PacketTiming) -> dict[str, float]:
        """The parts of one played packet's mouth-to-ear time."""
        round_trip = 1000.0 * (packet.received - packet.encoded)
        return {
            "hop buffering": 1000.0 * HOP_SECONDS,
            "encode": 1000.0 * (packet.encoded - packet.captured),
            "network": max(round_trip - packet.decode_ms, 0.0),
            "server decode": min(packet.decode_ms, round_trip),
            "jitter buffer": 1000.0 * (packet.played - packet.received),
            "decoder delay": self.decoder_delay_ms,
            "playback buffer": self.playback_buffer_ms,
        }

    def played_packets(self) -> list[PacketTiming]:
        """Probe packets (after the warm-up) whose audio was played (not concealed over)."""
        first = WARM_UP // HOP
        return [p for p in self.packets[first : first + self.probe_frames]
                if p.played is not None and p.received is not None]

    def summary(self) -> dict:
        """Median, 95th percentile and maximum of each segment and of the total, in ms."""
        rows = [self.segments_ms(p) for p in self.played_packets()]
        return {"server": self.server, "mode": self.mode, "synthesizer": self.synthesizer,
                "packets": self.probe_frames, "played": len(rows),
                "kept_real_time": len(rows) >= KEPT_REAL_TIME * self.probe_frames,
                "jitter_buffer": self.jitter,
                "segments_ms": {name: _stats([row[name] for row in rows]) for name in SEGMENTS},
                "mouth_to_ear_ms": _stats([sum(row.values()) for row in rows]),
                "measured_mouth_to_ear_ms": round(self.measured_mouth_to_ear_ms, 2),
                "playback_buffer_ms": self.playback_buffer_ms,
                "notes": "audio clock simulated, playback buffer modelled; server decode timed "
                         "here with the same decoder"}


async def measure_end_to_end(server: str, mode: str, seconds: float = 4.0, token: str | None = None,
                             playback_buffer_ms: float = 20.0, max_delay: int = 20) -> EndToEndRun:
    """Stream a noise-burst probe through the server in real time and time every packet."""
    probe = np.concatenate((np.zeros(WARM_UP), latency_probe(seconds=seconds, seed=11)))
    encoder = StreamEncoder(mode)
    jitter = JitterBuffer(JitterConfig(max_delay=max_delay))
    playout = PcmPlayout()
    ticks = len(probe) // HOP + max_delay + 4
    played = np.zeros(ticks * HOP, np.float32)
    timings: dict[int, PacketTiming] = {}
    packets: list[bytes] = []
    in_flight: deque[PacketTiming] = deque()
    started = [0]
    stream = DecodeStream(server, token=token, backoff=Backoff(initial=0.2, attempts=2))
    ready = await stream.connect()
    clock = time.perf_counter
    t0 = clock() + 0.05

    async def receive() -> None:
        while True:
            audio = await stream.receive_pcm()
            timing = in_flight.popleft()
            timing.received = clock() - t0
            jitter.put(timing.frame, audio, float(started[0] - timing.frame))

    receiver = asyncio.create_task(receive())
    try:
        for tick in range(ticks):
            await asyncio.sleep(max(t0 + (tick + 1) * HOP_SECONDS - clock(), 0.0))
            captured = clock() - t0
            hop = probe[tick * HOP : (tick + 1) * HOP]
            coded = encoder.push(np.pad(hop, (0, HOP - len(hop))))
            encoded = clock() - t0
            for packet in coded:
                await stream.send_packet(packet)
                timings[tick] = PacketTiming(tick, captured, encoded, clock() - t0)
                in_flight.append(timings[tick])
                packets.append(packet)
            started[0] = tick + 1
            event, item = jitter.pop(tick)
            played[tick * HOP : (tick + 1) * HOP] = playout.hop(event, item)
            if event == "play":
                timings[jitter.state.next_play - 1].played = clock() - t0
        await asyncio.sleep(0.1)
    finally:
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)
        await stream.close()
    ordered = [timings[frame] for frame in sorted(timings)]
    _time_decoding(packets, ordered, ready.synthesizer)
    lag = measure_delay(probe[WARM_UP:], played[WARM_UP : len(probe)], (max_delay + 4) * HOP)
    counters = {name: getattr(jitter.state, name)
                for name in ("played", "concealed", "stretched", "dropped", "late")}
    return EndToEndRun(server=server, mode=encoder.mode.name, synthesizer=ready.synthesizer,
                       decoder_delay_ms=ready.algorithmic_latency_ms - ready.hop_ms,
                       playback_buffer_ms=playback_buffer_ms, packets=ordered, jitter=counters,
                       measured_mouth_to_ear_ms=1000.0 * (lag + HOP) / SAMPLE_RATE + playback_buffer_ms,
                       played=played, probe_frames=(len(probe) - WARM_UP) // HOP)


def _time_decoding(packets: list[bytes], timings: list[PacketTiming], synthesizer: str) -> None:
    """Fill in each packet's decode time with the server's decoder run here."""
    known = synthesizer in available_synthesizers()
    decoder = StreamDecoder(load_synthesizer(synthesizer) if known else default_synthesizer())
    for packet, timing in zip(packets, timings, strict=True):
        start = time.perf_counter()
        decoder.decode(packet)
        timing.decode_ms = 1000.0 * (time.perf_counter() - start)
