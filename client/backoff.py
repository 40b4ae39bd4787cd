"""Reconnection delays: exponential backoff with jitter and a cap."""

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delays before successive reconnection attempts."""

    initial: float = 0.2
    """Seconds before the first retry."""
    factor: float = 2.0
    maximum: float = 2.0
    """No delay is longer than this."""
    attempts: int = 5
    """Retries after the first failure; 0 never retries."""
    jitter: float = 0.25
    """Each delay is scaled by a random factor in [1 - jitter, 1 + jitter]."""

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The delay before each retry, `attempts` of them."""
        rng = rng or random.Random()
        delay = self.initial
        for _ in range(self.attempts):
            yield min(delay, self.maximum) * rng.uniform(1 - self.jitter, 1 + self.jitter)
            delay *= self.factor


NO_RETRY = Backoff(attempts=0)
