"""An open WebSocket stream to the service: connect (with token and retries), send, receive.

`CodecStream` is the endpoint-neutral core; `DecodeStream`, `EncodeStream` and `LoopbackStream`
add typed calls for each endpoint. One background task reads the socket: binary replies queue
up for `receive`, control replies (stats, flushed) answer the call that asked for them, and a
close or an error message is raised by the next `receive`.
"""

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from client.backoff import Backoff
from client.errors import ClientError, HandshakeRejected, ServerUnreachable, StreamClosed
from client.protocol import Ready, control, endpoint_url, parse_text
from server.pcm import float_to_pcm, pcm_to_float
from streaming_core.constants import SAMPLE_RATE

MAX_MESSAGE_BYTES = 1 << 22
"""Largest reply accepted (a flush of a long encode stream can be big)."""


@dataclass
class StreamCounters:
    """What went over one stream (across reconnections)."""

    messages_sent: int = 0
    bytes_sent: int = 0
    messages_received: int = 0
    bytes_received: int = 0
    connects: int = 0


def _is_retryable(error: ClientError) -> bool:
    return isinstance(error, ServerUnreachable) or bool(getattr(error, "retryable", False))


class CodecStream:
    """One stream on one endpoint; reconnects on request with backoff."""

    def __init__(self, url: str, token: str | None = None, backoff: Backoff | None = None,
                 open_timeout: float = 5.0) -> None:
        self.url = url
        self.token = token
        self.backoff = backoff or Backoff()
        self.open_timeout = open_timeout
        self.counters = StreamCounters()
        self.ready: Ready | None = None
        self._connection: ClientConnection | None = None
        self._reader: asyncio.Task | None = None
        self._inbox: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self._waiting: dict[str, deque[asyncio.Future]] = {"stats": deque(), "flushed": deque()}

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> Ready:
        """Open the stream, retrying with backoff when the failure may pass (refused, full, ...)."""
        delays = self.backoff.delays()
        while True:
            try:
                return await self._open_once()
            except ClientError as error:
                delay = next(delays, None) if _is_retryable(error) else None
                if delay is None:
                    raise
                await asyncio.sleep(delay)

    async def reconnect(self) -> Ready:
        """Drop the current connection (if any) and open a new stream with backoff."""
        await self.close()
        self._inbox = asyncio.Queue()
        return await self.connect()

    async def _open_once(self) -> Ready:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            connection = await connect(self.url, additional_headers=headers, open_timeout=self.open_timeout,
                                       compression=None, max_size=MAX_MESSAGE_BYTES, proxy=None)
        except InvalidStatus as error:
            raise HandshakeRejected(error.response.status_code, self.url) from None
        except InvalidURI as error:
            raise ClientError(f"bad server URL {self.url!r}: {error}") from None
        except (OSError, TimeoutError, InvalidHandshake) as error:
            raise ServerUnreachable(f"cannot reach {self.url}: {error or type(error).__name__}") from None
        try:
            first = await asyncio.wait_for(connection.recv(), self.open_timeout)
        except ConnectionClosed as error:
            raise StreamClosed(*_close_of(error)) from None
        except TimeoutError:
            await connection.close()
            raise ServerUnreachable(f"{self.url}: no ready message within {self.open_timeout} s") from None
        if isinstance(first, bytes):
            await connection.close()
            raise ClientError(f"{self.url}: expected a ready message first, got {len(first)} binary bytes")
        message = parse_text(first)
        if message["type"] != "ready":
            await connection.close()
            raise ClientError(f"{self.url}: expected a ready message first, got {message['type']!r}")
        self._connection = connection
        self.ready = Ready.from_message(message)
        self.counters.connects += 1
        self._reader = asyncio.create_task(self._read_loop(connection))
        return self.ready

    async def _read_loop(self, connection: ClientConnection) -> None:
        try:
            async for message in connection:
                if isinstance(message, bytes):
                    self.counters.messages_received += 1
                    self.counters.bytes_received += len(message)
                    self._inbox.put_nowait(message)
                    continue
                try:
                    parsed = parse_text(message)
                except ClientError as error:
                    self._inbox.put_nowait(error)
                    continue
                waiting = self._waiting.get(parsed["type"])
                if waiting:
                    future = waiting.popleft()
                    if not future.done():
                        future.set_result(parsed)
            self._fail(StreamClosed(*_close_of(connection)))
        except ConnectionClosed as error:
            self._fail(StreamClosed(*_close_of(error)))

    def _fail(self, error: ClientError) -> None:
        self._inbox.put_nowait(error)
        for waiting in self._waiting.values():
            while waiting:
                future = waiting.popleft()
                if not future.done():
                    future.set_exception(error)

    def _require(self) -> ClientConnection:
        if self._connection is None:
            raise ClientError("stream is not connected: call connect() first")
        return self._connection

    async def send(self, data: bytes) -> None:
        """Send one binary message; `StreamClosed` when the stream has ended."""
        try:
            await self._require().send(data)
        except ConnectionClosed as error:
            raise StreamClosed(*_close_of(error)) from None
        self.counters.messages_sent += 1
        self.counters.bytes_sent += len(data)

    async def receive(self, timeout: float | None = None) -> bytes:
        """The next binary reply; raises what ended the stream (`StreamClosed`, `ServerError`)."""
        self._require()
        item = await asyncio.wait_for(self._inbox.get(), timeout)
        if isinstance(item, BaseException):
            if isinstance(item, StreamClosed):
                self._inbox.put_nowait(item)  # every later call sees the close too
            raise item
        return item

    async def _ask(self, kind: str, message: str, timeout: float) -> dict[str, Any]:
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiting[kind].append(future)
        try:
            await self._require().send(message)
        except ConnectionClosed as error:
            raise StreamClosed(*_close_of(error)) from None
        return await asyncio.wait_for(future, timeout)

    async def stats(self, timeout: float = 5.0) -> dict[str, Any]:
        """The server's counters for this stream."""
        return await self._ask("stats", control("stats"), timeout)

    async def flush(self, timeout: float = 10.0) -> list[bytes]:
        """End the current stream on the server; the binary replies that the flush produced."""
        await self._ask("flushed", control("flush"), timeout)
        out = []
        while not self._inbox.empty():
            out.append(await self.receive())
        return out

    async def set_mode(self, mode: str) -> None:
        """Switch the server-side encoder's mode (encode and loopback endpoints)."""
        await self.send_text(control("mode", mode=mode))

    async def send_text(self, text: str) -> None:
        """Send a text (control) message."""
        try:
            await self._require().send(text)
        except ConnectionClosed as error:
            raise StreamClosed(*_close_of(error)) from None

    async def close(self) -> None:
        """Close the stream (normal closure); safe to call twice."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None


def _close_of(source: ConnectionClosed | ClientConnection) -> tuple[int | None, str]:
    """(code, reason) of the close frame the server sent, None when there was none."""
    if isinstance(source, ConnectionClosed):
        frame = source.rcvd
        return (frame.code, frame.reason) if frame is not None else (None, "")
    return source.close_code, source.close_reason or ""


class DecodeStream(CodecStream):
    """`WS /v1/decode`: packets in, 16-bit PCM at `rate` out, one reply per packet."""

    def __init__(self, server: str, rate: int = SAMPLE_RATE, **options: Any) -> None:
        super().__init__(endpoint_url(server, "decode", rate=rate), **options)
        self.rate = rate

    async def send_packet(self, packet: bytes) -> None:
        """Send one packet (docs/bitstream.md)."""
        await self.send(packet)

    async def receive_pcm(self, timeout: float | None = None) -> np.ndarray:
        """float32 audio for the next packet (concealment of lost frames first)."""
        return pcm_to_float(await self.receive(timeout))

    async def decode(self, packet: bytes, timeout: float | None = 10.0) -> np.ndarray:
        """Send one packet and wait for its audio."""
        await self.send_packet(packet)
        return await self.receive_pcm(timeout)


class EncodeStream(CodecStream):
    """`WS /v1/encode`: 16-bit PCM at `rate` in, packets out."""

    def __init__(self, server: str, mode: str | None = None, rate: int = SAMPLE_RATE,
                 frames_per_packet: int = 1, **options: Any) -> None:
        super().__init__(endpoint_url(server, "encode", mode=mode, rate=rate,
                                      frames_per_packet=frames_per_packet), **options)
        self.rate = rate

    async def send_pcm(self, audio: np.ndarray) -> None:
        """Send float audio (full scale 1.0) as s16le."""
        await self.send(float_to_pcm(audio))

    async def receive_packet(self, timeout: float | None = None) -> bytes:
        """The next coded packet."""
        return await self.receive(timeout)


class LoopbackStream(CodecStream):
    """`WS /v1/loopback`: 16-bit PCM in, decoded 16-bit PCM out."""

    def __init__(self, server: str, mode: str | None = None, rate: int = SAMPLE_RATE,
                 **options: Any) -> None:
        super().__init__(endpoint_url(server, "loopback", mode=mode, rate=rate), **options)
        self.rate = rate

    async def send_pcm(self, audio: np.ndarray) -> None:
        """Send float audio (full scale 1.0) as s16le."""
        await self.send(float_to_pcm(audio))

    async def receive_pcm(self, timeout: float | None = None) -> np.ndarray:
        """The next block of decoded audio."""
        return pcm_to_float(await self.receive(timeout))
