"""Packets and coded files: round trips, clear errors, and fuzzing of both parsers."""

import contextlib
import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streaming_core.bitpack import BitReader, BitWriter
from streaming_core.bitstream import (
    FILE_HEADER,
    FLAG_END,
    FLAG_NARROWBAND,
    FLAG_RESET,
    FORMAT_VERSION,
    PACKET_HEADER,
    FileHeader,
    Packet,
    parse_packet,
    read_coded_file,
    write_coded_file,
)
from streaming_core.codec import encode_audio
from streaming_core.decoder import StreamDecoder
from streaming_core.errors import BitstreamError
from streaming_core.modes import get_mode, list_modes


@pytest.fixture(scope="module")
def packets(speech) -> list[bytes]:
    return encode_audio(speech[:16000], "scalar-4000", frames_per_packet=3)


@given(st.lists(st.tuples(st.integers(1, 32), st.integers(0, 2**32 - 1)), max_size=60))
def test_bit_fields_round_trip(fields):
    writer = BitWriter()
    fields = [(bits, value % (1 << bits)) for bits, value in fields]
    for bits, value in fields:
        writer.write(value, bits)
    reader = BitReader(writer.to_bytes())
    assert [reader.read(bits) for bits, _ in fields] == [v for _, v in fields]
    reader.check_padding()


def test_packet_round_trip(packets):
    first = parse_packet(packets[0])
    assert first.reset and not first.end
    assert first.sequence == 0 and first.frame_count == 3
    assert first.mode.name == "scalar-4000"
    assert first.to_bytes() == packets[0]
    last = parse_packet(packets[-1])
    assert last.end and not last.reset
    sequences = [parse_packet(p).sequence for p in packets]
    assert sequences == list(range(0, 3 * len(packets), 3))
    assert not any(parse_packet(p).narrowband for p in packets)  # wideband speech


def test_the_narrowband_flag_round_trips(packets):
    flagged = dataclasses.replace(parse_packet(packets[1]), flags=FLAG_NARROWBAND)
    again = parse_packet(flagged.to_bytes())
    assert again.narrowband and not again.reset and not again.end
    assert again.payload == flagged.payload


def test_file_round_trip(packets):
    header = FileHeader(get_mode("scalar-4000"), 48000, 123456)
    data = write_coded_file(header, packets)
    parsed_header, parsed = read_coded_file(data)
    assert parsed_header == header
    assert [p.to_bytes() for p in parsed] == packets


def replace(packet: bytes, offset: int, value: int) -> bytes:
    return packet[:offset] + bytes([value]) + packet[offset + 1 :]


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda p: p[:3], "header alone"),
        (lambda p: p[:-1], "payload truncated"),
        (lambda p: p + b"\0", "payload oversized"),
        (lambda p: p + bytes(2000), "packet oversized"),
        (lambda p: replace(p, 0, ((FORMAT_VERSION + 1) << 4) | FLAG_RESET),
         f"unknown packet format version {FORMAT_VERSION + 1}"),
        (lambda p: replace(p, 0, (FORMAT_VERSION << 4) | 0x8), "reserved flag bits"),
        (lambda p: replace(p, 1, 200), "unknown mode id 200"),
        (lambda p: replace(p, 4, 0), "frame count 0"),
        (lambda p: replace(p, 4, 51), "frame count 51"),
        (lambda p: replace(p, 4, 4), "payload truncated"),
        (lambda p: b"", "header alone"),
    ],
)
def test_bad_packets_are_named(packets, corrupt, message):
    with pytest.raises(BitstreamError, match=message):
        parse_packet(corrupt(packets[0]))


def test_padding_must_be_zero_and_short():
    reader = BitReader(b"\xa1")
    assert reader.read(5) == 0b10100
    with pytest.raises(BitstreamError, match="padding bits are not zero"):
        reader.check_padding()
    reader = BitReader(b"\xa0\x00")
    reader.read(5)
    with pytest.raises(BitstreamError, match="extra byte"):
        reader.check_padding()
    with pytest.raises(BitstreamError, match="payload truncated"):
        BitReader(b"\xff").read(9)


def test_bad_files_are_named(packets):
    good = write_coded_file(FileHeader(get_mode("scalar-4000"), 16000, 16000), packets)
    cases = {
        b"RIFF" + good[4:]: "not a hopcodec file: magic",
        good[:10]: "shorter than the",
        good[:4] + bytes([FORMAT_VERSION + 1]) + good[5:]:
            f"unknown file format version {FORMAT_VERSION + 1}",
        good[:FILE_HEADER.size + 1]: "truncated inside the length prefix",
        good[:-1]: "file truncated: packet",
        good[:6] + (0).to_bytes(4, "big") + good[10:]: "impossible sample rate 0",
        good[:5] + b"\x63" + good[6:]: "unknown mode id 99",
        good[:FILE_HEADER.size] + b"\x00\x01" + good[FILE_HEADER.size + 2 :]: "impossible length 1",
    }
    for data, message in cases.items():
        with pytest.raises(BitstreamError, match=message):
            read_coded_file(data)


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=1200))
def test_fuzz_packet_parser_random_bytes(data):
    with contextlib.suppress(BitstreamError):
        parse_packet(data)


@FUZZ
@given(st.data())
def test_fuzz_decoder_with_mutated_packets(packets, data):
    """Valid packets with random byte edits, cuts and insertions: BitstreamError or audio."""
    decoder = StreamDecoder()
    for packet in packets[:6]:
        mutated = bytearray(packet)
        for _ in range(data.draw(st.integers(0, 4))):
            position = data.draw(st.integers(0, max(len(mutated) - 1, 0)))
            action = data.draw(st.sampled_from(["set", "cut", "insert"]))
            if action == "set" and mutated:
                mutated[position] = data.draw(st.integers(0, 255))
            elif action == "cut":
                del mutated[position:]
            else:
                mutated[position:position] = data.draw(st.binary(min_size=1, max_size=8))
        try:
            audio = decoder.decode(bytes(mutated))
        except BitstreamError:
            continue
        assert np.all(np.isfinite(audio))
        assert np.max(np.abs(audio), initial=0.0) <= 1.0


@FUZZ
@given(st.binary(max_size=400), st.sampled_from([m.name for m in list_modes() if not m.variable_rate]))
def test_fuzz_payload_bits_decode_to_bounded_audio(payload, mode_name):
    """Any payload of the right length decodes to finite, bounded audio (fixed-rate modes)."""
    mode = get_mode(mode_name)
    frames = max(1, min(50, 8 * len(payload) // mode.bits_per_frame))
    payload = payload[: mode.payload_bytes(frames)].ljust(mode.payload_bytes(frames), b"\0")
    bits = frames * mode.bits_per_frame
    if bits % 8:  # clear the padding bits so the packet is well formed
        last = payload[-1] & (0xFF << (8 - bits % 8)) & 0xFF
        payload = payload[:-1] + bytes([last])
    audio = StreamDecoder().decode(Packet(mode, 0, frames, payload, FLAG_RESET | FLAG_END).to_bytes())
    assert len(audio) == 160 * frames
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) <= 1.0


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_file_parser(data):
    with contextlib.suppress(BitstreamError):
        read_coded_file(b"HOPC" + bytes([FORMAT_VERSION]) + b"\x01\x00\x00\x3e\x80" + bytes(8) + data)
    with contextlib.suppress(BitstreamError):
        read_coded_file(data)


def test_header_size_is_documented():
    text = (Path(__file__).parent.parent / "docs" / "bitstream.md").read_text()
    assert f"{PACKET_HEADER.size} bytes" in text
    assert f"{FILE_HEADER.size} bytes" in text


@FUZZ
@given(st.binary(min_size=1, max_size=200),
       st.sampled_from([m.name for m in list_modes() if m.variable_rate]), st.integers(1, 20))
def test_fuzz_variable_rate_payloads(payload, mode_name, frames):
    """Random predictive payloads: a clear BitstreamError or finite, bounded audio."""
    mode = get_mode(mode_name)
    try:
        audio = StreamDecoder().decode(Packet(mode, 0, frames, payload, FLAG_RESET).to_bytes())
    except BitstreamError:
        return
    assert len(audio) == 160 * frames
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) <= 1.0


def test_a_packet_that_fails_to_parse_leaves_the_decoder_state_as_it_was(speech):
    """Frames of a damaged packet that did parse must not advance the predictor: the decoder
    works on a copy of the quantizer state and keeps it only when the whole packet parses."""
    stream = encode_audio(speech[:16000], "hop-1600", frames_per_packet=4)
    clean, tried = StreamDecoder(), StreamDecoder()
    for packet in stream[:5]:
        clean.decode(packet)
        tried.decode(packet)
    with pytest.raises(BitstreamError):
        tried.decode(stream[5][:-1])  # the first frames parse, the last one is cut
    for packet in stream[5:]:
        np.testing.assert_array_equal(tried.decode(packet), clean.decode(packet))
