"""hop-1600's frames since bitstream format 9 and hop-1200's since format 10: one of the mode's
tiers of codebooks per frame, the fields written with prefix codes fitted to real speech.

Format 8 spends a 1-bit flag and 6 or 12 bits of residual VQ on every frame, and a fixed-width
voicing and pitch change. Here each frame chooses a tier, a list of codebooks for its residual
(`Allocation.tiers`: none, 's1', the joint 'j12', or 'j12' then 's3'), by the least weighted
band error plus lambda times the tier's bits (a Lagrangian rate-distortion choice, Shoham &
Gersho, "Efficient bit allocation for an arbitrary set of quantizers", IEEE Trans. ASSP 1988).
The tier, the voicing and the pitch change are one header symbol, coded with the prefix code of
the previous frame's (voicing, pitch change), and each codebook's index has a code of its own
(`streaming_core.prefix_code`; the codes are fitted by `models.quantizer.tiers` and stored in
`codebooks.npz`). Lambda follows a bucket of the bits the stream has saved against the mode's
rate, which may not run behind: a frame spends only what earlier frames saved. Measured in
models/README.md ("Bitstream format 9", "Bitstream format 10").
"""

from dataclasses import dataclass

import numpy as np

from streaming_core import predictive
from streaming_core.bitpack import BitReader, BitWriter
from streaming_core.constants import CORR_INDEX, NB_BANDS, PERIOD_INDEX
from streaming_core.errors import BitstreamError, HopcodecError
from streaming_core.predictive import (
    VOICED,
    Allocation,
    FrameCode,
    PredictiveQuantizer,
    PredictiveState,
    Predictor,
    _reconstruct,
    rvq_encode,
    search_weights,
)
from streaming_core.prefix_code import PrefixCode
from streaming_core.spectrum import log_energies_from_cepstrum

LAMBDA = 0.02
"""Lambda of the tier choice (weighted squared band error per bit) when the bucket is empty."""
BUCKET_SCALE = 12.0
"""Lambda falls by a factor e for every BUCKET_SCALE bits the stream has saved."""
BUCKET_CAP = 36.0
"""Bits the bucket may save (silence cannot bank more than this for the speech after it)."""
RESET_CREDIT = 16.0
"""Bits in the bucket after a reset: the stream starts with what the bucket would have saved,
so the first frames after each resynchronisation are not starved (an encoder choice: the
bitstream does not carry it)."""
NO_PITCH = -1
"""The pitch field of an unvoiced frame (it carries none)."""
CODE_KEY = "tiercode_{mode}_{part}"
"""Name of a stored code's lengths in `codebooks.npz`: part `header` (one row per context) or
a codebook's name (its index code)."""


@dataclass
class TierCodes:
    """A tiered mode's prefix codes: the header per context, each codebook's index."""

    header: list[PrefixCode]
    books: dict[str, PrefixCode]

    @classmethod
    def load(cls, stored: dict[str, np.ndarray], mode: str, books: list[str]) -> "TierCodes | None":
        """The codes of `mode` stored in a codebook file's arrays (None if it has none)."""
        key = CODE_KEY.format(mode=mode, part="header")
        if key not in stored:
            return None
        missing = [b for b in books if CODE_KEY.format(mode=mode, part=b) not in stored]
        if missing:
            raise HopcodecError(f"the codes of {mode} lack the index codes of {', '.join(missing)}")
        return cls([PrefixCode(row) for row in stored[key]],
                   {b: PrefixCode(stored[CODE_KEY.format(mode=mode, part=b)]) for b in books})

    def arrays(self, mode: str) -> dict[str, np.ndarray]:
        """The code lengths as `codebooks.npz` stores them."""
        out = {CODE_KEY.format(mode=mode, part="header"): np.stack([c.lengths for c in self.header])}
        out.update({CODE_KEY.format(mode=mode, part=b): c.lengths for b, c in self.books.items()})
        return out


@dataclass
class FieldCounts:
    """Encoder only: how often each header symbol (per context), codebook index and tier was
    written, what `models.quantizer.tiers` fits the codes to."""

    header: np.ndarray
    books: dict[str, np.ndarray]
    tiers: np.ndarray


class TieredQuantizer(PredictiveQuantizer):
    """A predictive mode whose frames choose a tier of codebooks (`Allocation.tiers`) and write
    their fields with prefix codes; without `codes`, with fixed-width fields (the tier in 2 bits,
    each index in log2 of its book's size: what the codes are first fitted on)."""

    def __init__(self, allocation: Allocation, codebooks: dict[str, np.ndarray],
                 predictor: Predictor, codes: TierCodes | None = None,
                 high_band_weight: float | None = None) -> None:
        self.tier_names = allocation.tiers
        self.tier_books = [[codebooks[n] for n in names] for names in self.tier_names]
        self.tier_band_books: list[list[np.ndarray]] = []
        super().__init__(allocation, codebooks, predictor, 0.0, high_band_weight)  # fills them
        self.book_names = sorted({n for names in self.tier_names for n in names})
        self.book_bits = {n: int(np.log2(len(codebooks[n]))) for n in self.book_names}
        self.tier_bits = [sum(self.book_bits[n] for n in names) for names in self.tier_names]
        """Nominal bits of each tier's indices (what the choice charges)."""
        self.fixed_tier_bits = int(np.ceil(np.log2(len(self.tier_names))))
        self.pitch_symbols = len(self.pitch_deltas) + 1  # the changes and the escape
        self.contexts = len(self.voicing) * (self.pitch_symbols + 1)
        self.header_symbols = len(self.tier_names) * self.contexts
        self.codes = codes
        if codes is not None:
            if len(codes.header) != self.contexts or any(
                    len(c.lengths) != self.header_symbols for c in codes.header):
                raise HopcodecError(f"header codes for {len(codes.header)} contexts of "
                                    f"{len(codes.header[0].lengths)} symbols; this mode has "
                                    f"{self.contexts} of {self.header_symbols}")
            for name in self.book_names:
                if len(codes.books[name].lengths) != len(codebooks[name]):
                    raise HopcodecError(f"the index code of {name} does not match its codebook")
        self.counts: FieldCounts | None = None
        """Encoder only: when set (`new_counts`), the fields this quantizer writes are counted
        in it (what `models.quantizer.tiers` fits the codes to); None in the released modes, so
        a server's encoders do no counting."""
        fixed_header = self.fixed_tier_bits + allocation.voicing_bits
        if codes is None:
            self.min_bits = fixed_header
            self.max_bits = (fixed_header + allocation.pitch_bits + allocation.onset_pitch_bits
                             + max(self.tier_bits))
        else:
            self.min_bits = min(c.min_bits for c in codes.header)
            self.max_bits = (max(c.max_bits for c in codes.header) + allocation.onset_pitch_bits
                             + max(sum(codes.books[n].max_bits for n in names)
                                   for names in self.tier_names))

    def new_state(self) -> PredictiveState:
        """State after a reset, its bucket holding RESET_CREDIT bits."""
        state = super().new_state()
        state.credit = RESET_CREDIT
        return state

    def new_counts(self) -> FieldCounts:
        """Empty field counts (the encoder adds to `counts` as it writes)."""
        return FieldCounts(np.zeros((self.contexts, self.header_symbols)),
                           {n: np.zeros(len(self.codebooks[n])) for n in self.book_names},
                           np.zeros(len(self.tier_names)))

    def codebooks_changed(self) -> None:
        """Recompute the band-energy copies of the codebooks (after they change in place)."""
        super().codebooks_changed()
        self.tier_band_books = [[log_energies_from_cepstrum(b).astype(np.float32)
                                 for b in books] for books in self.tier_books]

    def search_paths(self) -> list[tuple[list[np.ndarray], tuple[str, ...]]]:
        """Every list of codebooks a frame may be coded with, and their names."""
        return list(zip(self.tier_books, self.tier_names, strict=True))

    def _search(self, residual: np.ndarray, weights: np.ndarray) -> dict[tuple[str, ...], np.ndarray]:
        """Each tier's codeword indices for this residual: one M-best search per tier that is
        not the start of another (a tier that is, 'j12' before 'j12' + 's3', takes the best
        path through its books from the longer tier's search: what its own search finds)."""
        found: dict[tuple[str, ...], np.ndarray] = {(): np.zeros(0, np.int64)}
        for names, books, band_books in sorted(zip(self.tier_names, self.tier_books,
                                                   self.tier_band_books, strict=True),
                                               key=lambda tier: -len(tier[0])):
            if names in found:
                continue
            by_stage = rvq_encode(residual[None], books, self.search_beam, weights, band_books,
                                  every_stage=True)
            for n in range(len(names)):
                found.setdefault(names[: n + 1], by_stage[n][0])
        return found

    def _pair(self, voicing: int, pitch: int) -> int:
        """Index of a (voicing, pitch field) pair: a header's part besides the tier, and the
        next frame's context."""
        return voicing * (self.pitch_symbols + 1) + pitch + 1

    def _header_bits(self, context: int, symbol: int, pitch: int) -> int:
        if self.codes is None:
            return (self.fixed_tier_bits + self.allocation.voicing_bits
                    + (self.allocation.pitch_bits if pitch != NO_PITCH else 0))
        return int(self.codes.header[context].lengths[symbol])

    def _index_bits(self, book: str, index: int) -> int:
        return (self.book_bits[book] if self.codes is None
                else int(self.codes.books[book].lengths[index]))

    def encode(self, features: np.ndarray, writer: BitWriter, state: PredictiveState) -> np.ndarray:
        """Write one frame; return what the decoder will reconstruct."""
        voicing = int(np.abs(self.voicing - features[CORR_INDEX]).argmin())
        pitch_fields, log_period = self._code_pitch(features[PERIOD_INDEX],
                                                    float(self.voicing[voicing]), state)
        pitch = pitch_fields[0][0] if pitch_fields else NO_PITCH
        absolute = pitch_fields[1] if len(pitch_fields) > 1 else None
        prediction = self._predict(state, log_period, float(self.voicing[voicing]))
        feedback = self._feedback_share(features, state)
        residual = features[:NB_BANDS] - prediction
        if feedback:  # aim at the residual less a share of the last frame's error (see below)
            last_error = state.previous_input - state.previous[:NB_BANDS]
            residual = (residual - feedback * last_error).astype(np.float32)
        weights = search_weights(features[None, :NB_BANDS], self.search_weighting,
                                 self.high_band_weight)
        scale = np.sqrt(weights[0])
        target = log_energies_from_cepstrum(residual[None])[0] * scale
        pair = self._pair(voicing, pitch)
        lam = LAMBDA * np.exp(-state.credit / BUCKET_SCALE)
        best: tuple[float, int, np.ndarray, int] | None = None
        searched = self._search(residual, weights)
        for tier, band_books in enumerate(self.tier_band_books):
            if state.first_frame and not band_books:
                continue  # a stream's first frame codes a residual
            indices = searched[self.tier_names[tier]]
            bits = (self._header_bits(state.context, tier * self.contexts + pair, pitch)
                    + (absolute[1] if absolute else 0)
                    + sum(self._index_bits(n, int(i))
                          for n, i in zip(self.tier_names[tier], indices, strict=True)))
            if best is not None and state.credit + self.allocation.target_bits - bits < 0:
                continue  # the fewest books allowed are always affordable
            coded = sum((b[int(i)] for b, i in zip(band_books, indices, strict=True)),
                        np.zeros(NB_BANDS, np.float32))
            # charged by the tier's nominal bits, not its code lengths: charged by code lengths
            # the choice would favour what was chosen often when the codes were fitted
            cost = (float(((target - coded * scale) ** 2).sum()) / (1.0 - feedback)
                    + lam * self.tier_bits[tier])
            if best is None or cost < best[0]:
                best = (cost, tier, indices, bits)
        assert best is not None
        _, tier, indices, bits = best
        if predictive.rvq_encode is not rvq_encode and self.tier_books[tier]:
            # a training tool records the search (models.quantizer.refine): show it the chosen one
            predictive.rvq_encode(residual[None], self.tier_books[tier], self.search_beam,
                                  weights, self.tier_band_books[tier])
        state.credit = min(state.credit + self.allocation.target_bits - bits, BUCKET_CAP)
        symbol = tier * self.contexts + pair
        if self.counts is not None:
            self.counts.tiers[tier] += 1
            self.counts.header[state.context, symbol] += 1
            for name, index in zip(self.tier_names[tier], indices, strict=True):
                self.counts.books[name][int(index)] += 1
        if self.codes is None:
            writer.write(tier, self.fixed_tier_bits)
            writer.write(voicing, self.allocation.voicing_bits)
            if pitch != NO_PITCH:
                writer.write(pitch, self.allocation.pitch_bits)
        else:
            self.codes.header[state.context].write(writer, symbol)
        if absolute:
            writer.write(*absolute)
        for name, index in zip(self.tier_names[tier], indices, strict=True):
            if self.codes is None:
                writer.write(int(index), self.book_bits[name])
            else:
                self.codes.books[name].write(writer, int(index))
        state.context = pair
        books = self.tier_books[tier]
        if self.allocation.error_feedback:  # its error is this less `state.previous`
            state.previous_input = np.array(features[:NB_BANDS], dtype=np.float32)
        return self._finish(state, _reconstruct(prediction, books, indices), log_period,
                            float(self.voicing[voicing]))

    def _feedback_share(self, features: np.ndarray, state: PredictiveState) -> float:
        """K of this frame (`Allocation.error_feedback`), 0 after a reset.

        With e the coding error of c0..c17 (features minus decoded, the decoder's own
        reconstruction), the choice minimises |e_t|^2 + mu |e_t - e_(t-1)|^2 (weighted) plus
        lambda times the bits, which is |e_t - K e_(t-1)|^2 / (1 - K) plus a constant, K = mu /
        (1 + mu): the search aims at the residual less K e_(t-1). The error becomes a slowly
        changing one (e_t = K e_(t-1) + the search's own error), which DNSMOS hears as less
        rough, where each frame's nearest codeword leaves an error that jumps from frame to
        frame (models/README.md, "The encoder's search repeats a share of the last error").
        Noise feedback in the frame-rate domain: the error spectrum of a parameter track is
        shaped as Atal & Schroeder shape a waveform coder's ("Predictive coding of speech
        signals and subjective error criteria", IEEE Trans. ASSP 1979).
        """
        share = self.allocation.error_feedback
        if not share or state.previous_input is None:
            return 0.0
        steadiness = self.allocation.error_feedback_change
        if steadiness:
            change = float(np.sqrt(np.mean((features[:NB_BANDS] - state.previous_input) ** 2)))
            share *= float(np.exp(-((change / steadiness) ** 2)))
        return share

    def read_frame(self, reader: BitReader, state: PredictiveState) -> FrameCode:
        """One frame's fields (the decoder's half of `encode`)."""
        if self.codes is None:
            tier = reader.read(self.fixed_tier_bits)
            if tier >= len(self.tier_names):
                raise BitstreamError(f"tier {tier} does not exist ({len(self.tier_names)} tiers)")
            voicing = reader.read(self.allocation.voicing_bits)
            pitch = (reader.read(self.allocation.pitch_bits)
                     if self.voicing[voicing] >= VOICED else NO_PITCH)
        else:
            symbol = self.codes.header[state.context].read(reader)
            tier, pair = divmod(symbol, self.contexts)
            voicing, pitch = divmod(pair, self.pitch_symbols + 1)
            pitch -= 1
            if (pitch == NO_PITCH) != (self.voicing[voicing] < VOICED):
                raise BitstreamError("pitch field does not match the frame's voicing")
        log_period = self._decoded_log_period(reader, state, None if pitch == NO_PITCH else pitch)
        names = self.tier_names[tier]
        indices = ([reader.read(self.book_bits[n]) for n in names] if self.codes is None
                   else [self.codes.books[n].read(reader) for n in names])
        state.context = self._pair(voicing, pitch)
        return FrameCode(log_period, float(self.voicing[voicing]), self.tier_books[tier], indices)
