"""The streaming decoder: packets in, 16 kHz audio out, lost frames concealed.

A `StreamDecoder` owns one stream's `DecoderState`; the synthesizer it calls (DSP baseline or
an ONNX neural decoder) is stateless and may be shared by any number of streams. Sequence
numbers reveal lost frames, which are concealed from the quantizer's guess; late or duplicate
packets are dropped and counted. The audio of packets flagged `NARROWBAND` (and of frames
concealed after one) is low-passed at 4 kHz (`streaming_core.bandwidth`).
"""

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streaming_core.bandwidth import BandLimiterState, limit_band
from streaming_core.bitpack import BitReader
from streaming_core.bitstream import SEQUENCE_MODULO, Packet, parse_packet
from streaming_core.constants import HOP
from streaming_core.errors import BitstreamError
from streaming_core.modes import Mode
from streaming_core.synthesizers import Synthesizer, default_synthesizer

MAX_CONCEALED_GAP = 100
"""A gap of more frames than this (1 s) is not concealed frame by frame: the stream restarts."""


@dataclass
class DecoderState:
    """Everything one stream's decoder carries between packets."""

    synth: Any
    """The synthesizer's per-stream state (filter memories, GRU states, ...)."""
    band_limiter: BandLimiterState = field(default_factory=BandLimiterState)
    """The low-pass for telephone-band streams: its memory and the last packet's flag."""
    quantizer_states: dict[object, Any] = field(default_factory=dict)
    """Per quantizer state key (see `Mode.state_key`): the dequantizer's state."""
    current_mode: Mode | None = None
    """Mode of the last packet decoded (for concealment)."""
    next_frame: int | None = None
    """Sequence number expected next (None before the first packet)."""
    frames_decoded: int = 0
    frames_concealed: int = 0
    frames_unsynced: int = 0
    """Frames played as silence because the stream was joined between resets."""
    packets_dropped: int = 0
    """Late or duplicate packets that were not played."""


class StreamDecoder:
    """Decodes one stream of packets to 16 kHz float32 audio."""

    def __init__(self, synthesizer: Synthesizer | None = None) -> None:
        """`synthesizer`: the decoder back end, by default the best installed one."""
        self.synthesizer = synthesizer if synthesizer is not None else default_synthesizer()
        self.state = DecoderState(synth=self.synthesizer.new_state())

    def reset(self) -> None:
        """Start a new stream: forget all history."""
        self.state = DecoderState(synth=self.synthesizer.new_state())

    @property
    def delay(self) -> int:
        """Decoder delay in samples."""
        return self.synthesizer.delay

    def decode(self, data: bytes | Packet) -> np.ndarray:
        """Audio for one packet, preceded by concealment of any frames lost before it.

        A late or duplicate packet returns no audio. Raises `BitstreamError` for a packet that
        cannot be decoded; the decoder state is then unchanged.
        """
        packet = data if isinstance(data, Packet) else parse_packet(data)
        state = self.state
        concealed = np.zeros(0, dtype=np.float32)
        if state.next_frame is not None:
            gap = (packet.sequence - state.next_frame) % SEQUENCE_MODULO
            if gap >= SEQUENCE_MODULO // 2:
                state.packets_dropped += 1
                return concealed
            if gap > MAX_CONCEALED_GAP:
                self.reset()
                state = self.state
            elif gap:
                before = copy.copy(state)
                before.synth = copy.deepcopy(state.synth)
                before.band_limiter = copy.deepcopy(state.band_limiter)
                before.quantizer_states = copy.deepcopy(state.quantizer_states)
                concealed = self.conceal(gap)
        try:
            features = self._dequantize(packet)
        except BitstreamError:
            if len(concealed):  # leave no trace of a packet that cannot be decoded
                self.state = before
            raise
        if features is None:
            state.next_frame = (packet.sequence + packet.frame_count) % SEQUENCE_MODULO
            state.frames_unsynced += packet.frame_count
            audio = np.zeros(packet.frame_count * HOP, dtype=np.float32)
        else:
            audio = self.synthesizer.synthesize(features, state.synth, packet.mode.bitrate_bps)
            audio = self.play(packet, audio)
        return np.concatenate((concealed, audio)) if len(concealed) else audio

    def conceal(self, frames: int) -> np.ndarray:
        """Audio for `frames` lost frames, from the quantizer's guess of each."""
        state = self.state
        if frames <= 0 or state.current_mode is None:
            return np.zeros(0, dtype=np.float32)
        quantizer = state.current_mode.quantizer
        qstate = state.quantizer_states[state.current_mode.state_key]
        guesses = np.stack([quantizer.conceal(qstate) for _ in range(frames)])
        state.frames_concealed += frames
        if state.next_frame is not None:
            state.next_frame = (state.next_frame + frames) % SEQUENCE_MODULO
        audio = self.synthesizer.synthesize(guesses, state.synth, state.current_mode.bitrate_bps)
        return limit_band(audio, state.band_limiter.narrowband, state.band_limiter)

    def starting_state(self, packet: Packet) -> Any | None:
        """A copy of the dequantizer state the packet's first frame starts from (a fresh one
        after a reset), to decode on and keep once the whole packet parsed; None when the packet
        needs a predictor state this decoder does not have (it joined the stream after a reset):
        its frames are played as silence until the next reset."""
        quantizer = packet.mode.quantizer
        states = self.state.quantizer_states
        key = packet.mode.state_key
        if packet.reset:
            state = quantizer.new_state()
        elif key in states:
            state = states[key].copy()
        elif getattr(quantizer, "variable_rate", False):
            return None
        else:
            state = quantizer.new_state()
        quantizer.start_packet(state)
        return state

    def play(self, packet: Packet, audio: np.ndarray) -> np.ndarray:
        """The audio synthesized from a packet's dequantized frames, as played (low-passed when
        the packet is flagged telephone-band), with the stream's bookkeeping of that packet."""
        state = self.state
        state.next_frame = (packet.sequence + packet.frame_count) % SEQUENCE_MODULO
        state.current_mode = packet.mode
        state.frames_decoded += packet.frame_count
        return limit_band(audio, packet.narrowband, state.band_limiter)

    def _dequantize(self, packet: Packet) -> np.ndarray | None:
        """Features of every frame in the packet (None: see `starting_state`); the state
        changes only if all of them parse."""
        trial = self.starting_state(packet)
        if trial is None:
            return None
        quantizer = packet.mode.quantizer
        reader = BitReader(packet.payload)
        frames = [quantizer.decode(reader, trial) for _ in range(packet.frame_count)]
        reader.check_padding()
        self.state.quantizer_states[packet.mode.state_key] = trial
        return np.stack(frames)
