"""Telephone-band input: the encoder tells it, the decoder keeps its output inside the band.

Speech that reached the encoder through a telephone path (G.711, GSM, AMR-NB; 8 kHz sampled and
resampled to 16 kHz) holds nothing above 4 kHz. The codebooks, fitted to wideband speech,
cannot code so steep an edge, and the decoder renders the missing band as noise (at hop-1600 the
coded band at 4.8 kHz came out 8.4 dB above a GSM recording's). So the encoder watches the
input's energy above 4 kHz against that in 0.3-3.5 kHz over its active hops and, while the
input is band-limited, flags each packet `NARROWBAND` (`streaming_core.bitstream`); the decoder
low-passes the audio of flagged packets at 4 kHz. Signalling the audio bandwidth in every packet
is what Opus does in its table-of-contents byte (RFC 6716, section 3.1).

Both halves are causal and carry their state from hop to hop: `BandwidthDetector` (one per
encoder stream) and `limit_band` with a `BandLimiterState` (one per decoder stream), which fades
between the plain and the low-passed output over one hop when the flag changes, so a switch
makes no click.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import ellip, sosfilt

from streaming_core.constants import HOP, SAMPLE_RATE, WINDOW

SPEECH_BAND_FROM_HZ, SPEECH_BAND_TO_HZ = 300.0, 3500.0
"""The band whose energy the detector measures the input's high band against."""
HIGH_BAND_FROM_HZ = 4000.0
"""The detector's high band: from here to 8 kHz."""
ENTER_NARROWBAND_DB = -60.0
"""The input is band-limited once its high band lies this far below its speech band."""
LEAVE_NARROWBAND_DB = -50.0
"""...and wideband again once it rises above this (the gap keeps the flag from flickering)."""
MIN_ACTIVE_HOPS = 12
"""Active hops (120 ms of speech) the detector needs before it calls the input band-limited. With
20, hop-1600's first 200 ms packet was never flagged; 12 flags it on most GSM clips (on 75 GSM
validation clips per flagged clip DNSMOS +0.023 instead of +0.015, `models/README.md`)."""
FORGETTING = 0.99
"""Per active hop: the detector's energy sums forget with a time constant of 1 s of speech."""
ACTIVITY_RANGE_DB = 30.0
"""A hop is active when its speech band is within this of the loudest hop seen so far..."""
ACTIVITY_FLOOR = 0.1
"""...and its speech band's energy (the sum of the Hann-windowed 20 ms spectrum's squared
magnitudes) above this: a sine of amplitude 0.003 (-50 dBFS) gives about as much. A stream's
first hop never counts: its window starts from the zeros before the stream, a step."""

LOWPASS_CUTOFF_HZ = 4000.0
LOWPASS_SOS = ellip(8, 0.1, 60.0, LOWPASS_CUTOFF_HZ, fs=SAMPLE_RATE, output="sos")
"""The decoder's low-pass: 8th-order elliptic, 0.1 dB ripple, 60 dB down in the stop band. On 40
GSM validation clips at hop-1600 (scratch, `models/README.md`): PESQ-WB +0.031, WARP-Q -0.009,
DNSMOS OVRL +0.021 (BAK +0.042), ViSQOL +0.001 against the plain output."""

_FREQUENCIES = np.fft.rfftfreq(WINDOW, 1.0 / SAMPLE_RATE)
_SPEECH_BINS = (_FREQUENCIES >= SPEECH_BAND_FROM_HZ) & (_FREQUENCIES <= SPEECH_BAND_TO_HZ)
_HIGH_BINS = _FREQUENCIES >= HIGH_BAND_FROM_HZ
_WINDOW = np.hanning(WINDOW)


@dataclass
class BandwidthDetectorState:
    """What the detector carries from one hop to the next."""

    previous_hop: np.ndarray = field(default_factory=lambda: np.zeros(HOP))
    speech_energy: float = 0.0
    """Forgetting sum of the active hops' speech-band energy."""
    high_energy: float = 0.0
    """Forgetting sum of the active hops' high-band energy."""
    loudest: float = 0.0
    """The loudest hop's speech-band energy so far."""
    hops: int = 0
    active_hops: int = 0
    narrowband: bool = False


class BandwidthDetector:
    """Tells, hop by hop, whether the input so far is telephone-band (nothing above 4 kHz)."""

    def __init__(self) -> None:
        self.state = BandwidthDetectorState()

    def reset(self) -> None:
        """Forget all history: the input counts as wideband until shown otherwise."""
        self.state = BandwidthDetectorState()

    @property
    def narrowband(self) -> bool:
        """The decision after the last hop."""
        return self.state.narrowband

    def high_band_db(self) -> float | None:
        """The active hops' high band against their speech band, dB (None before any)."""
        state = self.state
        if state.speech_energy <= 0.0:
            return None
        return 10.0 * float(np.log10((state.high_energy + 1e-30) / state.speech_energy))

    def push_hop(self, hop: np.ndarray) -> bool:
        """Take one hop of HOP input samples (16 kHz); return the decision after it."""
        state = self.state
        window = np.concatenate((state.previous_hop, hop))
        state.previous_hop = np.array(hop, dtype=np.float64)
        power = np.abs(np.fft.rfft(window * _WINDOW)) ** 2
        speech = float(power[_SPEECH_BINS].sum())
        state.loudest = max(state.loudest, speech)
        active = (state.hops > 0 and speech > ACTIVITY_FLOOR
                  and speech > state.loudest * 10.0 ** (-ACTIVITY_RANGE_DB / 10))
        state.hops += 1
        if active:
            state.speech_energy = FORGETTING * state.speech_energy + speech
            state.high_energy = FORGETTING * state.high_energy + float(power[_HIGH_BINS].sum())
            state.active_hops += 1
            ratio_db = self.high_band_db()
            if state.narrowband and ratio_db > LEAVE_NARROWBAND_DB:
                state.narrowband = False
            elif (not state.narrowband and state.active_hops >= MIN_ACTIVE_HOPS
                  and ratio_db < ENTER_NARROWBAND_DB):
                state.narrowband = True
        return state.narrowband


@dataclass
class BandLimiterState:
    """One decoder stream's low-pass: its filter memory and the last hop's flag."""

    memory: np.ndarray = field(default_factory=lambda: np.zeros((LOWPASS_SOS.shape[0], 2)))
    narrowband: bool = False


def limit_band(audio: np.ndarray, narrowband: bool, state: BandLimiterState) -> np.ndarray:
    """The decoded `audio` of one packet (or of concealed frames), low-passed at 4 kHz while
    `narrowband`. Where the flag changes the first hop fades linearly from the old output to the
    new; the filter runs only while it is needed and starts from rest."""
    if not narrowband and not state.narrowband:
        return audio
    if narrowband and not state.narrowband:
        state.memory = np.zeros_like(state.memory)
    fade = min(HOP, len(audio))
    # Leaving the band limit, only the hop that fades out needs the filter.
    span = len(audio) if narrowband else fade
    filtered, state.memory = sosfilt(LOWPASS_SOS, audio[:span], zi=state.memory)
    filtered = filtered.astype(np.float32)
    if narrowband != state.narrowband:
        rise = np.arange(1, fade + 1, dtype=np.float32) / fade
        if narrowband:
            filtered[:fade] = rise * filtered[:fade] + (1 - rise) * audio[:fade]
        else:
            filtered = np.concatenate(((1 - rise) * filtered + rise * audio[:fade], audio[fade:]))
    state.narrowband = narrowband
    return filtered
