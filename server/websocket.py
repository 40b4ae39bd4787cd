"""One WebSocket stream: auth, query, slot, then receive -> codec work -> send, under limits.

The connection handles one message at a time: it reads a message, runs its codec work in the
hop thread pool (or inline), queues the replies, and only then reads the next message. Replies
go out through a bounded queue drained by a sender task of this connection alone, so a client
that does not read fills only its own queue (and is then closed), and a client that floods is
held back by TCP flow control on its own socket and closed by its rate limit.
"""

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.websockets import WebSocket, WebSocketDisconnect

from server import closecodes
from server.auth import is_authorized
from server.closecodes import CloseCode
from server.limits import AudioBucket
from server.pcm import MAX_RATE, MIN_RATE
from server.service import Service
from server.sessions import DecodeSession, EncodeSession, LoopbackSession, Session, Work
from streaming_core.bitstream import MAX_FRAMES_PER_PACKET
from streaming_core.constants import HOP, SAMPLE_RATE
from streaming_core.errors import HopcodecError
from streaming_core.modes import DEFAULT_MODE, get_mode

log = logging.getLogger("hopcodec.server")
T = TypeVar("T")

QUERY_PARAMETERS = {
    "decode": ("rate", "token"),
    "encode": ("mode", "rate", "frames_per_packet", "token"),
    "loopback": ("mode", "rate", "token"),
}
CLOSE_WAIT_SECONDS = 5.0
"""How long queued replies and the close frame may take to reach a client at the end."""


class QueryError(ValueError):
    """A query parameter that is unknown or out of range."""


def _int_parameter(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise QueryError(f"{name}={value} out of range {low}..{high}")
    return value


def open_session(service: Service, endpoint: str, query: Mapping[str, str]) -> Session:
    """The session an endpoint's query asks for; `QueryError` naming a bad parameter."""
    unknown = sorted(set(query) - set(QUERY_PARAMETERS[endpoint]))
    if unknown:
        raise QueryError(f"unknown parameter {unknown[0]!r}; {endpoint} takes "
                         f"{', '.join(QUERY_PARAMETERS[endpoint])}")
    rate = _int_parameter(query, "rate", SAMPLE_RATE, MIN_RATE, MAX_RATE)
    if endpoint == "decode":
        return DecodeSession(service.synthesizer, rate)
    mode = query.get("mode", DEFAULT_MODE)
    try:
        get_mode(mode)
    except KeyError as error:
        raise QueryError(error.args[0]) from None
    if endpoint == "loopback":
        return LoopbackSession(service.synthesizer, mode, rate)
    frames = _int_parameter(query, "frames_per_packet", 1, 1, MAX_FRAMES_PER_PACKET)
    return EncodeSession(mode, rate, frames)


@dataclass(frozen=True)
class Ending:
    """How a stream ended: the server closed it (`close`) or the client went (`client_code`)."""

    close: CloseCode | None = None
    detail: str = ""
    client_code: int = 1005


async def serve_websocket(ws: WebSocket, endpoint: str, service: Service) -> None:
    """Run one stream of `endpoint` from handshake to close."""
    await ws.accept()
    metrics, settings = service.metrics, service.settings
    if not is_authorized(settings.token, ws.headers, ws.query_params):
        await _refuse(ws, service, endpoint, closecodes.UNAUTHORIZED)
        return
    try:
        session = open_session(service, endpoint, ws.query_params)
    except QueryError as error:
        await _refuse(ws, service, endpoint, closecodes.BAD_QUERY, str(error))
        return
    if not service.slots.acquire():
        await _refuse(ws, service, endpoint, closecodes.SERVER_FULL,
                      f"{settings.max_streams} streams open")
        return
    metrics.streams_total.labels(endpoint).inc()
    metrics.streams_open.labels(endpoint).inc()
    try:
        await Stream(ws, endpoint, session, service).run()
    finally:
        service.slots.release()
        metrics.streams_open.labels(endpoint).dec()


async def _refuse(ws: WebSocket, service: Service, endpoint: str, close: CloseCode, detail: str = "") -> None:
    service.metrics.violations.labels(close.kind).inc()
    service.metrics.streams_closed.labels(endpoint, str(close.code)).inc()
    with contextlib.suppress(OSError, RuntimeError, WebSocketDisconnect):  # the client has gone
        await ws.close(close.code, close.reason_with(detail))


class Stream:
    """An accepted stream: its session, rate bucket, send queue and counters."""

    def __init__(self, ws: WebSocket, endpoint: str, session: Session, service: Service) -> None:
        self.ws, self.endpoint, self.session, self.service = ws, endpoint, session, service
        settings = service.settings
        self.id = secrets.token_hex(6)
        self.bucket = AudioBucket(settings.rate_multiple, settings.rate_burst_seconds)
        self.queue: asyncio.Queue[bytes | str | Ending] = asyncio.Queue()
        self.queued_bytes = 0
        """Bytes in `queue`, bounded by `settings.send_queue_bytes`."""
        self.started = time.monotonic()
        metrics = service.metrics
        self.hop_seconds = metrics.hop_seconds.labels(endpoint)
        self.message_seconds = metrics.message_seconds.labels(endpoint)
        self.bad_in_row = 0
        self.counters = {"messages_in": 0, "bytes_in": 0, "messages_out": 0, "bytes_out": 0,
                         "bad_messages": 0}

    async def run(self) -> None:
        """Serve until the client leaves or a limit closes the stream."""
        sender = asyncio.create_task(self._send_loop())
        try:
            self._queue_json(self._ready())
            ending = await self._receive_loop()
        except Exception:
            log.exception("stream %s (%s) failed", self.id, self.endpoint)
            self.service.metrics.errors.labels("internal").inc()
            ending = Ending(closecodes.INTERNAL)
        await self._finish(sender, ending)

    def _ready(self) -> dict[str, Any]:
        settings = self.service.settings
        mode = self.session.mode
        ready = {
            "type": "ready", "session": self.id, "endpoint": self.endpoint,
            "sample_rate": self.session.rate,
            "hop_ms": 1000 * HOP / SAMPLE_RATE, "mode": mode.name if mode else None,
            "algorithmic_latency_ms": self.service.latency_ms,
            "synthesizer": self.service.synthesizer_name,
            "limits": {name: getattr(settings, name) for name in
                       ("max_message_bytes", "rate_multiple", "rate_burst_seconds", "idle_timeout",
                        "max_bad_messages", "send_queue_bytes")},
        }
        if self.endpoint == "encode":
            ready["frames_per_packet"] = self.session.encoder.frames_per_packet  # type: ignore[attr-defined]
        return ready

    async def _receive_loop(self) -> Ending:
        settings = self.service.settings
        while True:
            try:
                async with asyncio.timeout(settings.idle_timeout):  # no extra task, unlike wait_for
                    message = await self.ws.receive()
            except TimeoutError:
                return Ending(closecodes.IDLE, f"no message for {settings.idle_timeout:g} s")
            if message["type"] == "websocket.disconnect":
                return Ending(client_code=int(message.get("code") or 1005))
            data, text = message.get("bytes"), message.get("text")
            size = len(data) if data is not None else len((text or "").encode())
            self.counters["messages_in"] += 1
            self.counters["bytes_in"] += size
            if size > settings.max_message_bytes:
                limit = settings.max_message_bytes
                return Ending(closecodes.MESSAGE_TOO_BIG, f"{size} bytes, at most {limit}")
            ending = await (self._on_binary(data) if data is not None else self._on_text(text or ""))
            if ending is not None:
                return ending

    async def _on_binary(self, data: bytes) -> Ending | None:
        if not self.bucket.take(self.session.cost_seconds(data)):
            settings = self.service.settings
            return Ending(closecodes.RATE, f"above {settings.rate_multiple:g}x real time "
                          f"(burst {settings.rate_burst_seconds:g} s)")
        try:
            work = await self._process(data)
        except HopcodecError as error:
            kind = "bad_packet" if self.endpoint == "decode" else "bad_pcm"
            return self._malformed(kind, str(error))
        self.bad_in_row = 0
        return self._deliver(work)

    async def _on_text(self, text: str) -> Ending | None:
        try:
            control = json.loads(text)
            kind = control["type"]
        except (ValueError, TypeError, KeyError):
            return self._malformed("bad_control", 'control messages are JSON objects with a "type"')
        if kind == "stats":
            self.bad_in_row = 0
            return self._queue_json(self._stats())
        if kind == "flush":
            self.bad_in_row = 0
            return self._deliver(await self._run(self.session.flush)) or self._queue_json({"type": "flushed"})
        if kind == "mode":
            mode = control.get("mode")
            if not isinstance(mode, str):
                return self._malformed("bad_control", 'a mode message needs "mode": NAME')
            try:
                self.session.set_mode(mode)
            except (KeyError, ValueError) as error:
                return self._malformed("bad_control", str(error.args[0]))
            self.bad_in_row = 0
            return None
        return self._malformed("bad_control", f"unknown control message type {kind!r} "
                               "(known: flush, mode, stats)")

    def _malformed(self, kind: str, detail: str) -> Ending | None:
        self.service.metrics.errors.labels(kind).inc()
        self.counters["bad_messages"] += 1
        self.bad_in_row += 1
        ending = self._queue_json({"type": "error", "code": kind, "detail": detail})
        if ending is None and self.bad_in_row >= self.service.settings.max_bad_messages:
            return Ending(closecodes.MALFORMED, f"{self.bad_in_row}, last: {detail}")
        return ending

    def _deliver(self, work: Work) -> Ending | None:
        metrics = self.service.metrics
        if work.decoded:
            metrics.frames_decoded.inc(work.decoded)
        if work.concealed:
            metrics.frames_concealed.inc(work.concealed)
        if work.unsynced:
            metrics.frames_unsynced.inc(work.unsynced)
        if work.dropped:
            metrics.packets_dropped.inc(work.dropped)
        if work.encoded:
            metrics.frames_encoded.inc(work.encoded)
        for message in work.messages:
            ending = self._queue(message)
            if ending is not None:
                return ending
        return None

    async def _run(self, function: Callable[..., Work], *args: Any) -> Work:
        """`function(*args)` on the hop threads (or inline), its timing recorded."""
        scheduler = self.service.scheduler
        if scheduler is None:
            return self._record(*_timed(function, *args))
        return await self._await_hop_thread(scheduler.run(function, *args))

    async def _process(self, data: bytes) -> Work:
        """`session.process(data)` on the hop threads (or inline), where a decode message goes
        through together with the other streams' messages waiting with it; timing recorded."""
        scheduler = self.service.scheduler
        if scheduler is None:
            return self._record(*_timed(self.session.process, data))
        return await self._await_hop_thread(scheduler.process(self.session, data))

    async def _await_hop_thread(self, job: Future[tuple[Work, float, float]]) -> Work:
        submitted = time.perf_counter()
        work, started, ended = await asyncio.wrap_future(job)
        self.service.metrics.queue_seconds.observe(started - submitted)
        return self._record(work, started, ended)

    def _record(self, work: Work, started: float, ended: float) -> Work:
        """Record the timing of a message's work; the work."""
        self.message_seconds.observe(ended - started)
        if work.hops:
            self.hop_seconds.observe((ended - started) / work.hops)
        return work

    def _queue(self, item: bytes | str) -> Ending | None:
        limit = self.service.settings.send_queue_bytes
        if self.queued_bytes + len(item) > limit and self.queued_bytes:
            return Ending(closecodes.SLOW_READER, f"{self.queued_bytes} bytes waiting, at most {limit}")
        self.queued_bytes += len(item)
        self.queue.put_nowait(item)
        return None

    def _queue_json(self, message: dict[str, Any]) -> Ending | None:
        return self._queue(json.dumps(message))

    def _stats(self) -> dict[str, Any]:
        return {"type": "stats", "session": self.id, "endpoint": self.endpoint,
                "seconds": round(time.monotonic() - self.started, 3), **self.counters,
                **self.session.stats()}

    async def _send_loop(self) -> None:
        """Drain the send queue until the close item; a send failing means the client left."""
        while True:
            item = await self.queue.get()
            try:
                if isinstance(item, Ending):
                    assert item.close is not None
                    await self.ws.close(item.close.code, item.close.reason_with(item.detail))
                    return
                if isinstance(item, bytes):
                    await self.ws.send_bytes(item)
                else:
                    await self.ws.send_text(item)
            except (OSError, RuntimeError, WebSocketDisconnect):  # the receive loop sees the disconnect
                return
            self.queued_bytes -= len(item)
            self.counters["messages_out"] += 1
            self.counters["bytes_out"] += len(item)

    async def _finish(self, sender: asyncio.Task[None], ending: Ending) -> None:
        metrics = self.service.metrics
        if ending.close is None:
            code = ending.client_code
            if code == closecodes.MESSAGE_TOO_BIG.code:  # the protocol layer's own size limit
                metrics.violations.labels(closecodes.MESSAGE_TOO_BIG.kind).inc()
            sender.cancel()
        else:
            code = ending.close.code
            if ending.close not in (closecodes.NORMAL, closecodes.INTERNAL):
                metrics.violations.labels(ending.close.kind).inc()
            log.info("stream %s (%s) closed: %s", self.id, self.endpoint,
                     ending.close.reason_with(ending.detail))
            await self._close(sender, ending)
        metrics.streams_closed.labels(self.endpoint, str(code)).inc()
        await asyncio.gather(sender, return_exceptions=True)

    async def _close(self, sender: asyncio.Task[None], ending: Ending) -> None:
        """Send what is queued and then the close frame; give up on a client that does not read."""
        assert ending.close is not None
        if ending.close is closecodes.SLOW_READER:  # what is queued will not get through
            sender.cancel()
        else:
            self.queue.put_nowait(ending)
            done, _ = await asyncio.wait([sender], timeout=CLOSE_WAIT_SECONDS)
            if done:
                return
            sender.cancel()
        try:
            await asyncio.wait_for(self.ws.close(ending.close.code, ending.close.reason_with(ending.detail)),
                                   CLOSE_WAIT_SECONDS)
        except Exception:  # noqa: BLE001 - the client is gone or stuck; nothing more to tell it
            log.info("stream %s: close frame not delivered", self.id)


def _timed(function: Callable[..., T], *args: Any) -> tuple[T, float, float]:
    started = time.perf_counter()
    result = function(*args)
    return result, started, time.perf_counter()
