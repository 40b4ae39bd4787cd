"""Tuning the feature enhancer through the frozen vocoder: the gradient through the LPC filter,
the log-mel loss and the tuning step on real speech."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs torch: pip install torch==2.13.0")

from models.vocoder import dsp  # noqa: E402
from models.vocoder.export import load_checkpoint, load_enhancer  # noqa: E402
from models.vocoder.losses import log_mel_loss, mel_filterbank  # noqa: E402
from models.vocoder.train import quantize_features  # noqa: E402
from models.vocoder.tune_enhancer import SpeechThroughVocoder, main  # noqa: E402
from streaming_core.analysis import analyze_signal  # noqa: E402
from streaming_core.constants import HOP, NB_BANDS  # noqa: E402
from streaming_core.lpc import levinson as runtime_levinson  # noqa: E402

RELEASED = Path(__file__).resolve().parent.parent / "models" / "released"


def test_levinson_matches_the_runtime_and_passes_gradients(speech):
    cepstra = torch.tensor(analyze_signal(speech[:8000])[:, :NB_BANDS], dtype=torch.float32)
    cepstra[:3] = 0.0  # frames below the energy floor (log10 energy -7 in every band): no
    cepstra[:3, 0] = -7.0 * np.sqrt(NB_BANDS)  # residual, and no gradient through its root
    cepstra.requires_grad_(True)
    lpc = dsp.LpcFromCepstrum()
    a, residual = lpc(cepstra)
    log_energy = cepstra.detach().double() @ lpc.idct
    energy = torch.clamp(10.0**log_energy - dsp.LOG_ENERGY_FLOOR, min=0.0) @ lpc.interp
    r = (energy @ lpc.to_autocorrelation).numpy()
    r[:, 0] *= dsp.WHITE_NOISE_CORRECTION
    for frame in (3, 20, 40):
        expected_a, expected_error = runtime_levinson(r[frame])
        np.testing.assert_allclose(a[frame].detach().numpy(), expected_a, rtol=1e-4, atol=1e-5)
        assert residual[frame].item() == pytest.approx(expected_error, rel=1e-4)
    excitation = torch.randn(1, len(cepstra), HOP, generator=torch.Generator().manual_seed(0))
    speech_out = dsp.filter_hops(excitation, cepstra[None], lpc)
    speech_out.square().sum().backward()
    grad = cepstra.grad
    assert torch.isfinite(grad).all()
    assert grad[3:].abs().sum() > 0  # the envelope of voiced frames moves the speech
    assert residual[:3].abs().max() == 0 and grad[:3].abs().max() == 0


def test_mel_filters_tile_the_band_and_the_loss_sees_envelope_errors(speech):
    filters = mel_filterbank()
    assert filters.shape == (80, 513)
    assert (filters.max(dim=1).values > 0.65).all()  # the narrow low bands peak between bins
    peaks = filters.argmax(dim=1)
    assert (peaks[1:] >= peaks[:-1]).all() and peaks[-1] > 480  # rising up to near 8 kHz
    between = filters.sum(dim=0)[int(peaks[0]) + 1 : int(peaks[-1])]
    torch.testing.assert_close(between, torch.ones_like(between))  # neighbours overlap by half
    clean = torch.from_numpy(speech[:16000])[None]
    assert float(log_mel_loss(clean, clean)) == 0.0
    tilted = torch.from_numpy(np.convolve(speech[:16000], [1.0, -0.9])[:16000].astype(np.float32))[None]
    louder = 2.0 * clean
    assert float(log_mel_loss(tilted, clean)) > 0.3  # the envelope changed
    assert float(log_mel_loss(louder, clean)) == pytest.approx(np.log(2.0), rel=0.05)
    # asymmetric: too loud costs 1 + w times as much as too quiet by the same factor
    quieter = clean * 0.5
    assert float(log_mel_loss(quieter, clean)) == pytest.approx(float(log_mel_loss(louder, clean)),
                                                              rel=0.01)
    too_loud = float(log_mel_loss(louder, clean, excess_weight=1.0))
    too_quiet = float(log_mel_loss(quieter, clean, excess_weight=1.0))
    assert too_loud == pytest.approx(2.0 * too_quiet, rel=0.02)
    assert (too_loud + too_quiet) / 2 == pytest.approx(np.log(2.0), rel=0.05)


def test_tuning_lowers_the_mel_loss_and_leaves_the_vocoder_alone(speech):
    frames = 101
    features = analyze_signal(speech)[:frames].astype(np.float32)
    decoded, kbps = quantize_features(features[None], "hop-1600")
    bitrate = torch.full((1, frames, 1), float(kbps[0]))
    signal = torch.from_numpy(speech[: frames * HOP])[None]
    vocoder = load_checkpoint(RELEASED / "hopvocoder.pt", 0.99, 0.7)
    frozen = {name: value.clone() for name, value in vocoder.state_dict().items()}
    decoder = SpeechThroughVocoder(vocoder, smoothness=3.0, cepstral_weight=1.0)
    enhancer = load_enhancer(RELEASED / "enhancer.pt").train()
    optimizer = torch.optim.Adam(enhancer.parameters(), lr=2e-3)
    noise = torch.randn(1, frames, HOP, generator=torch.Generator().manual_seed(0))
    mel = []
    for _ in range(12):
        losses = decoder.losses(enhancer, torch.from_numpy(decoded), torch.from_numpy(features[None]),
                                bitrate, signal, noise)
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
        mel.append(losses["mel"].item())
    print("log-mel loss:", [round(m, 4) for m in mel])
    assert mel[-1] < mel[0] - 0.005
    for name, value in vocoder.state_dict().items():
        assert torch.equal(value, frozen[name]), name


def _one_clip_at_two_rates(speech: np.ndarray, frames: int = 101) -> dict[str, torch.Tensor]:
    """The same clip coded at hop-1600 (tuned) and at scalar-2400 (held), as one batch."""
    features = analyze_signal(speech)[:frames].astype(np.float32)
    coded = [quantize_features(features[None], mode) for mode in ("hop-1600", "scalar-2400")]
    kbps = torch.tensor([float(k[0]) for _, k in coded])
    return {"decoded": torch.from_numpy(np.concatenate([d for d, _ in coded])),
            "clean": torch.from_numpy(np.repeat(features[None], 2, axis=0)),
            "bitrate": kbps.view(2, 1, 1).expand(2, frames, 1).contiguous(),
            "signal": torch.from_numpy(speech[: frames * HOP])[None].repeat(2, 1),
            "noise": torch.randn(2, frames, HOP, generator=torch.Generator().manual_seed(0))}


def test_windows_at_higher_rates_are_held_to_the_starting_enhancer(speech):
    batch = _one_clip_at_two_rates(speech)
    vocoder = load_checkpoint(RELEASED / "hopvocoder.pt", 0.99, 0.7)
    held_change = {}
    for weight in (0.0, 100.0):
        decoder = SpeechThroughVocoder(vocoder, 3.0, 1.0, teacher=load_enhancer(RELEASED / "enhancer.pt"),
                                       distill_from=2.0, distill_weight=weight)
        enhancer = load_enhancer(RELEASED / "enhancer.pt").train()
        first = decoder.losses(enhancer, **batch)
        assert first["distill"].item() < 1e-10  # the student starts as the teacher
        tuned_only = decoder.losses(enhancer, **{k: v[:1] for k, v in batch.items()})
        assert first["mel"].item() == pytest.approx(tuned_only["mel"].item(), rel=1e-5)
        optimizer = torch.optim.Adam(enhancer.parameters(), lr=5e-3)
        for _ in range(8):
            optimizer.zero_grad()
            decoder.losses(enhancer, **batch)["total"].backward()
            optimizer.step()
        with torch.no_grad():
            held_change[weight] = decoder.losses(enhancer, **batch)["distill"].item()
    print("held window's distance to the starting enhancer:", held_change)
    assert held_change[0.0] > 0  # tuning the hop-1600 window moves the scalar-2400 one too ...
    assert held_change[100.0] < 0.5 * held_change[0.0]  # ... unless it is held


def test_holding_windows_needs_a_teacher():
    with pytest.raises(ValueError, match="teacher"):
        SpeechThroughVocoder(load_checkpoint(RELEASED / "hopvocoder.pt", 0.99, 0.7), 3.0, 1.0,
                             distill_from=2.0)


def test_tuning_command_names_a_missing_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--cache", str(tmp_path), "--out", str(tmp_path / "run"),
              "--enhancer", str(tmp_path / "none.pt"), "--vocoder", str(RELEASED / "hopvocoder.pt")])
    assert "--enhancer" in capsys.readouterr().err and not (tmp_path / "run").exists()
