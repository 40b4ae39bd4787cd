"""hopcodec: a real-time streaming speech codec in 10 ms hops."""

__version__ = "0.1.0"
