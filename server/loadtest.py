"""`hopcodec loadtest`: N concurrent clients stream real speech packets to WS /v1/decode at
real-time pace and report streams held, frames lost, per-packet round trip, the server's own
per-hop processing time and CPU (both from its /metrics)."""

import argparse
import asyncio
import contextlib
import json
import math
import os
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import websockets
from prometheus_client.parser import text_string_to_metric_families

from hopcodec.cli import DEFAULT_SAMPLE
from streaming_core.audio_io import load_for_codec
from streaming_core.codec import encode_audio
from streaming_core.constants import HOP, SAMPLE_RATE
from streaming_core.errors import HopcodecError
from streaming_core.modes import DEFAULT_MODE

DEFAULT_CLIP = DEFAULT_SAMPLE
HOP_SECONDS = HOP / SAMPLE_RATE
REPLY_GRACE_SECONDS = 5.0


class LoadtestError(HopcodecError):
    """A load test that cannot start (bad URL, no server)."""


@dataclass
class StreamResult:
    """What one client saw."""

    connected: bool = False
    frames_sent: int = 0
    samples_received: int = 0
    errors: int = 0
    round_trips: list[float] = field(default_factory=list)
    max_send_lag: float = 0.0
    """Worst lateness of this client's own send schedule (client overload shows here)."""
    close: str | None = None
    """Close code and reason when the server closed the stream early, or the failure."""
    server_stats: dict = field(default_factory=dict)


def _decode_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise LoadtestError(f"--url must look like ws://HOST:PORT, got {url!r}")
    path = parts.path if parts.path not in ("", "/") else "/v1/decode"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _metrics_url(url: str, given: str | None) -> str | None:
    if given:
        return None if given == "none" else given
    parts = urlsplit(url)
    return urlunsplit(("https" if parts.scheme == "wss" else "http", parts.netloc, "/metrics", "", ""))


def _packets(clip: str, seconds: float, mode: str, frames_per_packet: int) -> list[bytes]:
    speech = load_for_codec(clip)[0]
    needed = int(seconds * SAMPLE_RATE)
    looped = np.tile(speech, math.ceil(needed / len(speech)))[:needed]
    return encode_audio(looped, mode, frames_per_packet)


async def _stream(url: str, headers: dict[str, str], packets: list[bytes], start_at: float) -> StreamResult:
    loop = asyncio.get_running_loop()
    result = StreamResult()
    await asyncio.sleep(max(start_at - loop.time(), 0))
    try:
        ws = await websockets.connect(url, additional_headers=headers, compression=None, max_size=None,
                                      ping_interval=None, open_timeout=30)
    except (OSError, websockets.WebSocketException, TimeoutError) as error:
        result.close = f"connect failed: {error}"
        return result
    sent: deque[float] = deque()
    done = asyncio.Event()

    async def read() -> None:
        async for message in ws:
            if isinstance(message, bytes):
                result.round_trips.append(time.perf_counter() - sent.popleft())
                result.samples_received += len(message) // 2
            else:
                reply = json.loads(message)
                if reply["type"] == "error":
                    result.errors += 1
                    sent.popleft()
                elif reply["type"] == "stats":
                    result.server_stats = reply
            if not sent:
                done.set()

    reader: asyncio.Task[None] | None = None
    try:
        ready = json.loads(await ws.recv())
        if ready.get("type") != "ready":
            raise LoadtestError(f"expected a ready message, got {ready}")
        result.connected = True
        reader = asyncio.create_task(read())
        start, frames = loop.time(), 0
        for packet in packets:
            due = start + frames * HOP_SECONDS
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                result.max_send_lag = max(result.max_send_lag, -wait)
            done.clear()
            sent.append(time.perf_counter())
            await ws.send(packet)
            frames += packet[4]  # header byte 4: frame count
            result.frames_sent = frames
        await asyncio.wait_for(done.wait(), REPLY_GRACE_SECONDS)
        await ws.send(json.dumps({"type": "stats"}))
        await asyncio.sleep(0.2)
        await ws.close()
        await reader
    except websockets.ConnectionClosed:
        pass
    except TimeoutError:
        result.close = f"replies missing {REPLY_GRACE_SECONDS:g} s after the last packet"
    if ws.close_code not in (None, 1000) and result.close is None:
        result.close = f"{ws.close_code} {ws.close_reason}"
    await ws.close()
    if reader is not None:  # ends with the connection; its error, if any, is the close above
        with contextlib.suppress(websockets.ConnectionClosed):
            await reader
    return result


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a local process and its direct children (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids += [int(child) for child in (task / "children").read_text().split()]
    total = 0.0
    for each in pids:
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _scrape(url: str | None) -> dict[str, list] | None:
    if url is None:
        return None
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return None
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def _histogram(scrape: dict[str, list], name: str, labels: dict[str, str]) -> dict[float, float]:
    buckets = {}
    for sample in scrape.get(name, []):
        if sample.name.endswith("_bucket") and all(sample.labels.get(k) == v for k, v in labels.items()):
            buckets[float(sample.labels["le"])] = sample.value
    return buckets


def histogram_quantile(buckets: dict[float, float], q: float) -> float | None:
    """Quantile `q` of a cumulative Prometheus histogram, interpolated inside its bucket."""
    edges = sorted(buckets)
    if not edges or buckets[edges[-1]] <= 0:
        return None
    target = q * buckets[edges[-1]]
    lower_edge, lower_count = 0.0, 0.0
    for edge in edges:
        count = buckets[edge]
        if count >= target:
            if math.isinf(edge):
                return lower_edge
            inside = count - lower_count
            fraction = (target - lower_count) / inside if inside else 1.0
            return lower_edge + (edge - lower_edge) * fraction
        lower_edge, lower_count = edge, count
    return None


def _total(scrape: dict[str, list], name: str, labels: dict[str, str] | None = None) -> float:
    """A counter's (or gauge's) value in a scrape, summed over the samples that carry `labels`
    (0 when absent)."""
    return sum(s.value for s in scrape.get(name, []) if s.name in (name, name + "_total")
               and all(s.labels.get(k) == v for k, v in (labels or {}).items()))


def _server_figures(before: dict | None, after: dict | None, wall: float) -> dict:
    if before is None or after is None:
        return {}

    def delta(name: str, labels: dict[str, str]) -> dict[float, float]:
        old = _histogram(before, name, labels)
        return {edge: value - old.get(edge, 0.0) for edge, value in _histogram(after, name, labels).items()}

    hops = delta("hopcodec_hop_processing_seconds", {"endpoint": "decode"})
    waits = delta("hopcodec_message_wait_seconds", {})
    cpu = _total(after, "process_cpu_seconds") - _total(before, "process_cpu_seconds")
    figures = {"server_cpu_percent": round(100 * cpu / wall, 1)}
    for name, histogram in (("hop_processing", hops), ("thread_wait", waits)):
        for q in (0.5, 0.99):
            value = histogram_quantile(histogram, q)
            figures[f"{name}_p{round(q * 100)}_ms"] = None if value is None else round(1000 * value, 3)
    for graph in ("decoder", "predictor"):
        runs, calls = (_total(after, name, {"graph": graph}) - _total(before, name, {"graph": graph})
                       for name in ("hopcodec_graph_runs", "hopcodec_graph_calls"))
        # with several workers the two scrapes may come from different ones: then no figure
        figures[f"{graph}_mean_batch"] = round(calls / runs, 2) if 0 < runs <= calls else None
    passes, messages = (_total(after, name) - _total(before, name)
                        for name in ("hopcodec_decode_passes", "hopcodec_decode_pass_messages"))
    figures["streams_per_pass"] = round(messages / passes, 2) if 0 < passes <= messages else None
    figures["frames_concealed"] = (_total(after, "hopcodec_frames_concealed")
                                   - _total(before, "hopcodec_frames_concealed"))
    return figures


async def run_loadtest(url: str, streams: int, seconds: float, frames_per_packet: int = 1,
                       mode: str = DEFAULT_MODE, ramp: float = 1.0, clip: str = str(DEFAULT_CLIP),
                       token: str | None = None, metrics_url: str | None = None,
                       server_pid: int | None = None) -> dict:
    """Run the load test and return its report."""
    packets = _packets(clip, seconds, mode, frames_per_packet)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    before = await asyncio.to_thread(_scrape, metrics_url)
    loop = asyncio.get_running_loop()
    start, cpu_start = loop.time(), os.times()
    tree_start = process_tree_cpu(server_pid) if server_pid else 0.0
    results = await asyncio.gather(*(
        _stream(url, headers, packets, start + 0.2 + ramp * i / streams)
        for i in range(streams)))
    wall = loop.time() - start
    cpu_end = os.times()
    tree_cpu = process_tree_cpu(server_pid) - tree_start if server_pid else None
    after = await asyncio.to_thread(_scrape, metrics_url)
    trips = np.array([t for r in results for t in r.round_trips]) * 1000
    frames_sent = sum(r.frames_sent for r in results)
    frames_received = sum(r.samples_received for r in results) // HOP
    total_frames = sum(packet[4] for packet in packets)
    held = sum(r.connected and r.close is None and r.frames_sent == total_frames for r in results)
    client_cpu = (cpu_end.user + cpu_end.system) - (cpu_start.user + cpu_start.system)
    closes: dict[str, int] = {}
    for r in results:
        if r.close:
            closes[r.close] = closes.get(r.close, 0) + 1
    return {
        "url": url, "streams": streams, "seconds": seconds, "frames_per_packet": frames_per_packet,
        "mode": mode, "streams_held": int(held), "frames_sent": frames_sent,
        "frames_received": frames_received, "frames_lost": frames_sent - frames_received,
        "error_replies": sum(r.errors for r in results),
        "round_trip_p50_ms": round(float(np.percentile(trips, 50)), 3) if trips.size else None,
        "round_trip_p99_ms": round(float(np.percentile(trips, 99)), 3) if trips.size else None,
        "round_trip_max_ms": round(float(trips.max()), 3) if trips.size else None,
        "client_send_lag_max_ms": round(1000 * max((r.max_send_lag for r in results), default=0), 3),
        "client_cpu_percent": round(100 * client_cpu / wall, 1),
        "closes": closes, "wall_seconds": round(wall, 2),
        **_server_figures(before, after, wall),
        **({"server_tree_cpu_percent": round(100 * tree_cpu / wall, 1)} if tree_cpu is not None else {}),
        "load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
    }


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def cmd_loadtest(args: argparse.Namespace) -> int:
    """hopcodec loadtest"""
    if args.streams < 1 or args.seconds <= 0:
        raise LoadtestError("--streams must be at least 1 and --seconds positive")
    url = _decode_url(args.url)
    _use_uvloop()
    started = time.time()
    report = asyncio.run(run_loadtest(url, args.streams, args.seconds, args.frames_per_packet, args.mode,
                                      args.ramp, args.clip, args.token, _metrics_url(url, args.metrics_url),
                                      args.server_pid))
    report["started_unix"] = round(started)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:<26} {value}")
    return 0 if report["streams_held"] == args.streams and report["frames_lost"] == 0 else 1
