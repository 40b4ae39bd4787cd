"""`--local`: encode each captured hop and hand the packet straight to the jitter buffer."""

from collections.abc import Callable
from typing import Any

import numpy as np

from client.traffic import Traffic
from streaming_core.encoder import StreamEncoder

Deliver = Callable[[int, Any, float], bool]


class LocalLink:
    """Encoder and decoder in one process: every frame arrives in the tick it was captured."""

    def __init__(self, encoder: StreamEncoder, deliver: Deliver) -> None:
        self.encoder = encoder
        self.deliver = deliver
        self.traffic = Traffic()

    def capture(self, tick: int, hop: np.ndarray) -> None:
        """Encode the hop captured at `tick`; its packet is playable at once."""
        for packet in self.encoder.push(hop):
            self.traffic.sent(packet)
            self.deliver(tick, packet, 0.0)
