"""Packets and the coded-file container, byte by byte as in docs/bitstream.md.

Packet: a 5-byte header (version and flags, mode id, sequence number, frame count) and the
frames' bits. File: an 18-byte header (magic, version, mode, sample rate, length) and
length-prefixed packets. Every parse error is a `BitstreamError` that names the problem.
"""

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from streaming_core.errors import BitstreamError
from streaming_core.modes import Mode, mode_for_header

FORMAT_VERSION = 11
"""Format 11: the packet header's flag `NARROWBAND` (telephone-band input; the frames as in
format 10). Format 10: hop-1200's frames are tiered as hop-1600's are since format 9 (the same four tiers,
its own codes; format 9 coded hop-1200 as format 8, a transient flag and 's1' or 's1' + 's2' in
fixed-width fields). Format 9: hop-1600's frames choose one of four tiers of codebooks
(none, 's1', 'j12', 'j12' then 's3') and write the tier, voicing and pitch change as one
prefix-coded header symbol and the indices with prefix codes (`streaming_core.tiered`); every
other mode as in format 8, where hop-1600 sent a transient flag and one 6-bit 's1' or one 12-bit
'j12' index in fixed-width fields."""
PACKET_HEADER = struct.Struct(">BBHB")
MAX_FRAMES_PER_PACKET = 50
MAX_PACKET_BYTES = 1024
SEQUENCE_MODULO = 1 << 16

FLAG_RESET = 0x1
"""The packet's first frame starts from a reset predictor (a receiver can join here)."""
FLAG_END = 0x2
"""The last packet of the stream."""
FLAG_NARROWBAND = 0x4
"""The input holds nothing above 4 kHz: the decoder low-passes this packet's audio
(`streaming_core.bandwidth`)."""
KNOWN_FLAGS = FLAG_RESET | FLAG_END | FLAG_NARROWBAND

FILE_MAGIC = b"HOPC"
FILE_HEADER = struct.Struct(">4sBBIQ")
LENGTH_PREFIX = struct.Struct(">H")
UNKNOWN_LENGTH = (1 << 64) - 1
MAX_SAMPLE_RATE = 768_000


@dataclass(frozen=True)
class Packet:
    """One parsed packet. `sequence` is the index of its first frame modulo 2^16."""

    mode: Mode
    sequence: int
    frame_count: int
    payload: bytes
    flags: int = 0

    @property
    def reset(self) -> bool:
        """True when the first frame starts from a reset predictor."""
        return bool(self.flags & FLAG_RESET)

    @property
    def end(self) -> bool:
        """True on the last packet of a stream."""
        return bool(self.flags & FLAG_END)

    @property
    def narrowband(self) -> bool:
        """True when the encoder found its input band-limited to 4 kHz."""
        return bool(self.flags & FLAG_NARROWBAND)

    def to_bytes(self) -> bytes:
        """Serialized packet: header then payload."""
        header = PACKET_HEADER.pack(
            (FORMAT_VERSION << 4) | self.flags, self.mode.id, self.sequence, self.frame_count
        )
        return header + self.payload


def parse_packet(data: bytes) -> Packet:
    """Parse and validate one packet; `BitstreamError` names what is wrong."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BitstreamError(f"a packet is bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < PACKET_HEADER.size:
        raise BitstreamError(
            f"packet truncated: {len(data)} bytes, the header alone is {PACKET_HEADER.size}"
        )
    if len(data) > MAX_PACKET_BYTES:
        raise BitstreamError(f"packet oversized: {len(data)} bytes, at most {MAX_PACKET_BYTES}")
    first, mode_id, sequence, frame_count = PACKET_HEADER.unpack_from(data)
    version, flags = first >> 4, first & 0x0F
    if version != FORMAT_VERSION:
        raise BitstreamError(f"unknown packet format version {version} (this build reads {FORMAT_VERSION})")
    if flags & ~KNOWN_FLAGS:
        raise BitstreamError(f"reserved flag bits set in packet header: {flags:#x}")
    mode = mode_for_header(mode_id)
    if not 1 <= frame_count <= MAX_FRAMES_PER_PACKET:
        raise BitstreamError(f"frame count {frame_count} out of range 1..{MAX_FRAMES_PER_PACKET}")
    payload = data[PACKET_HEADER.size :]
    smallest, largest = mode.payload_range(frame_count)
    if not smallest <= len(payload) <= largest:
        kind = "truncated" if len(payload) < smallest else "oversized"
        expected = str(smallest) if smallest == largest else f"{smallest}..{largest}"
        raise BitstreamError(
            f"packet payload {kind}: {len(payload)} bytes for {frame_count} frame(s) of mode "
            f"{mode.name}, expected {expected}"
        )
    return Packet(mode=mode, sequence=sequence, frame_count=frame_count, payload=payload, flags=flags)


@dataclass(frozen=True)
class FileHeader:
    """Header of a coded file."""

    mode: Mode
    sample_rate: int
    """Sample rate of the original input (the default output rate when decoding)."""
    input_samples: int | None
    """Length of the original input at `sample_rate`, None when unknown."""

    def to_bytes(self) -> bytes:
        """Serialized header."""
        length = UNKNOWN_LENGTH if self.input_samples is None else self.input_samples
        return FILE_HEADER.pack(FILE_MAGIC, FORMAT_VERSION, self.mode.id, self.sample_rate, length)


def write_coded_file(header: FileHeader, packets: list[bytes]) -> bytes:
    """A whole coded file: header then length-prefixed packets."""
    parts = [header.to_bytes()]
    for packet in packets:
        parts += [LENGTH_PREFIX.pack(len(packet)), packet]
    return b"".join(parts)


def parse_file_header(data: bytes) -> FileHeader:
    """Parse and validate a coded file's header."""
    if len(data) < FILE_HEADER.size:
        raise BitstreamError(
            f"not a hopcodec file: {len(data)} bytes, shorter than the {FILE_HEADER.size}-byte header"
        )
    magic, version, mode_id, sample_rate, length = FILE_HEADER.unpack_from(data)
    if magic != FILE_MAGIC:
        raise BitstreamError(f"not a hopcodec file: magic {magic!r}, expected {FILE_MAGIC!r}")
    if version != FORMAT_VERSION:
        raise BitstreamError(f"unknown file format version {version} (this build reads {FORMAT_VERSION})")
    if not 1 <= sample_rate <= MAX_SAMPLE_RATE:
        raise BitstreamError(f"impossible sample rate {sample_rate} Hz in file header")
    return FileHeader(
        mode=mode_for_header(mode_id),
        sample_rate=sample_rate,
        input_samples=None if length == UNKNOWN_LENGTH else length,
    )


def iter_file_packets(data: bytes) -> Iterator[bytes]:
    """The raw packets of a coded file (after its header), each checked for length."""
    offset = FILE_HEADER.size
    index = 0
    while offset < len(data):
        if offset + LENGTH_PREFIX.size > len(data):
            raise BitstreamError(f"file truncated inside the length prefix of packet {index}")
        (length,) = LENGTH_PREFIX.unpack_from(data, offset)
        offset += LENGTH_PREFIX.size
        if not PACKET_HEADER.size <= length <= MAX_PACKET_BYTES:
            raise BitstreamError(f"packet {index} has impossible length {length}")
        if offset + length > len(data):
            raise BitstreamError(
                f"file truncated: packet {index} needs {length} bytes, {len(data) - offset} left"
            )
        yield data[offset : offset + length]
        offset += length
        index += 1


def read_coded_file(data: bytes) -> tuple[FileHeader, list[Packet]]:
    """Header and parsed packets of a whole coded file."""
    header = parse_file_header(data)
    packets = []
    for index, raw in enumerate(iter_file_packets(data)):
        try:
            packets.append(parse_packet(raw))
        except BitstreamError as error:
            raise BitstreamError(f"packet {index}: {error}") from None
    return header, packets
