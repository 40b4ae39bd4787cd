"""Canonical prefix codes: variable-length fields whose lengths follow the symbols' frequencies.

A code is given by each symbol's length only (Huffman, "A method for the construction of
minimum-redundancy codes", Proc. IRE 1952, fits the lengths; `models.quantizer.tiers` does);
the codewords themselves are the canonical ones (symbols in order of length, then of value,
numbered upwards), so encoder and decoder build the same code from the stored lengths.
"""

from bisect import bisect_right

import numpy as np

from streaming_core.bitpack import BitReader, BitWriter
from streaming_core.errors import BitstreamError, HopcodecError

MAX_CODE_BITS = 20
"""Longest codeword a stored code may have."""


class PrefixCode:
    """A canonical prefix code over the symbols 0 .. n-1."""

    def __init__(self, lengths: np.ndarray) -> None:
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.ndim != 1 or len(lengths) < 1:
            raise HopcodecError("a prefix code needs a 1-D array of code lengths")
        if lengths.min() < 1 or lengths.max() > MAX_CODE_BITS:
            raise HopcodecError(f"code lengths must lie in 1..{MAX_CODE_BITS}, got "
                                f"{lengths.min()}..{lengths.max()}")
        if float(np.sum(2.0 ** -lengths.astype(np.float64))) > 1.0 + 1e-12:
            raise HopcodecError("these code lengths cannot form a prefix code (Kraft sum above 1)")
        self.lengths = lengths
        order = sorted(range(len(lengths)), key=lambda s: (lengths[s], s))
        self.codewords = np.zeros(len(lengths), dtype=np.int64)
        self._order = order
        self._longest = int(lengths.max())
        self._lengths: list[int] = []
        """The code's lengths, shortest first; with `_limits`, `_first` and `_rank` per length."""
        self._limits: list[int] = []
        """Per length: its last codeword + 1, shifted left to `_longest` bits. A canonical code's
        limits grow with the length, so the length of the codeword at the head of a bit string
        is that of the first limit above the string's first `_longest` bits."""
        self._first: list[int] = []
        self._rank: list[int] = []
        code, previous = 0, int(lengths[order[0]])
        for rank, symbol in enumerate(order):
            length = int(lengths[symbol])
            code <<= length - previous
            previous = length
            if not self._lengths or self._lengths[-1] != length:
                self._lengths.append(length)
                self._first.append(code)
                self._rank.append(rank)
                self._limits.append(0)
            self.codewords[symbol] = code
            code += 1
            self._limits[-1] = code << (self._longest - length)

    @property
    def min_bits(self) -> int:
        """Length of the shortest codeword."""
        return int(self.lengths.min())

    @property
    def max_bits(self) -> int:
        """Length of the longest codeword."""
        return self._longest

    def write(self, writer: BitWriter, symbol: int) -> None:
        """Append the symbol's codeword."""
        writer.write(int(self.codewords[symbol]), int(self.lengths[symbol]))

    def read(self, reader: BitReader) -> int:
        """The next symbol; `BitstreamError` when the payload ends inside a codeword or holds a
        bit string no codeword starts (possible where the lengths' Kraft sum is below 1)."""
        head = reader.peek(self._longest)
        which = bisect_right(self._limits, head)
        if which == len(self._limits):
            raise BitstreamError("no codeword of the prefix code matches the payload")
        length = self._lengths[which]
        reader.skip(length)  # raises when the payload ends inside the codeword
        code = head >> (self._longest - length)
        return self._order[self._rank[which] + code - self._first[which]]
