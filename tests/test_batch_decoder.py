"""Several streams decoded together equal each stream decoded alone, whatever happens to them."""

import numpy as np
import pytest

from streaming_core.audio_io import load_for_codec
from streaming_core.batch_decoder import decode_together
from streaming_core.codec import encode_audio
from streaming_core.decoder import StreamDecoder
from streaming_core.errors import BitstreamError
from streaming_core.modes import released_predictor
from streaming_core.synthesizers import load_synthesizer
from tests.conftest import CLIPS, telephone_band

MODES = ["hop-1600", "hop-800", "hop-3200", "scalar-2400", "hop-1600", "hop-2400", "hop-1600"]


def _streams() -> list[list[bytes | None]]:
    """Each stream's packet (or None: nothing from it) at each step, with trouble mixed in."""
    streams = []
    for i, mode in enumerate(MODES):
        speech = load_for_codec(CLIPS[i % len(CLIPS)])[0]
        if i == 6:
            speech = telephone_band(speech)             # packets flagged NARROWBAND
        streams.append(list(encode_audio(speech, mode, frames_per_packet=2 if i == 5 else 1)))
    streams[1][30:33] = [None] * 3                      # lost: concealed before packet 33
    streams[2].insert(41, streams[2][40])               # a duplicate: dropped
    streams[5][:25] = [None] * 25                       # joined late: silence until a reset
    streams[4][60] = streams[4][60][:-1]                # truncated: refused, state kept
    rng = np.random.default_rng(7)
    garbled = bytearray(streams[0][70])
    garbled[6:] = rng.integers(0, 256, len(garbled) - 6, dtype=np.uint8).tobytes()
    streams[0][70] = bytes(garbled)                     # garbage payload of a valid length
    return streams


@pytest.mark.parametrize("synthesizer", ["neural", "dsp"])
def test_streams_decoded_together_equal_each_decoded_alone(synthesizer: str) -> None:
    synth = load_synthesizer(synthesizer)
    streams = _streams()
    alone = [StreamDecoder(synth) for _ in streams]
    together = [StreamDecoder(synth) for _ in streams]
    errors = 0
    for step in range(max(len(s) for s in streams)):
        active = [i for i, s in enumerate(streams) if step < len(s) and s[step] is not None]
        expected = []
        for i in active:
            try:
                expected.append(alone[i].decode(streams[i][step]))
            except BitstreamError as error:
                expected.append(error)
        got = decode_together([together[i] for i in active], [streams[i][step] for i in active])
        for want, have in zip(expected, got, strict=True):
            if isinstance(want, BitstreamError):
                assert isinstance(have, BitstreamError) and str(have) == str(want)
                errors += 1
            else:
                assert isinstance(have, np.ndarray) and have.shape == want.shape
                np.testing.assert_allclose(have, want, atol=2e-5)
    assert errors >= 1  # the truncated packet at least
    for a, t in zip(alone, together, strict=True):
        for counter in ("frames_decoded", "frames_concealed", "frames_unsynced", "packets_dropped",
                        "next_frame"):
            assert getattr(t.state, counter) == getattr(a.state, counter), counter
    assert together[1].state.frames_concealed == 3
    assert together[2].state.packets_dropped == 1
    assert together[5].state.frames_unsynced > 0
    assert together[6].state.band_limiter.narrowband


def test_one_predictor_run_and_one_decoder_run_for_all_streams() -> None:
    synth = load_synthesizer("neural")
    predictor = released_predictor()
    assert predictor is not None
    speech = load_for_codec(CLIPS[0])[0][:16000]
    modes = ["hop-1600", "hop-800", "hop-2400", "hop-1600"]
    streams = [encode_audio(speech, mode, 1) for mode in modes]
    decoders = [StreamDecoder(synth) for _ in streams]
    decode_together(decoders, [s[0] for s in streams])
    runs, calls = synth.batcher.runs, synth.batcher.calls
    predictor_runs = predictor.batcher.runs
    decode_together(decoders, [s[1] for s in streams])
    assert (synth.batcher.runs - runs, synth.batcher.calls - calls) == (1, len(streams))
    assert predictor.batcher.runs - predictor_runs == 1


def test_a_stream_twice_in_one_call_is_refused(speech: np.ndarray) -> None:
    decoder = StreamDecoder(load_synthesizer("dsp"))
    packets = encode_audio(speech[:3200], "hop-1600", 1)
    with pytest.raises(ValueError, match="one packet per stream"):
        decode_together([decoder, decoder], packets[:2])


def test_a_failing_graph_run_leaves_every_stream_where_it_was(monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    """The server decodes each message alone after a joint pass raised: for that, the pass must
    not have moved any stream on (else the packet would be dropped as a duplicate)."""
    synth = load_synthesizer("neural")
    speech = load_for_codec(CLIPS[0])[0][:8000]
    streams = [encode_audio(speech, mode, 1) for mode in ("hop-1600", "hop-800")]
    decoders = [StreamDecoder(synth) for _ in streams]
    decode_together(decoders, [s[0] for s in streams])
    before = [(d.state.next_frame, d.state.frames_decoded,
               {k: v.previous.copy() for k, v in d.state.quantizer_states.items()}) for d in decoders]

    def broken(feed: dict) -> list:
        raise RuntimeError("onnxruntime failed")

    with monkeypatch.context() as patch:
        patch.setattr(synth.batcher, "run", broken)
        with pytest.raises(RuntimeError, match="onnxruntime failed"):
            decode_together(decoders, [s[1] for s in streams])
    for decoder, (next_frame, decoded, previous) in zip(decoders, before, strict=True):
        assert (decoder.state.next_frame, decoder.state.frames_decoded) == (next_frame, decoded)
        for key, frame in previous.items():
            np.testing.assert_array_equal(decoder.state.quantizer_states[key].previous, frame)
    for decoder, stream in zip(decoders, streams, strict=True):  # each alone, as the server retries
        assert len(decoder.decode(stream[1])) == 160 and decoder.state.packets_dropped == 0
