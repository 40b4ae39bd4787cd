"""FeatureEnhancer: a causal GRU that cleans up the decoded cepstrum before synthesis.

At 1-3 kbit/s the decoded cepstrum jumps from frame to frame by the quantization error of a
few VQ bits. The LPC synthesis filter follows those jumps, and listeners (and DNSMOS) hear them
as a rough, warbling envelope. The enhancer estimates the clean cepstrum from the decoded frames
so far (the conditional mean, learned by minimising the cepstral squared error, which is the
log-spectral error in dB^2 because the cepstrum is an orthonormal DCT of log band energies).
It is causal, one GRU step per hop, so it adds no latency. This is decoder-side estimation of
the quantized parameters, in the spirit of the feature predictor of Yang, Lim and Kim (2022)
turned around: the predictor guesses the next frame before its bits arrive, the enhancer
refines the current frame after they have. It corrects the spectral shape (c1..c17) and leaves
c0, the frame's level, as decoded: a causal estimate of the level lags behind onsets, and a
first version that corrected c0 too measured up to 2.8 ms of extra latency on a noise burst.
It is told each frame's bitrate (the mode's, or 64
kbit/s for unquantized features), so it smooths the coarse modes and leaves fine ones alone.
"""


import math

import torch
from torch import nn
from torch.nn import functional

from models.layers import FeatureNormalizer
from streaming_core.constants import NB_BANDS, NB_FEATURES
from streaming_core.neural_synth import UNQUANTIZED_KBPS


def bitrate_input(kbps: torch.Tensor) -> torch.Tensor:
    """The enhancer's view of a bitrate: log2 of kbit/s over 0.8, scaled to about 0..1.5
    (written as one logarithm, a product and a sum: fewer graph nodes)."""
    return torch.log(kbps.clamp(min=0.1)) * (0.25 / math.log(2.0)) - 0.25 * math.log2(0.8)


def unquantized_bitrate(features: torch.Tensor) -> torch.Tensor:
    """A (..., 1) bitrate tensor that marks `features` as unquantized."""
    return features.new_full((*features.shape[:-1], 1), UNQUANTIZED_KBPS)


class FeatureEnhancer(nn.Module):
    """Decoded features (..., 20) -> the same features with an estimate of the clean spectral
    shape (cepstrum c1..c17)."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.hidden = hidden
        self.normalize = FeatureNormalizer()
        self.gru = nn.GRU(NB_FEATURES + 1, hidden, batch_first=True)
        self.correction = nn.Linear(hidden + NB_FEATURES + 1, NB_BANDS - 1)
        nn.init.zeros_(self.correction.weight)  # starts as the identity: no correction
        nn.init.zeros_(self.correction.bias)

    def forward(self, features: torch.Tensor, bitrate: torch.Tensor,
                state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequence mode: features (B, T, 20) and their bitrate in kbit/s (B, T, 1) -> enhanced
        features (B, T, 20), state (B, hidden)."""
        if state is None:
            state = features.new_zeros(features.shape[0], self.hidden)
        inputs = torch.cat((self.normalize(features), bitrate_input(bitrate)), dim=-1)
        outputs, last = self.gru(inputs, state[None])
        delta = self.correction(torch.cat((outputs, inputs), dim=-1))
        enhanced = features + functional.pad(delta, (1, NB_FEATURES - NB_BANDS))  # c1..c17 only
        return enhanced, last[0]
