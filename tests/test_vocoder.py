"""The neural decoder: ONNX parity on real speech, streaming, reset, stability on odd inputs."""

import copy

import numpy as np
import pytest

from streaming_core.analysis import analyze_signal
from streaming_core.codec import decode_features, decode_packets, encode_audio
from streaming_core.constants import HOP
from streaming_core.dsp_synth import DECODER_DELAY
from streaming_core.modes import RELEASED
from streaming_core.neural_synth import (
    C0_PER_DB,
    EASED_ENVELOPE,
    ENVELOPE_SUBFRAMES,
    HELD_ENVELOPE,
    INTERPOLATED_ENVELOPE,
    LEVEL_OVERSHOOT_DB,
    RAMPED_ENVELOPE,
    NeuralSynthesizer,
    hop_envelopes,
)

MODEL = RELEASED / "hopvocoder.onnx"


@pytest.fixture(scope="module")
def vocoder() -> NeuralSynthesizer:
    return NeuralSynthesizer(MODEL)


def _released_graph():
    pytest.importorskip("torch", reason="parity needs torch: pip install torch==2.13.0")
    from models.vocoder.export import load_checkpoint, load_enhancer
    from models.vocoder.model import HopDecoderGraph

    return HopDecoderGraph(load_checkpoint(RELEASED / "hopvocoder.pt"),
                           load_enhancer(RELEASED / "enhancer.pt")).eval()


def test_onnx_matches_torch_on_real_speech(speech, vocoder):
    import torch

    graph = _released_graph()
    features = analyze_signal(speech)[:150].astype(np.float32)
    rng = np.random.default_rng(0)
    state = vocoder.new_state()
    torch_states = [torch.zeros(1, vocoder.hidden), torch.zeros(1, 1, dtype=torch.float64),
                    torch.zeros(1, vocoder.enhancer_hidden)]
    worst = 0.0
    with torch.no_grad():
        for frame in features:  # one hop per call, as a live stream runs it
            noise = rng.standard_normal((1, 1, 160)).astype(np.float32)
            bitrate = np.full((1, 1, 1), 1.6, np.float32)
            got = vocoder.session.run(None, {
                "features": frame[None, None], "bitrate": bitrate, "noise": noise,
                "gru_state": state.gru_state, "phase": state.phase,
                "enhancer_state": state.enhancer_state})
            expected = graph(torch.from_numpy(frame[None, None]), torch.from_numpy(bitrate),
                             torch.from_numpy(noise), *torch_states)
            worst = max(worst, *(float(np.abs(e.numpy() - g).max())
                                 for e, g in zip(expected, got, strict=True)))
            _, _, state.gru_state, state.phase, state.enhancer_state = got
            torch_states = list(expected[2:])
    assert worst < 1e-3


def test_enhancer_corrects_coarse_modes_more_and_is_causal(speech, vocoder):
    features, _ = decode_features(encode_audio(speech[:32000], "hop-800"))
    _, coarse = vocoder.run_graph(features, vocoder.new_state(), 800)
    _, fine = vocoder.run_graph(features, vocoder.new_state(), None)
    # Told the frames came through the 800 bit/s mode, it corrects them more than when told
    # they are unquantized.
    assert np.abs(coarse - features[:, :18]).mean() > 1.5 * np.abs(fine - features[:, :18]).mean()
    # Frame t's cepstrum depends on frames up to t only.
    altered = features.copy()
    altered[60:] += 0.5
    _, altered_coarse = vocoder.run_graph(altered, vocoder.new_state(), 800)
    np.testing.assert_allclose(altered_coarse[:60], coarse[:60], atol=1e-5)


def test_hop_by_hop_equals_whole_utterance(speech, vocoder):
    features = analyze_signal(speech[:24000])
    whole = vocoder.synthesize(features, vocoder.new_state())
    state = vocoder.new_state()
    hops = np.concatenate([vocoder.synthesize(f[None], state) for f in features])
    # One call for many hops runs the same graph; float32 matrix products may round apart.
    np.testing.assert_allclose(hops, whole, atol=1e-5)


def test_reset_and_priming(speech, vocoder):
    features = analyze_signal(speech[:16000])
    fresh = vocoder.synthesize(features, vocoder.new_state())
    state = vocoder.new_state()
    vocoder.synthesize(features[:40], state)
    primed = copy.deepcopy(state)
    # A primed state continues like the uninterrupted stream...
    np.testing.assert_allclose(vocoder.synthesize(features[40:], primed), fresh[40 * 160 :],
                               atol=1e-5)
    # ... and a new state reproduces the fresh output exactly.
    np.testing.assert_array_equal(vocoder.synthesize(features, vocoder.new_state()), fresh)


def test_envelope_moves_from_the_previous_hop_without_lookahead(monkeypatch):
    # Each piece of the hop takes the cepstrum interpolated at its start between the previous
    # frame's analysis centre (160 samples before this frame's) and this frame's; past this
    # frame's centre (the hop's second half) it holds this frame's: no lookahead.
    import streaming_core.neural_synth as neural_synth

    scheme = INTERPOLATED_ENVELOPE
    assert sum(length for length, _ in ENVELOPE_SUBFRAMES.pieces) == HOP
    assert sum(length for length, _ in scheme.pieces) == HOP
    start = 0
    for length, weight in scheme.pieces:
        position = start - DECODER_DELAY  # relative to this frame's analysis centre
        assert weight == (1.0 if position >= 0 else pytest.approx(1 + position / HOP))
        start += length
    monkeypatch.setattr(neural_synth, "ENVELOPE_SUBFRAMES", scheme)
    previous, current = np.zeros(18), np.linspace(-1, 1, 18)
    pieces = hop_envelopes(current, previous)
    np.testing.assert_allclose(pieces[0][1], scheme.pieces[0][1] * current)
    assert pieces[-1][1] is current
    assert hop_envelopes(current, None) == [(HOP, current)]  # a stream's first hop holds


def test_ramped_envelope_runs_through_the_frame_centre(monkeypatch):
    # Each piece sits on the straight line through the previous and this frame's envelopes at
    # the piece's middle (weight 1 + t / HOP, t from this frame's analysis centre): the ramp is
    # centred on the frame, and past the centre it extrapolates from the two frames (no lookahead).
    import streaming_core.neural_synth as neural_synth

    monkeypatch.setattr(neural_synth, "ENVELOPE_SUBFRAMES", RAMPED_ENVELOPE)
    assert sum(length for length, _ in RAMPED_ENVELOPE.pieces) == HOP
    start = 0
    for length, weight in RAMPED_ENVELOPE.pieces:
        middle = start + length / 2 - DECODER_DELAY
        assert weight == pytest.approx(1 + middle / HOP)
        start += length
    previous, current = np.zeros(18), np.linspace(-1, 1, 18)
    pieces = hop_envelopes(current, previous)
    assert [length for length, _ in pieces] == [length for length, _ in RAMPED_ENVELOPE.pieces]
    np.testing.assert_allclose(pieces[-1][1], 1.375 * current)  # past this frame: extrapolated
    # A hop whose envelope did not move holds it.
    for _, envelope in hop_envelopes(current, current.copy()):
        np.testing.assert_allclose(envelope, current)
    # A sudden 40 dB onset: the extrapolated level stops LEVEL_OVERSHOOT_DB above the new one.
    onset = current.copy()
    onset[0] += 40 * C0_PER_DB
    levels = [envelope[0] for _, envelope in hop_envelopes(onset, current)]
    assert levels[-1] == pytest.approx(onset[0] + LEVEL_OVERSHOOT_DB * C0_PER_DB)
    assert levels[0] < levels[1] < onset[0] < levels[2] <= levels[3]


def test_the_released_envelope_eases_every_hop_but_the_onsets():
    # Decoder version 12: a hop whose level falls, stays or rises by less than 1 dB starts with
    # an envelope three quarters of the way from the previous hop's, for 40 samples, then holds
    # its own; a hop whose level rises by 1 dB or more (an onset) holds its own for the whole
    # hop, so no onset is heard late.
    assert ENVELOPE_SUBFRAMES is EASED_ENVELOPE
    assert sum(length for length, _ in EASED_ENVELOPE.pieces) == HOP
    previous = np.linspace(-1, 1, 18)
    for rise_db in (-20.0, 0.0, 0.9):
        current = np.linspace(1, -1, 18)
        current[0] = previous[0] + rise_db * C0_PER_DB
        pieces = hop_envelopes(current, previous)
        assert [length for length, _ in pieces] == [40, HOP - 40]
        np.testing.assert_allclose(pieces[0][1], 0.75 * current + 0.25 * previous)
        assert pieces[1][1] is current
    for rise_db in (1.0, 30.0):
        onset = np.linspace(1, -1, 18)
        onset[0] = previous[0] + rise_db * C0_PER_DB
        assert hop_envelopes(onset, previous) == [(HOP, onset)]  # held
    assert hop_envelopes(previous, None) == [(HOP, previous)]  # a stream's first hop holds


@pytest.mark.parametrize("scheme", ["RAMPED_ENVELOPE", "INTERPOLATED_ENVELOPE", "EASED_ENVELOPE"])
def test_synthesis_moves_the_envelope_within_the_hop(speech, vocoder, monkeypatch, scheme):
    import streaming_core.neural_synth as neural_synth

    features = analyze_signal(speech[:16000])
    monkeypatch.setattr(neural_synth, "ENVELOPE_SUBFRAMES", HELD_ENVELOPE)
    held = vocoder.synthesize(features, vocoder.new_state())
    monkeypatch.setattr(neural_synth, "ENVELOPE_SUBFRAMES", getattr(neural_synth, scheme))
    moved = vocoder.synthesize(features, vocoder.new_state())
    # The first hop has no previous one and holds its envelope either way; later hops move.
    np.testing.assert_array_equal(moved[:HOP], held[:HOP])
    assert np.abs(moved[HOP:] - held[HOP:]).max() > 1e-3


def test_older_graph_layout_is_refused(tmp_path):
    import json
    import shutil

    from streaming_core.errors import HopcodecError

    shutil.copy(MODEL, tmp_path / "old.onnx")
    metadata = json.loads(MODEL.with_suffix(".json").read_text())
    del metadata["inputs"]["bitrate"]
    (tmp_path / "old.json").write_text(json.dumps(metadata))
    with pytest.raises(HopcodecError, match="older layout"):
        NeuralSynthesizer(tmp_path / "old.onnx")


def _odd_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    t = np.arange(32000) / 16000
    chord = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6, 440.0, 880.0))
    from scipy.signal import butter, sosfilt

    narrow = sosfilt(butter(8, 3800, fs=16000, output="sos"), rng.standard_normal(32000) * 0.2)
    return {
        "silence": np.zeros(32000),
        "white_noise": 0.3 * rng.standard_normal(32000),
        "music_chord": chord,
        "clipped": np.clip(4 * chord, -1, 1),
        "band_limited_8k_rate": narrow,
        "dc_offset": np.full(32000, 0.5),
    }


@pytest.mark.parametrize("name", list(_odd_inputs()))
def test_output_stays_bounded_and_stable(vocoder, name):
    signal = _odd_inputs()[name]
    decoded = decode_packets(encode_audio(signal), len(signal), vocoder)
    assert np.all(np.isfinite(decoded))
    assert np.max(np.abs(decoded)) <= 1.0
    rms_in, rms_out = np.sqrt(np.mean(signal**2)), np.sqrt(np.mean(decoded**2))
    assert rms_out <= 4 * rms_in + 1e-3
    # No growth: the last second is not much louder than the first.
    half = len(decoded) // 2
    assert np.sqrt(np.mean(decoded[half:] ** 2)) <= 3 * np.sqrt(np.mean(decoded[:half] ** 2)) + 1e-3
