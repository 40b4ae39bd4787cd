"""The background postfilter (`streaming_core.background`) on real speech's envelopes."""

import numpy as np
import pytest
from scipy.fft import dct

from streaming_core import background
from streaming_core.analysis import analyze_signal
from streaming_core.background import DEPTH_DB, BackgroundState, lower_background
from streaming_core.constants import NB_BANDS
from streaming_core.spectrum import log_energies_from_cepstrum


def _lowered_db(cepstra: np.ndarray, state: BackgroundState | None = None) -> np.ndarray:
    """(hops, NB_BANDS) how far (dB) the postfilter lowered each band of each hop."""
    state = BackgroundState() if state is None else state
    out = np.stack([lower_background(c, state) for c in cepstra])
    return 10 * (log_energies_from_cepstrum(cepstra) - log_energies_from_cepstrum(out))


@pytest.fixture(scope="module")
def speech_cepstra(speech: np.ndarray) -> np.ndarray:
    return analyze_signal(speech[:48000])[:, :NB_BANDS].astype(np.float64)


def test_it_never_raises_a_band_nor_lowers_one_by_more_than_its_depth(speech_cepstra):
    lowered = _lowered_db(speech_cepstra)
    assert lowered.min() > -1e-9
    assert lowered.max() <= DEPTH_DB + 1e-9
    assert lowered.max() > 1.0  # the speech's pauses and quiet bands are lowered


def test_a_steady_background_is_lowered_and_the_speech_over_it_kept(speech_cepstra):
    rng = np.random.default_rng(1)
    hum = speech_cepstra.min(axis=0) + 0.05 * rng.standard_normal((100, NB_BANDS))
    cepstra = np.concatenate((hum, speech_cepstra[:100]))
    lowered = _lowered_db(cepstra)
    assert lowered[60:100].mean() > 0.9 * DEPTH_DB  # the background alone, after a few hops
    levels = 10 * log_energies_from_cepstrum(cepstra)
    loud = levels[100:] > levels[:100].max(axis=0) + 20  # speech bands far above the floor
    assert loud.sum() > 100
    # a band 20 dB above its floor keeps its level once the absence has decayed
    assert np.median(lowered[100:][loud]) < 0.5


def test_a_reset_state_decodes_as_a_fresh_one(speech_cepstra):
    used = BackgroundState()
    _lowered_db(speech_cepstra[::-1], used)
    fresh = _lowered_db(speech_cepstra)
    assert not np.allclose(_lowered_db(speech_cepstra, used), fresh)
    np.testing.assert_array_equal(_lowered_db(speech_cepstra, BackgroundState()), fresh)


def _flat(level_db: float) -> np.ndarray:
    """The cepstrum of an envelope at `level_db` in every band."""
    return dct(np.full(NB_BANDS, level_db / 10.0), type=2, norm="ortho")


def test_the_floor_forgets_levels_older_than_its_window(monkeypatch):
    monkeypatch.setattr(background, "FLOOR_HOPS", 10)
    state = BackgroundState()
    lower_background(_flat(-70.0), state)  # one quiet hop, then 30 loud ones
    lowered = _lowered_db(np.stack([_flat(-30.0)] * 30), state)
    # while the quiet hop is in the window it is the floor: the loud hops are present
    assert np.abs(lowered[:9]).max() < 1e-9
    # after it the loud hops are their own floor: background only, lowered to the depth
    assert lowered[-1].min() > 0.95 * DEPTH_DB


def test_with_no_depth_the_envelope_passes_unchanged(speech_cepstra, monkeypatch):
    monkeypatch.setattr(background, "DEPTH_DB", 0.0)
    state = BackgroundState()
    out = np.stack([lower_background(c, state) for c in speech_cepstra])
    np.testing.assert_allclose(out, speech_cepstra, atol=1e-9)


def test_an_onset_after_a_long_background_is_not_held_down():
    state = BackgroundState()
    lowered = _lowered_db(np.stack([_flat(-70.0)] * 50 + [_flat(-30.0)] * 3), state)
    assert lowered[49].min() > 0.95 * DEPTH_DB  # the background, lowered
    assert np.abs(lowered[50:]).max() < 1e-9  # the onset hop and after: as decoded


def test_the_decoder_lowers_the_low_rates_only(speech, monkeypatch):
    from streaming_core.modes import RELEASED
    from streaming_core.neural_synth import NeuralSynthesizer

    synthesizer = NeuralSynthesizer(RELEASED / "hopvocoder.onnx")
    features = analyze_signal(speech[:24000])

    def decoded(rate: float | None) -> np.ndarray:
        return synthesizer.synthesize(features, synthesizer.new_state(), rate)

    rates = (800, 1600, 2400, None)
    on = {rate: decoded(rate) for rate in rates}
    monkeypatch.setattr(background, "DEPTH_DB", 0.0)
    off = {rate: decoded(rate) for rate in rates}
    for rate in (800, 1600):  # at or below MAX_BITRATE_BPS: lowered
        assert np.abs(on[rate] - off[rate]).max() > 1e-4
    for rate in (2400, None):  # above it, and unquantized features: as decoded, sample for sample
        np.testing.assert_array_equal(on[rate], off[rate])
