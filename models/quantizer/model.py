"""FeaturePredictor: a GRU that predicts a frame's cepstrum from the previous decoded frame and
the frame's own decoded pitch and voicing."""

import numpy as np
import torch
from torch import nn

from models.layers import FeatureNormalizer, cell_sharing_weights
from streaming_core.constants import (
    CORR_INDEX,
    NB_BANDS,
    NB_FEATURES,
    PERIOD_INDEX,
    PITCH_MAX_PERIOD,
    PITCH_MIN_PERIOD,
)
from streaming_core.predictive import VOICED

SIDE_INPUTS = 4
"""Width of `side_inputs`."""
LOG_PERIOD_CENTRE = 4.5
"""About log(90 samples): centres the log period of the side inputs."""


def side_inputs(previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """(..., SIDE_INPUTS): what the current frame's pitch and voicing (`current`, (..., 2) in
    the order of `CURRENT_PITCH`) tell about its spectrum.

    Whether it is voiced, whether its voicing changed from the previous frame (an onset or an
    offset), the change of log period (voiced frames), and the log period itself (voiced).
    """
    voiced = (current[..., 1:2] >= VOICED).float()
    was_voiced = (previous[..., CORR_INDEX : CORR_INDEX + 1] >= VOICED).float()
    log_period = torch.log(current[..., 0:1].clamp(PITCH_MIN_PERIOD, PITCH_MAX_PERIOD))
    log_previous = torch.log(previous[..., PERIOD_INDEX : PERIOD_INDEX + 1]
                             .clamp(PITCH_MIN_PERIOD, PITCH_MAX_PERIOD))
    return torch.cat((voiced, voiced - was_voiced, 10.0 * voiced * (log_period - log_previous),
                      voiced * (log_period - LOG_PERIOD_CENTRE)), dim=-1)


class FeaturePredictor(nn.Module):
    """(previous decoded frame (B, T, 20), current pitch and voicing (B, T, 2)) -> predicted
    cepstrum (B, T, 18), GRU state carried.

    The output is the previous cepstrum plus a learned correction, so an untrained predictor
    already predicts 'no change'. On validation windows (open loop, 1500 steps) the current
    frame's pitch and voicing lowered the prediction error by 7 % (bitstream format 6;
    models/README.md).
    """

    def __init__(self, hidden: int = 128, conditioning: int = 64) -> None:
        super().__init__()
        self.config = {"hidden": hidden, "conditioning": conditioning}
        self.hidden = hidden
        self.previous_in = nn.Linear(NB_FEATURES, conditioning)
        self.current_in = nn.Linear(SIDE_INPUTS, conditioning)
        self.gru = nn.GRU(conditioning, hidden, batch_first=True)
        self.correction = nn.Linear(hidden, NB_BANDS)
        nn.init.zeros_(self.correction.weight)
        nn.init.zeros_(self.correction.bias)
        self.normalize = FeatureNormalizer()

    def gru_inputs(self, previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        """The GRU's input of each frame."""
        return torch.tanh(self.previous_in(self.normalize(previous))
                          + self.current_in(side_inputs(previous, current)))

    def forward(self, previous: torch.Tensor, current: torch.Tensor,
                state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequence mode: previous (B, T, 20), current (B, T, 2) -> prediction (B, T, 18),
        state (B, hidden)."""
        if state is None:
            state = previous.new_zeros(previous.shape[0], self.hidden)
        outputs, last = self.gru(self.gru_inputs(previous, current), state[None])
        return previous[..., :NB_BANDS] + self.correction(outputs), last[0]


class FeaturePredictorStep(nn.Module):
    """One hop, for ONNX: (previous (B, 20), current (B, 2), gru_state (B, H)) ->
    (prediction, gru_state_out)."""

    def __init__(self, model: FeaturePredictor) -> None:
        super().__init__()
        self.model = model
        self.cell = cell_sharing_weights(model.gru)

    def forward(self, previous: torch.Tensor, current: torch.Tensor, gru_state: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        state = self.cell(self.model.gru_inputs(previous, current), gru_state)
        return previous[:, :NB_BANDS] + self.model.correction(state), state


class TorchPredictor:
    """Adapter: a FeaturePredictor behind the runtime's `Predictor` interface (numpy in/out)."""

    def __init__(self, model: FeaturePredictor) -> None:
        self.step = FeaturePredictorStep(model).eval()
        self.hidden = model.hidden

    @torch.no_grad()
    def __call__(self, previous: np.ndarray, current: np.ndarray, state: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Prediction (B, 18) and new state."""
        prediction, new_state = self.step(torch.from_numpy(np.asarray(previous, np.float32)),
                                          torch.from_numpy(np.asarray(current, np.float32)),
                                          torch.from_numpy(np.asarray(state, np.float32)))
        return prediction.numpy(), new_state.numpy()
