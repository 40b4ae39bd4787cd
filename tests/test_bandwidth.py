"""Telephone-band input: the encoder flags it, the decoder keeps the output inside 4 kHz."""

import numpy as np
import pytest
from scipy.signal import welch

from streaming_core.bandwidth import (
    MIN_ACTIVE_HOPS,
    BandLimiterState,
    BandwidthDetector,
    limit_band,
)
from streaming_core.bitstream import FLAG_NARROWBAND, parse_packet
from streaming_core.codec import decode_packets, encode_audio
from streaming_core.constants import HOP, SAMPLE_RATE
from streaming_core.synthesizers import load_synthesizer
from tests.conftest import telephone_band


def _decisions(signal: np.ndarray) -> list[bool]:
    detector = BandwidthDetector()
    return [detector.push_hop(signal[i : i + HOP]) for i in range(0, len(signal) - HOP + 1, HOP)]


def _band_db(audio: np.ndarray, low: float, high: float) -> float:
    """Power in low..high Hz against 300..3500 Hz, dB."""
    freqs, power = welch(audio, SAMPLE_RATE, nperseg=512)
    band = power[(freqs >= low) & (freqs < high)].sum()
    speech = power[(freqs >= 300) & (freqs < 3500)].sum()
    return float(10 * np.log10(band / speech))


def test_wideband_speech_is_never_called_narrowband(speech_clip: np.ndarray) -> None:
    assert not any(_decisions(speech_clip))


def test_telephone_band_speech_is_called_narrowband_after_some_speech(speech_clip: np.ndarray
                                                                       ) -> None:
    decisions = _decisions(telephone_band(speech_clip))
    first = decisions.index(True)
    assert MIN_ACTIVE_HOPS <= first < len(decisions) // 2
    assert all(decisions[first:])  # no flicker once decided


def test_the_encoder_flags_telephone_band_packets_only(speech_clip: np.ndarray) -> None:
    wide = [parse_packet(p) for p in encode_audio(speech_clip, "hop-1600", frames_per_packet=5)]
    narrow = [parse_packet(p) for p in encode_audio(telephone_band(speech_clip), "hop-1600",
                                                    frames_per_packet=5)]
    assert not any(p.narrowband for p in wide)
    flags = [p.narrowband for p in narrow]
    assert not flags[0] and flags[-1] and sum(flags) >= len(flags) // 2
    assert [p.payload for p in narrow[:2]] != [p.payload for p in wide[:2]]  # really its own input


@pytest.mark.parametrize("synthesizer", ["neural", "dsp"])
def test_flagged_packets_decode_without_the_band_above_4khz(speech_clip: np.ndarray,
                                                            synthesizer: str) -> None:
    narrow = telephone_band(speech_clip)
    packets = encode_audio(narrow, "hop-1600", frames_per_packet=5)
    cleared = [bytes([p[0] & ~FLAG_NARROWBAND]) + p[1:] for p in packets]
    synth = load_synthesizer(synthesizer)
    first = next(i for i, p in enumerate(packets) if parse_packet(p).narrowband)
    start = (first * 5 + 1) * HOP  # one hop of fade after the first flagged packet's start
    limited = decode_packets(packets, len(narrow), synth)[start:]
    plain = decode_packets(cleared, len(narrow), synth)[start:]
    assert _band_db(limited, 4500, 8000) < _band_db(plain, 4500, 8000) - 20
    assert _band_db(limited, 4500, 8000) < -55
    assert abs(_band_db(limited, 1000, 3000) - _band_db(plain, 1000, 3000)) < 0.5


def test_the_low_pass_fades_in_and_out_over_one_hop(speech: np.ndarray) -> None:
    audio = speech[: 6 * HOP].astype(np.float32)
    state = BandLimiterState()
    np.testing.assert_array_equal(limit_band(audio[:HOP], False, state), audio[:HOP])
    rising = limit_band(audio[HOP : 3 * HOP], True, state)
    assert abs(rising[0] - audio[HOP]) < 0.02 * np.abs(audio).max()  # starts from the plain output
    held = limit_band(audio[3 * HOP : 4 * HOP], True, state)
    falling = limit_band(audio[4 * HOP : 6 * HOP], False, state)
    np.testing.assert_array_equal(falling[HOP:], audio[5 * HOP :])  # plain again after one hop
    assert abs(falling[HOP - 1] - audio[5 * HOP - 1]) < 1e-6
    steps = np.abs(np.diff(np.concatenate((rising, held, falling))))
    assert steps.max() < 2 * np.abs(np.diff(audio)).max()  # no click where the flag changes
