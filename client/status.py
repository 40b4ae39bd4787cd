"""The mic client's live figures and the one-line status it prints."""

from dataclasses import asdict, dataclass

from streaming_core.constants import HOP, SAMPLE_RATE

HOP_MS = 1000.0 * HOP / SAMPLE_RATE


def mouth_to_ear_ms(device_ms: float, decoder_delay_ms: float, delay_ticks: float) -> float:
    """Mouth-to-ear estimate: device buffers (in + out, each holding at least one hop), the
    decoder's delay, and the jitter buffer's playout delay (which covers encode, network and
    server decode)."""
    return device_ms + decoder_delay_ms + delay_ticks * HOP_MS


@dataclass
class MicStatus:
    """A snapshot of the mic loopback."""

    seconds: float
    payload_bps: float
    wire_bps: float
    lost: int
    """Frames that never played: late replies and packets skipped as too late."""
    concealed: int
    """Hops concealed (missing at their turn) or inserted (delay grown)."""
    rtt_ms: float | None
    depth: int
    """Frames waiting in the jitter buffer."""
    delay_ticks: int
    target_ticks: int
    mouth_to_ear_ms: float
    budget_ms: float
    reconnects: int = 0
    xruns: int = 0

    def line(self) -> str:
        """One status line."""
        rtt = "-" if self.rtt_ms is None else f"{self.rtt_ms:.1f} ms"
        flag = "" if self.mouth_to_ear_ms <= self.budget_ms else " OVER BUDGET"
        extra = f" | reconnects {self.reconnects}" if self.reconnects else ""
        extra += f" | xruns {self.xruns}" if self.xruns else ""
        return (f"{self.seconds:6.1f} s | {self.payload_bps / 1000:.2f} kbit/s "
                f"({self.wire_bps / 1000:.1f} on the wire) | lost {self.lost} concealed {self.concealed}"
                f" | rtt {rtt} | jitter buffer {self.depth} waiting, delay {self.delay_ticks}/"
                f"{self.target_ticks} hops | mouth-to-ear ~{self.mouth_to_ear_ms:.0f} ms of "
                f"{self.budget_ms:.0f}{flag}{extra}")

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)
