"""The neural decoder at run time: the per-hop HopVocoder ONNX graph, then the LPC filter.

One `onnxruntime.InferenceSession` (one thread) is shared by every stream; a stream is a
`NeuralSynthState`: the GRU state and harmonic phase the graph takes and returns, the noise
generator that feeds it, and the LPC synthesis/de-emphasis memories. No torch at run time.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime

from streaming_core.constants import HOP, NB_BANDS, NB_FEATURES
from streaming_core.dsp_synth import DECODER_DELAY
from streaming_core.errors import HopcodecError
from streaming_core.lpc import lpc_from_cepstrum
from streaming_core.synthesis_filter import SynthesisFilterState, synthesis_filter

NOISE_SEED = 0x4E53


@dataclass
class NeuralSynthState:
    """Per-stream state of the neural decoder."""

    gru_state: np.ndarray
    """(1, hidden) float32: the GRU's hidden state after the last hop."""
    phase: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), np.float32))
    """(1, 1) float32: phase of the harmonic source's fundamental, radians."""
    filters: SynthesisFilterState = field(default_factory=SynthesisFilterState)
    """LPC synthesis and de-emphasis memories."""
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(NOISE_SEED))
    """Source of the noise input (seeded: decoding is deterministic)."""


class NeuralSynthesizer:
    """Runs a HopVocoder graph; stateless itself, shareable across streams and threads."""

    delay = DECODER_DELAY

    def __init__(self, model_path: str | Path, threads: int = 1) -> None:
        model_path = Path(model_path)
        if not model_path.is_file():
            raise HopcodecError(f"neural decoder model not found: {model_path}")
        self.metadata = json.loads(model_path.with_suffix(".json").read_text())
        self.name = f"{self.metadata['name']}-{self.metadata['version']}"
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"])
        self.hidden = int(self.metadata["inputs"]["gru_state"][1])

    def new_state(self) -> NeuralSynthState:
        """A fresh per-stream state."""
        return NeuralSynthState(gru_state=np.zeros((1, self.hidden), np.float32))

    def excitation(self, features: np.ndarray, state: NeuralSynthState) -> np.ndarray:
        """Unit-level excitation (HOP,) of one frame; advances the graph's states."""
        noise = state.rng.standard_normal((1, HOP)).astype(np.float32)
        excitation, state.gru_state, state.phase = self.session.run(None, {
            "features": features.reshape(1, NB_FEATURES).astype(np.float32),
            "noise": noise, "gru_state": state.gru_state, "phase": state.phase})
        return excitation[0].astype(np.float64)

    def synthesize(self, features: np.ndarray, state: NeuralSynthState) -> np.ndarray:
        """Audio (n * HOP,) float32 for features (n, NB_FEATURES)."""
        features = np.asarray(features, dtype=np.float64).reshape(-1, NB_FEATURES)
        out = np.empty(len(features) * HOP, dtype=np.float32)
        for i, frame in enumerate(features):
            a, residual_power = lpc_from_cepstrum(frame[:NB_BANDS])
            excitation = self.excitation(frame, state) * np.sqrt(max(residual_power, 0.0))
            speech = synthesis_filter(excitation, a, state.filters)
            out[i * HOP : (i + 1) * HOP] = np.clip(speech, -1.0, 1.0)
        return out
