"""A tiered, entropy-coded candidate bitstream at hop-1600, measured with the bench's metrics.

The release codes each hop-1600 frame with one residual-VQ stage or the 12-bit joint book (a
1-bit flag; format 7 had two stages there) and writes every field with a fixed number of bits.
The candidate chooses one of four tiers of codebooks per frame (`--tiers joint`, the default:
none, 's1', the joint book 'j12', or 'j12' then 's3'; `--tiers stages`: the first 0-3 of
's1'..'s3', the candidate of format 7) by the least weighted band error plus lambda times its
books' bits (a Lagrangian rate-distortion choice, Shoham &
Gersho, "Efficient bit allocation for an arbitrary set of quantizers", IEEE Trans. ASSP 1988),
lambda held to the mode's rate by a bucket of the coded bits that may not
run behind (a frame spends only what earlier frames saved, as the release's reservoir), and writes
the fields with Huffman codes fitted to real speech: the stage count, the voicing and the pitch
change as one symbol coded in the context of the previous frame's voicing and pitch change, each
book's index with a code of its own (models/README.md has the measurements that led here,
`models.quantizer.field_entropy`).

    python scripts/tiered_ab.py --set data/corpus --fit-clips 300 --codes runs/tiered_codes.npz \\
        --split valid --max-clips 40 --out runs/tiered_valid40.json

fits the codes on training clips (twice: the second fit codes with the first fit's lengths) or
loads them from `--codes`, then codes each clip once with the release and once with the candidate,
decodes both with the released decoder and prints the scores and the payload bitrates
(`--out`: the per-clip scores as JSON, in the layout of `scripts/ab_decoder.py --out`). Measured
results and the variants tried: models/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ab_decoder  # noqa: E402  (the A/B helpers of the sibling script)

from hopcodec.bench import metrics as metric_registry  # noqa: E402
from hopcodec.bench.audio import load_16k  # noqa: E402
from hopcodec.bench.clips import find_clips  # noqa: E402
from hopcodec.bench.ours import Hopcodec  # noqa: E402
from hopcodec.bench.runner import SINGLE_THREAD_ENV  # noqa: E402
from models.quantizer.field_entropy import huffman_lengths  # noqa: E402
from streaming_core.bitpack import BitReader, BitWriter  # noqa: E402
from streaming_core.bitstream import parse_packet  # noqa: E402
from streaming_core.constants import CORR_INDEX, NB_BANDS, PERIOD_INDEX  # noqa: E402
from streaming_core.errors import BitstreamError  # noqa: E402
from streaming_core.modes import get_mode  # noqa: E402
from streaming_core.predictive import (  # noqa: E402
    LOG_PERIOD_MAX,
    LOG_PERIOD_MIN,
    VOICED,
    FrameCode,
    PredictiveQuantizer,
    PredictiveState,
    rvq_encode,
    search_weights,
)
from streaming_core.spectrum import log_energies_from_cepstrum  # noqa: E402

MODE = "hop-1600"
TIER_SETS = {
    "joint": ((), ("s1",), ("j12",), ("j12", "s3")),
    "stages": ((), ("s1",), ("s1", "s2"), ("s1", "s2", "s3")),
}
"""The codebooks of each tier, by tier set (`--tiers`); a frame's 2-bit tier is coded with its
voicing and pitch change."""
LAMBDA = 0.02
"""Lambda of the stage choice (weighted squared log-energy error per bit) at an empty bucket."""
BUCKET_SCALE = 12.0
"""Lambda grows by e for every BUCKET_SCALE bits the stream is behind its rate."""
BUCKET_CAP = 36.0
"""Bits the bucket may save ahead (silence cannot bank more than this for later speech)."""
BUCKET_FLOOR = 0.0
"""Bits the stream may run behind its rate (0: a frame spends only what earlier frames saved)."""
CODE_SMOOTHING = 0.5
"""Added to every symbol's count before the codes are built, so every symbol has a code."""
MAX_CODE_BITS = 20


NO_PITCH = -1
"""The pitch change field of an unvoiced frame (it carries none)."""


class PrefixCode:
    """A canonical Huffman code over symbols 0..n-1, given each symbol's code length."""

    def __init__(self, lengths: np.ndarray) -> None:
        self.lengths = np.asarray(lengths, dtype=np.int64)
        order = sorted(range(len(self.lengths)), key=lambda s: (self.lengths[s], s))
        self.codes = np.zeros(len(self.lengths), dtype=np.int64)
        code, previous = 0, int(self.lengths[order[0]])
        self.first: dict[int, tuple[int, int]] = {}  # length -> (first code, its rank in order)
        for rank, symbol in enumerate(order):
            length = int(self.lengths[symbol])
            code <<= length - previous
            previous = length
            self.first.setdefault(length, (code, rank))
            self.codes[symbol] = code
            code += 1
        self.order = order
        self.count = Counter(int(n) for n in self.lengths)

    @classmethod
    def fitted(cls, counts: np.ndarray) -> PrefixCode:
        """A Huffman code for these symbol counts (smoothed; at most MAX_CODE_BITS bits)."""
        weights = np.asarray(counts, dtype=np.float64) + CODE_SMOOTHING
        while True:
            by_symbol = huffman_lengths(Counter(dict(enumerate(weights))))
            lengths = np.array([by_symbol[s] for s in range(len(weights))])
            if lengths.max() <= MAX_CODE_BITS:
                return cls(lengths)
            weights = weights + weights.sum() / len(weights)  # flatten until it fits

    def write(self, writer: BitWriter, symbol: int) -> None:
        """Append the symbol's code."""
        writer.write(int(self.codes[symbol]), int(self.lengths[symbol]))

    def read(self, reader: BitReader) -> int:
        """The next symbol (BitstreamError when the payload ends inside a code)."""
        code, length = 0, 0
        while length < MAX_CODE_BITS:
            code = (code << 1) | reader.read(1)
            length += 1
            if length in self.first:
                first, rank = self.first[length]
                if 0 <= code - first < self.count[length]:
                    return self.order[rank + code - first]
        raise BitstreamError("no symbol of the code matches the payload")


@dataclass
class TieredCodes:
    """The candidate's Huffman codes: the frame header per context, each codebook's indices,
    for one tier set (a name of `TIER_SETS`)."""

    header: list[PrefixCode]
    books: dict[str, PrefixCode]
    tiers: str

    def save(self, path: Path) -> None:
        """Store the code lengths."""
        np.savez(path, header=np.stack([c.lengths for c in self.header]), tiers=self.tiers,
                 **{f"index_{name}": code.lengths for name, code in self.books.items()})

    @classmethod
    def load(cls, path: Path) -> TieredCodes:
        """Codes from stored lengths."""
        stored = np.load(path)
        if "tiers" not in stored.files:
            raise SystemExit(f"{path}: codes of an older layout; fit them again (leave --codes out)")
        return cls([PrefixCode(row) for row in stored["header"]],
                   {name[len("index_"):]: PrefixCode(stored[name])
                    for name in stored.files if name.startswith("index_")}, str(stored["tiers"]))


@dataclass
class TieredState(PredictiveState):
    """A stream's state with the context of the next frame's header."""

    context: int = 0
    """Index of the previous frame's (voicing, pitch change) pair (0 after a reset)."""

    def copy(self) -> TieredState:
        """An independent copy."""
        return TieredState(self.predictor_state.copy(), self.previous.copy(), self.first_frame,
                           self.credit, self.transient_share, self.context)


class TieredQuantizer(PredictiveQuantizer):
    """hop-1600 with one of four tiers of codebooks per frame and Huffman-coded fields (the
    tiered candidate). Without codes it writes fixed-width fields (to fit the codes) and counts
    every symbol."""

    def __init__(self, base: PredictiveQuantizer, codes: TieredCodes | None,
                 tiers: str = "joint") -> None:
        super().__init__(base.allocation, base.codebooks, base.predictor, base.threshold,
                         base.high_band_weight)
        if codes is not None and codes.tiers != tiers:
            raise ValueError(f"codes fitted for the tiers {codes.tiers!r}, not {tiers!r}")
        self.codes = codes
        self.tiers = tiers
        self.tier_names = TIER_SETS[tiers]
        self.book_names = sorted({name for names in self.tier_names for name in names})
        self.tier_books = [[self.codebooks[n] for n in names] for names in self.tier_names]
        self.book_bits = {n: int(np.log2(len(self.codebooks[n]))) for n in self.book_names}
        self.tier_band_books = [[log_energies_from_cepstrum(b).astype(np.float32) for b in books]
                                for books in self.tier_books]
        self.pitch_symbols = len(self.pitch_deltas) + 1  # the changes and the escape
        self.voicings = len(self.voicing)
        self.header_symbols = len(self.tier_names) * self.voicings * (self.pitch_symbols + 1)
        self.contexts = self.voicings * (self.pitch_symbols + 1)
        self.header_counts = np.zeros((self.contexts, self.header_symbols))
        self.index_counts = {n: np.zeros(len(self.codebooks[n])) for n in self.book_names}
        self.tier_counts = np.zeros(len(self.tier_names))
        if codes is None:
            self.min_bits = 2 + self.allocation.voicing_bits
            self.max_bits = (self.min_bits + self.allocation.pitch_bits
                             + self.allocation.onset_pitch_bits
                             + max(self._tier_bits(names) for names in self.tier_names))
        else:
            self.min_bits = int(min(c.lengths.min() for c in codes.header))
            self.max_bits = int(max(c.lengths.max() for c in codes.header)
                                + self.allocation.onset_pitch_bits
                                + max(sum(int(codes.books[n].lengths.max()) for n in names)
                                      for names in self.tier_names))

    def _tier_bits(self, names: tuple[str, ...]) -> int:
        """The nominal bits of a tier's indices (log2 of each book's size)."""
        return sum(self.book_bits[n] for n in names)

    def new_state(self) -> TieredState:
        """State after a reset."""
        return TieredState(predictor_state=np.zeros((1, self.predictor.hidden), np.float32))

    def _pair(self, voicing: int, pitch: int) -> int:
        return voicing * (self.pitch_symbols + 1) + pitch + 1

    def _header(self, tier: int, voicing: int, pitch: int) -> int:
        return tier * self.contexts + self._pair(voicing, pitch)

    def _header_bits(self, state: TieredState, symbol: int, pitch: int) -> float:
        if self.codes is None:
            return 2 + self.allocation.voicing_bits + (self.allocation.pitch_bits
                                                       if pitch != NO_PITCH else 0)
        return float(self.codes.header[state.context].lengths[symbol])

    def _index_bits(self, book: str, index: int) -> float:
        return (self.book_bits[book] if self.codes is None
                else float(self.codes.books[book].lengths[index]))

    def encode(self, features: np.ndarray, writer: BitWriter, state: TieredState) -> np.ndarray:
        """Write one frame; return what the decoder will reconstruct."""
        voicing = int(np.abs(self.voicing - features[CORR_INDEX]).argmin())
        pitch_fields, log_period = self._code_pitch(features[PERIOD_INDEX],
                                                    float(self.voicing[voicing]), state)
        pitch = pitch_fields[0][0] if pitch_fields else NO_PITCH
        absolute = pitch_fields[1] if len(pitch_fields) > 1 else None
        prediction = self._predict(state, log_period, float(self.voicing[voicing]))
        residual = features[:NB_BANDS] - prediction
        weights = search_weights(features[None, :NB_BANDS], self.search_weighting,
                                 self.high_band_weight)
        scale = np.sqrt(weights[0])
        target = log_energies_from_cepstrum(residual[None])[0] * scale
        lam = LAMBDA * np.exp(-state.credit / BUCKET_SCALE)
        best = None
        for tier, (books, band_books) in enumerate(zip(self.tier_books, self.tier_band_books,
                                                       strict=True)):
            if state.first_frame and not books:
                continue  # a reset frame codes a residual
            indices = (rvq_encode(residual[None], books, self.search_beam, weights, band_books)[0]
                       if books else [])
            symbol = self._header(tier, voicing, pitch)
            bits = (self._header_bits(state, symbol, pitch) + (absolute[1] if absolute else 0)
                    + sum(self._index_bits(n, int(i))
                         for n, i in zip(self.tier_names[tier], indices, strict=True)))
            smallest = best is None  # the fewest stages allowed is always affordable
            if not smallest and state.credit + self.allocation.target_bits - bits < BUCKET_FLOOR:
                continue
            coded = sum((b[int(i)] for b, i in zip(band_books, indices, strict=True)),
                        np.zeros(NB_BANDS, np.float32))
            # charged by its books' nominal bits, not its code lengths: charged by code lengths
            # the choice favours what was chosen often when the codes were fitted
            cost = (float(((target - coded * scale) ** 2).sum())
                    + lam * self._tier_bits(self.tier_names[tier]))
            if best is None or cost < best[0]:
                best = (cost, tier, symbol, indices, bits)
        _, tier, symbol, indices, bits = best
        state.credit = min(state.credit + self.allocation.target_bits - bits, BUCKET_CAP)
        self.tier_counts[tier] += 1
        self.header_counts[state.context, symbol] += 1
        if self.codes is None:
            writer.write(tier, 2)
            writer.write(voicing, self.allocation.voicing_bits)
            if pitch != NO_PITCH:
                writer.write(pitch, self.allocation.pitch_bits)
        else:
            self.codes.header[state.context].write(writer, symbol)
        if absolute:
            writer.write(*absolute)
        for name, index in zip(self.tier_names[tier], indices, strict=True):
            self.index_counts[name][int(index)] += 1
            if self.codes is None:
                writer.write(int(index), self.book_bits[name])
            else:
                self.codes.books[name].write(writer, int(index))
        state.context = self._pair(voicing, pitch)
        books = self.tier_books[tier]
        return self._finish(state, sum((b[int(i)] for b, i in zip(books, indices, strict=True)),
                                       prediction.astype(np.float32)), log_period,
                            float(self.voicing[voicing]))

    def read_frame(self, reader: BitReader, state: TieredState) -> FrameCode:
        """One frame's fields (the decoder's half of `encode`)."""
        if self.codes is None:
            tier, voicing = reader.read(2), reader.read(self.allocation.voicing_bits)
            pitch = (reader.read(self.allocation.pitch_bits)
                     if self.voicing[voicing] >= VOICED else NO_PITCH)
        else:
            symbol = self.codes.header[state.context].read(reader)
            tier, pair = divmod(symbol, self.contexts)
            voicing, pitch = divmod(pair, self.pitch_symbols + 1)
            pitch -= 1
            if (pitch == NO_PITCH) != (self.voicing[voicing] < VOICED):
                raise BitstreamError("pitch field does not match the frame's voicing")
        log_period = float(np.log(state.previous[PERIOD_INDEX]))
        if pitch == len(self.pitch_deltas):
            log_period = float(self.pitch_absolute[reader.read(self.allocation.onset_pitch_bits)])
        elif pitch != NO_PITCH:
            log_period = min(max(log_period + float(self.pitch_deltas[pitch]), LOG_PERIOD_MIN),
                             LOG_PERIOD_MAX)
        books = self.tier_books[tier]
        names = self.tier_names[tier]
        if self.codes is None:
            indices = [reader.read(self.book_bits[n]) for n in names]
        else:
            indices = [self.codes.books[n].read(reader) for n in names]
        state.context = self._pair(voicing, pitch)
        return FrameCode(log_period, float(self.voicing[voicing]), books, indices)

    def fitted_codes(self) -> TieredCodes:
        """Codes fitted to the symbols counted so far."""
        return TieredCodes([PrefixCode.fitted(row) for row in self.header_counts],
                           {n: PrefixCode.fitted(c) for n, c in self.index_counts.items()},
                           self.tiers)


def install(codes: TieredCodes | None, tiers: str = "joint") -> TieredQuantizer:
    """Make this process's hop-1600 code with the candidate (codes None: fixed-width fields;
    otherwise the codes' own tier set)."""
    mode = get_mode(MODE)
    base = mode.quantizer
    if isinstance(base, TieredQuantizer):
        base = base.base
    tiered = TieredQuantizer(base, codes, codes.tiers if codes is not None else tiers)
    tiered.base = base
    object.__setattr__(mode, "quantizer", tiered)
    return tiered


def restore() -> None:
    """Give hop-1600 its released quantizer back."""
    mode = get_mode(MODE)
    if isinstance(mode.quantizer, TieredQuantizer):
        object.__setattr__(mode, "quantizer", mode.quantizer.base)


def fit_codes(corpus: str, clips: int, tiers: str = "joint") -> TieredCodes:
    """Codes fitted on training clips: once with fixed-width fields, then coding with the first
    codes (the bucket counts the coded bits, so lambda, and with it the choice, follows them)."""
    signals = [load_16k(c.path) for c in find_clips(corpus, "train", clips)]
    codes = None
    for _ in range(2):
        tiered = install(codes, tiers)
        for signal in signals:
            Hopcodec(MODE).encode(signal)
        codes = tiered.fitted_codes()
    restore()
    return codes


def score_clip(path: Path, graph: str, metrics: list[str], codes: TieredCodes) -> list[dict]:
    """Scores and payload bits of the release and of the candidate on one clip."""
    x = load_16k(path)
    rows = []
    for candidate in (False, True):
        if candidate:
            install(codes)
        else:
            restore()
        packets = Hopcodec(MODE).encode(x)
        decoded = Hopcodec(MODE, ab_decoder._synthesizer(graph)).decode(packets, len(x))
        row = {name: float(metric_registry.METRICS[name].fn(x, np.asarray(decoded, np.float32)))
               for name in metrics}
        row["payload_bits"] = sum(8 * len(parse_packet(p).payload) for p in packets)
        row["frames"] = -(-len(x) // 160)
        rows.append(row)
    restore()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", required=True, help="a prepared corpus (data/corpus)")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--max-clips", type=int, default=40)
    parser.add_argument("--fit-clips", type=int, default=300, help="training clips for the codes")
    parser.add_argument("--codes", type=Path, help="load the codes from here, or save them here")
    parser.add_argument("--graph", default=str(Path(__file__).resolve().parent.parent / "models"
                                               / "released" / "hopvocoder.onnx"))
    parser.add_argument("--metrics", default=ab_decoder.DEFAULT_METRICS)
    parser.add_argument("--tiers", choices=sorted(TIER_SETS), default="joint",
                        help="the codebooks of the four tiers (TIER_SETS)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, help="write the per-clip scores here (JSON)")
    args = parser.parse_args(argv)

    os.environ.update(SINGLE_THREAD_ENV)
    metrics = metric_registry.select(args.metrics.split(","))
    for name in metrics:
        metric_registry.require(name)
    if args.codes and args.codes.is_file():
        codes = TieredCodes.load(args.codes)
        if codes.tiers != args.tiers:
            parser.error(f"{args.codes} holds codes for --tiers {codes.tiers}, not {args.tiers}")
    else:
        print(f"fitting the codes on {args.fit_clips} training clips", file=sys.stderr)
        codes = fit_codes(args.set, args.fit_clips, args.tiers)
        if args.codes:
            args.codes.parent.mkdir(parents=True, exist_ok=True)
            codes.save(args.codes)
    clips = find_clips(args.set, args.split, args.max_clips)
    with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool:
        results = ab_decoder.gather([pool.submit(score_clip, c.path, args.graph, metrics, codes)
                                     for c in clips])
    scores = np.array([[[row[m] for m in metrics] for row in rows] for rows in results])
    if args.out:
        names = ("release", f"tiered-{args.tiers}")
        args.out.write_text(json.dumps({
            "mode": MODE, "tiers": args.tiers, "metrics": metrics,
            "clips": [c.clip_id for c in clips],
            "scores": {name: [rows[v] for rows in results] for v, name in enumerate(names)}},
            indent=1))
    print(f"{len(clips)} clips of split {args.split}, {MODE}")
    print(ab_decoder.table(["release", "tiered candidate"], metrics, scores))
    frames = sum(rows[0]["frames"] for rows in results)
    for v, name in enumerate(("release", "tiered candidate")):
        bits = sum(rows[v]["payload_bits"] for rows in results)
        print(f"{name}: {100 * bits / frames:.0f} bit/s payload ({bits / frames:.2f} bits per frame)")
    if len(clips) > 1:
        change = scores[:, 1] - scores[:, 0]
        errors = change.std(axis=0, ddof=1) / np.sqrt(len(change))
        print("standard errors of the changes: " + ", ".join(
            f"{metric_registry.METRICS[m].label} {e:.3f}"
            for m, e in zip(metrics, errors, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
