"""The audio callback's work, one 10 ms hop per call: hand the captured hop to the link, then
play what the jitter buffer says. Runs on PortAudio's thread; the link may deliver frames from
another thread, hence the lock around the jitter buffer.
"""

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from client.jitter import JitterBuffer
from client.playout import Playout
from streaming_core.constants import HOP

Capture = Callable[[int, np.ndarray], None]
"""Receives (tick, captured hop); delivers coded frames to the jitter buffer sooner or later."""


@dataclass
class EngineState:
    """What the engine carries between callbacks."""

    tick: int = 0
    """Callbacks started so far; the hop captured by callback k is frame k."""
    events: Counter = field(default_factory=Counter)
    """Jitter-buffer events played ("play", "conceal", "stretch", "idle")."""
    xruns: int = 0
    """Callbacks that PortAudio flagged with an overflow or underflow."""
    captured: list[np.ndarray] = field(default_factory=list)
    """Recorded input hops, when recording."""
    played: list[np.ndarray] = field(default_factory=list)
    """Recorded output hops, when recording."""
    played_events: list[str] = field(default_factory=list)
    """The event of each recorded output hop, when recording."""
    delay_sum: int = 0
    """Sum over played ticks of the playout delay (for the mean)."""


class DuplexEngine:
    """Couples capture, link, jitter buffer and playout on one audio clock."""

    def __init__(self, jitter: JitterBuffer, playout: Playout, record: bool = False) -> None:
        self.jitter = jitter
        self.playout = playout
        self.record = record
        self.capture: Capture = lambda tick, hop: None
        self.state = EngineState()
        self.lock = threading.Lock()

    def deliver(self, frame: int, item: Any, lag: float) -> bool:
        """A coded or decoded frame arrived for tick `frame` (thread-safe)."""
        with self.lock:
            return self.jitter.put(frame, item, lag)

    def current_tick(self) -> int:
        """Callbacks started so far: a frame delivered now can play at this tick at the earliest."""
        return self.state.tick

    def process(self, captured: np.ndarray) -> np.ndarray:
        """One hop in, one hop out."""
        state = self.state
        tick = state.tick
        state.tick += 1
        hop = np.asarray(captured, dtype=np.float32).reshape(-1)[:HOP]
        self.capture(tick, hop)
        with self.lock:
            event, item = self.jitter.pop(tick)
            state.delay_sum += self.jitter.delay(tick + 1)
        out = self.playout.hop(event, item)
        state.events[event] += 1
        if self.record:
            state.captured.append(hop.copy())
            state.played.append(out.copy())
            state.played_events.append(event)
        return out

    def callback(self, indata: np.ndarray, outdata: np.ndarray, frames: int, time: Any,
                 status: Any) -> None:
        """sounddevice duplex callback (blocksize HOP, mono float32)."""
        if status:
            self.state.xruns += 1
        outdata[:, 0] = self.process(indata[:, 0])
