"""Counters of coded traffic: packets, payload and wire bits, round-trip times."""

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from streaming_core.bitstream import PACKET_HEADER


@dataclass
class Traffic:
    """What a link sent and how long replies took."""

    packets: int = 0
    payload_bits: int = 0
    wire_bits: int = 0
    """Payload plus packet headers."""
    skipped: int = 0
    """Packets not sent because they were already too late (the server conceals them)."""
    replies: int = 0
    rtts: deque = field(default_factory=lambda: deque(maxlen=200))
    """Recent round-trip times in seconds (send to reply)."""
    reconnects: int = 0
    errors: int = 0
    """Replies that were error messages (a packet the server could not parse)."""

    def sent(self, packet: bytes) -> None:
        """Count a packet handed to the network (or to the local decoder)."""
        self.packets += 1
        self.wire_bits += 8 * len(packet)
        self.payload_bits += 8 * (len(packet) - PACKET_HEADER.size)

    def replied(self, rtt: float) -> None:
        """Count a reply that took `rtt` seconds."""
        self.replies += 1
        self.rtts.append(rtt)

    def rtt_ms(self) -> float | None:
        """Median recent round trip in ms, None without replies."""
        return 1000.0 * float(np.median(self.rtts)) if self.rtts else None
