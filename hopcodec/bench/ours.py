"""hopcodec's own modes as bench codecs, through the streaming core's whole-clip API."""

from __future__ import annotations

import numpy as np

from hopcodec.bench.codecs import Codec
from hopcodec.bench.errors import BenchError, MissingDependency


def mode_names() -> list[str]:
    """Names of the streaming core's modes, lowest bitrate first; empty if it is not built."""
    try:
        from streaming_core.modes import list_modes
    except ImportError:
        return []
    return [m.name for m in list_modes()]


UNQUANTIZED = "unquantized"
"""Pseudo-mode: the decoder driven by the encoder's features as they are (float32)."""
DSP_SUFFIX = "-dsp"
"""Codec-name suffix that forces the DSP baseline decoder."""


def synthesizer_names() -> list[str]:
    """The decoders to bench: the default (best installed) one, plus the DSP baseline apart."""
    from streaming_core.synthesizers import available_synthesizers

    return available_synthesizers()[::-1]


def codec_names() -> list[str]:
    """`hopcodec-<mode>` (default decoder) and, when a neural decoder is installed,
    `hopcodec-<mode>-dsp`, for every mode and for the unquantized features."""
    with_dsp = len(synthesizer_names()) > 1
    names = []
    for mode in [*mode_names(), UNQUANTIZED]:
        names.append(f"hopcodec-{mode}")
        if with_dsp:
            names.append(f"hopcodec-{mode}{DSP_SUFFIX}")
    return names


class Hopcodec(Codec):
    """One hopcodec mode: `encode_audio` -> packets -> `decode_packets`.

    Payload bytes are the packets' payloads; packet headers are counted as overhead.
    The decoder's output is already time-aligned to the input (delay 0 expected).
    A name ending in `-dsp` uses the DSP baseline decoder instead of the default one; the mode
    `unquantized` feeds the encoder's features to the decoder without coding them.
    """

    family = "hopcodec"

    def __init__(self, mode: str, synthesizer: object | None = None) -> None:
        """`synthesizer`: a decoder back end to use instead of the one the name asks for
        (scripts/ab_decoder.py compares candidate graphs this way)."""
        self.name = f"hopcodec-{mode}"
        self.synthesizer = "dsp" if mode.endswith(DSP_SUFFIX) else None
        self.given_synthesizer = synthesizer
        self.mode = mode.removesuffix(DSP_SUFFIX)
        self.nominal_bps = None
        if self.mode == UNQUANTIZED:
            self.nominal_bps = 32.0 * 20 * 100  # 20 float32 features per 10 ms
            return
        try:
            from streaming_core.modes import list_modes
        except ImportError:
            return  # reported by check()
        modes = {m.name: m for m in list_modes()}
        if self.mode not in modes:
            raise BenchError(f"unknown hopcodec mode {self.mode!r} (modes: {', '.join(modes)})")
        self.nominal_bps = float(modes[self.mode].bitrate_bps)

    def _synthesizer(self):
        from streaming_core.synthesizers import default_synthesizer, load_synthesizer

        if self.given_synthesizer is not None:
            return self.given_synthesizer
        return load_synthesizer(self.synthesizer) if self.synthesizer else default_synthesizer()

    def check(self) -> None:
        try:
            import streaming_core.bitstream  # noqa: F401
            import streaming_core.codec  # noqa: F401
            import streaming_core.modes  # noqa: F401
        except ImportError as exc:
            raise MissingDependency(f"codec {self.name}", f"streaming_core ({exc})") from exc

    def frame_ms(self) -> float | None:
        return 10.0

    def latency_ms(self) -> float | None:
        try:
            from streaming_core.latency import latency_budget
        except ImportError:
            return None
        return float(latency_budget()["total_ms"])

    def encode(self, x: np.ndarray) -> object:
        from streaming_core.codec import encode_audio

        if self.mode == UNQUANTIZED:
            from streaming_core.analysis import analyze_signal
            from streaming_core.dsp_synth import DECODER_DELAY

            return analyze_signal(np.concatenate((x, np.zeros(DECODER_DELAY, x.dtype))))
        from streaming_core.codec import FILE_FRAMES_PER_PACKET

        # Packets of 200 ms, as in .hop files: one-frame packets would pad every frame to a
        # whole byte (up to 7 bits a frame) and pay 40 header bits per 10 ms.
        return list(encode_audio(x, self.mode, frames_per_packet=FILE_FRAMES_PER_PACKET))

    def decode(self, coded: object, n_samples: int) -> np.ndarray:
        from streaming_core.codec import decode_packets

        synthesizer = self._synthesizer()
        if self.mode == UNQUANTIZED:
            audio = synthesizer.synthesize(coded, synthesizer.new_state())
            return audio[synthesizer.delay : synthesizer.delay + n_samples]
        return decode_packets(list(coded), n_samples, synthesizer)  # type: ignore[call-overload]

    def sizes(self, coded: object) -> tuple[int, int]:
        from streaming_core.bitstream import parse_packet

        if self.mode == UNQUANTIZED:
            return int(np.asarray(coded, np.float32).nbytes), 0
        payload = sum(len(parse_packet(p).payload) for p in coded)  # type: ignore[union-attr]
        total = sum(len(p) for p in coded)  # type: ignore[union-attr]
        return payload, total - payload
