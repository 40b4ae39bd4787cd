"""What the playout turns a jitter-buffer event into: one hop of audio.

`DecoderPlayout` holds packets and decodes them at their turn, so a missing frame is concealed
by the decoder itself (`--local`); `PcmPlayout` holds audio the server decoded and conceals by
pitch repetition. Both grow the delay by inserting a repeated hop.
"""

from typing import Any, Protocol

import numpy as np

from client.concealment import RepeatConcealer
from client.jitter import Event
from streaming_core.constants import HOP
from streaming_core.decoder import StreamDecoder


class Playout(Protocol):
    """Turns the jitter buffer's events into audio."""

    def hop(self, event: Event, item: Any) -> np.ndarray:
        """HOP float32 samples for this tick."""


def _fit(audio: np.ndarray) -> np.ndarray:
    """The last HOP samples (a reply may carry earlier, already-missed frames), zero-padded."""
    audio = np.asarray(audio, dtype=np.float32)[-HOP:]
    return np.pad(audio, (HOP - len(audio), 0))


class DecoderPlayout:
    """Items are packets of one frame; decoded at their turn, concealed by the decoder."""

    def __init__(self, decoder: StreamDecoder) -> None:
        self.decoder = decoder
        self.repeat = RepeatConcealer()

    def hop(self, event: Event, item: Any) -> np.ndarray:
        """Audio for this tick."""
        if event == "play":
            audio = _fit(self.decoder.decode(item))
            self.repeat.played_real(audio)
            return audio
        if event == "conceal":
            audio = _fit(self.decoder.conceal(1))
            self.repeat.observe(audio)
            return audio
        if event == "stretch":
            return self.repeat.conceal()
        return np.zeros(HOP, np.float32)


class PcmPlayout:
    """Items are hops of decoded PCM; missing ones are concealed by pitch repetition."""

    def __init__(self) -> None:
        self.repeat = RepeatConcealer()

    def hop(self, event: Event, item: Any) -> np.ndarray:
        """Audio for this tick."""
        if event == "play":
            audio = _fit(item)
            self.repeat.played_real(audio)
            return audio
        if event in ("conceal", "stretch"):
            return self.repeat.conceal()
        return np.zeros(HOP, np.float32)
