"""Levinson-Durbin against a direct solve; the synthesis filter from any cepstrum is stable."""

import numpy as np
import pytest
from scipy.linalg import solve_toeplitz

from streaming_core.analysis import analyze_signal
from streaming_core.constants import LPC_ORDER, NB_BANDS
from streaming_core.lpc import autocorrelation_from_cepstrum, levinson, lpc_from_cepstrum


@pytest.mark.parametrize("seed", range(5))
def test_levinson_matches_direct_solve(seed):
    rng = np.random.default_rng(seed)
    x = np.convolve(rng.standard_normal(8000), rng.standard_normal(6), mode="same")
    r = np.array([x[: len(x) - k] @ x[k:] for k in range(LPC_ORDER + 1)]) / len(x)
    a, error = levinson(r)
    direct = solve_toeplitz(r[:LPC_ORDER], -r[1:])
    np.testing.assert_allclose(a[1:], direct, rtol=1e-8, atol=1e-10)
    assert error == pytest.approx(r[0] + a[1:] @ r[1:], rel=1e-9)


def test_levinson_of_silence_is_identity():
    a, error = levinson(np.zeros(LPC_ORDER + 1))
    assert a[0] == 1 and not a[1:].any() and error == 0


def _is_stable(a: np.ndarray) -> bool:
    return bool(np.all(np.abs(np.roots(a)) < 1.0))


def test_synthesis_filter_stable_on_real_speech(speech_clip):
    features = analyze_signal(speech_clip)
    for frame in features[::3]:
        a, residual = lpc_from_cepstrum(frame[:NB_BANDS])
        assert _is_stable(a)
        assert residual >= 0


def test_synthesis_filter_stable_on_random_cepstra():
    rng = np.random.default_rng(1)
    for _ in range(300):
        cepstrum = rng.normal(0, 3, NB_BANDS) * np.linspace(3, 0.3, NB_BANDS)
        a, residual = lpc_from_cepstrum(cepstrum)
        assert _is_stable(a), cepstrum
        assert residual >= 0


def test_autocorrelation_gives_signal_power():
    # White noise of known power: r[0] recovered from the cepstrum within a dB.
    rng = np.random.default_rng(2)
    noise = 0.1 * rng.standard_normal(16000)
    features = analyze_signal(noise)
    r0 = np.median([autocorrelation_from_cepstrum(f[:NB_BANDS])[0] for f in features[5:]])
    emphasized = noise[1:] - 0.85 * noise[:-1]
    assert 10 * np.log10(r0 / np.mean(emphasized**2)) == pytest.approx(0.0, abs=1.0)


def test_training_lpc_matches_the_runtime_on_real_and_near_silent_frames(speech_clip):
    """The decoder's training graph (torch) computes the same predictor as the runtime (numpy),
    also for near-silent and coded frames, where a float32 recursion used to give NaN."""
    torch = pytest.importorskip("torch")
    from models.vocoder.dsp import LpcFromCepstrum

    cepstra = analyze_signal(speech_clip)[:, :NB_BANDS].astype(np.float64)
    quiet = cepstra.copy()
    quiet[:, 0] = np.linspace(-27.0, -12.0, len(quiet))  # down to the energy floor
    frames = np.concatenate([cepstra, quiet])
    a_torch, error_torch = LpcFromCepstrum()(torch.from_numpy(frames.astype(np.float32)))
    assert torch.isfinite(a_torch).all() and torch.isfinite(error_torch).all()
    for frame, a_t, e_t in zip(frames.astype(np.float32), a_torch.numpy(), error_torch.numpy(), strict=True):
        a, error = lpc_from_cepstrum(frame.astype(np.float64))
        np.testing.assert_allclose(a_t, a, atol=2e-3)
        assert e_t == pytest.approx(max(error, 0.0), rel=1e-3, abs=1e-9)


def test_one_filter_equals_the_cascade_of_lpc_synthesis_and_deemphasis(speech_clip):
    """The decoder runs 1/A(z) and de-emphasis as one all-pole filter whose predictor changes
    every frame; a sample-by-sample cascade (each filter's own recursion, the LPC memory kept as
    its own past outputs) gives the same speech."""
    from streaming_core.constants import PREEMPHASIS
    from streaming_core.synthesis_filter import SynthesisFilterState, synthesis_filter

    rng = np.random.default_rng(3)
    frames = analyze_signal(speech_clip)[:120]
    state, combined, cascade = SynthesisFilterState(), [], []
    inner, previous = np.zeros(LPC_ORDER), 0.0  # cascade memories: 1/A outputs (newest first)
    for frame in frames:
        a, residual = lpc_from_cepstrum(frame[:NB_BANDS])
        excitation = rng.standard_normal(160) * np.sqrt(residual)
        combined.append(synthesis_filter(excitation, a, state))
        for x in excitation:
            e = x - a[1:] @ inner
            inner = np.r_[e, inner[:-1]]
            previous = e + PREEMPHASIS * previous
            cascade.append(previous)
    combined, cascade = np.concatenate(combined), np.array(cascade)
    assert np.abs(combined).max() > 0.01  # speech, not silence
    np.testing.assert_allclose(combined, cascade, atol=1e-9 * np.abs(cascade).max())
