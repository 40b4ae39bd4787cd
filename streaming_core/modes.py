"""The bitrate modes: each a mode id in the packet header and a frame quantizer.

Bitrates are payload bits at 100 frames/s; packet headers come on top (docs/bitstream.md).
"""

from dataclasses import dataclass

from streaming_core.constants import HOP, SAMPLE_RATE
from streaming_core.errors import BitstreamError
from streaming_core.quantizer import FrameQuantizer, ScalarQuantizer

FRAMES_PER_SECOND = SAMPLE_RATE // HOP


@dataclass(frozen=True)
class Mode:
    """A bitrate mode: header id, name, and the quantizer that codes its frames."""

    id: int
    name: str
    quantizer: FrameQuantizer
    description: str

    @property
    def bits_per_frame(self) -> int:
        """Payload bits per 10 ms frame (nominal for variable-rate quantizers)."""
        return self.quantizer.bits_per_frame

    @property
    def bitrate_bps(self) -> int:
        """Nominal payload bitrate in bits per second."""
        return self.bits_per_frame * FRAMES_PER_SECOND

    def payload_bytes(self, frame_count: int) -> int:
        """Payload size of a packet of `frame_count` frames."""
        return -(-frame_count * self.bits_per_frame // 8)


_MODES = (
    Mode(
        id=1,
        name="scalar-2400",
        quantizer=ScalarQuantizer(period_bits=6, correlation_bits=2, cepstrum_bits=(5, 4, 3, 2, 2)),
        description="training-free scalar quantizer: pitch 6, voicing 2, c0 5, c1-c4 4+3+2+2 bits",
    ),
    Mode(
        id=2,
        name="scalar-4000",
        quantizer=ScalarQuantizer(
            period_bits=7, correlation_bits=3, cepstrum_bits=(6, 4, 4, 4, 3, 3, 3, 2, 1)
        ),
        description="training-free scalar quantizer: pitch 7, voicing 3, c0 6, c1-c8 4+4+4+3+3+3+2+1 bits",
    ),
)

DEFAULT_MODE = "scalar-2400"


def list_modes() -> list[Mode]:
    """Every mode this build can code and decode, lowest bitrate first."""
    return sorted(_MODES, key=lambda mode: mode.bitrate_bps)


def get_mode(name_or_id: str | int) -> Mode:
    """The mode with this name or header id; `KeyError` naming the known ones otherwise."""
    for mode in _MODES:
        if name_or_id in (mode.name, mode.id):
            return mode
    known = ", ".join(f"{m.name} (id {m.id})" for m in list_modes())
    raise KeyError(f"unknown mode {name_or_id!r}; known modes: {known}")


def mode_for_header(mode_id: int) -> Mode:
    """The mode of a header id; `BitstreamError` for an id this build does not know."""
    try:
        return get_mode(mode_id)
    except KeyError:
        raise BitstreamError(f"unknown mode id {mode_id} in header") from None


def mode_for_bitrate(bitrate_bps: float) -> Mode:
    """The highest-rate mode whose bitrate does not exceed `bitrate_bps` (else the lowest)."""
    modes = list_modes()
    fitting = [mode for mode in modes if mode.bitrate_bps <= bitrate_bps]
    return fitting[-1] if fitting else modes[0]
