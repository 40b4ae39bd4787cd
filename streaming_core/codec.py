"""Whole-signal helpers over the streaming encoder and decoder (files, tests, the bench)."""

import numpy as np

from streaming_core.bitstream import PACKET_HEADER
from streaming_core.constants import HOP, NB_FEATURES
from streaming_core.decoder import StreamDecoder, Synthesizer
from streaming_core.encoder import StreamEncoder
from streaming_core.modes import DEFAULT_MODE, Mode

FILE_FRAMES_PER_PACKET = 20
"""Frames per packet in coded files (200 ms: 5 header + 2 length bytes per 20 frames)."""


def encode_audio(
    signal: np.ndarray, mode: str | Mode = DEFAULT_MODE, frames_per_packet: int = 1
) -> list[bytes]:
    """Packets for a whole 16 kHz mono signal."""
    encoder = StreamEncoder(mode, frames_per_packet=frames_per_packet)
    return encoder.push(signal) + encoder.flush()


def decode_packets(
    packets: list[bytes], n_samples: int, synthesizer: Synthesizer | None = None
) -> np.ndarray:
    """16 kHz audio for a whole stream, delay removed: sample i stands for input sample i."""
    decoder = StreamDecoder(synthesizer)
    audio = np.concatenate([decoder.decode(p) for p in packets] or [np.zeros(0, np.float32)])
    aligned = audio[decoder.delay : decoder.delay + n_samples]
    return np.pad(aligned, (0, n_samples - len(aligned)))


def payload_bits(packets: list[bytes]) -> int:
    """Payload bits in packets (headers excluded)."""
    return 8 * sum(len(p) - PACKET_HEADER.size for p in packets)


class FeatureRecorder:
    """A 'synthesizer' that keeps the decoded features and returns silence (for measuring the
    quantizer alone)."""

    name = "features"
    delay = 0

    def new_state(self) -> list:
        """Per-stream list of decoded frames."""
        return []

    def synthesize(self, features: np.ndarray, state: list, bitrate_bps: float | None = None
                   ) -> np.ndarray:
        """Record the frames; return silence of their length."""
        state.extend(np.asarray(features, dtype=np.float32))
        return np.zeros(len(features) * HOP, dtype=np.float32)


def decode_features(packets: list[bytes]) -> tuple[np.ndarray, StreamDecoder]:
    """Decoded (and concealed) features (n, NB_FEATURES) of a packet stream, and its decoder."""
    decoder = StreamDecoder(FeatureRecorder())
    for packet in packets:
        decoder.decode(packet)
    frames = decoder.state.synth
    return (np.stack(frames) if frames else np.zeros((0, NB_FEATURES), np.float32)), decoder
