"""Training pieces of the neural decoder: the feature enhancer, the adversarial loss, the noise
source's pulse envelope and the differentiable LPC filter."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs torch: pip install torch==2.13.0")

from models.vocoder.discriminator import (  # noqa: E402
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    discriminator_loss,
    generator_losses,
)
from models.vocoder.enhancer import FeatureEnhancer, unquantized_bitrate  # noqa: E402
from models.vocoder.model import HopVocoder  # noqa: E402
from models.vocoder.train import Adversary, main  # noqa: E402
from models.vocoder.train_enhancer import enhancer_loss, trajectory_mse  # noqa: E402
from streaming_core.analysis import analyze_signal  # noqa: E402
from streaming_core.constants import CORR_INDEX  # noqa: E402


def test_untrained_enhancer_is_the_identity(speech):
    features = torch.from_numpy(analyze_signal(speech[:16000]).astype(np.float32))[None]
    enhanced, state = FeatureEnhancer(hidden=32)(features, unquantized_bitrate(features))
    torch.testing.assert_close(enhanced, features)
    assert state.shape == (1, 32)


def test_trajectory_loss_punishes_jitter_not_offsets(speech):
    clean = torch.from_numpy(analyze_signal(speech[:16000]).astype(np.float32))[None]
    offset = clean.clone()
    offset[..., :18] += 0.3  # a constant error: no change in the trajectory
    jitter = clean.clone()
    jitter[:, 1::2, :18] += 0.3  # the same size of error, alternating frame to frame
    assert float(trajectory_mse(offset, clean)) < 1e-10
    assert float(trajectory_mse(jitter, clean)) == pytest.approx(0.09, rel=1e-3)
    assert float(enhancer_loss(jitter, clean, 1.0)) > float(enhancer_loss(offset, clean, 1.0))


def _train_discriminator(discriminator: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor,
                         steps: int) -> list[float]:
    """Train a discriminator to tell `real` from `fake`; its loss at every step."""
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-3)
    losses = []
    for _ in range(steps):
        loss = discriminator_loss(discriminator(real), discriminator(fake))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def test_discriminator_learns_recorded_from_decoded(speech):
    torch.manual_seed(0)
    real = torch.from_numpy(speech[:2 * 16000].reshape(2, 16000).astype(np.float32))
    fake = real + 0.05 * torch.randn_like(real)  # recorded speech with audible added noise
    discriminator = MultiResolutionDiscriminator(channels=16)
    losses = _train_discriminator(discriminator, real, fake, steps=30)
    assert losses[-1] < 0.5 * losses[0]
    adversarial, matching = generator_losses(discriminator(real), discriminator(fake))
    assert float(adversarial.detach()) > 0.5  # the trained discriminator scores the noisy copy as fake
    assert float(matching.detach()) > 0.0


def _phase_scrambled(signal: torch.Tensor, fft_size: int = 512, hop: int = 128) -> torch.Tensor:
    """Random phases under this resolution's short-time magnitudes (resynthesized, so other
    resolutions' magnitudes move less than the waveform does)."""
    window = torch.hann_window(fft_size)
    spectrum = torch.stft(signal, fft_size, hop, window=window, return_complex=True)
    phase = torch.rand(spectrum.shape, generator=torch.Generator().manual_seed(5)) * 2 * np.pi
    scrambled = torch.polar(spectrum.abs(), phase)
    return torch.istft(scrambled, fft_size, hop, window=window, length=signal.shape[-1])


def test_period_discriminator_learns_recorded_from_phase_scrambled(speech):
    torch.manual_seed(0)
    real = torch.from_numpy(speech[:2 * 16000].reshape(2, 16000).astype(np.float32))
    fake = _phase_scrambled(real)
    discriminator = MultiPeriodDiscriminator(periods=(2, 3, 5))
    judged = discriminator(real)
    assert len(judged) == 3
    assert [scores.shape[0] for scores, _ in judged] == [2, 2, 2]
    losses = _train_discriminator(discriminator, real, fake, steps=40)
    assert losses[-1] < 0.5 * losses[0]
    adversarial, _ = generator_losses(discriminator(real), discriminator(fake))
    assert float(adversarial.detach()) > 0.5


def test_adversary_adds_periods_to_a_spectrogram_only_checkpoint():
    spectral_only = Adversary(0.3, warmup=0, lr=1e-3)
    saved = spectral_only.state()
    assert "period_discriminator" not in saved
    with_periods = Adversary(0.3, warmup=0, lr=1e-3, periods=(2, 3))
    with_periods.load(saved)  # the spectrogram part resumes, the periods start afresh
    for name, value in spectral_only.discriminator.state_dict().items():
        torch.testing.assert_close(with_periods.discriminator.state_dict()[name], value)
    again = Adversary(0.3, warmup=0, lr=1e-3, periods=(2, 3))
    again.load(with_periods.state())
    for name, value in with_periods.period_discriminator.state_dict().items():
        torch.testing.assert_close(again.period_discriminator.state_dict()[name], value)
    speech = torch.randn(2, 4000)
    loss, figures = again.step(speech.clone().requires_grad_(), speech, step=5)
    assert float(loss.detach()) > 0 and loss.requires_grad  # past the warm-up the generator is judged
    assert set(figures) == {"discriminator", "adversarial", "feature_matching"}
    assert len(again.judge(speech)) == 3 + 2  # three resolutions, two periods


@pytest.mark.parametrize("saved_periods, asked", [((2, 3), (2, 5)), ((2, 3), ()), ((), (2, 3))])
def test_resuming_refuses_other_periods_than_the_checkpoints(saved_periods, asked):
    saved = Adversary(0.3, warmup=0, lr=1e-3, periods=saved_periods).state()
    with pytest.raises(ValueError, match="resume with the same --periods"):
        Adversary(0.3, warmup=0, lr=1e-3, periods=asked).load(saved, resuming=True)
    Adversary(0.3, warmup=0, lr=1e-3, periods=saved_periods).load(saved, resuming=True)
    Adversary(0.3, warmup=0, lr=1e-3, periods=asked).load(saved)  # --init may change them


def test_resuming_a_checkpoint_that_does_not_name_its_periods():
    saved = Adversary(0.3, warmup=0, lr=1e-3, periods=(2, 3)).state()
    del saved["periods"]  # as checkpoints were written before they named them
    Adversary(0.3, warmup=0, lr=1e-3, periods=(2, 3)).load(saved, resuming=True)
    with pytest.raises(ValueError, match=r"\(unnamed\) and --periods asks for none"):
        Adversary(0.3, warmup=0, lr=1e-3).load(saved, resuming=True)


@pytest.mark.parametrize("options, message", [
    (["--periods", "2,3"], "needs --adversarial"),
    (["--periods", "2,x", "--adversarial", "0.3"], "comma-separated integers"),
    (["--periods", "1,3", "--adversarial", "0.3"], "at least 2"),
])
def test_training_command_refuses_periods_it_cannot_use(tmp_path, capsys, options, message):
    with pytest.raises(SystemExit):
        main(["--cache", str(tmp_path / "none"), "--out", str(tmp_path / "run"), *options])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_noise_pulse_envelope_has_unit_power_and_peaks_once_per_period():
    vocoder = HopVocoder(noise_pulse_depth=0.99)
    phase = torch.linspace(0, 2 * np.pi, 4001)[:-1].reshape(1, 1, -1)  # one period, evenly
    voiced = vocoder._pulse_envelope(phase, torch.full((1, 1), 0.95))
    assert float((voiced**2).mean()) == pytest.approx(1.0, rel=1e-3)
    assert float(phase[..., voiced.argmax()]) == pytest.approx(np.pi, abs=1e-2)
    assert float(voiced.max() / voiced.min()) > 50  # bursts, not a ripple
    unvoiced = vocoder._pulse_envelope(phase, torch.full((1, 1), 0.1))
    torch.testing.assert_close(unvoiced, torch.ones_like(unvoiced))
    with pytest.raises(ValueError, match="noise_pulse_depth"):
        HopVocoder(noise_pulse_depth=1.5)
    # voiced_noise_gain s scales the envelope of voiced frames by s (their noise power by s^2)
    quieter = HopVocoder(noise_pulse_depth=0.99, voiced_noise_gain=0.7)
    torch.testing.assert_close(quieter._pulse_envelope(phase, torch.full((1, 1), 0.95)), 0.7 * voiced,
                               rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(quieter._pulse_envelope(phase, torch.full((1, 1), 0.1)), unvoiced)
    for bad in ({"voiced_noise_gain": 0.0}, {"voiced_noise_gain": 1.2}, {"voiced_noise_gain": 0.5,
                                                                          "noise_pulse_depth": 0.0}):
        with pytest.raises(ValueError, match="voiced_noise_gain"):
            HopVocoder(**{"noise_pulse_depth": 0.99, **bad})


def test_noise_pulses_change_voiced_frames_only(speech):
    torch.manual_seed(0)
    flat = HopVocoder(hidden=32, conditioning=16)
    pulsed = HopVocoder(hidden=32, conditioning=16, noise_pulse_depth=0.99)
    pulsed.load_state_dict(flat.state_dict())  # the depth is no weight: same parameters
    features = torch.from_numpy(analyze_signal(speech).astype(np.float32))[None]
    noise = torch.randn(1, features.shape[1], 160)
    with torch.no_grad():
        a, _, _ = flat(features, noise)
        b, _, _ = pulsed(features, noise)
    voiced = features[0, :, CORR_INDEX] >= 0.55
    unvoiced = features[0, :, CORR_INDEX] <= 0.45
    assert voiced.sum() > 20 and unvoiced.sum() > 20  # real speech has both
    torch.testing.assert_close(a[0, unvoiced], b[0, unvoiced])
    assert float((a[0, voiced] - b[0, voiced]).abs().mean()) > 0.01 * float(a[0, voiced].abs().mean())


def test_harmonic_sum_in_blocks_equals_the_direct_sum():
    """The block factorisation of the harmonic sum against sum_k a_k cos(k phase(s) + phi_k)
    computed sample by sample in float64."""
    model = HopVocoder()
    g = torch.Generator().manual_seed(3)
    phase_before = torch.rand(2, 3, 1, generator=g) * 6.28
    step = 2 * np.pi / (32 + 200 * torch.rand(2, 3, 1, generator=g))
    amplitude = torch.rand(2, 3, model.harmonics, generator=g)
    blocks = model._harmonic_sum(phase_before, step, amplitude)
    samples = phase_before.double() + step.double() * model.sample_steps.double()  # (2, 3, HOP)
    angles = samples[..., None] * model.harmonic_numbers.double() + model.harmonic_phases.double()
    direct = (torch.cos(angles) * amplitude.double()[..., None, :]).sum(-1)
    assert blocks.shape == direct.shape == (2, 3, 160)
    assert float((blocks.double() - direct).abs().max()) < 1e-3 * float(direct.abs().max())


def test_harmonic_band_weights_interpolate_the_band_table_and_stop_at_the_cutoff():
    """Each harmonic's amplitude is the band gains interpolated linearly at its frequency (the
    table lookup it replaces), and zero from MAX_HARMONIC_HZ up."""
    from models.vocoder.model import MAX_HARMONIC_HZ, _band_weights_at

    model = HopVocoder()
    f0 = torch.tensor([[[61.0], [97.3], [143.9], [400.0]]])  # (1, 4, 1) Hz
    log_gains = torch.randn(1, 4, 18, generator=torch.Generator().manual_seed(1))
    amplitude = model._harmonic_amplitudes(f0, log_gains)[0].double().numpy()
    frequency = f0[0].double().numpy() * model.harmonic_numbers.double().numpy()  # (4, K)
    weights = _band_weights_at(np.minimum(frequency / 50.0, 159.999).ravel()).reshape(4, -1, 18)
    expected = (weights * np.exp(log_gains[0].double().numpy())[:, None, :]).sum(-1)
    expected *= (frequency < MAX_HARMONIC_HZ) * np.sqrt(f0[0].double().numpy() * 4.0 / 16000)
    np.testing.assert_allclose(amplitude, expected, rtol=1e-4, atol=1e-6)
    assert np.all(amplitude[frequency >= MAX_HARMONIC_HZ] == 0)
    assert np.all(amplitude[frequency < MAX_HARMONIC_HZ] > 0)


def _filter_snr(speech, runtime_scheme, training_scheme, monkeypatch, wobble_db: float = 0.0
                ) -> float:
    """SNR (dB) of the training filter's output against the runtime's, the same excitation
    through the envelopes of real speech (every other hop's level lowered by `wobble_db`, so
    that half the hops fall), each with its own piece scheme."""
    import models.vocoder.dsp as dsp
    import streaming_core.neural_synth as neural_synth

    monkeypatch.setattr(neural_synth, "ENVELOPE_SUBFRAMES", runtime_scheme)
    monkeypatch.setattr(dsp, "ENVELOPE_SUBFRAMES", training_scheme)
    cepstra = analyze_signal(speech[:32000])[:, :18].astype(np.float64)
    cepstra[1::2, 0] -= wobble_db * neural_synth.C0_PER_DB
    excitation = 0.2 * np.random.default_rng(0).standard_normal((len(cepstra), 160))
    state = neural_synth.NeuralSynthState(gru_state=np.zeros((1, 1)), enhancer_state=np.zeros((1, 1)))
    # the background postfilter runs only at run time (no weight depends on it): off here
    runtime = neural_synth._filtered(excitation, cepstra, state,
                                     lower_background_bands=False)[160:].astype(np.float64)
    training = dsp.filter_hops(torch.tensor(excitation[None], dtype=torch.float32),
                               torch.tensor(cepstra[None], dtype=torch.float32),
                               dsp.LpcFromCepstrum())[0, 160:].double().numpy()
    assert np.abs(runtime).max() < 0.99  # not clipped
    return float(10 * np.log10(np.sum(runtime**2) / np.sum((runtime - training) ** 2)))


@pytest.mark.parametrize("scheme", ["RAMPED_ENVELOPE", "INTERPOLATED_ENVELOPE", "EASED_ENVELOPE"])
def test_training_filters_the_envelope_as_the_runtime_does(speech, monkeypatch, scheme):
    # With the envelope moving within the hop. The FFT filter of training and the IIR filter of
    # the runtime differ where the filter changes (how the past output carries over), so they
    # agree to about 20 dB, not exactly; training with the envelope held while the runtime moves
    # it within the hop agrees less, and so does training that moves the released scheme's
    # pieces at onsets too (on speech whose level rises by 10 dB in every other hop).
    import dataclasses

    import streaming_core.neural_synth as neural_synth

    moving = getattr(neural_synth, scheme)
    wrong, wobble_db = ((dataclasses.replace(moving, max_rise_db=None), 10.0)
                        if moving.max_rise_db is not None else (neural_synth.HELD_ENVELOPE, 0.0))
    matched = _filter_snr(speech, moving, moving, monkeypatch, wobble_db)
    mismatched = _filter_snr(speech, moving, wrong, monkeypatch, wobble_db)
    print(f"training vs runtime filter: {matched:.1f} dB, {mismatched:.1f} dB trained otherwise")
    assert matched > 18 and matched > mismatched + 3
