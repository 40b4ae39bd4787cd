"""Algorithmic latency: what the configuration adds up to, and a measurement of it.

Budget: a hop must be complete before it is analysed (hop buffering, 10 ms); the analysis
window ends with the hop (no lookahead); the decoder centres each frame's output on its
analysis window (decoder delay, half a hop). The measurement streams a probe through the
encoder and decoder with a sample clock, plays each decoded block as soon as it exists, and
finds the delay between input and playback by cross-correlating their energy envelopes (a
parametric codec does not reproduce the waveform, so the waveforms themselves don't correlate).

The envelope correlation is exact to within about a millisecond: the codec reproduces each
burst's envelope only at the resolution of its 10 ms frames.
"""

import numpy as np
from scipy.signal import fftconvolve

from streaming_core.constants import HOP, SAMPLE_RATE
from streaming_core.decoder import StreamDecoder, Synthesizer
from streaming_core.encoder import StreamEncoder
from streaming_core.modes import DEFAULT_MODE

ENCODER_LOOKAHEAD = 0
"""Samples of input past the current hop that the analysis needs."""


def latency_budget(synthesizer: Synthesizer | None = None) -> dict[str, float]:
    """Parts of the algorithmic latency in ms (and the total in samples)."""
    decoder_delay = StreamDecoder(synthesizer).delay
    total = HOP + ENCODER_LOOKAHEAD + decoder_delay
    ms = 1000.0 / SAMPLE_RATE
    return {
        "hop_buffering_ms": HOP * ms,
        "encoder_lookahead_ms": ENCODER_LOOKAHEAD * ms,
        "decoder_delay_ms": decoder_delay * ms,
        "total_ms": total * ms,
        "total_samples": total,
    }


def latency_probe(seconds: float = 6.0, seed: int = 7) -> np.ndarray:
    """Noise bursts of 40-120 ms with Hann envelopes, 30-150 ms apart.

    A click or a chirp would be the usual probe, but a parametric codec turns a click into a
    frame-long burst (the envelope correlation then has a flat top) and a chirp into voiced
    pulses at arbitrary phase; bursts longer than a frame keep their envelope through the codec.
    """
    rng = np.random.default_rng(seed)
    signal = np.zeros(int(seconds * SAMPLE_RATE))
    position = int(0.1 * SAMPLE_RATE)
    while True:
        length = int(rng.uniform(0.04, 0.12) * SAMPLE_RATE)
        if position + length > len(signal) - int(0.1 * SAMPLE_RATE):
            return signal
        signal[position : position + length] = 0.3 * rng.standard_normal(length) * np.hanning(length)
        position += length + int(rng.uniform(0.03, 0.15) * SAMPLE_RATE)


def stream_with_clock(
    signal: np.ndarray, mode: str = DEFAULT_MODE, synthesizer: Synthesizer | None = None,
    chunk: int = HOP,
) -> np.ndarray:
    """What a listener hears: `signal` pushed `chunk` samples at a time through encoder and
    decoder, each decoded block played from the moment it was produced. Index = input time."""
    encoder, decoder = StreamEncoder(mode), StreamDecoder(synthesizer)
    played = np.zeros(len(signal) + 4 * HOP)
    play_position = None
    for start in range(0, len(signal), chunk):
        now = min(start + chunk, len(signal))
        for packet in encoder.push(signal[start:now]):
            block = decoder.decode(packet)
            play_position = now if play_position is None else max(play_position, now)
            end = min(play_position + len(block), len(played))
            played[play_position:end] = block[: end - play_position]
            play_position += len(block)
    return played[: len(signal)]


def envelope(signal: np.ndarray, smoothing: int = 32) -> np.ndarray:
    """Smoothed power envelope."""
    return fftconvolve(signal**2, np.hanning(smoothing), mode="same")


SPEECH_SMOOTHING = 320
"""Samples (20 ms) over which a speech envelope is smoothed: longer than a pitch period."""

SPEECH_FLOOR_DB = 40.0
"""A speech envelope's floor below its peak, so that pauses weigh no more than quiet speech."""


def speech_envelope(signal: np.ndarray) -> np.ndarray:
    """Log power envelope of speech, smoothed over `SPEECH_SMOOTHING` and floored."""
    power = np.maximum(envelope(signal, SPEECH_SMOOTHING), 0.0)
    return np.log(power + power.max() * 10.0 ** (-SPEECH_FLOOR_DB / 10.0) + 1e-20)


def best_lag(reference_envelope: np.ndarray, delayed_envelope: np.ndarray, max_delay: int) -> int:
    """Lag (samples, 0..max_delay) maximising the cross-correlation of two envelopes."""
    ref = reference_envelope - reference_envelope.mean()
    out = delayed_envelope - delayed_envelope.mean()
    scores = [ref[: len(ref) - lag] @ out[lag:] for lag in range(max_delay + 1)]
    return int(np.argmax(scores))


def measure_delay(reference: np.ndarray, delayed: np.ndarray, max_delay: int) -> int:
    """Delay (samples, 0..max_delay) of `delayed` behind `reference`, for the noise-burst probe."""
    return best_lag(envelope(reference), envelope(delayed), max_delay)


def measure_speech_delay(reference: np.ndarray, delayed: np.ndarray, max_delay: int) -> int:
    """Delay (samples, 0..max_delay) of coded speech `delayed` behind `reference`.

    The probe's fine envelope would lock onto pitch pulses, whose phase a parametric codec does
    not keep (the lag then scatters over a pitch period); a log envelope smoothed over 20 ms
    follows syllables instead, and scatters by about a millisecond.
    """
    return best_lag(speech_envelope(reference), speech_envelope(delayed), max_delay)


def measure_algorithmic_latency(
    mode: str = DEFAULT_MODE, synthesizer: Synthesizer | None = None, probes: int = 4
) -> dict[str, float]:
    """Measured input-to-playback delay of the codec alone (no network, no audio buffers).

    The median over `probes` independent 10 s probes (one probe scatters by about 1 ms).
    """
    delays = []
    for seed in range(probes):
        probe = latency_probe(seconds=10.0, seed=seed)
        delays.append(measure_delay(probe, stream_with_clock(probe, mode, synthesizer), 4 * HOP))
    delay = float(np.median(delays))
    return {"measured_ms": 1000.0 * delay / SAMPLE_RATE, "measured_samples": delay,
            "probe_delays_samples": delays}
