"""Streaming equals batch: any chunking gives the same bytes and the same audio."""

import numpy as np
import pytest

from streaming_core.codec import decode_packets, encode_audio
from streaming_core.decoder import StreamDecoder
from streaming_core.encoder import StreamEncoder
from streaming_core.modes import list_modes

MODES = [m.name for m in list_modes()]


def encode_in_chunks(signal: np.ndarray, chunk: int, mode: str, frames_per_packet: int = 1):
    encoder = StreamEncoder(mode, frames_per_packet=frames_per_packet)
    packets = []
    for start in range(0, len(signal), chunk):
        packets += encoder.push(signal[start : start + chunk])
    return packets + encoder.flush()


def decode_all(packets: list[bytes]) -> np.ndarray:
    decoder = StreamDecoder()
    return np.concatenate([decoder.decode(p) for p in packets])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("chunk", [1, 37, 160, 1000], ids=lambda c: f"chunk{c}")
def test_chunking_gives_identical_bits_and_audio(speech, chunk, mode):
    signal = speech[:16000] if chunk == 1 else speech
    whole = encode_in_chunks(signal, len(signal), mode)
    chunked = encode_in_chunks(signal, chunk, mode)
    assert chunked == whole
    np.testing.assert_array_equal(decode_all(chunked), decode_all(whole))


@pytest.mark.parametrize("frames_per_packet", [2, 5, 50])
def test_packetization_does_not_change_the_audio(speech, frames_per_packet):
    single = decode_all(encode_in_chunks(speech, 1000, "scalar-2400", 1))
    grouped = decode_all(encode_in_chunks(speech, 1000, "scalar-2400", frames_per_packet))
    np.testing.assert_array_equal(single, grouped)


def test_reset_restores_the_initial_state(speech):
    encoder, decoder = StreamEncoder(), StreamDecoder()
    first = [decoder.decode(p) for p in encoder.push(speech[:8000])]
    encoder.reset()
    decoder.reset()
    second = [decoder.decode(p) for p in encoder.push(speech[:8000])]
    assert len(first) == len(second) == 50
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_decoded_length_and_alignment(speech):
    packets = encode_audio(speech)
    decoded = decode_packets(packets, len(speech))
    assert decoded.shape == speech.shape
    # The frame energy envelope of the output follows the input's without a shift.
    frames = len(speech) // 160
    def env(x):
        return 10 * np.log10(np.mean(x[: frames * 160].reshape(frames, 160) ** 2, axis=1) + 1e-8)
    a, b = env(speech), env(decoded)
    shifts = {k: np.corrcoef(a[2:-2], np.roll(b, k)[2:-2])[0, 1] for k in (-1, 0, 1)}
    assert max(shifts, key=shifts.get) == 0
    assert shifts[0] > 0.9


def test_mode_switch_mid_stream(speech):
    encoder = StreamEncoder("scalar-2400", frames_per_packet=4)
    packets = encoder.push(speech[:8000])
    encoder.set_mode("scalar-4000")
    packets += encoder.push(speech[8000:16000]) + encoder.flush()
    sizes = {len(p) for p in packets[:-1]}
    assert len(sizes) == 2  # both modes' packet sizes appear
    decoder = StreamDecoder()
    audio = np.concatenate([decoder.decode(p) for p in packets])
    assert decoder.state.frames_concealed == 0
    assert len(audio) >= 16000
