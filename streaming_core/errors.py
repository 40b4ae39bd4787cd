"""Exceptions raised by hopcodec; each names what is wrong with the input."""


class HopcodecError(Exception):
    """Base class of every error hopcodec raises on bad input."""


class AudioInputError(HopcodecError):
    """An audio file or buffer that cannot be used (missing, not audio, empty)."""


class BitstreamError(HopcodecError):
    """A packet or coded file that is truncated, oversized, forged or of an unknown version."""


class AudioOutputError(HopcodecError):
    """An audio file that cannot be written."""
