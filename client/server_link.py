"""`--server`: encode each captured hop, send it to `WS /v1/decode`, queue the decoded reply.

The audio callback hands hops over with `capture` (thread-safe); `run` encodes and sends them
and delivers each reply to the jitter buffer with its lag in ticks. A packet that would arrive
too late to play anyway is not sent: the server then conceals the gap. When the connection
drops for a reason that may pass, the link reconnects with backoff and starts a new stream
(encoder reset); the jitter buffer conceals meanwhile.
"""

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from client.errors import ClientError, ServerError
from client.stream import DecodeStream
from client.traffic import Traffic
from streaming_core.encoder import StreamEncoder

Deliver = Callable[[int, Any, float], bool]


class ServerLink:
    """One mic stream over the decode endpoint."""

    def __init__(self, stream: DecodeStream, encoder: StreamEncoder, deliver: Deliver,
                 clock: Callable[[], int], max_lag: int) -> None:
        self.stream = stream
        self.encoder = encoder
        self.deliver = deliver
        self.clock = clock
        self.max_lag = max_lag
        """A packet captured more than this many ticks ago is not sent."""
        self.traffic = Traffic()
        self.in_flight: deque[tuple[int, float]] = deque()
        """(tick, send time) of each packet awaiting its reply, oldest first."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._captured: asyncio.Queue[tuple[int, np.ndarray]] = asyncio.Queue()

    def capture(self, tick: int, hop: np.ndarray) -> None:
        """Called by the audio thread with each captured hop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._captured.put_nowait, (tick, hop.copy()))

    async def run(self) -> None:
        """Send and receive until cancelled; raises a `ClientError` that reconnecting cannot fix."""
        self._loop = asyncio.get_running_loop()
        while True:
            tasks = [asyncio.create_task(self._send()), asyncio.create_task(self._receive())]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                error = next(t.exception() for t in done if t.exception() is not None)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if not isinstance(error, ClientError) or not getattr(error, "retryable", False):
                raise error
            self.in_flight.clear()
            self.encoder.reset()
            await self.stream.reconnect()
            self.traffic.reconnects += 1

    async def _send(self) -> None:
        while True:
            tick, hop = await self._captured.get()
            for packet in self.encoder.push(hop):
                if self.clock() - tick > self.max_lag:
                    self.traffic.skipped += 1
                    continue
                self.in_flight.append((tick, time.monotonic()))
                self.traffic.sent(packet)
                await self.stream.send_packet(packet)

    async def _receive(self) -> None:
        while True:
            try:
                audio = await self.stream.receive_pcm()
            except ServerError:  # the reply to a packet the server could not parse
                audio = np.zeros(0, np.float32)
                self.traffic.errors += 1
            if not self.in_flight:
                raise ClientError("the server sent a reply that no packet asked for")
            tick, sent_at = self.in_flight.popleft()
            self.traffic.replied(time.monotonic() - sent_at)
            if len(audio):  # an empty reply: the server dropped the packet as late or duplicate
                self.deliver(tick, audio, float(self.clock() - tick))
