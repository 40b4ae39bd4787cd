"""Shared fixtures: the bundled real speech clips."""

from pathlib import Path

import numpy as np
import pytest

from streaming_core.audio_io import load_for_codec

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
