"""HopVocoder: a frame-rate GRU that shapes a harmonic-plus-noise excitation, per 10 ms hop.

Per frame the GRU (state carried across hops) reads the decoded features and outputs log gains
for 18 bands of a harmonic source and 18 bands of a noise source. The harmonic source is a sum
of cosines at multiples of the decoded f0, phase-continuous across hops, with fixed random
phase offsets per harmonic (so the pulse is not a buzzy zero-phase click); the noise source is
white noise given as an input (so decoding is deterministic), shaped per frame in the frequency
domain. In voiced frames the noise is first multiplied by a pitch-synchronous pulse envelope
(`noise_pulse_depth`; the noise of voiced speech comes in bursts at each glottal pulse, and
unmodulated it is heard as hiss beside the voice: the time-domain noise envelope of the
harmonic-plus-noise model, Stylianou, IEEE Trans. Speech Audio Proc. 2001) and scaled by
`voiced_noise_gain` (less noise beside the harmonics of voiced frames). Their sum is the
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
    BAND_EDGES_200HZ,
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
from streaming_core.spectrum import BINS_PER_200HZ, band_interpolation

MAX_HARMONIC_HZ = 7800.0
NOISE_BINS = HOP // 2 + 1
PULSE_SHARPNESS = 8.0
"""kappa of the noise pulse exp(kappa (cos(phase - pi) - 1)): a sixth of each pitch period wide
(at 1/e). It peaks at phase pi of the fundamental: with the harmonics' fixed phase offsets
(seed 0) a sweep over validation clips found pi best (models/README.md)."""
PULSE_MEAN = float(np.exp(-PULSE_SHARPNESS) * np.i0(PULSE_SHARPNESS))
PULSE_MEAN_SQUARE = float(np.exp(-2 * PULSE_SHARPNESS) * np.i0(2 * PULSE_SHARPNESS))
"""Mean of the pulse and of its square over a period: exp(-k) I0(k), exp(-2k) I0(2k)."""


CONSTANT_TABLES = ("harmonic_numbers", "harmonic_phases", "harmonic_bins", "band_slopes",
                   "band_offsets", "band_table", "noise_weights", "dft", "idft", "dft_cos",
                   "dft_sin", "idft_cos", "idft_sin", "sample_steps")
"""Fixed tables of the vocoder, built from its config (not saved in checkpoints; older
checkpoints hold some of them, which `HopVocoder.load_weights` skips)."""


HARMONIC_BLOCK = 16
"""Samples per block of the harmonic sum (`HopVocoder._harmonic_sum`); HOP is a multiple."""
HARMONIC_CUTOFF_SLOPE = 1e6
"""Slope (per 50 Hz bin) of the cut at MAX_HARMONIC_HZ: in float32 a step from 1 to 0."""


def _band_hats() -> tuple[np.ndarray, np.ndarray]:
    """(slopes, offsets), each (3, NB_BANDS): band b's weight at a harmonic's frequency p (in
    50 Hz bins) is clip(min over i of (p slopes[i, b] + offsets[i, b]), 0, 1). The first two
    rows are the rising and the falling side of the band's triangle: the weights of
    interpolating `band_interpolation` linearly between bins (its breakpoints, the band
    centres, fall on whole bins), without a table lookup. The third is a cliff that drops every
    weight to 0 from MAX_HARMONIC_HZ up. Fewer graph nodes per hop than a lookup and a mask."""
    centres = np.array(BAND_EDGES_200HZ, dtype=float) * BINS_PER_200HZ
    slopes, offsets = np.zeros((3, NB_BANDS)), np.ones((3, NB_BANDS))
    slopes[0, 1:] = 1.0 / np.diff(centres)
    offsets[0, 1:] = -centres[:-1] / np.diff(centres)
    slopes[1, :-1] = -1.0 / np.diff(centres)
    offsets[1, :-1] = centres[1:] / np.diff(centres)
    slopes[2] = -HARMONIC_CUTOFF_SLOPE
    offsets[2] = HARMONIC_CUTOFF_SLOPE * MAX_HARMONIC_HZ / 50.0
    return slopes, offsets


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
                 seed: int = 0, noise_pulse_depth: float = 0.0, voiced_noise_gain: float = 1.0
                 ) -> None:
        super().__init__()
        if not 0.0 <= noise_pulse_depth <= 1.0:
            raise ValueError(f"noise_pulse_depth must be in [0, 1], got {noise_pulse_depth}")
        if not 0.0 < voiced_noise_gain <= 1.0:
            raise ValueError(f"voiced_noise_gain must be in (0, 1], got {voiced_noise_gain}")
        if voiced_noise_gain != 1.0 and noise_pulse_depth == 0.0:
            raise ValueError("voiced_noise_gain scales the pulsed noise of voiced frames: it "
                             "needs noise_pulse_depth > 0")
        self.config = {"hidden": hidden, "conditioning": conditioning, "harmonics": harmonics,
                       "seed": seed, "noise_pulse_depth": noise_pulse_depth,
                       "voiced_noise_gain": voiced_noise_gain}
        self.hidden, self.harmonics = hidden, harmonics
        self.conditioning = nn.Sequential(
            nn.Linear(NB_FEATURES, conditioning), nn.Tanh(),
            nn.Linear(conditioning, conditioning), nn.Tanh(),
        )
        self.gru = nn.GRU(conditioning, hidden, batch_first=True)
        self.gains = nn.Linear(hidden + conditioning, 2 * NB_BANDS)
        self.noise_pulse_depth = noise_pulse_depth
        if noise_pulse_depth > 0:  # the envelope's two constants (`_pulse_envelope`)
            d, gain = noise_pulse_depth, voiced_noise_gain
            pulse_rms = np.sqrt(PULSE_MEAN_SQUARE)
            rms = np.sqrt((1 - d) ** 2 + 2 * d * (1 - d) * PULSE_MEAN / pulse_rms + d**2) / gain
            self.pulse_offsets = (float(-PULSE_SHARPNESS + np.log(d / (pulse_rms * rms))),
                                  float((1 - d) / rms - 1))
        rng = np.random.default_rng(seed)
        self.normalize = FeatureNormalizer()

        def table(name: str, values: np.ndarray) -> None:
            self.register_buffer(name, torch.tensor(values, dtype=torch.float32), persistent=False)

        numbers = np.arange(1, harmonics + 1)
        table("harmonic_numbers", numbers)
        table("harmonic_phases", rng.uniform(0, 2 * np.pi, harmonics))
        table("harmonic_bins", numbers / 50.0)  # harmonic frequencies in 50 Hz bins per Hz of f0
        slopes, offsets = _band_hats()
        table("band_slopes", slopes)
        table("band_offsets", offsets)
        # The noise's real DFT and its inverse as one matrix each, [cos | -sin] and its
        # transpose with the inverse's weights: exportable to ONNX, fast on CPU, and one matrix
        # product each way per hop. The band gains come out of `noise_weights` twice, for the
        # real and the imaginary half.
        n, k = np.arange(HOP)[:, None], np.arange(NOISE_BINS)[None, :]
        angle = 2 * np.pi * n * k / HOP
        inverse_weight = np.where((k == 0) | (k == HOP // 2), 1.0, 2.0) / HOP
        dft = np.concatenate((np.cos(angle), -np.sin(angle)), axis=1)
        table("dft", dft)
        table("idft", (dft * np.tile(inverse_weight, 2)).T)
        table("noise_weights", np.tile(_band_weights_at(np.arange(NOISE_BINS) * 2.0), (2, 1)))
        table("sample_steps", np.arange(1, HOP + 1))
        # The hop's samples in blocks (`_harmonic_sum`): sample BLOCK a + b + 1 of a hop.
        table("block_starts", np.arange(0, HOP, HARMONIC_BLOCK) + 1)
        table("block_offsets", numbers[:, None] * np.arange(HARMONIC_BLOCK)[None, :])

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Load trained weights (a `state_dict`); the fixed tables that older checkpoints hold
        are skipped (they are built from the config)."""
        self.load_state_dict({name: value for name, value in state.items()
                              if name.rsplit(".", 1)[-1] not in CONSTANT_TABLES})

    def parameter_count(self) -> int:
        """Trainable parameters."""
        return sum(p.numel() for p in self.parameters())

    def _harmonic_amplitudes(self, f0: torch.Tensor, log_gains: torch.Tensor) -> torch.Tensor:
        """Amplitude (..., K) of each harmonic of f0 (..., 1): the band gains interpolated at
        its frequency, zero above MAX_HARMONIC_HZ, scaled so the sum has unit power."""
        position = f0 * self.harmonic_bins  # (..., K), in 50 Hz bins
        sides = position[..., None, None] * self.band_slopes + self.band_offsets  # (..., K, 3, NB_BANDS)
        weights = sides.amin(dim=-2).clamp(0.0, 1.0)
        gains = torch.exp(log_gains.clamp(-10.0, 4.0))
        amplitude = torch.einsum("...kb,...b->...k", weights, gains)
        return amplitude * torch.sqrt(f0 * (4.0 / SAMPLE_RATE))

    def _pulse_envelope(self, phase: torch.Tensor, voicing: torch.Tensor) -> torch.Tensor:
        """(B, T, HOP) gain of the noise for voicing (B, T, 1): 1 + v (g(phase) - 1), v = 1 in
        voiced frames (voicing at least 0.05 above `VOICED`), 0 as far below, a ramp between.
        g = s (1 - d + d p) / rms mixes a unit-power pulse p per pitch period into the flat noise
        as much as the depth d, at the power s^2 (s: `voiced_noise_gain`); written as
        exp(-k cos(phase) + c1) + c2 (cos(phase - pi) = -cos(phase)) to keep the graph small."""
        c1, c2 = self.pulse_offsets
        voiced = ((voicing - VOICED) * 10.0 + 0.5).clamp(0.0, 1.0)
        return 1.0 + voiced * (torch.exp(torch.cos(phase) * -PULSE_SHARPNESS + c1) + c2)

    def _harmonic_sum(self, phase_before: torch.Tensor, step: torch.Tensor,
                      amplitude: torch.Tensor) -> torch.Tensor:
        """(B, T, HOP): sum over harmonics k of amplitude_k cos(k phase(s) + phi_k), phase(s) =
        phase_before + s step at the hop's samples s = 1..HOP.

        Computed in blocks of HARMONIC_BLOCK samples, s = BLOCK a + b + 1: the angle splits
        into an outer part k phase(BLOCK a + 1) + phi_k and an inner part k b step, and
        cos(outer + inner) = cos(outer) cos(inner) - sin(outer) sin(inner). The sum over k is
        then two matrix products, and the cosines and sines are taken of (HOP / BLOCK + BLOCK)
        K angles instead of HOP K: a third of them for 160 samples in blocks of 16.
        """
        with torch.no_grad():  # the angles depend on the decoded f0 only: no gradient needed
            starts = phase_before + step * self.block_starts  # (B, T, A)
            outer = starts[..., None] * self.harmonic_numbers + self.harmonic_phases  # (B, T, A, K)
            inner = step[..., None] * self.block_offsets  # (B, T, K, BLOCK)
            outer_cos, outer_sin = torch.cos(outer), torch.sin(outer)
            inner_cos, inner_sin = torch.cos(inner), torch.sin(inner)
        weights = amplitude[..., None, :]  # (B, T, 1, K)
        blocks = (weights * outer_cos) @ inner_cos - (weights * outer_sin) @ inner_sin
        return blocks.flatten(-2)  # (B, T, A, BLOCK) -> (B, T, HOP)

    def excitation(self, features: torch.Tensor, noise: torch.Tensor, hidden: torch.Tensor,
                   outputs: torch.Tensor, start_phase: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Excitation (B, T, HOP) from GRU outputs; returns it and the phase (B, 1, float64)
        after the last frame."""
        # Per-frame quantities keep a trailing axis of 1 (B, T, 1): they broadcast over the
        # hop's samples and harmonics without reshaping nodes in the exported graph.
        inverse_period = 1.0 / features[..., PERIOD_INDEX : PERIOD_INDEX + 1].clamp(
            PITCH_MIN_PERIOD, PITCH_MAX_PERIOD)
        f0 = inverse_period * SAMPLE_RATE
        step = inverse_period * (2 * np.pi)  # radians per sample
        # The phase is accumulated in float64: over many hops in one call a float32 sum would
        # drift from the hop-by-hop result (which wraps it every hop). Every term is positive,
        # so fmod is the wrap (one graph node; remainder takes four).
        frame_advance = torch.fmod(step.double() * HOP, 2 * np.pi)
        advance = torch.cumsum(frame_advance, dim=1)
        start = start_phase.double()[:, None]  # (B, 1, 1)
        phase_before = torch.fmod(start + advance - frame_advance, 2 * np.pi).float()
        phase_after = torch.fmod(start + advance[:, -1:], 2 * np.pi)[:, 0]
        phase = phase_before + step * self.sample_steps  # (B, T, HOP)
        log_gains = self.gains(torch.cat((hidden, outputs), dim=-1))
        amplitude = self._harmonic_amplitudes(f0, log_gains[..., :NB_BANDS])  # (B, T, K)
        harmonic = self._harmonic_sum(phase_before, step, amplitude)
        noise_gain = torch.exp(log_gains[..., NB_BANDS:].clamp(-10.0, 4.0)) @ self.noise_weights.T
        if self.noise_pulse_depth > 0:
            noise = noise * self._pulse_envelope(phase, features[..., CORR_INDEX : CORR_INDEX + 1])
        shaped = (noise @ self.dft * noise_gain) @ self.idft
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
