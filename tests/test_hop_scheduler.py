"""The server's hop threads: decode messages waiting at the same time go through one pass."""

import threading

import numpy as np
import pytest

from server.hop_scheduler import HopScheduler
from server.sessions import DecodeSession, Work
from streaming_core.audio_io import load_for_codec
from streaming_core.codec import encode_audio
from streaming_core.constants import SAMPLE_RATE
from streaming_core.errors import BitstreamError
from streaming_core.synthesizers import load_synthesizer
from tests.conftest import CLIPS


def _held(scheduler: HopScheduler) -> threading.Event:
    """Occupy the scheduler's only thread until the returned event is set."""
    gate, running = threading.Event(), threading.Event()

    def hold() -> None:
        running.set()
        gate.wait(30)

    scheduler.run(hold)
    assert running.wait(30)
    return gate


def _packets(count: int) -> list[list[bytes]]:
    speech = load_for_codec(CLIPS[0])[0][: SAMPLE_RATE // 2]
    return [encode_audio(speech * (0.5 + 0.1 * i), "hop-1600", 1) for i in range(count)]


def test_waiting_decode_messages_go_through_one_pass_and_equal_each_alone() -> None:
    synth = load_synthesizer("neural")
    streams = _packets(5)
    scheduler = HopScheduler(threads=1)
    try:
        sessions = [DecodeSession(synth, SAMPLE_RATE) for _ in streams]
        references = [DecodeSession(synth, SAMPLE_RATE) for _ in streams]
        for step in range(3):
            gate = _held(scheduler)
            passes = scheduler.passes
            jobs = [scheduler.process(s, p[step]) for s, p in zip(sessions, streams, strict=True)]
            gate.set()
            for job, reference, packets in zip(jobs, references, streams, strict=True):
                work, started, ended = job.result(30)
                expected = reference.process(packets[step])
                assert started <= ended and work.decoded == expected.decoded == 1
                got = np.frombuffer(work.messages[0], np.int16).astype(int)
                want = np.frombuffer(expected.messages[0], np.int16).astype(int)
                assert len(got) == len(want) and np.abs(got - want).max() <= 1
            assert scheduler.passes == passes + 1
    finally:
        scheduler.shutdown()


def test_a_bad_message_fails_alone_and_a_stream_waits_for_its_own_turn() -> None:
    synth = load_synthesizer("dsp")
    first, second = _packets(2)
    scheduler = HopScheduler(threads=1)
    try:
        a, b, c = (DecodeSession(synth, SAMPLE_RATE) for _ in range(3))
        gate = _held(scheduler)
        passes, messages = scheduler.passes, scheduler.messages_together
        jobs = [scheduler.process(a, first[0]), scheduler.process(a, first[1]),
                scheduler.process(b, b"\x00garbage"), scheduler.process(c, second[0])]
        gate.set()
        with pytest.raises(BitstreamError):
            jobs[2].result(30)
        assert all(isinstance(job.result(30)[0], Work) for job in (jobs[0], jobs[1], jobs[3]))
        # a's second message waited for a pass of its own, after its first
        assert (scheduler.passes - passes, scheduler.messages_together - messages) == (2, 4)
        assert a.decoding.decoder.state.frames_decoded == 2
    finally:
        scheduler.shutdown()


class _Flaky:
    """A session kind whose joint pass fails (a bug), and one of whose messages fails alone."""

    def process(self, data: bytes) -> Work:
        if data == b"bad":
            raise ValueError("this message fails by itself")
        return Work(hops=1, messages=[data])

    @staticmethod
    def process_together(sessions: list, messages: list[bytes]) -> list[Work]:
        raise RuntimeError("a bug in the joint pass")


def test_a_failing_joint_pass_processes_each_message_alone() -> None:
    scheduler = HopScheduler(threads=1)
    try:
        gate = _held(scheduler)
        jobs = [scheduler.process(_Flaky(), data) for data in (b"one", b"bad", b"two")]  # type: ignore[arg-type]
        gate.set()
        assert jobs[0].result(30)[0].messages == [b"one"]
        assert jobs[2].result(30)[0].messages == [b"two"]
        with pytest.raises(ValueError, match="fails by itself"):
            jobs[1].result(30)
    finally:
        scheduler.shutdown()


def test_work_runs_on_a_hop_thread_and_shutdown_refuses_more() -> None:
    scheduler = HopScheduler(threads=2)
    result, started, ended = scheduler.run(threading.current_thread).result(30)
    assert result.name.startswith("hop-") and started <= ended
    scheduler.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        scheduler.run(print)
