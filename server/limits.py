"""Per-stream rate limit (a token bucket counted in audio seconds) and the stream-slot counter."""

import time
from collections.abc import Callable


class AudioBucket:
    """Lets a stream send audio at `multiple` times real time, `burst` seconds ahead of that.

    The bucket holds audio seconds: it starts full with `burst`, refills at `multiple` seconds
    per wall-clock second, and each message takes the audio it carries (or produces).
    """

    def __init__(self, multiple: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.multiple = multiple
        self.burst = burst
        self.clock = clock
        self.level = burst
        self.updated = clock()

    def take(self, seconds: float) -> bool:
        """Take `seconds` of audio; False (and nothing taken) when the stream is over its rate."""
        now = self.clock()
        self.level = min(self.burst, self.level + (now - self.updated) * self.multiple)
        self.updated = now
        if seconds > self.level:
            return False
        self.level -= seconds
        return True


class StreamSlots:
    """Counts open streams against a maximum (one event loop per process: no lock needed)."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.open = 0

    def acquire(self) -> bool:
        """Take a slot; False when all are taken."""
        if self.open >= self.maximum:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        """Give a slot back."""
        self.open -= 1
