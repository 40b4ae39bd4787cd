"""The codec work of one WebSocket stream, free of any networking: bytes in, messages out.

A session is used by one connection at a time, one call at a time (the connection awaits each
call before it reads the next message), so it needs no lock; the synthesizer it calls is
shared by every stream and is stateless.
"""

from dataclasses import dataclass, field

import numpy as np

from server.pcm import StreamResampler, float_to_pcm, pcm_to_float
from streaming_core.batch_decoder import decode_together
from streaming_core.bitstream import (
    MAX_FRAMES_PER_PACKET,
    PACKET_HEADER,
    SEQUENCE_MODULO,
    Packet,
    parse_packet,
)
from streaming_core.constants import HOP, SAMPLE_RATE
from streaming_core.decoder import MAX_CONCEALED_GAP, DecoderState, StreamDecoder
from streaming_core.encoder import StreamEncoder
from streaming_core.errors import BitstreamError
from streaming_core.modes import Mode, get_mode
from streaming_core.synthesizers import Synthesizer

HOP_SECONDS = HOP / SAMPLE_RATE


@dataclass
class Work:
    """What one call produced: messages to send and what to count."""

    messages: list[bytes] = field(default_factory=list)
    hops: int = 0
    """10 ms hops of codec work done (decoded, concealed or encoded)."""
    decoded: int = 0
    concealed: int = 0
    dropped: int = 0
    unsynced: int = 0
    """Frames played as silence: the stream was joined between predictor resets."""
    encoded: int = 0


class Session:
    """Base of the three stream kinds."""

    endpoint = ""
    mode: Mode | None = None
    rate: int = SAMPLE_RATE
    """Sample rate of the PCM the client sends or receives."""

    def cost_seconds(self, data: bytes) -> float:
        """Audio seconds that processing `data` will produce (for the rate limit)."""
        raise NotImplementedError

    def process(self, data: bytes) -> Work:
        """Handle one binary message; `HopcodecError` for a malformed one (state unchanged)."""
        raise NotImplementedError

    def flush(self) -> Work:
        """End the current stream: everything still buffered comes out."""
        return Work()

    def set_mode(self, name: str) -> None:
        """Switch bitrate mode at the next packet; `KeyError` for an unknown one."""
        raise ValueError(f"the {self.endpoint} endpoint follows the mode of each packet")

    def stats(self) -> dict[str, int]:
        """Counters of this stream for the stats message."""
        return {}


class _Decoding:
    """Packets to PCM at the client's rate: the decoder and its output resampler."""

    def __init__(self, synthesizer: Synthesizer, rate: int) -> None:
        self.decoder = StreamDecoder(synthesizer)
        self.resampler = StreamResampler(SAMPLE_RATE, rate)
        self.totals = Work()
        """Counts over the whole connection (the decoder's own restart after a long gap)."""

    def decode(self, packets: list[bytes], work: Work, last: bool = False) -> np.ndarray:
        """PCM for these packets at the client's rate.

        `last` (or a packet flagged END) ends the stream: the resampler's tail comes out and the
        decoder starts afresh, so the next packet may begin a new stream at sequence 0.
        """
        audio = [np.zeros(0, np.float32)]
        for data in packets:
            packet = parse_packet(data)
            before = self.counts()
            audio.append(self.decoder.decode(packet))
            self.count(before, work)
            last = last or packet.end
        return self.finish(audio, last)

    def counts(self) -> tuple[DecoderState, tuple[int, int, int, int]]:
        """The decoder's counters before a packet (with the state they belong to)."""
        return self.decoder.state, _counts(self.decoder.state)

    def count(self, before: tuple[DecoderState, tuple[int, int, int, int]], work: Work) -> None:
        """Add what the decoder counted since `before` to `work` and to the totals."""
        state, numbers = before
        if self.decoder.state is not state:  # a gap too long to conceal restarted the decoder
            numbers = (0, 0, 0, 0)
        after = _counts(self.decoder.state)
        for total in (work, self.totals):
            total.decoded += after[0] - numbers[0]
            total.concealed += after[1] - numbers[1]
            total.dropped += after[2] - numbers[2]
            total.unsynced += after[3] - numbers[3]

    def finish(self, audio: list[np.ndarray], last: bool) -> np.ndarray:
        """The decoded audio at the client's rate; `last` ends the stream (see `decode`)."""
        if last:
            self.decoder.reset()
        return self.resampler.push(np.concatenate(audio), last=last)

    def expected_gap(self, packet: Packet) -> int:
        """Frames the decoder will conceal before this packet."""
        expected = self.decoder.state.next_frame
        if expected is None:
            return 0
        gap = (packet.sequence - expected) % SEQUENCE_MODULO
        return gap if gap <= MAX_CONCEALED_GAP else 0


def _played(work: Work, audio: np.ndarray) -> Work:
    """`work` with its hop count and the decoded audio as its PCM message."""
    work.hops = work.decoded + work.concealed + work.unsynced
    work.messages.append(float_to_pcm(audio))
    return work


def _counts(state: DecoderState) -> tuple[int, int, int, int]:
    return (state.frames_decoded, state.frames_concealed, state.packets_dropped,
            getattr(state, "frames_unsynced", 0))


def _frames_in_header(data: bytes) -> int:
    return min(max(PACKET_HEADER.unpack_from(data)[3], 1), MAX_FRAMES_PER_PACKET)


class DecodeSession(Session):
    """WS /v1/decode: one packet in, its PCM (after any concealed frames) out."""

    endpoint = "decode"

    def __init__(self, synthesizer: Synthesizer, rate: int) -> None:
        self.rate = rate
        self.decoding = _Decoding(synthesizer, rate)

    def cost_seconds(self, data: bytes) -> float:
        """The packet's frames and the lost ones to conceal before it; a hop if it is malformed."""
        try:
            packet = parse_packet(data)
        except BitstreamError:
            return HOP_SECONDS
        return (packet.frame_count + self.decoding.expected_gap(packet)) * HOP_SECONDS

    def process(self, data: bytes) -> Work:
        work = Work()
        return _played(work, self.decoding.decode([data], work))

    @staticmethod
    def process_together(sessions: "list[DecodeSession]", messages: list[bytes]
                         ) -> list[Work | BitstreamError]:
        """`process` for one message of each of several streams, decoded in one pass
        (`streaming_core.batch_decoder`); a malformed message gets its `BitstreamError` and
        leaves its stream as it was, as `process` would."""
        results: list[Work | BitstreamError | None] = [None] * len(sessions)
        ready: list[tuple[int, Packet]] = []
        for i, data in enumerate(messages):
            try:
                ready.append((i, parse_packet(data)))
            except BitstreamError as error:
                results[i] = error
        decodings = [sessions[i].decoding for i, _ in ready]
        before = [decoding.counts() for decoding in decodings]
        decoded = decode_together([decoding.decoder for decoding in decodings],
                                  [packet for _, packet in ready])
        for (i, packet), decoding, counts, audio in zip(ready, decodings, before, decoded,
                                                        strict=True):
            if isinstance(audio, BitstreamError):
                results[i] = audio
                continue
            work = Work()
            decoding.count(counts, work)
            results[i] = _played(work, decoding.finish([audio], packet.end))
        return results  # type: ignore[return-value]

    def flush(self) -> Work:
        work = Work()
        tail = self.decoding.decode([], work, last=True)
        if len(tail):
            work.messages.append(float_to_pcm(tail))
        return work

    def stats(self) -> dict[str, int]:
        totals = self.decoding.totals
        return {"frames_decoded": totals.decoded, "frames_concealed": totals.concealed,
                "frames_unsynced": totals.unsynced, "packets_dropped": totals.dropped}


class EncodeSession(Session):
    """WS /v1/encode: PCM at the client's rate in, finished packets out."""

    endpoint = "encode"

    def __init__(self, mode: str, rate: int, frames_per_packet: int = 1) -> None:
        self.rate = rate
        self.encoder = StreamEncoder(mode, frames_per_packet=frames_per_packet)
        self.resampler = StreamResampler(rate, SAMPLE_RATE)
        self.frames_encoded = 0

    @property
    def mode(self) -> Mode:  # type: ignore[override]
        return self.encoder.mode

    def cost_seconds(self, data: bytes) -> float:
        return len(data) / 2 / self.rate

    def set_mode(self, name: str) -> None:
        self.encoder.set_mode(get_mode(name))

    def encode(self, data: bytes, work: Work) -> list[bytes]:
        signal = self.resampler.push(pcm_to_float(data))
        return self._count(self.encoder.push(signal), work)

    def encode_flush(self, work: Work) -> list[bytes]:
        tail = self.resampler.push(np.zeros(0, np.float32), last=True)
        packets = self.encoder.push(tail) + self.encoder.flush()
        return self._count(packets, work)

    def _count(self, packets: list[bytes], work: Work) -> list[bytes]:
        frames = sum(_frames_in_header(p) for p in packets)
        self.frames_encoded += frames
        work.encoded += frames
        work.hops += frames
        return packets

    def process(self, data: bytes) -> Work:
        work = Work()
        work.messages = self.encode(data, work)
        return work

    def flush(self) -> Work:
        work = Work()
        work.messages = self.encode_flush(work)
        return work

    def stats(self) -> dict[str, int]:
        return {"frames_encoded": self.frames_encoded}


class LoopbackSession(EncodeSession):
    """WS /v1/loopback: PCM in, encoded and decoded in the server, PCM out (one frame per packet)."""

    endpoint = "loopback"

    def __init__(self, synthesizer: Synthesizer, mode: str, rate: int) -> None:
        super().__init__(mode, rate, frames_per_packet=1)
        self.decoding = _Decoding(synthesizer, rate)

    def process(self, data: bytes) -> Work:
        work = Work()
        audio = self.decoding.decode(self.encode(data, work), work)
        if len(audio):
            work.messages.append(float_to_pcm(audio))
        return work

    def flush(self) -> Work:
        work = Work()
        audio = self.decoding.decode(self.encode_flush(work), work, last=True)
        if len(audio):
            work.messages.append(float_to_pcm(audio))
        return work

    def stats(self) -> dict[str, int]:
        return {"frames_encoded": self.frames_encoded, "frames_decoded": self.decoding.totals.decoded}
