"""The bitrate modes: each a mode id in the packet header and a frame quantizer.

Bitrates are payload bits at 100 frames/s; packet headers come on top (docs/bitstream.md).
"""

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from streaming_core.constants import HOP, SAMPLE_RATE
from streaming_core.errors import BitstreamError, HopcodecError
from streaming_core.quantizer import FrameQuantizer, ScalarQuantizer

if TYPE_CHECKING:
    from streaming_core.predictive import OnnxPredictor

FRAMES_PER_SECOND = SAMPLE_RATE // HOP
RELEASED = Path(__file__).resolve().parent.parent / "models" / "released"
"""Where the trained predictor and codebooks live (shipped in the repository)."""


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

    @property
    def variable_rate(self) -> bool:
        """True when frames differ in size (the average is `bits_per_frame`)."""
        return bool(getattr(self.quantizer, "variable_rate", False))

    @property
    def state_key(self) -> object:
        """Modes with the same key share one quantizer state (switching needs no reset)."""
        return getattr(self.quantizer, "state_key", self.id)

    def payload_bytes(self, frame_count: int) -> int:
        """Payload size of a packet of `frame_count` frames (fixed-rate modes)."""
        return -(-frame_count * self.bits_per_frame // 8)

    def payload_range(self, frame_count: int) -> tuple[int, int]:
        """Smallest and largest payload (bytes) of a packet of `frame_count` frames."""
        if not self.variable_rate:
            size = self.payload_bytes(frame_count)
            return size, size
        return (-(-frame_count * self.quantizer.min_bits // 8),
                -(-frame_count * self.quantizer.max_bits // 8))


SCALAR_MODES = (
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



@cache
def released_predictor() -> "OnnxPredictor | None":
    """The released GRU predictor every predictive mode shares (None when not installed)."""
    from streaming_core.predictive import OnnxPredictor

    path = RELEASED / "predictor.onnx"
    return OnnxPredictor(path) if path.is_file() else None


@cache
def predictive_modes() -> tuple[Mode, ...]:
    """The trained ladder (empty when the released predictor is not installed)."""
    from streaming_core.predictive import LADDER, PredictiveQuantizer
    from streaming_core.tiered import CODE_KEY, TierCodes, TieredQuantizer

    predictor, codebook_path = released_predictor(), RELEASED / "codebooks.npz"
    if predictor is None or not codebook_path.is_file():
        return ()
    stored = dict(np.load(codebook_path))
    books = {name: array for name, array in stored.items()
             if not name.startswith(("threshold_", CODE_KEY.split("{")[0]))}
    missing = sorted({book for _, allocation in LADDER.values()
                      for book in allocation.steady_stages + allocation.transient_stages
                      + tuple(b for tier in allocation.tiers for b in tier)} - set(books))
    if missing:
        raise HopcodecError(f"{codebook_path} lacks the codebooks {', '.join(missing)} of this "
                            "build's bitstream format; re-run the quantizer commands of models/README.md")
    modes = []
    for name, (mode_id, allocation) in LADDER.items():
        if allocation.tiers:
            codes = TierCodes.load(stored, name, sorted({b for t in allocation.tiers for b in t}))
            quantizer: PredictiveQuantizer = TieredQuantizer(allocation, books, predictor, codes)
            description = (
                f"predictive, tiered: a header of tier, voicing {allocation.voicing_bits} and pitch "
                f"{allocation.pitch_bits} bits (none when unvoiced, +{allocation.onset_pitch_bits} "
                f"at onsets) and the residual VQ indices of the tier ("
                + ", ".join(" + ".join(t) or "none" for t in allocation.tiers)
                + (") in prefix codes" if codes else
                   ") in fixed-width fields (no prefix codes installed)"))
        else:
            quantizer = PredictiveQuantizer(allocation, books, predictor,
                                            float(stored[f"threshold_{name}"]))
            description = (
                f"predictive: flag 1 + voicing {allocation.voicing_bits} + pitch "
                f"{allocation.pitch_bits} bits (none when unvoiced, +{allocation.onset_pitch_bits} "
                f"at onsets), residual VQ {quantizer.steady_vq_bits} bits (steady: "
                f"{' '.join(allocation.steady_stages) or 'none'}) or {quantizer.transient_vq_bits} "
                f"bits (transient: {' '.join(allocation.transient_stages)})")
        modes.append(Mode(id=mode_id, name=name, quantizer=quantizer, description=description))
    return tuple(modes)


def _all_modes() -> tuple[Mode, ...]:
    return SCALAR_MODES + predictive_modes()


def default_mode_name() -> str:
    """The mode used when none is asked for: hop-1600 when trained, else scalar-2400."""
    return "hop-1600" if predictive_modes() else "scalar-2400"


DEFAULT_MODE = "default"
"""Placeholder accepted by `get_mode`: resolves to `default_mode_name()`."""


def list_modes() -> list[Mode]:
    """Every mode this build can code and decode, lowest bitrate first."""
    return sorted(_all_modes(), key=lambda mode: mode.bitrate_bps)


def get_mode(name_or_id: str | int) -> Mode:
    """The mode with this name or header id; `KeyError` naming the known ones otherwise."""
    if name_or_id == DEFAULT_MODE:
        name_or_id = default_mode_name()
    for mode in _all_modes():
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
