"""Which synthesizer (decoder back end) a stream uses: the DSP baseline or a trained model.

The CLI, the server and the clients all ask `default_synthesizer()`, so installing a trained
decoder changes every entry point at once.
"""

from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from streaming_core.dsp_synth import DspSynthesizer

RELEASED_VOCODER = Path(__file__).resolve().parent.parent / "models" / "released" / "hopvocoder.onnx"


class Synthesizer(Protocol):
    """Turns feature frames into audio, one stream's state at a time."""

    name: str
    delay: int
    """Samples by which its output lags the input beyond hop buffering."""

    def new_state(self) -> Any:
        """A fresh per-stream state."""

    def synthesize(self, features: np.ndarray, state: Any, bitrate_bps: float | None = None
                   ) -> np.ndarray:
        """Audio (n * HOP,) float32 for features (n, NB_FEATURES) decoded at `bitrate_bps`
        (the packet's mode; None: features that were not quantized)."""


def available_synthesizers() -> list[str]:
    """Names accepted by `load_synthesizer`, the preferred one last."""
    return ["dsp", "neural"] if RELEASED_VOCODER.is_file() else ["dsp"]


@cache
def load_synthesizer(name: str) -> Synthesizer:
    """The shared (stateless) synthesizer of this name; one instance per process."""
    if name == "dsp":
        return DspSynthesizer()
    if name == "neural" and RELEASED_VOCODER.is_file():
        from streaming_core.neural_synth import NeuralSynthesizer

        return NeuralSynthesizer(RELEASED_VOCODER)
    raise KeyError(f"unknown synthesizer {name!r}; available: {', '.join(available_synthesizers())}")


def default_synthesizer() -> Synthesizer:
    """The best installed synthesizer."""
    return load_synthesizer(available_synthesizers()[-1])


def synthesize_together(synthesizer: Synthesizer, items: list[tuple[np.ndarray, Any, float | None]]
                        ) -> list[np.ndarray]:
    """`synthesizer.synthesize(*item)` for every item (features, stream state, bitrate) of
    several streams; in one graph run per stage where the synthesizer can (a neural one)."""
    together = getattr(synthesizer, "synthesize_together", None)
    if together is not None:
        return together(items)
    return [synthesizer.synthesize(*item) for item in items]
