"""Which synthesizer (decoder back end) a stream uses: the DSP baseline or a trained model.

The CLI, the server and the clients all ask `default_synthesizer()`, so installing a trained
decoder changes every entry point at once.
"""

from functools import cache

from streaming_core.decoder import Synthesizer
from streaming_core.dsp_synth import DspSynthesizer


def available_synthesizers() -> list[str]:
    """Names accepted by `load_synthesizer`."""
    return ["dsp"]


@cache
def load_synthesizer(name: str) -> Synthesizer:
    """The shared (stateless) synthesizer of this name; one instance per process."""
    if name == "dsp":
        return DspSynthesizer()
    raise KeyError(f"unknown synthesizer {name!r}; available: {', '.join(available_synthesizers())}")


def default_synthesizer() -> Synthesizer:
    """The best installed synthesizer."""
    return load_synthesizer(available_synthesizers()[-1])
