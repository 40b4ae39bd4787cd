"""The hop threads: the streams' codec work, with waiting decode messages decoded together.

Every stream hands its messages here, one at a time (a connection awaits each message's work
before it reads the next). A hop thread takes the oldest job; if it is a decode message, it
also takes every other decode message waiting at that moment (one per stream) and decodes them
in one pass (`DecodeSession.process_together`, built on `streaming_core.batch_decoder`): the
predictor and the decoder graph run once for all of them instead of once per stream, and no
thread waits on another in the middle of a hop. Like the graph batcher this replaces as the
server's way of sharing graph runs, it has no timer: a lone stream's message is decoded at
once, and a batch is whatever arrived while the threads were busy (Crankshaw et al.,
"Clipper", NSDI 2017, adaptive batching).

If a batch fails as a whole (a bug, not a bad packet: those are answered per stream), each of
its messages is processed alone, so that only the stream whose message fails gets the error.
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from server.sessions import Session

log = logging.getLogger("hopcodec.server")

MAX_BATCH = 64
"""Most decode messages put through one pass (bounds a pass's time, and so the next one's wait)."""

Timed = tuple[Any, float, float]
"""A job's result with the perf_counter times its work started and ended."""


@dataclass(eq=False)
class _Job:
    future: Future
    function: Callable[..., Any] | None = None
    args: tuple = ()
    session: Session | None = None
    """Set for a binary message of a session that can process messages together."""
    data: bytes = b""


class HopScheduler:
    """`threads` hop threads running the streams' codec work (see the module docstring)."""

    def __init__(self, threads: int, max_batch: int = MAX_BATCH) -> None:
        if threads < 1 or max_batch < 1:
            raise ValueError(f"threads and max_batch must be at least 1, got {threads}, {max_batch}")
        self.max_batch = max_batch
        self._jobs: deque[_Job] = deque()
        self._changed = threading.Condition()
        self._stopping = False
        self.passes = 0
        """Decode passes so far (a message alone counts as one; `/metrics`)."""
        self.messages_together = 0
        """Decode messages those passes processed (messages / passes: the mean batch)."""
        self._threads = [threading.Thread(target=self._serve, name=f"hop-{i}", daemon=True)
                         for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def run(self, function: Callable[..., Any], *args: Any) -> "Future[Timed]":
        """`function(*args)` on a hop thread."""
        return self._add(_Job(Future(), function=function, args=args))

    def process(self, session: Session, data: bytes) -> "Future[Timed]":
        """`session.process(data)` on a hop thread, together with other streams' messages
        waiting at the same time when the session can (`process_together`)."""
        if not hasattr(session, "process_together"):
            return self.run(session.process, data)
        return self._add(_Job(Future(), session=session, data=data))

    def shutdown(self) -> None:
        """Finish the jobs already queued, then stop the threads; later jobs are refused."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()

    def _add(self, job: _Job) -> "Future[Timed]":
        with self._changed:
            if self._stopping:
                raise RuntimeError("the hop scheduler is shut down")
            self._jobs.append(job)
            self._changed.notify()
        return job.future

    def _serve(self) -> None:
        while True:
            with self._changed:
                while not self._jobs and not self._stopping:
                    self._changed.wait()
                if not self._jobs:
                    return
                jobs = self._take()
            if jobs[0].session is None:
                self._run_alone(jobs[0])
            else:
                self._process_together(jobs)

    def _take(self) -> list[_Job]:
        """The oldest job, and with a decode message every other waiting message of the same
        kind of session (one per session), in arrival order (lock held)."""
        first = self._jobs.popleft()
        if first.session is None:
            return [first]
        kind, taken, rest = type(first.session), [first], deque()
        sessions = {id(first.session)}
        while self._jobs:
            job = self._jobs.popleft()
            if (len(taken) < self.max_batch and job.session is not None
                    and type(job.session) is kind and id(job.session) not in sessions):
                taken.append(job)
                sessions.add(id(job.session))
            else:
                rest.append(job)
        self._jobs = rest
        return taken

    @staticmethod
    def _run_alone(job: _Job) -> None:
        if job.future.set_running_or_notify_cancel():
            _execute(job)

    def _process_together(self, jobs: list[_Job]) -> None:
        jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        if not jobs:
            return
        with self._changed:
            self.passes += 1
            self.messages_together += len(jobs)
        if len(jobs) == 1:
            _execute(jobs[0])
            return
        started = time.perf_counter()
        try:
            process_together = type(jobs[0].session).process_together  # type: ignore[union-attr]
            results = process_together([job.session for job in jobs], [job.data for job in jobs])
        except Exception:  # a bug in the joint pass: each message alone, so only its own fails
            log.exception("decoding %d messages together failed; decoding each alone", len(jobs))
            for job in jobs:
                _execute(job)
            return
        ended = time.perf_counter()
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result((result, started, ended))


def _execute(job: _Job) -> None:
    """Run one job (already marked running) and settle its future."""
    started = time.perf_counter()
    try:
        if job.function is not None:
            result = job.function(*job.args)
        else:
            assert job.session is not None
            result = job.session.process(job.data)
    except BaseException as error:  # the stream's own task learns why
        job.future.set_exception(error)
    else:
        job.future.set_result((result, started, time.perf_counter()))
