"""Canonical prefix codes: variable-length fields whose lengths follow the symbols' frequencies.

A code is given by each symbol's length only (Huffman, "A method for the construction of
minimum-redundancy codes", Proc. IRE 1952, fits the lengths; `models.quantizer.tiers` does);
the codewords themselves are the canonical ones (symbols in order of length, then of value,
numbered upwards), so encoder and decoder build the same code from the stored lengths.
"""

from collections import Counter

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
        self._first: dict[int, tuple[int, int]] = {}
        """length -> (first codeword of that length, its rank in `_order`)"""
        code, previous = 0, int(lengths[order[0]])
        for rank, symbol in enumerate(order):
            length = int(lengths[symbol])
            code <<= length - previous
            previous = length
            self._first.setdefault(length, (code, rank))
            self.codewords[symbol] = code
            code += 1
        self._order = order
        self._count = Counter(int(n) for n in lengths)

    @property
    def min_bits(self) -> int:
        """Length of the shortest codeword."""
        return int(self.lengths.min())

    @property
    def max_bits(self) -> int:
        """Length of the longest codeword."""
        return int(self.lengths.max())

    def write(self, writer: BitWriter, symbol: int) -> None:
        """Append the symbol's codeword."""
        writer.write(int(self.codewords[symbol]), int(self.lengths[symbol]))

    def read(self, reader: BitReader) -> int:
        """The next symbol; `BitstreamError` when the payload ends inside a codeword or holds a
        bit string no codeword starts (possible where the lengths' Kraft sum is below 1)."""
        code, length = 0, 0
        while length < self.max_bits:
            code = (code << 1) | reader.read(1)
            length += 1
            if length in self._first:
                first, rank = self._first[length]
                if 0 <= code - first < self._count[length]:
                    return self._order[rank + code - first]
        raise BitstreamError("no codeword of the prefix code matches the payload")
