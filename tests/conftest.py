"""Shared fixtures: the bundled real speech clips."""

from pathlib import Path

import numpy as np
import pytest

from streaming_core.audio_io import from_codec_rate, load_for_codec, to_codec_rate

SAMPLES = Path(__file__).resolve().parent.parent / "hopcodec" / "samples"
CLIPS = sorted(SAMPLES.glob("*.wav"))


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    """The default bundled clip (unseen speaker), 16 kHz mono float32."""
    return load_for_codec(SAMPLES / "it_carlo_youarenext.wav")[0]


@pytest.fixture(scope="session", params=[c.name for c in CLIPS])
def speech_clip(request: pytest.FixtureRequest) -> np.ndarray:
    """Each bundled clip in turn."""
    return load_for_codec(SAMPLES / request.param)[0]


def telephone_band(signal: np.ndarray) -> np.ndarray:
    """`signal` (16 kHz) as a telephone path leaves it: sampled at 8 kHz (soxr) and back."""
    return to_codec_rate(from_codec_rate(signal, 8000), 8000)[: len(signal)]
