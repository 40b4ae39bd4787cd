"""What every stream and request of one server process shares: settings, metrics, the
synthesizer, the hop threads and the stream slots."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from server.config import Settings
from server.hop_scheduler import HopScheduler
from server.limits import StreamSlots
from server.metrics import Metrics
from streaming_core.graph_batcher import GraphBatcher
from streaming_core.latency import latency_budget
from streaming_core.modes import released_predictor
from streaming_core.synthesizers import Synthesizer, default_synthesizer


@dataclass
class Service:
    """Shared state of one server process."""

    settings: Settings
    metrics: Metrics
    synthesizer: Synthesizer
    scheduler: HopScheduler | None
    """Runs the per-message codec work on the hop threads; None: on the event loop."""
    slots: StreamSlots
    latency_ms: float
    uploads: ThreadPoolExecutor
    """Codes whole files (POST), one at a time, so that uploads never hold up a stream's hops."""
    uploads_open: int = 0
    """POST requests in progress (at most `settings.max_uploads`)."""

    @classmethod
    def create(cls, settings: Settings) -> "Service":
        """A service with the default synthesizer and `settings.hop_threads` hop threads."""
        synthesizer = default_synthesizer()
        metrics = Metrics()
        metrics.watch_graphs(_graph_batchers(synthesizer))
        scheduler = HopScheduler(settings.hop_threads) if settings.hop_threads else None
        if scheduler is not None:
            metrics.watch_scheduler(scheduler)
        return cls(settings=settings, metrics=metrics, synthesizer=synthesizer, scheduler=scheduler,
                   slots=StreamSlots(settings.max_streams),
                   latency_ms=latency_budget(synthesizer)["total_ms"],
                   uploads=ThreadPoolExecutor(1, thread_name_prefix="upload"))

    @property
    def synthesizer_name(self) -> str:
        """Name of the synthesizer every stream decodes with."""
        return str(getattr(self.synthesizer, "name", type(self.synthesizer).__name__))

    @property
    def model_version(self) -> str:
        """Version of the decoder model (the synthesizer's name for a model-free one)."""
        return str(getattr(self.synthesizer, "version", self.synthesizer_name))

    def close(self) -> None:
        """Stop the hop and upload threads."""
        self.uploads.shutdown(wait=False, cancel_futures=True)
        if self.scheduler is not None:
            self.scheduler.shutdown()


def _graph_batchers(synthesizer: Synthesizer) -> dict[str, GraphBatcher]:
    """The per-hop graphs the streams share: the decoder's and the predictor's, when installed."""
    predictor = released_predictor()
    graphs = {"decoder": getattr(synthesizer, "batcher", None),
              "predictor": predictor.batcher if predictor is not None else None}
    return {name: batcher for name, batcher in graphs.items() if batcher is not None}
