"""Streams decoded at once share graph runs, and get what each would get alone."""

import threading
import time

import numpy as np
import onnxruntime
import pytest

from streaming_core.codec import encode_audio
from streaming_core.decoder import StreamDecoder
from streaming_core.graph_batcher import GraphBatcher
from streaming_core.modes import RELEASED
from streaming_core.neural_synth import NeuralSynthesizer


class GatedSession:
    """The released graph in onnxruntime, whose runs wait for a gate: calls that arrive while
    the first run waits queue in the batcher, so the test knows what each batch holds."""

    def __init__(self) -> None:
        self.session = onnxruntime.InferenceSession(str(RELEASED / "hopvocoder.onnx"),
                                                    providers=["CPUExecutionProvider"])
        self.gate = threading.Event()
        self.batches: list[int] = []

    def run(self, names, feed):
        self.gate.wait(timeout=60)
        self.batches.append(len(feed["features"]))
        if not np.isfinite(feed["features"]).all():  # a validating session, for the tests
            raise ValueError("features must be finite")
        return self.session.run(names, feed)


def _feed(rng: np.random.Generator, frames: int = 1) -> dict[str, np.ndarray]:
    return {"features": (0.3 * rng.standard_normal((1, frames, 20))).astype(np.float32),
            "bitrate": np.full((1, frames, 1), 1.6, np.float32),
            "noise": rng.standard_normal((1, frames, 160)).astype(np.float32),
            "gru_state": (0.1 * rng.standard_normal((1, 256))).astype(np.float32),
            "phase": rng.uniform(0, 6, (1, 1)),
            "enhancer_state": np.zeros((1, 128), np.float32)}


def _call_in_threads(batcher: GraphBatcher, session: GatedSession, feeds: list) -> list:
    """Every feed through `batcher` from a thread of its own: the first holds the gate while the
    others queue behind it; then the gate opens."""
    results: list = [None] * len(feeds)

    def call(i: int) -> None:
        try:
            results[i] = batcher.run(feeds[i])
        except Exception as error:  # the test reads it
            results[i] = error

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(feeds))]
    threads[0].start()
    while batcher.calls == 0 and not batcher.busy:
        time.sleep(0.001)
    for t in threads[1:]:
        t.start()
    deadline = time.monotonic() + 30
    while batcher.queued < len(feeds) - 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    session.gate.set()
    for t in threads:
        t.join(timeout=60)
    return results


def test_overlapping_calls_share_one_run_and_get_their_own_rows():
    session = GatedSession()
    batcher = GraphBatcher(session)
    rng = np.random.default_rng(1)
    feeds = [_feed(rng) for _ in range(6)] + [_feed(rng, frames=2)]
    results = _call_in_threads(batcher, session, feeds)
    # the leader alone; then the five queued one-frame calls together, and the two-frame call
    # alone (in either order: whichever waiting thread wakes first leads the next run)
    assert session.batches[0] == 1 and sorted(session.batches[1:]) == [1, 5]
    assert batcher.runs == 3 and batcher.calls == 7
    for feed, got in zip(feeds, results, strict=True):
        alone = session.session.run(None, feed)
        for a, g in zip(alone, got, strict=True):
            assert g.shape == a.shape
            np.testing.assert_allclose(g, a, atol=1e-5)


def test_a_failed_run_fails_every_caller_in_it_and_the_next_run_works():
    session = GatedSession()
    batcher = GraphBatcher(session)
    rng = np.random.default_rng(2)
    feeds = [_feed(rng) for _ in range(4)]
    for feed in feeds[1:]:
        feed["gru_state"] = feed["gru_state"][:, :100]  # wrong width: onnxruntime refuses it
    results = _call_in_threads(batcher, session, feeds)
    assert isinstance(results[0], list)
    assert all(isinstance(r, onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument)
               for r in results[1:])
    assert len(batcher.run(_feed(rng))) == 5


def test_a_call_that_fails_alone_does_not_fail_the_others_of_its_batch():
    session = GatedSession()
    batcher = GraphBatcher(session)
    rng = np.random.default_rng(3)
    feeds = [_feed(rng) for _ in range(4)]
    feeds[2]["features"][0, 0, 3] = np.nan
    results = _call_in_threads(batcher, session, feeds)
    # the leader alone, the three queued calls stacked (refused), then each of them alone
    assert session.batches == [1, 3, 1, 1, 1]
    assert isinstance(results[2], ValueError) and "finite" in str(results[2])
    for i in (0, 1, 3):
        for a, g in zip(session.session.run(None, feeds[i]), results[i], strict=True):
            np.testing.assert_allclose(g, a, atol=1e-5)


def test_max_batch_must_be_positive():
    with pytest.raises(ValueError, match="max_batch"):
        GraphBatcher(GatedSession(), max_batch=0)


def test_streams_decoded_in_threads_equal_each_decoded_alone(speech):
    synthesizer = NeuralSynthesizer(RELEASED / "hopvocoder.onnx")
    streams = [encode_audio(np.roll(speech[:48000], 4000 * k), "hop-1600", frames_per_packet=1)
               for k in range(6)]

    def decode(packets: list[bytes]) -> np.ndarray:
        decoder = StreamDecoder(synthesizer)
        return np.concatenate([decoder.decode(p) for p in packets])

    alone = [decode(packets) for packets in streams]
    together: list = [None] * len(streams)
    threads = [threading.Thread(target=lambda i=i: together.__setitem__(i, decode(streams[i])))
               for i in range(len(streams))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together, strict=True):
        assert b is not None and a.shape == b.shape
        np.testing.assert_allclose(b, a, atol=1e-4)
