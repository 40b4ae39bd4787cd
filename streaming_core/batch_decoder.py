"""Packets of several streams decoded at once: each per-hop graph runs once for all of them.

A server holds many live streams, each sending one 10 ms frame per packet. Decoded one stream at
a time, every hop runs the quantizer's predictor graph and the decoder graph once per stream,
each run paying onnxruntime's fixed cost per graph node and reading every weight again; decoded
from one thread per stream, the threads also hand the interpreter to each other several times
per hop. `decode_together` reads every stream's bits first, runs the predictor once for all of
them, then the decoder graph once, then each stream's LPC filter, all in the calling thread.

Each stream gets what its own `StreamDecoder.decode` gives (to float rounding: the rows of a
batched graph run), with the same counters and the same state afterwards. A packet that needs
more than the common path (frames lost before it, a late or duplicate packet, several frames, a
stream joined between resets, a mode without a predictor) is decoded by `StreamDecoder.decode`
itself, as is a packet that is alone on its path.
"""

from collections.abc import Sequence

import numpy as np

from streaming_core.bitpack import BitReader
from streaming_core.bitstream import Packet, parse_packet
from streaming_core.decoder import StreamDecoder
from streaming_core.errors import BitstreamError
from streaming_core.predictive import FrameCode, PredictiveQuantizer, decode_frames_together
from streaming_core.synthesizers import synthesize_together

Result = np.ndarray | BitstreamError
"""A stream's audio for its packet, or why the packet could not be decoded (its state is then
unchanged, as after `StreamDecoder.decode` raised)."""


def decode_together(decoders: Sequence[StreamDecoder], packets: Sequence[bytes | Packet]
                    ) -> list[Result]:
    """Audio of `packets[i]` decoded by `decoders[i]`, for every i (one packet per stream)."""
    if len({id(decoder) for decoder in decoders}) != len(decoders):
        raise ValueError("one packet per stream: a decoder appears twice")
    results: list[Result | None] = [None] * len(decoders)
    paths: dict[tuple[int, int], list[tuple[int, Packet]]] = {}
    for i, (decoder, data) in enumerate(zip(decoders, packets, strict=True)):
        try:
            packet = data if isinstance(data, Packet) else parse_packet(data)
        except BitstreamError as error:
            results[i] = error
            continue
        if _on_common_path(decoder, packet):
            key = (id(packet.mode.quantizer.predictor), id(decoder.synthesizer))
            paths.setdefault(key, []).append((i, packet))
        else:
            results[i] = _decode_alone(decoder, packet)
    for members in paths.values():
        if len(members) == 1:
            i, packet = members[0]
            results[i] = _decode_alone(decoders[i], packet)
        else:
            _decode_path(decoders, members, results)
    return results  # type: ignore[return-value]


def _decode_alone(decoder: StreamDecoder, packet: Packet) -> Result:
    try:
        return decoder.decode(packet)
    except BitstreamError as error:
        return error


def _on_common_path(decoder: StreamDecoder, packet: Packet) -> bool:
    """One frame of a predictive mode, the next one the stream expects (nothing to conceal or
    drop), with a state to decode it (`StreamDecoder.starting_state` is not None)."""
    expected = decoder.state.next_frame
    return (packet.frame_count == 1
            and isinstance(packet.mode.quantizer, PredictiveQuantizer)
            and (expected is None or packet.sequence == expected)
            and (packet.reset or packet.mode.state_key in decoder.state.quantizer_states))


def _decode_path(decoders: Sequence[StreamDecoder], members: list[tuple[int, Packet]],
                 results: list[Result | None]) -> None:
    """Decode packets on the common path whose streams share a predictor and a synthesizer."""
    read: list[tuple[int, Packet, PredictiveQuantizer, object, FrameCode]] = []
    for i, packet in members:
        quantizer = packet.mode.quantizer
        trial = decoders[i].starting_state(packet)
        reader = BitReader(packet.payload)
        try:
            code = quantizer.read_frame(reader, trial)
            reader.check_padding()
        except BitstreamError as error:  # this stream's state stays as it was
            results[i] = error
            continue
        read.append((i, packet, quantizer, trial, code))
    if not read:
        return
    frames = decode_frames_together([(quantizer, trial, code)
                                     for _, _, quantizer, trial, code in read])
    items = [(frame[None], decoders[i].state.synth, packet.mode.bitrate_bps)
             for (i, packet, *_), frame in zip(read, frames, strict=True)]
    audio = synthesize_together(decoders[read[0][0]].synthesizer, items)
    # The dequantizer states and counters move on only once every stream has its audio: a pass
    # that raises (a bug; the server then decodes each message alone) leaves them as they were.
    for (i, packet, _, trial, _), samples in zip(read, audio, strict=True):
        decoders[i].state.quantizer_states[packet.mode.state_key] = trial
        results[i] = decoders[i].play(packet, samples)
