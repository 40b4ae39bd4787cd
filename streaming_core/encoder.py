"""The streaming encoder: 16 kHz audio in any chunk sizes, packets out.

Audio is buffered to whole hops; each hop is analysed and quantized into the packet under
construction; a packet is emitted every `frames_per_packet` frames, flagged `NARROWBAND` when
the input up to its last hop is telephone-band (`streaming_core.bandwidth`). The same audio gives the
same bytes whatever the chunking.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streaming_core.analysis import Analyzer
from streaming_core.bandwidth import BandwidthDetector
from streaming_core.bitpack import BitWriter
from streaming_core.bitstream import (
    FLAG_END,
    FLAG_NARROWBAND,
    FLAG_RESET,
    MAX_FRAMES_PER_PACKET,
    SEQUENCE_MODULO,
    Packet,
)
from streaming_core.constants import HOP
from streaming_core.dsp_synth import DECODER_DELAY
from streaming_core.modes import DEFAULT_MODE, Mode, get_mode

RESET_INTERVAL = 100
"""Frames between predictor resets (1 s): a receiver that joins late or loses packets
re-synchronises at the next packet flagged RESET, at most this long (plus one packet) later."""


@dataclass
class EncoderState:
    """Everything the encoder carries between calls."""

    pending: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Input samples not yet making up a whole hop."""
    samples_in: int = 0
    """Input samples received since the last reset."""
    frame_index: int = 0
    """Index of the next frame to code."""
    quantizer_state: Any = None
    """State of the current mode's quantizer (e.g. a predictor's GRU state)."""
    packet_mode: Mode | None = None
    """Mode of the packet under construction (None when no frame is in it)."""
    packet_bits: BitWriter = field(default_factory=BitWriter)
    packet_frames: int = 0
    packet_first_frame: int = 0
    packet_flags: int = 0
    reset_next: bool = True
    """The next packet's first frame starts from a reset quantizer state."""
    last_reset_frame: int = 0
    """Frame index of the last reset."""


class StreamEncoder:
    """Encodes one stream; `push` takes float audio at 16 kHz (full scale 1.0)."""

    def __init__(self, mode: str | Mode = DEFAULT_MODE, frames_per_packet: int = 1,
                 reset_interval: int = RESET_INTERVAL) -> None:
        if not 1 <= frames_per_packet <= MAX_FRAMES_PER_PACKET:
            raise ValueError(f"frames_per_packet must be 1..{MAX_FRAMES_PER_PACKET}")
        self.reset_interval = reset_interval
        self.mode = mode if isinstance(mode, Mode) else get_mode(mode)
        self.frames_per_packet = frames_per_packet
        self.analyzer = Analyzer()
        self.bandwidth = BandwidthDetector()
        self.state = EncoderState()

    def reset(self) -> None:
        """Start a new stream: all history is forgotten, the next packet is flagged reset."""
        self.analyzer.reset()
        self.bandwidth.reset()
        self.state = EncoderState()

    def set_mode(self, mode: str | Mode) -> None:
        """Switch bitrate mode; it takes effect at the next packet."""
        self.mode = mode if isinstance(mode, Mode) else get_mode(mode)

    def push(self, audio: np.ndarray) -> list[bytes]:
        """Add audio; return the packets completed by it (possibly none)."""
        audio = np.asarray(audio, dtype=np.float64).reshape(-1)
        state = self.state
        state.samples_in += len(audio)
        buffered = np.concatenate((state.pending, audio))
        hops = len(buffered) // HOP
        state.pending = buffered[hops * HOP :]
        packets = []
        for i in range(hops):
            packet = self._code_hop(buffered[i * HOP : (i + 1) * HOP])
            if packet is not None:
                packets.append(packet)
        return packets

    def flush(self) -> list[bytes]:
        """End the stream: code the tail (zero-padded past the decoder delay), emit the rest.

        After `flush` the decoder's output covers every input sample. The encoder is then
        reset for a new stream.
        """
        state = self.state
        frames_needed = -(-(state.samples_in + DECODER_DELAY) // HOP)
        padding = frames_needed * HOP - state.samples_in
        packets = self.push(np.zeros(padding))
        if state.packet_frames:
            state.packet_flags |= FLAG_END
            packets.append(self._emit())
        elif packets:  # the padding completed a packet: flag it as the last one
            packets[-1] = bytes([packets[-1][0] | FLAG_END]) + packets[-1][1:]
        self.reset()
        return packets

    def _code_hop(self, hop: np.ndarray) -> bytes | None:
        state = self.state
        features = self.analyzer.analyze_hop(hop)
        self.bandwidth.push_hop(hop)
        if state.packet_frames == 0:
            self._start_packet()
        state.packet_mode.quantizer.encode(features, state.packet_bits, state.quantizer_state)
        state.packet_frames += 1
        state.frame_index += 1
        if state.packet_frames == self.frames_per_packet:
            return self._emit()
        return None

    def _start_packet(self) -> None:
        state = self.state
        key_changed = (state.packet_mode is not None
                       and state.packet_mode.state_key != self.mode.state_key)
        due = state.frame_index - state.last_reset_frame >= self.reset_interval
        if state.reset_next or key_changed or due:
            state.quantizer_state = self.mode.quantizer.new_state()
            state.packet_flags = FLAG_RESET
            state.reset_next = False
            state.last_reset_frame = state.frame_index
        else:
            state.packet_flags = 0
        state.packet_mode = self.mode
        state.packet_first_frame = state.frame_index
        state.packet_bits = BitWriter()
        self.mode.quantizer.start_packet(state.quantizer_state)

    def _emit(self) -> bytes:
        state = self.state
        if self.bandwidth.narrowband:
            state.packet_flags |= FLAG_NARROWBAND
        packet = Packet(
            mode=state.packet_mode,
            sequence=state.packet_first_frame % SEQUENCE_MODULO,
            frame_count=state.packet_frames,
            payload=state.packet_bits.to_bytes(),
            flags=state.packet_flags,
        )
        state.packet_frames = 0
        return packet.to_bytes()
