"""The neural decoder: ONNX parity on real speech, streaming, reset, stability on odd inputs."""

import copy

import numpy as np
import pytest

from streaming_core.analysis import analyze_signal
from streaming_core.codec import decode_packets, encode_audio
from streaming_core.modes import RELEASED
from streaming_core.neural_synth import NeuralSynthesizer

MODEL = RELEASED / "hopvocoder.onnx"


@pytest.fixture(scope="module")
def vocoder() -> NeuralSynthesizer:
    return NeuralSynthesizer(MODEL)


def test_onnx_matches_torch_on_real_speech(speech, vocoder):
    torch = pytest.importorskip("torch", reason="parity needs torch: pip install torch==2.13.0")
    from models.vocoder.export import load_checkpoint
    from models.vocoder.model import HopVocoderStep

    step = HopVocoderStep(load_checkpoint(RELEASED / "hopvocoder.pt")).eval()
    features = analyze_signal(speech)[:150].astype(np.float32)
    rng = np.random.default_rng(0)
    state = vocoder.new_state()
    torch_state, torch_phase = torch.zeros(1, vocoder.hidden), torch.zeros(1, 1)
    worst = 0.0
    with torch.no_grad():
        for frame in features:
            noise = rng.standard_normal((1, 160)).astype(np.float32)
            got, state.gru_state, state.phase = vocoder.session.run(None, {
                "features": frame[None], "noise": noise, "gru_state": state.gru_state,
                "phase": state.phase})
            expected, torch_state, torch_phase = step(torch.from_numpy(frame[None]),
                                                      torch.from_numpy(noise), torch_state, torch_phase)
            worst = max(worst, float(np.abs(expected.numpy() - got).max()))
    assert worst < 1e-3


def test_hop_by_hop_equals_whole_utterance(speech, vocoder):
    features = analyze_signal(speech[:24000])
    whole = vocoder.synthesize(features, vocoder.new_state())
    state = vocoder.new_state()
    hops = np.concatenate([vocoder.synthesize(f[None], state) for f in features])
    np.testing.assert_array_equal(whole, hops)


def test_reset_and_priming(speech, vocoder):
    features = analyze_signal(speech[:16000])
    fresh = vocoder.synthesize(features, vocoder.new_state())
    state = vocoder.new_state()
    vocoder.synthesize(features[:40], state)
    primed = copy.deepcopy(state)
    # A primed state continues exactly like the uninterrupted stream...
    np.testing.assert_array_equal(vocoder.synthesize(features[40:], primed), fresh[40 * 160 :])
    # ... and a new state reproduces the fresh output.
    np.testing.assert_array_equal(vocoder.synthesize(features, vocoder.new_state()), fresh)


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
