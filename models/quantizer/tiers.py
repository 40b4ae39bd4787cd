"""Fit the prefix codes of the tiered modes (bitstream formats 9 and 10) to real speech.

    python -m models.quantizer.tiers --corpus data/corpus --clips 300 --release models/released

Codes `--clips` training clips of the corpus with each tiered mode (`Allocation.tiers` in
`streaming_core/predictive.py`: hop-1200 and hop-1600) twice: first with fixed-width fields,
counting every header symbol (per context: the previous frame's voicing and pitch field) and
every codebook index; then with Huffman codes (Huffman, Proc. IRE 1952) fitted to those counts,
so the encoder's bit bucket, and with it its choice of tiers, follows the codes' lengths; the codes
fitted to the second pass's counts are written into `RELEASE/codebooks.npz` (`tiercode_*`
arrays, code lengths only: the codewords are canonical, `streaming_core.prefix_code`). Every
symbol gets a code (counts smoothed by `SMOOTHING`), so every index stays codable. New codes
change what the bits mean: the bitstream format version goes up with them.
"""

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hopcodec.bench.audio import load_16k
from hopcodec.bench.clips import find_clips
from models.quantizer.field_entropy import huffman_lengths
from models.quantizer.refine import foreign_predictor, install_codebooks
from streaming_core.bitstream import PACKET_HEADER
from streaming_core.codec import encode_audio
from streaming_core.modes import Mode, get_mode
from streaming_core.predictive import TIERED_MODES
from streaming_core.prefix_code import MAX_CODE_BITS, PrefixCode
from streaming_core.tiered import FieldCounts, TierCodes, TieredQuantizer

SMOOTHING = 0.5
"""Added to every symbol's count before fitting, so symbols never seen get (long) codes."""
PACKET_FRAMES = 20


def fitted_code(counts: np.ndarray) -> PrefixCode:
    """A Huffman code for these (smoothed) counts, no codeword longer than `MAX_CODE_BITS`
    (the counts are flattened towards uniform until it fits)."""
    weights = np.asarray(counts, dtype=np.float64) + SMOOTHING
    while True:
        by_symbol = huffman_lengths(Counter(dict(enumerate(weights))))
        lengths = np.array([by_symbol[s] for s in range(len(weights))])
        if lengths.max() <= MAX_CODE_BITS:
            return PrefixCode(lengths)
        weights = weights + weights.sum() / len(weights)


def fitted_codes(counts: FieldCounts) -> TierCodes:
    """The codes of a tiered mode fitted to its field counts."""
    return TierCodes([fitted_code(row) for row in counts.header],
                     {name: fitted_code(c) for name, c in counts.books.items()})


def count_fields(mode: Mode, codes: TierCodes | None, signals: list[np.ndarray]
                 ) -> tuple[FieldCounts, float]:
    """Code the signals in `mode` with these codes (None: fixed-width fields); the fields the
    encoder wrote and its payload bits per frame."""
    template = mode.quantizer
    quantizer = TieredQuantizer(template.allocation, template.codebooks, template.predictor, codes)
    quantizer.counts = counts = quantizer.new_counts()
    coding = Mode(mode.id, mode.name, quantizer, mode.description)
    bits = frames = 0
    for signal in tqdm(signals, desc=f"{mode.name}, {'coded' if codes else 'fixed-width'} fields",
                       unit="clip", leave=False):
        for packet in encode_audio(signal, coding, frames_per_packet=PACKET_FRAMES):
            bits += 8 * (len(packet) - PACKET_HEADER.size)  # the payload
            frames += PACKET_HEADER.unpack_from(packet)[-1]  # the header's frame count
    return counts, bits / max(frames, 1)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="prepared corpus (manifest.csv)")
    parser.add_argument("--clips", type=int, default=300, help="training clips to fit on")
    parser.add_argument("--release", type=Path, default=Path("models/released"),
                        help="folder with codebooks.npz (rewritten) and the installed predictor.onnx")
    parser.add_argument("--modes", default=",".join(TIERED_MODES),
                        help="tiered modes to fit (comma-separated; default: every tiered mode)")
    args = parser.parse_args(argv)

    if refusal := foreign_predictor(args.release):
        parser.error(refusal)
    path = args.release / "codebooks.npz"
    stored = dict(np.load(path))
    install_codebooks(stored)  # code with RELEASE's books, not only the installed ones
    modes = [get_mode(name) for name in args.modes.split(",")]
    untiered = [m.name for m in modes if not isinstance(m.quantizer, TieredQuantizer)]
    if untiered:
        parser.error(f"not tiered modes: {', '.join(untiered)}")
    clips = find_clips(args.corpus, "train", args.clips)
    signals = [load_16k(c.path) for c in tqdm(clips, desc="loading clips", unit="clip", leave=False)]
    for mode in modes:
        counts, fixed_bits = count_fields(mode, None, signals)
        first = fitted_codes(counts)
        counts, coded_bits = count_fields(mode, first, signals)
        codes = fitted_codes(counts)
        stored.update(codes.arrays(mode.name))
        print(json.dumps({"mode": mode.name, "clips": len(signals),
                          "bits_per_frame_fixed_width": round(fixed_bits, 3),
                          "bits_per_frame_first_codes": round(coded_bits, 3),
                          "tier_share": [round(float(x), 4) for x in counts.tiers / counts.tiers.sum()]}))
    np.savez(path, **stored)
    print(f"wrote the codes into {path}")


if __name__ == "__main__":
    main()
