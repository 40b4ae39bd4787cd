"""Bit-level packing of frame payloads, most significant bit first."""

from streaming_core.errors import BitstreamError


class BitWriter:
    """Appends unsigned fields of any width; `to_bytes` pads the last byte with zero bits."""

    def __init__(self) -> None:
        self._value = 0
        self.bit_count = 0

    def write(self, value: int, bits: int) -> None:
        """Append `value` as an unsigned field of `bits` bits."""
        if not 0 <= value < (1 << bits):
            raise ValueError(f"{value} does not fit in {bits} bits")
        self._value = (self._value << bits) | value
        self.bit_count += bits

    def to_bytes(self) -> bytes:
        """The bits written so far, zero-padded to whole bytes."""
        pad = -self.bit_count % 8
        return (self._value << pad).to_bytes((self.bit_count + pad) // 8, "big")


class BitReader:
    """Reads unsigned fields back; running out of bits raises `BitstreamError`."""

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._total = 8 * len(data)
        self.position = 0

    @property
    def remaining(self) -> int:
        """Bits not read yet."""
        return self._total - self.position

    def read(self, bits: int) -> int:
        """Next `bits`-bit unsigned field."""
        self.skip(bits)
        return (self._value >> (self._total - self.position)) & ((1 << bits) - 1)

    def peek(self, bits: int) -> int:
        """The next `bits` bits without reading them, zero bits standing in past the end."""
        available = min(bits, self.remaining)
        value = (self._value >> (self._total - self.position - available)) & ((1 << available) - 1)
        return value << (bits - available)

    def skip(self, bits: int) -> None:
        """Pass over `bits` bits (`BitstreamError` if fewer are left)."""
        if bits > self.remaining:
            raise BitstreamError(
                f"payload truncated: needed {bits} more bits at bit {self.position}, "
                f"only {self.remaining} left"
            )
        self.position += bits

    def check_padding(self) -> None:
        """The unread tail must be fewer than 8 bits, all zero; otherwise the payload is forged."""
        if self.remaining >= 8:
            raise BitstreamError(f"payload has {self.remaining // 8} extra byte(s) after the last frame")
        if self.read(self.remaining) != 0:
            raise BitstreamError("payload padding bits are not zero")
