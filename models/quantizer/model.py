"""FeaturePredictor: a GRU that predicts a frame's cepstrum from the previous decoded frame."""

import numpy as np
import torch
from torch import nn

from models.layers import FeatureNormalizer, cell_sharing_weights
from streaming_core.constants import NB_BANDS, NB_FEATURES


class FeaturePredictor(nn.Module):
    """previous decoded frame (B, T, 20) -> predicted cepstrum (B, T, 18), GRU state carried.

    The output is the previous cepstrum plus a learned correction, so an untrained predictor
    already predicts 'no change'.
    """

    def __init__(self, hidden: int = 128, conditioning: int = 64) -> None:
        super().__init__()
        self.config = {"hidden": hidden, "conditioning": conditioning}
        self.hidden = hidden
        self.inputs = nn.Sequential(nn.Linear(NB_FEATURES, conditioning), nn.Tanh())
        self.gru = nn.GRU(conditioning, hidden, batch_first=True)
        self.correction = nn.Linear(hidden, NB_BANDS)
        nn.init.zeros_(self.correction.weight)
        nn.init.zeros_(self.correction.bias)
        self.normalize = FeatureNormalizer()

    def forward(self, previous: torch.Tensor, state: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequence mode: previous (B, T, 20) -> prediction (B, T, 18), state (B, hidden)."""
        if state is None:
            state = previous.new_zeros(previous.shape[0], self.hidden)
        outputs, last = self.gru(self.inputs(self.normalize(previous)), state[None])
        return previous[..., :NB_BANDS] + self.correction(outputs), last[0]


class FeaturePredictorStep(nn.Module):
    """One hop, for ONNX: (previous (B, 20), gru_state (B, H)) -> (prediction, gru_state_out)."""

    def __init__(self, model: FeaturePredictor) -> None:
        super().__init__()
        self.model = model
        self.cell = cell_sharing_weights(model.gru)

    def forward(self, previous: torch.Tensor, gru_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = self.cell(self.model.inputs(self.model.normalize(previous)), gru_state)
        return previous[:, :NB_BANDS] + self.model.correction(state), state


class TorchPredictor:
    """Adapter: a FeaturePredictor behind the runtime's `Predictor` interface (numpy in/out)."""

    def __init__(self, model: FeaturePredictor) -> None:
        self.step = FeaturePredictorStep(model).eval()
        self.hidden = model.hidden

    @torch.no_grad()
    def __call__(self, previous: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prediction (B, 18) and new state."""
        prediction, new_state = self.step(torch.from_numpy(np.asarray(previous, np.float32)),
                                          torch.from_numpy(np.asarray(state, np.float32)))
        return prediction.numpy(), new_state.numpy()
