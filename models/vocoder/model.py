"""HopVocoder: a frame-rate GRU that shapes a harmonic-plus-noise excitation, per 10 ms hop.

Per frame the GRU (state carried across hops) reads the decoded features and outputs log gains
for 18 bands of a harmonic source and 18 bands of a noise source. The harmonic source is a sum
of cosines at multiples of the decoded f0, phase-continuous across hops, with fixed random
phase offsets per harmonic (so the pulse is not a buzzy zero-phase click); the noise source is
white noise given as an input (so decoding is deterministic), shaped per frame in the frequency
domain. In voiced frames the noise is first multiplied by a pitch-synchronous pulse envelope
(`noise_pulse_depth`; the noise of voiced speech comes in bursts at each glottal pulse, and
unmodulated it is heard as hiss beside the voice: the time-domain noise envelope of the
harmonic-plus-noise model, Stylianou, IEEE Trans. Speech Audio Proc. 2001). Their sum is the
excitation of the LPC synthesis filter, scaled to the LPC residual power. The idea is a neural
source-filter model (Wang, Takaki, Yamagishi 2019) feeding an LPC filter as in LPCNet (Valin &
Skoglund 2019).
"""

import numpy as np
import torch
from torch import nn

from models.layers import FeatureNormalizer
from models.vocoder.enhancer import FeatureEnhancer
from streaming_core.constants import (
    CORR_INDEX,
    HOP,
    NB_BANDS,
    NB_FEATURES,
    PERIOD_INDEX,
    PITCH_MAX_PERIOD,
    PITCH_MIN_PERIOD,
    SAMPLE_RATE,
)
from streaming_core.predictive import VOICED
from streaming_core.spectrum import band_interpolation

MAX_HARMONIC_HZ = 7800.0
NOISE_BINS = HOP // 2 + 1
PULSE_SHARPNESS = 8.0
"""kappa of the noise pulse exp(kappa (cos(phase - pi) - 1)): a sixth of each pitch period wide
(at 1/e). It peaks at phase pi of the fundamental: with the harmonics' fixed phase offsets
(seed 0) a sweep over validation clips found pi best (models/README.md)."""
PULSE_MEAN = float(np.exp(-PULSE_SHARPNESS) * np.i0(PULSE_SHARPNESS))
PULSE_MEAN_SQUARE = float(np.exp(-2 * PULSE_SHARPNESS) * np.i0(2 * PULSE_SHARPNESS))
"""Mean of the pulse and of its square over a period: exp(-k) I0(k), exp(-2k) I0(2k)."""


def _band_weights_at(bins: np.ndarray) -> np.ndarray:
    """Band interpolation weights (len(bins), NB_BANDS) at fractional 50 Hz bin positions."""
    table = band_interpolation()
    low = np.clip(np.floor(bins).astype(int), 0, len(table) - 1)
    high = np.clip(low + 1, 0, len(table) - 1)
    frac = (bins - low)[:, None]
    return (1 - frac) * table[low] + frac * table[high]


class HopVocoder(nn.Module):
    """Features -> unit-power excitation, one GRU step per hop."""

    def __init__(self, hidden: int = 256, conditioning: int = 128, harmonics: int = 80,
                 seed: int = 0, noise_pulse_depth: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= noise_pulse_depth <= 1.0:
            raise ValueError(f"noise_pulse_depth must be in [0, 1], got {noise_pulse_depth}")
        self.config = {"hidden": hidden, "conditioning": conditioning, "harmonics": harmonics,
                       "seed": seed, "noise_pulse_depth": noise_pulse_depth}
        self.hidden, self.harmonics = hidden, harmonics
        self.conditioning = nn.Sequential(
            nn.Linear(NB_FEATURES, conditioning), nn.Tanh(),
            nn.Linear(conditioning, conditioning), nn.Tanh(),
        )
        self.gru = nn.GRU(conditioning, hidden, batch_first=True)
        self.gains = nn.Linear(hidden + conditioning, 2 * NB_BANDS)
        self.noise_pulse_depth = noise_pulse_depth
        if noise_pulse_depth > 0:  # the envelope's two constants (`_pulse_envelope`)
            d = noise_pulse_depth
            pulse_rms = np.sqrt(PULSE_MEAN_SQUARE)
            rms = np.sqrt((1 - d) ** 2 + 2 * d * (1 - d) * PULSE_MEAN / pulse_rms + d**2)
            self.pulse_offsets = (float(-PULSE_SHARPNESS + np.log(d / (pulse_rms * rms))),
                                  float((1 - d) / rms - 1))
        rng = np.random.default_rng(seed)
        self.normalize = FeatureNormalizer()
        self.register_buffer("harmonic_numbers", torch.arange(1, harmonics + 1, dtype=torch.float32))
        self.register_buffer("harmonic_phases", torch.tensor(
            rng.uniform(0, 2 * np.pi, harmonics), dtype=torch.float32))
        self.register_buffer("band_table", torch.tensor(band_interpolation(), dtype=torch.float32))
        self.register_buffer("noise_weights", torch.tensor(
            _band_weights_at(np.arange(NOISE_BINS) * 2.0), dtype=torch.float32))
        n, k = np.arange(HOP)[:, None], np.arange(NOISE_BINS)[None, :]
        angle = 2 * np.pi * n * k / HOP
        inverse_weight = np.where((k == 0) | (k == HOP // 2), 1.0, 2.0) / HOP
        self.register_buffer("dft_cos", torch.tensor(np.cos(angle), dtype=torch.float32))
        self.register_buffer("dft_sin", torch.tensor(-np.sin(angle), dtype=torch.float32))
        self.register_buffer("idft_cos", torch.tensor((np.cos(angle) * inverse_weight).T,
                                                      dtype=torch.float32))
        self.register_buffer("idft_sin", torch.tensor((-np.sin(angle) * inverse_weight).T,
                                                      dtype=torch.float32))
        self.register_buffer("sample_steps", torch.arange(1, HOP + 1, dtype=torch.float32))

    def parameter_count(self) -> int:
        """Trainable parameters."""
        return sum(p.numel() for p in self.parameters())

    def _harmonic_amplitudes(self, f0: torch.Tensor, log_gains: torch.Tensor) -> torch.Tensor:
        """Amplitude (..., K) of each harmonic: band gain at its frequency, unit-power scaling."""
        frequency = f0[..., None] * self.harmonic_numbers
        position = (frequency / 50.0).clamp(0, self.band_table.shape[0] - 1.001)
        low = position.floor().long()
        frac = (position - low)[..., None]
        weights = (1 - frac) * self.band_table[low] + frac * self.band_table[low + 1]
        gains = torch.exp(log_gains.clamp(-10.0, 4.0))
        amplitude = (weights * gains[..., None, :]).sum(-1)
        audible = (frequency < MAX_HARMONIC_HZ).float()
        return amplitude * audible * torch.sqrt(2.0 * f0[..., None] / (SAMPLE_RATE / 2))

    def _pulse_envelope(self, phase: torch.Tensor, voicing: torch.Tensor) -> torch.Tensor:
        """(B, T, HOP) gain of the noise: 1 + v (g(phase) - 1), v = 1 in voiced frames (voicing
        at least 0.05 above `VOICED`), 0 as far below, a ramp between. g = (1 - d + d p) / rms
        mixes a unit-power pulse p per pitch period into the flat noise as much as the depth d,
        at unit power; written as exp(-k cos(phase) + c1) + c2 (cos(phase - pi) = -cos(phase))
        to keep the graph small."""
        c1, c2 = self.pulse_offsets
        voiced = ((voicing - VOICED) * 10.0 + 0.5).clamp(0.0, 1.0)[..., None]
        return 1.0 + voiced * (torch.exp(torch.cos(phase) * -PULSE_SHARPNESS + c1) + c2)

    def excitation(self, features: torch.Tensor, noise: torch.Tensor, hidden: torch.Tensor,
                   outputs: torch.Tensor, start_phase: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Excitation (B, T, HOP) from GRU outputs; returns it and the phase (B, 1, float64)
        after the last frame."""
        f0 = SAMPLE_RATE / features[..., PERIOD_INDEX].clamp(PITCH_MIN_PERIOD, PITCH_MAX_PERIOD)
        step = 2 * np.pi * f0 / SAMPLE_RATE
        # The phase is accumulated in float64: over many hops in one call a float32 sum would
        # drift from the hop-by-hop result (which wraps it every hop).
        frame_advance = torch.remainder(step.double() * HOP, 2 * np.pi)
        advance = torch.cumsum(frame_advance, dim=1)
        start = start_phase.double()
        phase_before = torch.remainder(start + advance - frame_advance, 2 * np.pi).float()
        phase_after = torch.remainder(start + advance[:, -1:], 2 * np.pi)
        phase = phase_before[..., None] + step[..., None] * self.sample_steps  # (B, T, HOP)
        log_gains = self.gains(torch.cat((hidden, outputs), dim=-1))
        amplitude = self._harmonic_amplitudes(f0, log_gains[..., :NB_BANDS])  # (B, T, K)
        with torch.no_grad():  # the basis depends on the decoded f0 only: no gradient needed
            basis = torch.cos(phase[..., None] * self.harmonic_numbers + self.harmonic_phases)
        harmonic = torch.einsum("btsk,btk->bts", basis, amplitude)  # basis: (B, T, HOP, K)
        noise_gain = torch.exp(log_gains[..., NB_BANDS:].clamp(-10.0, 4.0)) @ self.noise_weights.T
        if self.noise_pulse_depth > 0:
            noise = noise * self._pulse_envelope(phase, features[..., CORR_INDEX])
        # Real DFT and its inverse as matrix products (exportable to ONNX, fast on CPU).
        real, imag = noise @ self.dft_cos, noise @ self.dft_sin
        shaped = (real * noise_gain) @ self.idft_cos + (imag * noise_gain) @ self.idft_sin
        return harmonic + shaped, phase_after

    def forward(self, features: torch.Tensor, noise: torch.Tensor,
                state: torch.Tensor | None = None, phase: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sequence mode for training: features (B, T, 20), noise (B, T, HOP).

        Returns excitation (B, T, HOP), GRU state (B, hidden), phase (B, 1, float64).
        """
        batch = features.shape[0]
        if state is None:
            state = features.new_zeros(batch, self.hidden)
        if phase is None:
            phase = features.new_zeros(batch, 1, dtype=torch.float64)
        conditioning = self.conditioning(self.normalize(features))
        hidden, last = self.gru(conditioning, state[None])
        excitation, phase = self.excitation(features, noise, hidden, conditioning, phase)
        return excitation, last[0], phase


class HopDecoderGraph(nn.Module):
    """The neural decoder as exported to ONNX: FeatureEnhancer, then HopVocoder, over T hops.

    Live streams run it one hop at a time (T = 1); a packet of several frames runs in one call.
    Inputs: features (B, T, 20), bitrate (B, T, 1: kbit/s of the mode each frame was decoded
    with, 64 for unquantized features), noise (B, T, 160), gru_state (B, hidden), phase (B, 1,
    float64), enhancer_state (B, enhancer hidden).
    Outputs: excitation (B, T, 160), cepstrum (B, T, 18) for the LPC filter, and the three
    states after the last hop. (An untrained FeatureEnhancer is the identity: that is how a
    vocoder is exported without one.)
    """

    def __init__(self, vocoder: HopVocoder, enhancer: FeatureEnhancer) -> None:
        super().__init__()
        self.vocoder, self.enhancer = vocoder, enhancer

    def forward(self, features: torch.Tensor, bitrate: torch.Tensor, noise: torch.Tensor,
                gru_state: torch.Tensor, phase: torch.Tensor, enhancer_state: torch.Tensor
                ) -> tuple[torch.Tensor, ...]:
        features, enhancer_state = self.enhancer(features, bitrate, enhancer_state)
        excitation, gru_state, phase = self.vocoder(features, noise, gru_state, phase)
        return excitation, features[..., :NB_BANDS], gru_state, phase, enhancer_state
