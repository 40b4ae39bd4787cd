"""Packet-loss simulators: independent (Bernoulli) and bursty (Gilbert-Elliott) loss.

The Gilbert-Elliott channel (Gilbert 1960, Elliott 1963) has a good and a bad state with their
own loss rates and switches between them with fixed probabilities, so losses come in bursts.
"""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class GilbertElliott:
    """Two-state bursty loss channel; `mean_burst` is the mean stay in the bad state (packets)."""

    loss_rate: float
    """Long-run fraction of packets lost."""
    mean_burst: float = 3.0
    loss_in_bad: float = 0.75
    loss_in_good: float = 0.0
    seed: int = 0
    bad: bool = False
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss_rate < self.loss_in_bad:
            raise ValueError(f"loss_rate must be in [0, {self.loss_in_bad})")
        self.rng = np.random.default_rng(self.seed)
        # Stationary share of the bad state that gives the requested loss rate.
        bad_share = (self.loss_rate - self.loss_in_good) / (self.loss_in_bad - self.loss_in_good)
        self.leave_bad = 1.0 / self.mean_burst
        self.enter_bad = self.leave_bad * bad_share / max(1.0 - bad_share, 1e-9)

    def lost(self) -> bool:
        """Whether the next packet is lost."""
        self.bad = self.rng.random() < ((1 - self.leave_bad) if self.bad else self.enter_bad)
        return bool(self.rng.random() < (self.loss_in_bad if self.bad else self.loss_in_good))


@dataclass
class RandomLoss:
    """Independent losses at a fixed rate."""

    loss_rate: float
    seed: int = 0
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def lost(self) -> bool:
        """Whether the next packet is lost."""
        return bool(self.rng.random() < self.loss_rate)


def drop_packets(packets: list[bytes], channel: GilbertElliott | RandomLoss) -> list[bytes]:
    """The packets that survive the channel, in order."""
    return [packet for packet in packets if not channel.lost()]
