"""The background postfilter: the neural decoder's envelope lowered where a band holds only its
floor, so a recording's steady background (hum, hiss, room noise) comes out quieter than the
speech over it.

Per hop and band, after the graph and before the LPC filter: the band's level L (dB, from the
envelope's cepstrum), its floor F, the lowest L of the last `FLOOR_HOPS` hops (minimum
statistics: the noise floor as the minimum of the recent levels, R. Martin, "Noise power
spectral density estimation based on optimal smoothing and minimum statistics", IEEE Trans.
Speech Audio Proc. 2001), the band's presence p = (L - F - ABSENT_DB) / (PRESENT_DB -
ABSENT_DB) clipped to 0..1, its absence 1 - p, smoothed over the hops while it grows (first
order, `ABSENCE_SMOOTHING`) and followed at once when it falls, and the band lowered by
`DEPTH_DB` times that absence: slowly into the background, at once out of it, so an onset
is heard at its decoded level (smoothed both ways, the onsets' first hops stayed lowered and
`hopcodec latency --algorithmic-only` measured hop-1600 at 17.1 ms, against 15.8). Only the
modes at or below `MAX_BITRATE_BPS` are lowered (`applies_at`). A band well above
its floor (speech) is left as it is; a band at its floor for a few hops is lowered by up to
`DEPTH_DB`. Nothing is raised. The bitstream does not carry it and no weight depends on it: a
run-time choice of the decoder (decoder version 14, `models/README.md`).
"""

from dataclasses import dataclass, field
from functools import cache

import numpy as np

from streaming_core.constants import NB_BANDS
from streaming_core.spectrum import inverse_dct_matrix

DEPTH_DB = 6.0
"""The most a band is lowered (at its floor for long enough)."""
FLOOR_HOPS = 150
"""Hops (1.5 s) over which a band's floor is the lowest level."""
ABSENT_DB = 2.0
"""A band at most this far above its floor counts as absent (background only)."""
PRESENT_DB = 8.0
"""A band at least this far above its floor counts as present (left as it is)."""
MAX_BITRATE_BPS = 1600
"""The modes at or below this rate (hop-800, hop-1200, hop-1600) are lowered; above it, and for
unquantized features, the postfilter does not run (nor follow the floors: a stream that moves
down to a low mode starts from the floors it had there, which the next 1.5 s replace). In the 30-clip
full report every mode with the postfilter kept its lead over the DSP decoder's means but
scalar-2400, whose ViSQOL fell from +0.026 to -0.002 against it; the coded envelope's noise in
the background, which the postfilter answers, is the low rates' (`models/README.md`)."""
ABSENCE_SMOOTHING = 0.8
"""Weight of the previous hop's absence in this hop's while it grows (first-order smoothing)."""


@dataclass
class BackgroundState:
    """One stream's postfilter memory."""

    levels: np.ndarray = field(default_factory=lambda: np.zeros((FLOOR_HOPS, NB_BANDS)))
    """(FLOOR_HOPS, NB_BANDS) the band levels (dB) of the last hops, a ring buffer: hop n's in
    row n % FLOOR_HOPS."""
    hops: int = 0
    """Hops seen since the start or a reset (the ring holds min(hops, FLOOR_HOPS) of them)."""
    absence: np.ndarray = field(default_factory=lambda: np.zeros(NB_BANDS))
    """(NB_BANDS,) each band's smoothed absence (0: present, 1: background only)."""


def applies_at(bitrate_bps: float | None) -> bool:
    """Whether a mode of this rate is lowered (None: unquantized features, which are not)."""
    return bitrate_bps is not None and bitrate_bps <= MAX_BITRATE_BPS


@cache
def _dct_matrices() -> tuple[np.ndarray, np.ndarray]:
    """(cepstrum -> dB of band level, dB of band level -> cepstrum): `inverse_dct_matrix` and
    its transpose, scaled by 10 dB per decade."""
    inverse = inverse_dct_matrix()
    return 10.0 * inverse, inverse.T / 10.0


def lower_background(cepstrum: np.ndarray, state: BackgroundState) -> np.ndarray:
    """One hop's envelope cepstrum (NB_BANDS,) with its background bands lowered; updates the
    state."""
    to_db, to_cepstrum = _dct_matrices()
    levels = cepstrum @ to_db
    state.levels[state.hops % FLOOR_HOPS] = levels
    state.hops += 1
    floor = state.levels[: min(state.hops, FLOOR_HOPS)].min(axis=0)
    # 1 - presence; np.minimum/np.maximum: np.clip costs more than the rest of the hop
    absence = np.minimum(np.maximum((PRESENT_DB - (levels - floor)) / (PRESENT_DB - ABSENT_DB),
                                    0.0), 1.0)
    # slow into the background, at once out of it: an onset is not held down
    state.absence = np.minimum(absence, ABSENCE_SMOOTHING * state.absence
                               + (1.0 - ABSENCE_SMOOTHING) * absence)
    return (levels - DEPTH_DB * state.absence) @ to_cepstrum
