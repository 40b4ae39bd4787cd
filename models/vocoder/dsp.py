"""Differentiable torch versions of the decoder's signal processing, for training.

LPC from the cepstrum mirrors `streaming_core.lpc` (same band layout, lag window, Levinson);
the synthesis filter 1/A(z) and de-emphasis are applied per frame in the frequency domain
(512-point FFT, the tail overlap-added into the next frames), which matches the exact IIR
filters used at run time to within the truncation of their impulse responses and the way a
change of filter carries the past output (`tests/test_vocoder_training.py` measures how close).
Each hop is filtered in the pieces of `streaming_core.neural_synth.ENVELOPE_SUBFRAMES`, as at run
time (`filter_hops`; in the release the pieces move in every hop but the onsets).
"""

import numpy as np
import torch
from scipy.fft import idct

from streaming_core.constants import HOP, LOG_ENERGY_FLOOR, LPC_ORDER, NB_BANDS, PREEMPHASIS
from streaming_core.lpc import LAG_WINDOW, WHITE_NOISE_CORRECTION
from streaming_core.neural_synth import C0_PER_DB, ENVELOPE_SUBFRAMES, LEVEL_OVERSHOOT_DB
from streaming_core.spectrum import NB_BINS, analysis_window, band_interpolation

FILTER_FFT = 512


def _idct_matrix() -> np.ndarray:
    return idct(np.eye(NB_BANDS), type=2, norm="ortho", axis=-1)


class LpcFromCepstrum(torch.nn.Module):
    """(B, T, 18) cepstrum -> predictor a (B, T, 17) and residual power (B, T)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("idct", torch.tensor(_idct_matrix(), dtype=torch.float64))
        self.register_buffer("interp", torch.tensor(band_interpolation().T, dtype=torch.float64))
        lags = np.arange(LPC_ORDER + 1)
        k = np.arange(NB_BINS)
        # irfft of a real spectrum as a matrix: r[l] = sum_k w_k P_k cos(2 pi k l / n) / n
        n = 2 * (NB_BINS - 1)
        weights = np.where((k == 0) | (k == NB_BINS - 1), 1.0, 2.0)[:, None]
        cos = weights * np.cos(2 * np.pi * np.outer(k, lags) / n) / n
        scale = LAG_WINDOW / np.sum(analysis_window() ** 2)
        self.register_buffer("to_autocorrelation", torch.tensor(cos * scale, dtype=torch.float64))

    def forward(self, cepstrum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # float64 throughout, as at run time: in float32 the autocorrelation of a near-silent
        # frame is not quite positive definite and the recursion blows up.
        log_energy = cepstrum.double() @ self.idct
        energy = torch.clamp(10.0**log_energy - LOG_ENERGY_FLOOR, min=0.0)
        power = energy @ self.interp
        r = power @ self.to_autocorrelation
        r0 = r[..., :1] * WHITE_NOISE_CORRECTION
        r = torch.cat((r0, r[..., 1:]), dim=-1)
        return levinson(r)


def levinson(r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched Levinson-Durbin (float64 inside): r (..., p+1) -> a (..., p+1), error (...).

    Mirrors `streaming_core.lpc.levinson` element by element: a zero r[0] gives a = [1, 0, ...],
    and a row stops updating once its prediction error reaches zero. Each order builds a new
    coefficient tensor (no writes in place), so gradients flow back to r: the enhancer can be
    tuned through the synthesis filter (`tune_enhancer`).
    """
    r = r.double()
    order = r.shape[-1] - 1
    a = torch.cat((torch.ones_like(r[..., :1]), torch.zeros_like(r[..., 1:])), dim=-1)
    error = r[..., 0]
    alive = error > 0
    for i in range(1, order + 1):
        acc = r[..., i] + (a[..., 1:i] * r[..., 1:i].flip(-1)).sum(-1)
        k = torch.where(alive, -acc / torch.where(alive, error, 1.0), 0.0)
        updated = a[..., 1:i] + k[..., None] * a[..., 1:i].flip(-1)
        a = torch.cat((a[..., :1], updated, k[..., None], a[..., i + 1 :]), dim=-1)
        error = torch.where(alive, error * (1.0 - k * k), error)
        alive = alive & (error > 0)
    return a.float(), error.clamp(min=0.0).float()


def synthesis_response(a: torch.Tensor) -> torch.Tensor:
    """Complex response (..., FILTER_FFT/2+1) of 1 / (A(z) (1 - 0.85 z^-1))."""
    a_fft = torch.fft.rfft(a, n=FILTER_FFT)
    deemphasis = torch.fft.rfft(torch.tensor([1.0, -PREEMPHASIS], device=a.device), n=FILTER_FFT)
    return 1.0 / (a_fft * deemphasis)


def filter_frames(excitation: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
    """Filter each frame of excitation (B, T, HOP) by its frame's response; overlap-add the tails.

    Returns (B, T * HOP): the speech, with each frame's tail carried into the following frames.
    """
    batch, frames, _ = excitation.shape
    filtered = torch.fft.irfft(torch.fft.rfft(excitation, n=FILTER_FFT) * response, n=FILTER_FFT)
    chunks = FILTER_FFT // HOP + 1
    padded = torch.nn.functional.pad(filtered, (0, chunks * HOP - FILTER_FFT))
    pieces = padded.reshape(batch, frames, chunks, HOP)
    out = torch.zeros(batch, frames + chunks, HOP, device=excitation.device)
    for c in range(chunks):
        out[:, c : c + frames] += pieces[:, :, c]
    return out[:, :frames].reshape(batch, frames * HOP)


def filter_hops(excitation: torch.Tensor, cepstrum: torch.Tensor, lpc: LpcFromCepstrum
                ) -> torch.Tensor:
    """Speech (B, T * HOP) from unit-level excitation (B, T, HOP) and the cepstra (B, T, 18) of
    the LPC envelope: each piece of `ENVELOPE_SUBFRAMES` scaled by the residual power of its
    interpolated envelope (its level capped as `hop_envelopes` caps it) and filtered by it (the
    filters are linear, so the pieces, each filtered as a zero-padded hop, add up). The first hop
    holds its own envelope, and so does every hop whose level rose by the scheme's
    `max_rise_db` or more."""
    scheme = ENVELOPE_SUBFRAMES
    previous = torch.cat((cepstrum[:, :1], cepstrum[:, :-1]), dim=1)
    highest_level = torch.maximum(cepstrum[..., :1], previous[..., :1]) + LEVEL_OVERSHOOT_DB * C0_PER_DB
    moving = (cepstrum[..., :1] - previous[..., :1] < scheme.max_rise_db * C0_PER_DB
              if scheme.max_rise_db is not None
              else torch.ones_like(cepstrum[..., :1], dtype=torch.bool))
    speech = torch.zeros(excitation.shape[0], excitation.shape[1] * HOP, device=excitation.device)
    start = 0
    for length, weight in scheme.pieces:
        envelope = cepstrum
        if weight != 1.0:
            envelope = weight * cepstrum + (1.0 - weight) * previous
            envelope = torch.cat((torch.minimum(envelope[..., :1], highest_level), envelope[..., 1:]), -1)
            envelope = torch.where(moving, envelope, cepstrum)
        a, residual = lpc(envelope)
        piece = torch.zeros_like(excitation)
        # the square root's slope is infinite at 0: silent pieces get a gain of 0 and no gradient
        gain = torch.where(residual > 0, residual.clamp(min=1e-30).sqrt(), 0.0)
        piece[..., start : start + length] = excitation[..., start : start + length] * gain[..., None]
        speech = speech + filter_frames(piece, synthesis_response(a))
        start += length
    return speech
