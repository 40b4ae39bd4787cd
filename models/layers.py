"""Pieces shared by the torch models: feature normalisation and per-hop GRU cells."""

import numpy as np
import torch
from torch import nn

from streaming_core.constants import PERIOD_INDEX, PITCH_MAX_PERIOD, PITCH_MIN_PERIOD
from streaming_core.quantizer import CEPSTRUM_CENTRE, CEPSTRUM_HALF_RANGE


class FeatureNormalizer(nn.Module):
    """Raw feature frames (..., 20) -> roughly zero-mean, unit-scale inputs (log pitch period)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("centre", torch.tensor(np.r_[CEPSTRUM_CENTRE, np.log(100.0), 0.5],
                                                    dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(np.r_[CEPSTRUM_HALF_RANGE / 2.5, 0.7, 0.3],
                                                   dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Normalised copy of `features`."""
        # Built by concatenation rather than by assigning into a copy: the same values, and
        # the exported ONNX graph needs 8 nodes for it instead of about 30 (ScatterND and the
        # shape arithmetic around it), a good part of the per-hop time of a one-hop call.
        period = features[..., PERIOD_INDEX : PERIOD_INDEX + 1]
        x = torch.cat((features[..., :PERIOD_INDEX],
                       torch.log(period.clamp(PITCH_MIN_PERIOD, PITCH_MAX_PERIOD)),
                       features[..., PERIOD_INDEX + 1 :]), dim=-1)
        return (x - self.centre) / self.scale


def cell_sharing_weights(gru: nn.GRU) -> nn.GRUCell:
    """A GRUCell that uses the (single-layer) GRU's parameters: one hop of the same network."""
    cell = nn.GRUCell(gru.input_size, gru.hidden_size)
    cell.weight_ih = gru.weight_ih_l0
    cell.weight_hh = gru.weight_hh_l0
    cell.bias_ih = gru.bias_ih_l0
    cell.bias_hh = gru.bias_hh_l0
    return cell
