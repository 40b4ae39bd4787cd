"""What each field of a predictive mode's frames costs, and what an entropy coder would spend.

Real speech is coded by the encoder in a mode (its resets included); every field each frame
writes is recorded. For each field the report
gives its raw bits, its plug-in entropy, the entropy given the previous frame's value of the
same field where that context is small, and the average length of a Huffman code (Huffman,
"A method for the construction of minimum-redundancy codes", Proc. IRE 1952) fitted to the same
frames: what a format that codes the fields by their probabilities would save (models/README.md).

    python -m models.quantizer.field_entropy --corpus data/corpus --split valid --clips 300 \\
        --mode hop-2400

(hop-1600 and hop-1200, measured this way in formats 8 and 9, write prefix-coded fields since
formats 9 and 10: `streaming_core.tiered`, `models.quantizer.tiers`.)
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from streaming_core.bitpack import BitWriter
from streaming_core.codec import encode_audio
from streaming_core.modes import get_mode
from streaming_core.predictive import VOICED, PredictiveQuantizer
from streaming_core.tiered import TieredQuantizer

PACKET_FRAMES = 20
"""Frames per packet, as in `.hop` files and the bench."""


class FieldRecorder:
    """Stands for the encoder's `BitWriter` in one frame: keeps every field, as (value, bits),
    and passes it on."""

    def __init__(self, writer: BitWriter) -> None:
        self.writer = writer
        self.fields: list[tuple[int, int]] = []

    def write(self, value: int, bits: int) -> None:
        """Record the field, then write it."""
        self.fields.append((int(value), bits))
        self.writer.write(value, bits)


@dataclass
class FrameFields:
    """One coded frame's fields (bitstream format 8, `PredictiveQuantizer.encode`)."""

    transient: int
    voicing: int
    pitch: int | None
    """The pitch change code (the escape code included); None in unvoiced frames."""
    absolute_pitch: int | None
    """The absolute pitch after an escape code."""
    indices: list[int] = field(default_factory=list)
    bits: int = 0
    starts_clip: bool = False
    """The first frame of a signal: no previous frame to give it a context."""


def parse_fields(fields: list[tuple[int, int]], quantizer: PredictiveQuantizer) -> FrameFields:
    """The named fields of one frame from what it wrote, in the order `encode` writes them."""
    allocation = quantizer.allocation
    (transient, _), (voicing, _) = fields[0], fields[1]
    rest = fields[2:]
    pitch = absolute = None
    if quantizer.voicing[voicing] >= VOICED:
        pitch, rest = rest[0][0], rest[1:]
        if pitch == len(quantizer.pitch_deltas):
            absolute, rest = rest[0][0], rest[1:]
    index_bits = quantizer.transient_index_bits if transient else quantizer.steady_index_bits
    if [bits for _, bits in rest] != index_bits:
        raise ValueError(f"unexpected fields after the pitch: {rest} (allocation {allocation})")
    return FrameFields(transient, voicing, pitch, absolute, [value for value, _ in rest],
                       sum(bits for _, bits in fields))


def record_frames(signals: Iterable[np.ndarray], mode: str) -> list[FrameFields]:
    """The fields of every frame of every signal (16 kHz) as the encoder codes it in `mode`
    (`encode_audio`, 200 ms packets: its resets and its last, zero-padded hop included)."""
    quantizer = get_mode(mode).quantizer
    if not isinstance(quantizer, PredictiveQuantizer):
        raise ValueError(f"{mode} is not a predictive mode")
    if isinstance(quantizer, TieredQuantizer):
        raise ValueError(f"{mode} writes prefix-coded fields (bitstream formats 9 and 10, "
                         "streaming_core.tiered); this report is for the fixed-width modes")
    frames = []

    def recording_encode(features: np.ndarray, writer: BitWriter, state: object) -> np.ndarray:
        recorder = FieldRecorder(writer)
        decoded = type(quantizer).encode(quantizer, features, recorder, state)
        frames.append(parse_fields(recorder.fields, quantizer))
        return decoded

    quantizer.encode = recording_encode  # this instance, while the encoder runs
    try:
        for signal in signals:
            first = len(frames)
            encode_audio(signal, mode, frames_per_packet=PACKET_FRAMES)
            if len(frames) > first:
                frames[first].starts_clip = True
    finally:
        del quantizer.encode
    return frames


def entropy(counts: Counter) -> float:
    """Plug-in entropy in bits of the symbols counted."""
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values() if c)


def conditional_entropy(pairs: Counter) -> float:
    """H(symbol | context) in bits from counts of (context, symbol) pairs."""
    contexts = Counter()
    for (context, _), count in pairs.items():
        contexts[context] += count
    return entropy(pairs) - entropy(contexts)


def huffman_lengths(counts: Counter) -> dict[Hashable, int]:
    """Code length of each symbol in a Huffman code for these counts (1 bit for a lone symbol)."""
    if len(counts) == 1:
        return {symbol: 1 for symbol in counts}
    heap = [(count, i, [symbol]) for i, (symbol, count) in enumerate(counts.items())]
    heapq.heapify(heap)
    lengths = dict.fromkeys(counts, 0)
    tie = len(heap)
    while len(heap) > 1:
        count_a, _, symbols_a = heapq.heappop(heap)
        count_b, _, symbols_b = heapq.heappop(heap)
        for symbol in symbols_a + symbols_b:  # each merge puts one more bit in front
            lengths[symbol] += 1
        heapq.heappush(heap, (count_a + count_b, tie, symbols_a + symbols_b))
        tie += 1
    return lengths


def huffman_bits(counts: Counter) -> float:
    """Average length in bits of a Huffman code fitted to these counts."""
    lengths = huffman_lengths(counts)
    return sum(counts[s] * lengths[s] for s in counts) / sum(counts.values())


def conditional_huffman_bits(pairs: Counter) -> float:
    """Average length of one Huffman code per context, each fitted to its context's counts."""
    by_context: dict[Hashable, Counter] = {}
    for (context, symbol), count in pairs.items():
        by_context.setdefault(context, Counter())[symbol] = count
    total = sum(pairs.values())
    return sum(huffman_bits(c) * sum(c.values()) for c in by_context.values()) / total


@dataclass
class FieldReport:
    """One field: how often frames carry it and what it costs each way (bits per use)."""

    name: str
    uses: int
    raw_bits: float
    entropy: float
    huffman: float
    conditional_entropy: float | None = None
    conditional_huffman: float | None = None
    context: str = ""

    def saved_per_frame(self, frames: int) -> float:
        """Bits per frame a code by the best of these probabilities would save."""
        best = self.huffman if self.conditional_huffman is None else min(
            self.huffman, self.conditional_huffman)
        return (self.raw_bits - best) * self.uses / frames


def field_reports(frames: list[FrameFields], quantizer: PredictiveQuantizer) -> list[FieldReport]:
    """The report's rows: flag, voicing, pitch code, absolute pitch and the indices into each
    codebook the mode uses."""
    allocation = quantizer.allocation
    flags, voicings, pitches, absolutes = Counter(), Counter(), Counter(), Counter()
    flag_pairs, voicing_pairs, pitch_pairs = Counter(), Counter(), Counter()
    index_bits = dict(zip(allocation.steady_stages, quantizer.steady_index_bits, strict=True))
    index_bits.update(zip(allocation.transient_stages, quantizer.transient_index_bits, strict=True))
    indices: dict[str, Counter] = {book: Counter() for book in index_bits}
    before_clip = FrameFields(transient=1, voicing=0, pitch=None, absolute_pitch=None)
    previous = before_clip
    for frame in frames:
        if frame.starts_clip:  # a clip's first frame has the coder's initial context
            previous = before_clip
        flags[frame.transient] += 1
        flag_pairs[(previous.transient, frame.transient)] += 1
        voicings[frame.voicing] += 1
        voicing_pairs[(previous.voicing, frame.voicing)] += 1
        if frame.pitch is not None:
            pitches[frame.pitch] += 1
            pitch_pairs[(previous.pitch, frame.pitch)] += 1  # None: after an unvoiced frame
        if frame.absolute_pitch is not None:
            absolutes[frame.absolute_pitch] += 1
        path = allocation.transient_stages if frame.transient else allocation.steady_stages
        for book, index in zip(path, frame.indices, strict=True):
            indices[book][index] += 1
        previous = frame
    rows = [
        FieldReport("transient flag", sum(flags.values()), 1, entropy(flags), huffman_bits(flags),
                    conditional_entropy(flag_pairs), conditional_huffman_bits(flag_pairs),
                    "previous flag"),
        FieldReport("voicing", sum(voicings.values()), allocation.voicing_bits,
                    entropy(voicings), huffman_bits(voicings), conditional_entropy(voicing_pairs),
                    conditional_huffman_bits(voicing_pairs), "previous voicing"),
    ]
    if pitches:
        rows.append(FieldReport("pitch code", sum(pitches.values()), allocation.pitch_bits,
                                entropy(pitches), huffman_bits(pitches),
                                conditional_entropy(pitch_pairs),
                                conditional_huffman_bits(pitch_pairs), "previous code"))
    if absolutes:
        rows.append(FieldReport("absolute pitch", sum(absolutes.values()),
                                allocation.onset_pitch_bits, entropy(absolutes),
                                huffman_bits(absolutes)))
    for book, counts in indices.items():
        if counts:
            rows.append(FieldReport(f"VQ index ({book})", sum(counts.values()), index_bits[book],
                                    entropy(counts), huffman_bits(counts)))
    return rows


def joint_header_report(frames: list[FrameFields], quantizer: PredictiveQuantizer) -> FieldReport:
    """The frame's first fields (flag, voicing, pitch code) coded as one symbol, given the
    previous frame's voicing and pitch code: binary fields gain nothing from a Huffman code of
    their own, but do as part of a larger alphabet."""
    allocation = quantizer.allocation
    symbols, pairs = Counter(), Counter()
    raw = 0
    previous = (0, None)
    for frame in frames:
        if frame.starts_clip:
            previous = (0, None)
        symbol = (frame.transient, frame.voicing, frame.pitch)
        symbols[symbol] += 1
        pairs[(previous, symbol)] += 1
        raw += 1 + allocation.voicing_bits + (allocation.pitch_bits if frame.pitch is not None
                                              else 0)
        previous = (frame.voicing, frame.pitch)
    return FieldReport("flag + voicing + pitch code, one symbol", len(frames), raw / len(frames),
                       entropy(symbols), huffman_bits(symbols), conditional_entropy(pairs),
                       conditional_huffman_bits(pairs), "previous voicing and code")


def markdown(rows: list[FieldReport], joint: FieldReport, frames: list[FrameFields],
             mode: str) -> str:
    """The report as a markdown table with a summary line."""
    count = len(frames)
    bits = sum(f.bits for f in frames) / count
    lines = [f"{mode}: {count} frames, {bits:.2f} bits per frame as coded", "",
             "| field | share of frames | raw bits | entropy | Huffman | given | entropy | Huffman "
             "| saved bits per frame |", "|---|---|---|---|---|---|---|---|---|"]
    for row in [*rows, joint]:
        given = ((row.context, f"{row.conditional_entropy:.3f}", f"{row.conditional_huffman:.3f}")
                 if row.conditional_entropy is not None else ("", "", ""))
        lines.append(f"| {row.name} | {row.uses / count:.3f} | {row.raw_bits:.3g} | "
                     f"{row.entropy:.3f} | {row.huffman:.3f} | {' | '.join(given)} | "
                     f"{row.saved_per_frame(count):.3f} |")
    saved = sum(row.saved_per_frame(count) for row in rows)
    header = {"transient flag", "voicing", "pitch code"}
    rest = sum(row.saved_per_frame(count) for row in rows if row.name not in header)
    saved_joint = joint.saved_per_frame(count) + rest
    bound = sum((row.raw_bits - (row.entropy if row.conditional_entropy is None
                                 else min(row.entropy, row.conditional_entropy)))
                * row.uses / count for row in rows)  # each field alone, in its own context
    lines += ["", f"Saved bits per frame: {saved:.2f} ({100 * saved / bits:.0f} % of the rate) by "
              f"a Huffman code per field; {saved_joint:.2f} ({100 * saved_joint / bits:.0f} %) with "
              f"the first three fields as one symbol; {bound:.2f} ({100 * bound / bits:.0f} %) by "
              "an arithmetic coder with each field's context of the table (its entropies)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from hopcodec.bench.audio import load_16k
    from hopcodec.bench.clips import find_clips

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a prepared corpus folder")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--clips", type=int, default=300, help="clips, spread over the speakers")
    parser.add_argument("--mode", default="hop-2400",
                        help="a fixed-width predictive mode (hop-1600 and hop-1200 are prefix-coded "
                             "since formats 9 and 10)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    clips = find_clips(args.corpus, args.split, args.clips)
    if not clips:
        parser.error(f"no clips of split {args.split!r} in {args.corpus}")
    signals = (load_16k(clip.path) for clip in tqdm(clips, desc="coding", unit="clip"))
    frames = record_frames(signals, args.mode)
    quantizer = get_mode(args.mode).quantizer
    rows, joint = field_reports(frames, quantizer), joint_header_report(frames, quantizer)
    print(markdown(rows, joint, frames, args.mode))
    if args.json:
        args.json.write_text(json.dumps({"mode": args.mode, "frames": len(frames),
                                         "rows": [vars(row) for row in [*rows, joint]]}, indent=1))


if __name__ == "__main__":
    main()
