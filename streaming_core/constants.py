"""Fixed parameters of the hopcodec signal path (16 kHz, 10 ms hops)."""

SAMPLE_RATE = 16_000
"""Internal sample rate of the codec in Hz."""

HOP = 160
"""Samples per hop (10 ms): one coded frame per hop."""

WINDOW = 2 * HOP
"""Analysis window (20 ms): the current hop and the one before it; no lookahead."""

PREEMPHASIS = 0.85
"""Pre-emphasis coefficient: features describe x[n] - 0.85 x[n-1]."""

LPC_ORDER = 16

NB_BANDS = 18
"""Bark-like bands; band edges in units of 200 Hz (as in LPCNet, Valin & Skoglund 2019)."""

BAND_EDGES_200HZ = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 34, 40)

NB_FEATURES = NB_BANDS + 2
"""Feature vector per hop: 18 cepstral coefficients, pitch period, pitch correlation."""

PERIOD_INDEX = NB_BANDS
"""Index of the pitch period (in samples at 16 kHz) in a feature vector."""

CORR_INDEX = NB_BANDS + 1
"""Index of the pitch correlation (voicing, 0..1) in a feature vector."""

PITCH_MIN_PERIOD = 32
"""Shortest pitch period in samples (500 Hz)."""

PITCH_MAX_PERIOD = 256
"""Longest pitch period in samples (62.5 Hz)."""

LOG_ENERGY_FLOOR = 1e-6
"""Floor added to band energies before the log (about -82 dBFS white noise)."""
