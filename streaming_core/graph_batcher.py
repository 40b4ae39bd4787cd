"""Dynamic batching of one ONNX graph across streams: calls that overlap share one run.

Streams decoded from several threads at once (a library user's threads, the server's hop
threads when they decode messages one at a time) each call the per-hop graphs. Running a graph
once per stream pays onnxruntime's fixed cost per node every time and reads every weight from
memory every time; a GRU step for 16 streams costs little more than for one. (The server's main
path stacks its streams itself: `streaming_core/batch_decoder.py` passes one call of many rows,
which this runs as it is.) `GraphBatcher.run` lets the calls that arrive while a run is in
progress wait, then puts them all through the next run, stacked along the batch axis (axis 0
of every input and output of the graph). A lone caller never waits: with one stream, or one
thread, every batch holds one call and the graph runs exactly as `session.run` would.

Only calls whose inputs agree in every axis but the first (the same number of frames) go
through together; the others wait for the next run. This is the dynamic batching of serving
systems (e.g. Crankshaw et al., "Clipper", NSDI 2017, adaptive batching), with no timer: a
batch is whatever queued while the previous run took, so it adds no latency to an idle server.
"""

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

MAX_BATCH = 64
"""Most calls stacked into one run (bounds one run's time, and so the wait of the next)."""


@dataclass(eq=False)
class _Call:
    """One caller's inputs, and what came back for it."""

    feed: Mapping[str, np.ndarray]
    key: tuple | None = None
    """The inputs' names, dtypes and shapes past the batch axis: calls with equal keys can be
    stacked (computed only when calls overlap)."""
    outputs: list[np.ndarray] | None = None
    error: BaseException | None = None
    done: bool = False


class Session(Protocol):
    """What the batcher needs of an `onnxruntime.InferenceSession`."""

    def run(self, output_names: Any, input_feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The graph's outputs for `input_feed`."""


def _rows(feed: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(feed.values())))


def _batch_key(feed: Mapping[str, np.ndarray]) -> tuple:
    return tuple((name, value.shape[1:], value.dtype.str) for name, value in feed.items())


class GraphBatcher:
    """Runs an onnxruntime session for concurrent callers, stacking overlapping calls."""

    def __init__(self, session: Session, max_batch: int = MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.session = session
        self.max_batch = max_batch
        self._changed = threading.Condition()
        self._queue: list[_Call] = []
        self._running = False
        self.runs = 0
        """Graph runs so far."""
        self.calls = 0
        """Streams' calls served so far, counted as rows of the batch axis (a caller that stacks
        several streams itself counts as that many; calls / runs is the mean batch)."""

    @property
    def busy(self) -> bool:
        """A run is in progress."""
        return self._running

    @property
    def queued(self) -> int:
        """Calls waiting for the next run."""
        return len(self._queue)

    def run(self, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The graph's outputs for `feed`, as `session.run(None, feed)` gives them; every input
        has the batch on axis 0 (its own rows only come back)."""
        call = _Call(feed=feed)
        with self._changed:
            self._queue.append(call)
            while not call.done and self._running:
                self._changed.wait()
            if call.done:
                return self._result(call)
            batch = self._take(call)
            self._running = True
        try:
            self._execute(batch)
        finally:
            with self._changed:
                for c in batch:
                    c.done = True
                self.runs += 1
                self.calls += sum(_rows(c.feed) for c in batch)
                self._running = False
                self._changed.notify_all()
        return self._result(call)

    def _take(self, leader: _Call) -> list[_Call]:
        """The leader and the queued calls that can be stacked with it (lock held)."""
        if len(self._queue) == 1:
            self._queue = []
            return [leader]
        for c in self._queue:
            if c.key is None:
                c.key = _batch_key(c.feed)
        batch = [c for c in self._queue if c.key == leader.key][: self.max_batch]
        if leader not in batch:
            batch[-1] = leader
        self._queue = [c for c in self._queue if c not in batch]
        return batch

    def _execute(self, batch: list[_Call]) -> None:
        """One graph run for every call of `batch`; each call gets its rows. If the stacked run
        fails, each call runs alone, so that only a call that fails by itself gets an error."""
        if len(batch) > 1:
            try:
                stacked = {name: np.concatenate([c.feed[name] for c in batch])
                           for name in batch[0].feed}
                joint = self.session.run(None, stacked)
            except Exception:  # one bad call must not fail the others: run them one by one
                pass
            else:
                edges = np.cumsum([_rows(c.feed) for c in batch])[:-1]
                columns = [np.split(output, edges) for output in joint]
                for c, rows in zip(batch, zip(*columns, strict=True), strict=True):
                    c.outputs = list(rows)
                return
        for c in batch:
            try:
                c.outputs = self.session.run(None, c.feed)
            except Exception as error:  # the caller learns why its run failed
                c.error = error

    @staticmethod
    def _result(call: _Call) -> list[np.ndarray]:
        if call.error is not None:
            raise call.error
        assert call.outputs is not None
        return call.outputs
