"""Prometheus metrics of one server process (GET /metrics)."""

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from streaming_core.graph_batcher import GraphBatcher

if TYPE_CHECKING:
    from server.hop_scheduler import HopScheduler

HOP_BUCKETS = (0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5)
"""Seconds; the 10 ms bucket edge is the real-time limit of one hop."""


class Metrics:
    """The service's metrics, in a registry of their own (one per app instance)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.streams_open = Gauge("hopcodec_streams_open", "WebSocket streams open now",
                                  ["endpoint"], registry=r)
        self.streams_total = Counter("hopcodec_streams", "WebSocket streams accepted (auth and "
                                     "query passed, slot taken)", ["endpoint"], registry=r)
        self.streams_closed = Counter("hopcodec_streams_closed", "WebSocket streams ended, by "
                                      "close code; a client that vanished without a close frame "
                                      "shows as 1005 (uvicorn's report) or 1006",
                                      ["endpoint", "code"], registry=r)
        self.frames_decoded = Counter("hopcodec_frames_decoded", "10 ms frames decoded from packets",
                                      registry=r)
        self.frames_concealed = Counter("hopcodec_frames_concealed", "10 ms frames lost on the way "
                                        "and concealed", registry=r)
        self.frames_unsynced = Counter("hopcodec_frames_unsynced", "10 ms frames played as silence: "
                                       "the stream was joined between predictor resets", registry=r)
        self.packets_dropped = Counter("hopcodec_packets_dropped", "late or duplicate packets not "
                                       "played", registry=r)
        self.frames_encoded = Counter("hopcodec_frames_encoded", "10 ms frames encoded", registry=r)
        self.errors = Counter("hopcodec_errors", "errors reported to clients, by kind",
                              ["kind"], registry=r)
        self.violations = Counter("hopcodec_limit_violations", "streams or requests refused or "
                                  "closed for a limit, by kind", ["kind"], registry=r)
        self.hop_seconds = Histogram("hopcodec_hop_processing_seconds", "codec work per 10 ms hop "
                                     "(one message's work divided by the hops it carried)",
                                     ["endpoint"], buckets=HOP_BUCKETS, registry=r)
        self.message_seconds = Histogram("hopcodec_message_processing_seconds", "codec work per "
                                         "WebSocket message, thread-pool wait excluded",
                                         ["endpoint"], buckets=HOP_BUCKETS, registry=r)
        self.queue_seconds = Histogram("hopcodec_message_wait_seconds", "wait for a free hop "
                                       "thread before a message's work starts",
                                       buckets=HOP_BUCKETS, registry=r)
        self.http_requests = Counter("hopcodec_http_requests", "HTTP requests to /v1/ by path and "
                                     "status", ["path", "status"], registry=r)

    def watch_graphs(self, batchers: Mapping[str, GraphBatcher]) -> None:
        """Export the runs and calls of these per-hop graphs (name -> batcher)."""
        self.registry.register(_GraphCollector(batchers))

    def watch_scheduler(self, scheduler: "HopScheduler") -> None:
        """Export the hop scheduler's decode passes and the messages they decoded."""
        self.registry.register(_SchedulerCollector(scheduler))

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class _GraphCollector:
    """hopcodec_graph_runs and hopcodec_graph_calls, read from the batchers at each scrape."""

    def __init__(self, batchers: Mapping[str, GraphBatcher]) -> None:
        self.batchers = dict(batchers)

    def collect(self) -> Iterator[CounterMetricFamily]:
        runs = CounterMetricFamily("hopcodec_graph_runs", "onnxruntime runs of each per-hop graph "
                                   "(the hops of streams decoded at once share a run)",
                                   labels=["graph"])
        calls = CounterMetricFamily("hopcodec_graph_calls", "streams' calls put through each "
                                    "per-hop graph (calls / runs: the mean batch)", labels=["graph"])
        for name, batcher in self.batchers.items():
            runs.add_metric([name], batcher.runs)
            calls.add_metric([name], batcher.calls)
        yield runs
        yield calls


class _SchedulerCollector:
    """hopcodec_decode_passes and hopcodec_decode_pass_messages, read from the scheduler."""

    def __init__(self, scheduler: "HopScheduler") -> None:
        self.scheduler = scheduler

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("hopcodec_decode_passes", "decode passes of the hop threads (a "
                                  "message decoded alone counts as one)",
                                  value=self.scheduler.passes)
        yield CounterMetricFamily("hopcodec_decode_pass_messages", "streams' decode messages those "
                                  "passes processed (messages / passes: the streams per pass)",
                                  value=self.scheduler.messages_together)
