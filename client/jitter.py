"""Adaptive jitter buffer: frames wait here between arrival and their turn to play.

Time is counted in ticks of the audio clock, one tick per 10 ms hop (one duplex audio callback):
the frame captured at tick k is played at tick k + delay. The buffer learns how late frames
arrive (their lag, in ticks, past the tick at which they were captured), sets its target delay
to a high quantile of recent lags, clamped to [min_delay, max_delay] so that the total latency
stays within the budget, and moves the actual delay towards the target one hop at a time:
inserting a hop to grow (stretch), skipping a waiting hop to shrink (drop). A frame that is not
there at its turn is concealed; if it comes later it is discarded as late.
"""

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Event = Literal["play", "conceal", "stretch", "idle"]
"""What the playout does this tick: play the frame, conceal a missing frame, insert a hop to
grow the delay, or output silence because no frame has arrived yet."""


@dataclass(frozen=True)
class JitterConfig:
    """How the buffer adapts."""

    min_delay: int = 0
    """Smallest playout delay in ticks (0: a frame may play in the tick it was captured)."""
    max_delay: int = 10
    """Largest playout delay in ticks; set from the latency budget."""
    quantile: float = 0.98
    """The target delay covers this fraction of recent lags."""
    window: int = 100
    """Lags remembered (1 s of frames): a burst of late frames is forgotten a second later."""
    margin: float = 0.0
    """Ticks added to the lag quantile before rounding up."""
    hysteresis: int = 1
    """Ticks above the target tolerated before hops are dropped."""
    shrink_every: int = 5
    """At most one hop dropped per this many ticks."""

    def __post_init__(self) -> None:
        if not 0 <= self.min_delay <= self.max_delay:
            raise ValueError(f"need 0 <= min_delay <= max_delay, got {self.min_delay}, {self.max_delay}")
        if not 0 < self.quantile <= 1:
            raise ValueError(f"quantile must be in (0, 1], got {self.quantile}")


@dataclass
class JitterBufferState:
    """Everything the buffer carries between ticks."""

    waiting: dict[int, Any] = field(default_factory=dict)
    """Frame index -> item (a packet or a hop of PCM) not yet played."""
    next_play: int | None = None
    """Frame index whose turn is next (None until the first frame arrives)."""
    target: int = 0
    """Target playout delay in ticks."""
    lags: deque = field(default_factory=deque)
    """Recent arrival lags in ticks."""
    last_shrink: int = -(1 << 30)
    played: int = 0
    concealed: int = 0
    """Frames missing at their turn (the playout concealed them)."""
    stretched: int = 0
    """Hops inserted to grow the delay."""
    dropped: int = 0
    """Waiting frames skipped to shrink the delay."""
    late: int = 0
    """Frames that arrived after their turn (discarded)."""


class JitterBuffer:
    """One stream's jitter buffer; not thread-safe (callers hold a lock)."""

    def __init__(self, config: JitterConfig | None = None) -> None:
        self.config = config or JitterConfig()
        self.state = JitterBufferState(target=self.config.min_delay)

    def reset(self) -> None:
        """Forget every frame and statistic."""
        self.state = JitterBufferState(target=self.config.min_delay)

    def put(self, frame: int, item: Any, lag: float) -> bool:
        """Add the frame captured at tick `frame`, which can play `lag` ticks after its capture at
        the earliest. False (and counted as late) when its turn has passed."""
        state = self.state
        state.lags.append(max(lag, 0.0))
        if len(state.lags) > self.config.window:
            state.lags.popleft()
        state.target = self._target()
        if state.next_play is not None and frame < state.next_play:
            state.late += 1
            return False
        state.waiting[frame] = item
        return True

    def _target(self) -> int:
        config = self.config
        lag = float(np.quantile(np.fromiter(self.state.lags, float), config.quantile))
        return min(max(math.ceil(lag + config.margin - 1e-9), config.min_delay), config.max_delay)

    def delay(self, tick: int) -> int:
        """Current playout delay in ticks (0 before playout starts)."""
        return 0 if self.state.next_play is None else tick - self.state.next_play

    @property
    def depth(self) -> int:
        """Frames waiting for their turn."""
        return len(self.state.waiting)

    def pop(self, tick: int) -> tuple[Event, Any]:
        """What to play at `tick`: the event and, for "play", the frame's item."""
        state, config = self.state, self.config
        if state.next_play is None:
            if not state.waiting:
                return "idle", None
            state.next_play = max(tick - state.target, min(state.waiting))
        for stale in [f for f in state.waiting if f < state.next_play]:
            del state.waiting[stale]
            state.late += 1
        delay = tick - state.next_play
        if delay < state.target:
            state.stretched += 1
            return "stretch", None
        if (delay > state.target + config.hysteresis and state.next_play in state.waiting
                and tick - state.last_shrink >= config.shrink_every):
            del state.waiting[state.next_play]
            state.next_play += 1
            state.dropped += 1
            state.last_shrink = tick
        item = state.waiting.pop(state.next_play, None)
        state.next_play += 1
        if item is None:
            state.concealed += 1
            return "conceal", None
        state.played += 1
        return "play", item
