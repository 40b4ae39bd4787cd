"""The predictive quantizer: a GRU predicts each frame's cepstrum from the frames already
decoded and the frame's own pitch and voicing (which are coded first), and only the residual is
coded, with a multi-stage residual VQ that has one stage more on transient frames than on steady
ones; pitch and voicing get their own scalar codes (pitch as a change from the previous frame,
absolute at voicing onsets, absent when unvoiced).

Seed ideas: predictive residual coding of LPCNet features with a discriminative codebook choice
(Yang, Lim, Kim 2022); multi-stage VQ trained on a dB-domain error (Rowe's Codec 2 rate-K VQ:
the cepstrum is an orthonormal DCT of log band energies, so its squared error is the log-spectral
error). The encoder runs the decoder's reconstruction (closed loop), so both hold the same state.

Per frame the bits are, in order: the transient flag (1), voicing, pitch (voiced frames only),
then one index per VQ stage of the chosen path (docs/bitstream.md). A rate controller (a bit
reservoir) lets the encoder choose the transient path only as often as the mode's average
bitrate allows. hop-1600 and hop-1200 (`Allocation.tiers`) code their frames differently since
bitstream formats 9 and 10: `streaming_core.tiered`.
"""

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np

from streaming_core.bitpack import BitReader, BitWriter
from streaming_core.constants import (
    BAND_EDGES_200HZ,
    CORR_INDEX,
    NB_BANDS,
    NB_FEATURES,
    PERIOD_INDEX,
    PITCH_MAX_PERIOD,
    PITCH_MIN_PERIOD,
)
from streaming_core.errors import HopcodecError
from streaming_core.graph_batcher import GraphBatcher
from streaming_core.spectrum import log_energies_from_cepstrum

LOG_PERIOD_MIN, LOG_PERIOD_MAX = np.log(PITCH_MIN_PERIOD), np.log(PITCH_MAX_PERIOD)
PITCH_DELTA_RANGE = 0.35
"""Largest pitch change (in log period, about 42 %) a 4- or 5-bit change code holds."""
FINE_PITCH_DELTAS = (0.008, 0.025, 0.06)
"""The positive changes of log period of the 3-bit code (hop-800 ... hop-1600): 0, ±0.8 %,
±2.5 % and ±6 % per 10 ms. Half the frame-to-frame changes of voiced speech are under 1.4 %;
the earlier table (`0.35 u^3`: 0, ±1.3 %, ±10 %, ±35 %) forced a glide of a few per cent to
alternate between steps of 1.3 and 10 %, a jitter listeners hear as roughness. Larger jumps
take the escape code and an absolute pitch. On 30 unseen clips at hop-1600 this table lowered
the RMS pitch error of voiced frames and raised PESQ-WB by 0.03 and DNSMOS by 0.06
(bitstream format 3)."""
VOICING_LOW, VOICING_HIGH = 0.1, 0.95
VOICED = 0.5
"""Decoded voicing at or above which a frame is voiced (and carries pitch bits)."""
PITCH_ESCAPE_ERROR = 0.15
"""A voiced frame after a voiced one codes its pitch absolutely (escape code + absolute
levels) when the best change misses by more than this (log period, about 260 cents: octave
jumps); a voicing onset does whenever the absolute code is the closer one."""
SEARCH_BEAM = 8
"""Partial paths the encoder's residual-VQ search keeps after each stage (`rvq_encode`). An
encoder-only choice: the bitstream and the decoder are the same for any beam. On 30 validation
clips at hop-1600 (`scripts/ab_decoder.py --split valid --max-clips 30 --search-beam N`) a
beam of 8 against the greedy search (1) raised
PESQ-WB by 0.016, STOI by 0.006, ViSQOL by 0.016 and DNSMOS by 0.04 and lowered WARP-Q by
0.019; a beam of 32 added little more, and at hop-3200 (five stages) beams of 16 and 64 made the
encoder 1.1 and 1.9 times as slow as a beam of 8 (AMD EPYC VM). The encoder's real-time factor
on one core (`encode_audio(x, mode, frames_per_packet=1)` on the bundled
it_carlo_youarenext.wav, best of 5, `OMP_NUM_THREADS=1 taskset -c 0`, Intel Xeon VM): hop-1600
greedy 0.032, beam 8 0.036, beam 8 with the weights below 0.038; hop-3200 0.036, 0.049, 0.049
(bitstream format 5). Format 6, whose bit reservoir takes the transient path more often at
hop-1600, measured 0.040-0.043 at hop-1600 in runs alternating with format 5 (0.039-0.040
there), and later, with the VM slower and `rvq_encode` no longer summing the codewords it chose
(the encoder's `_reconstruct` does): hop-1600 0.045, hop-3200 0.057 (0.045-0.046 and 0.060
with the sum, alternating runs). Since format 8, hop-1600 searches one codebook per path ('s1'
or the joint 'j12'), where the beam changes nothing; it serves hop-1200, hop-2400 and hop-3200."""
SEARCH_WEIGHTING = 0.15
"""Exponent g of the search's band weights 10^(g (log10 E_b - max log10 E)): a band's
log-energy error counts less the quieter the band is against the frame's loudest (a band 30 dB
down counts a third as much at g = 0.15), the idea of the perceptual weighting filter of CELP
coders (Atal & Schroeder, "Predictive coding of speech signals and subjective error criteria",
IEEE Trans. ASSP 1979) applied to the band log energies. An encoder-only choice like the beam.
On 30 validation clips at hop-1600 with decoder version 6 (`scripts/ab_decoder.py --split valid
--max-clips 30 --search-weighting G`), against the unweighted search (0): g = 0.15 raised
PESQ-WB 1.569 -> 1.637, STOI 0.868 -> 0.874, ViSQOL 2.614 -> 2.720, DNSMOS 2.479 -> 2.485 and
lowered WARP-Q 2.442 -> 2.430; g = 0.1 and 0.2 scored alike, 0.25 and 0.35 lost ViSQOL."""
HIGH_BAND_START_HZ = 5000.0
"""Bands centred above this frequency count `HIGH_BAND_SEARCH_WEIGHT` times in the search."""
HIGH_BAND_SEARCH_WEIGHT = 0.3
"""Factor on the search weights of the bands centred above `HIGH_BAND_START_HZ` (5.6, 6.8 and
8 kHz): their envelope's detail matters less to the ear than the formant region's, so the search
spends its choice on the bands below, as wideband speech coders spend few or no bits on the top
of the band (AMR-WB codes 6.4-7 kHz by a gain alone; Bessette et al., "The adaptive multirate
wideband speech codec (AMR-WB)", IEEE Trans. Speech Audio Process. 2002). An encoder-only
choice like the beam. On 120 validation clips at hop-1600 with decoder version 11
(`scripts/ab_decoder.py --split valid --max-clips 120 --high-band-weight W`), against 1 (all
bands alike), paired change and standard error: 0.3 PESQ-WB -0.007 (0.009), STOI +0.003
(0.001), ViSQOL +0.017 (0.015), WARP-Q -0.021 (0.005), DNSMOS +0.028 (0.013); 0.5 WARP-Q
-0.008, 0.2 and 0.1 WARP-Q -0.027 / -0.026 with DNSMOS -0.010 / +0.028; lowering the 4.8 kHz
band as well lost WARP-Q (models/README.md). Not in hop-800 (its ladder entry sets
`Allocation.search_high_band_weight` to 1)."""
RESERVOIR_FRAMES = 3.0
"""The reservoir holds at most this many transient frames' worth of extra bits."""

NEUTRAL_FRAME = np.zeros(NB_FEATURES, dtype=np.float32)
"""What the predictor sees before the first frame of a stream (silence-like, unvoiced)."""
NEUTRAL_FRAME[0] = -20.0
NEUTRAL_FRAME[PERIOD_INDEX] = 100.0


CURRENT_PITCH = [PERIOD_INDEX, CORR_INDEX]
"""The feature columns of the predictor's `current` input, in its order: the frame's own decoded
pitch period and voicing (the bitstream carries them before the residual)."""


class Predictor(Protocol):
    """Predicts the cepstra of the next frames (batched) from the previous decoded frames and
    each frame's own decoded pitch period and voicing (`current`: the bitstream carries them
    before the residual, so the decoder knows them when it predicts)."""

    hidden: int

    def __call__(self, previous: np.ndarray, current: np.ndarray, state: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """(B, NB_FEATURES), (B, 2) [period, voicing], (B, hidden) -> prediction (B, NB_BANDS),
        new state (B, hidden)."""


class ZeroPredictor:
    """The 'no predictor' ablation: always predicts the codebooks' mean (zero residual offset)."""

    hidden = 1

    def __init__(self, mean: np.ndarray) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)

    def __call__(self, previous: np.ndarray, current: np.ndarray, state: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """The mean cepstrum for every frame."""
        return np.broadcast_to(self.mean, (len(previous), NB_BANDS)).copy(), state


def rvq_encode(residual: np.ndarray, books: list[np.ndarray], beam: int = 1,
               weights: np.ndarray | None = None,
               band_books: list[np.ndarray] | None = None,
               every_stage: bool = False) -> np.ndarray | list[np.ndarray]:
    """Residual VQ: the chosen codeword indices (B, stages) of residuals (B, NB_BANDS).

    `beam` = 1 is the greedy search (each stage takes the codeword nearest to what the stages
    before it left); a wider beam keeps the `beam` best partial paths after every stage (the
    M-best search of LeBlanc, Bhattacharya, Mahmoud & Cuperman, "Efficient search and design
    procedures for robust multi-stage VQ of LPC parameters for 4 kb/s speech coding", IEEE
    Trans. Speech Audio Proc. 1993), which finds combinations of stages the greedy path misses.
    `weights` (B, NB_BANDS), when given, weighs each band's log-energy error in the distance
    (the cepstral distance is the unweighted band distance: the DCT is orthonormal);
    `band_books`, the books as log band energies, spare that transform on every call. The
    quantized residual is the sum of the chosen codewords (`_reconstruct` adds them to the
    prediction in the one order encoder and decoder share). `every_stage`: a list instead, per
    stage n the best path through the first n + 1 books (B, n + 1), what the search of those
    books alone would choose (a tiered mode's tiers share their first books).
    """
    residual = np.asarray(residual, dtype=np.float32)
    count = len(residual)
    if weights is None:
        to_search = [np.broadcast_to(book, (count, *book.shape)) for book in books]
        target = residual
    else:  # search in the weighted band domain: z = (c @ IDCT) * sqrt(w)
        scale = np.sqrt(np.asarray(weights, dtype=np.float32))[:, None, :]
        if band_books is None:
            band_books = [log_energies_from_cepstrum(book).astype(np.float32) for book in books]
        to_search = [book[None] * scale for book in band_books]
        target = log_energies_from_cepstrum(residual).astype(np.float32) * scale[:, 0]
    # paths: (B, P) indices per stage so far, and what each path leaves unquantized (B, P, D)
    remaining = target[:, None, :].copy()
    paths = np.zeros((count, 1, 0), dtype=np.int64)
    rows = np.arange(count)[:, None]
    best_by_stage = []
    for stage, book in enumerate(to_search):
        candidates = remaining[:, :, None, :] - book[:, None]  # (B, P, K, D)
        # einsum: a third of the time of (candidates**2).sum(-1) at hop-1600's 4096 codewords
        distances = np.einsum("bpkd,bpkd->bpk", candidates, candidates).reshape(count, -1)
        # After the last stage only the best path is wanted (a one-stage search is then the
        # nearest codeword, as the greedy search takes it).
        keep = 1 if stage == len(books) - 1 else min(beam, distances.shape[1])
        if keep == 1:
            best = distances.argmin(axis=1)[:, None]
        elif keep < distances.shape[1]:  # the `keep` smallest, then in order
            nearest = np.argpartition(distances, keep - 1, axis=1)[:, :keep]
            order = np.argsort(np.take_along_axis(distances, nearest, 1), axis=1, kind="stable")
            best = np.take_along_axis(nearest, order, 1)
        else:
            best = np.argsort(distances, axis=1, kind="stable")
        parent, entry = np.divmod(best, book.shape[1])
        paths = np.concatenate((paths[rows, parent], entry[..., None]), axis=-1)
        remaining = candidates[rows, parent, entry]
        best_by_stage.append(paths[:, 0])  # the kept paths are in order: the best first
    return best_by_stage if every_stage else paths[:, 0]


def loudness_weights(cepstra: np.ndarray, exponent: float = SEARCH_WEIGHTING) -> np.ndarray:
    """(B, NB_BANDS) search weights of frames' cepstra (B, NB_BANDS): 10^(exponent (log10 E_b -
    max log10 E)), 1 for each frame's loudest band (`SEARCH_WEIGHTING`)."""
    loudness = log_energies_from_cepstrum(cepstra)
    return 10.0 ** (exponent * (loudness - loudness.max(axis=-1, keepdims=True)))


def high_band_weight_of(mode_name: str) -> float:
    """The search's weight on the bands above 5 kHz in the predictive mode `mode_name` (its
    ladder entry's `Allocation.search_high_band_weight`)."""
    return LADDER[mode_name][1].search_high_band_weight


@cache
def band_search_tilt(high_band_weight: float = HIGH_BAND_SEARCH_WEIGHT) -> np.ndarray:
    """(NB_BANDS,) factors on the search weights: `high_band_weight` for the bands centred above
    `HIGH_BAND_START_HZ`, 1 below. Computed once per weight (the search asks every frame);
    read-only."""
    centres_hz = np.array(BAND_EDGES_200HZ, dtype=np.float32) * 200.0
    tilt = np.where(centres_hz > HIGH_BAND_START_HZ, high_band_weight, 1.0).astype(np.float32)
    tilt.setflags(write=False)
    return tilt


def search_weights(cepstra: np.ndarray, exponent: float = SEARCH_WEIGHTING,
                   high_band_weight: float = HIGH_BAND_SEARCH_WEIGHT) -> np.ndarray:
    """(B, NB_BANDS) weights of the encoder's search: each band's loudness weight
    (`loudness_weights`) times its frequency tilt (`band_search_tilt`)."""
    return loudness_weights(cepstra, exponent) * band_search_tilt(high_band_weight)


def _reconstruct(prediction: np.ndarray, books: list[np.ndarray], indices) -> np.ndarray:
    """prediction + the chosen codewords, summed in one fixed order (encoder == decoder)."""
    cepstrum = prediction.astype(np.float32)  # a copy
    for book, index in zip(books, indices, strict=True):
        cepstrum += book[int(index)]
    return cepstrum


def pitch_delta_levels(bits: int) -> np.ndarray:
    """2^bits - 1 log-period changes, symmetric around 0, finer near 0: `FINE_PITCH_DELTAS`
    for 3 bits, cubic companding up to `PITCH_DELTA_RANGE` for more."""
    if bits == 3:
        positive = np.array(FINE_PITCH_DELTAS)
        return np.concatenate((-positive[::-1], [0.0], positive))
    u = np.linspace(-1.0, 1.0, (1 << bits) - 1)
    return u**3 * PITCH_DELTA_RANGE


def voicing_levels(bits: int) -> np.ndarray:
    """Decoded pitch-correlation values."""
    return np.linspace(VOICING_LOW, VOICING_HIGH, 1 << bits)


def absolute_pitch_levels(bits: int) -> np.ndarray:
    """Log periods for a voicing onset (no voiced previous frame to add a change to)."""
    return np.linspace(LOG_PERIOD_MIN, LOG_PERIOD_MAX, 1 << bits)


@dataclass(frozen=True)
class Allocation:
    """The bits of one predictive mode."""

    pitch_bits: int
    """Bits of the pitch change of a voiced frame after a voiced frame."""
    voicing_bits: int
    steady_stages: tuple[str, ...]
    """Codebooks of a steady frame's residual (may be empty: prediction only)."""
    transient_stages: tuple[str, ...]
    """Codebooks of a transient frame's residual."""
    target_bits: int
    """Average payload bits per frame that the rate controller holds."""
    onset_pitch_bits: int = 5
    """Bits of an absolute pitch (after the escape code), used at voicing onsets and jumps
    the change codes cannot follow. Unvoiced frames carry no pitch bits."""
    tiers: tuple[tuple[str, ...], ...] = ()
    """Tiered modes (hop-1600 since bitstream format 9, hop-1200 since 10,
    `streaming_core.tiered`): the codebook lists a frame chooses among, in place of the steady
    and transient paths, which only the training tools that code format 8's way use
    (`models.quantizer.train`)."""
    search_high_band_weight: float = HIGH_BAND_SEARCH_WEIGHT
    """Encoder only, no bits: the search's weight on the bands above 5 kHz (1: as the others).
    hop-800 (one stage, in transient frames only) weighs every band alike: with 0.3 it gained
    nothing on 60 validation clips (WARP-Q +0.004 (0.011), DNSMOS -0.022 (0.030)), lost DNSMOS
    on the bench's test clips (-0.084 (0.037)), and a noise burst's measured onset came 1.9 ms
    later (`hopcodec latency --algorithmic-only`: 15.1 -> 17.0 ms)."""
    error_feedback: float = 0.0
    """Encoder only, no bits; tiered modes (`streaming_core.tiered`): the share K of the previous
    frame's coding error the search aims to repeat, so the coded envelope's error changes
    slowly from frame to frame (0: off). hop-1600 uses 0.5 with `error_feedback_change` 0.3 since
    decoder version 13, whose enhancer was tuned on frames coded so: DNSMOS gained for some
    WARP-Q and ViSQOL (models/README.md, "The encoder's search repeats a share of the last
    error"; `scripts/ab_decoder.py --error-feedback`)."""
    error_feedback_change: float = 0.0
    """Encoder only: the feedback falls as exp(-(d / this)^2) with the input's RMS cepstral change
    d from the previous frame, so it carries only through steady frames (0: it does not fall)."""


@dataclass
class PredictiveState:
    """Per-stream state, identical in encoder and decoder after every frame."""

    predictor_state: np.ndarray
    previous: np.ndarray = field(default_factory=lambda: NEUTRAL_FRAME.copy())
    """Last decoded frame (NEUTRAL_FRAME after a reset)."""
    first_frame: bool = True
    """True until the first frame after a reset is coded (it is always a transient frame)."""
    credit: float = 0.0
    """Encoder only: bits in the reservoir."""
    transient_share: float = 0.0
    """Encoder only: running share of transient frames (for reports)."""
    context: int = 0
    """Tiered modes (`streaming_core.tiered`): the previous frame's (voicing, pitch field) pair,
    whose prefix code the next frame header is written with (0 at every packet's start)."""
    previous_input: np.ndarray | None = None
    """Encoder only, tiered modes with `Allocation.error_feedback`: the last frame's c0..c17 as
    analysed (None after a reset, and in every mode without the feedback); less `previous`,
    that frame's coding error."""

    def copy(self) -> "PredictiveState":
        """An independent copy (a decoder decodes each packet on one; built field by field:
        `copy.deepcopy` took six times as long as `dataclasses.replace`, which took twice as long
        as this)."""
        return PredictiveState(self.predictor_state.copy(), self.previous.copy(), self.first_frame,
                               self.credit, self.transient_share, self.context,
                               None if self.previous_input is None else self.previous_input.copy())


@dataclass
class FrameCode:
    """One frame's fields as read from the bitstream, before the prediction is added."""

    log_period: float
    voicing: float
    books: list[np.ndarray]
    """The codebooks of the frame's path (steady or transient)."""
    indices: list[int]


def decode_frames_together(frames: list[tuple["PredictiveQuantizer", PredictiveState, FrameCode]]
                           ) -> list[np.ndarray]:
    """`finish_frame` for one frame of each of several streams (quantizer, the stream's state,
    the frame's code), their predictions made in one call of the predictor they share: what
    `decode` gives each stream alone."""
    predictors = {id(quantizer.predictor) for quantizer, _, _ in frames}
    if len(predictors) > 1:
        raise ValueError("frames decoded together must share one predictor")
    current = np.array([[np.exp(code.log_period), code.voicing] for _, _, code in frames],
                       np.float32)
    predictions, predictor_states = frames[0][0].predictor(
        np.stack([state.previous for _, state, _ in frames]), current,
        np.concatenate([state.predictor_state for _, state, _ in frames]))
    decoded = []
    for i, (quantizer, state, code) in enumerate(frames):
        state.predictor_state = predictor_states[i : i + 1]
        decoded.append(quantizer.finish_frame(state, predictions[i], code))
    return decoded


class PredictiveQuantizer:
    """One bitrate mode of the predictive quantizer (`FrameQuantizer` interface)."""

    state_key = "predictive"
    """Modes sharing this key share one stream state, so switching between them needs no reset."""
    variable_rate = True

    def __init__(self, allocation: Allocation, codebooks: dict[str, np.ndarray],
                 predictor: Predictor, transient_threshold: float,
                 high_band_weight: float | None = None) -> None:
        self.allocation = allocation
        self.codebooks = codebooks
        self.predictor = predictor
        self.threshold = transient_threshold
        self.search_beam = SEARCH_BEAM
        """Encoder only: the residual-VQ search beam (`rvq_encode`)."""
        self.search_weighting = SEARCH_WEIGHTING
        """Encoder only: exponent of the band-loudness weights of the search (0: unweighted)."""
        self.high_band_weight = (allocation.search_high_band_weight if high_band_weight is None
                                 else high_band_weight)
        """Encoder only: the search's weight on the bands above 5 kHz (1: as the others; by
        default the allocation's)."""
        self.steady_books = [codebooks[n] for n in allocation.steady_stages]
        self.transient_books = [codebooks[n] for n in allocation.transient_stages]
        self.steady_band_books: list[np.ndarray] = []
        self.transient_band_books: list[np.ndarray] = []
        """The same books as log band energies, for the weighted search."""
        self.codebooks_changed()
        self.steady_index_bits = [int(np.log2(len(b))) for b in self.steady_books]
        self.transient_index_bits = [int(np.log2(len(b))) for b in self.transient_books]
        flag_and_voicing = 1 + allocation.voicing_bits
        self.steady_vq_bits = sum(self.steady_index_bits)
        self.transient_vq_bits = sum(self.transient_index_bits)
        self.steady_bits = flag_and_voicing + allocation.pitch_bits + self.steady_vq_bits
        """Bits of a steady voiced frame (the usual size; used for reports)."""
        self.transient_bits = flag_and_voicing + allocation.pitch_bits + self.transient_vq_bits
        self.min_bits = flag_and_voicing + self.steady_vq_bits
        """Bits of the smallest frame (steady, unvoiced)."""
        self.max_bits = (flag_and_voicing + allocation.pitch_bits + allocation.onset_pitch_bits
                         + self.transient_vq_bits)
        """Bits of the largest frame (transient, escaped absolute pitch)."""
        self.pitch_deltas = pitch_delta_levels(allocation.pitch_bits)
        self.pitch_absolute = absolute_pitch_levels(allocation.onset_pitch_bits)
        self.voicing = voicing_levels(allocation.voicing_bits)

    @property
    def bits_per_frame(self) -> int:
        """Nominal (average) payload bits per frame."""
        return self.allocation.target_bits

    def codebooks_changed(self) -> None:
        """Recompute what the search derives from the codebooks; call after changing their
        values in place (`models.quantizer.refine` does, between its rounds)."""
        self.steady_band_books = [log_energies_from_cepstrum(b).astype(np.float32)
                                  for b in self.steady_books]
        self.transient_band_books = [log_energies_from_cepstrum(b).astype(np.float32)
                                     for b in self.transient_books]

    def new_state(self) -> PredictiveState:
        """State after a reset."""
        return PredictiveState(predictor_state=np.zeros((1, self.predictor.hidden), np.float32))

    def start_packet(self, state: PredictiveState) -> None:
        """Before a packet's first frame: the prefix-code context starts afresh (tiered modes;
        a receiver that lost packets still parses every frame)."""
        state.context = 0

    def search_paths(self) -> list[tuple[list[np.ndarray], tuple[str, ...]]]:
        """Every list of codebooks a frame may be coded with, and their names."""
        return [(self.steady_books, self.allocation.steady_stages),
                (self.transient_books, self.allocation.transient_stages)]

    def _predict(self, state: PredictiveState, log_period: float, voicing: float) -> np.ndarray:
        """The cepstrum predicted for a frame whose pitch and voicing are decoded already."""
        current = np.array([[np.exp(log_period), voicing]], dtype=np.float32)  # CURRENT_PITCH
        prediction, state.predictor_state = self.predictor(state.previous[None], current,
                                                           state.predictor_state)
        return prediction[0]

    def _finish(self, state: PredictiveState, cepstrum: np.ndarray, log_period: float,
                voicing: float) -> np.ndarray:
        frame = np.empty(NB_FEATURES, dtype=np.float32)
        frame[:NB_BANDS] = cepstrum
        frame[PERIOD_INDEX] = np.exp(log_period)
        frame[CORR_INDEX] = voicing
        state.previous = frame
        state.first_frame = False
        return frame.copy()

    def _code_pitch(self, period: float, voicing: float, state: PredictiveState
                    ) -> tuple[list[tuple[int, int]], float]:
        """The pitch fields (value, bits) of a frame and the log period the decoder will hold.

        Unvoiced: no field, the pitch is held. Voiced: the nearest change code, or the escape
        code and the nearest absolute level at a voicing onset (or a jump the changes miss by
        more than PITCH_ESCAPE_ERROR) when that is closer.
        """
        previous = float(np.log(state.previous[PERIOD_INDEX]))
        if voicing < VOICED:
            return [], previous
        target = float(np.log(np.clip(period, PITCH_MIN_PERIOD, PITCH_MAX_PERIOD)))
        delta_index = int(np.abs(self.pitch_deltas - (target - previous)).argmin())
        delta_period = float(np.clip(previous + self.pitch_deltas[delta_index],
                                     LOG_PERIOD_MIN, LOG_PERIOD_MAX))
        absolute_index = int(np.abs(self.pitch_absolute - target).argmin())
        absolute_period = float(self.pitch_absolute[absolute_index])
        onset = state.previous[CORR_INDEX] < VOICED
        delta_error, absolute_error = abs(delta_period - target), abs(absolute_period - target)
        if absolute_error < delta_error and (onset or delta_error > PITCH_ESCAPE_ERROR):
            escape = len(self.pitch_deltas)
            return [(escape, self.allocation.pitch_bits),
                    (absolute_index, self.allocation.onset_pitch_bits)], absolute_period
        return [(delta_index, self.allocation.pitch_bits)], delta_period

    def encode(self, features: np.ndarray, writer: BitWriter, state: PredictiveState) -> np.ndarray:
        """Write one frame; return what the decoder will reconstruct."""
        voicing_index = int(np.abs(self.voicing - features[CORR_INDEX]).argmin())
        voicing = float(self.voicing[voicing_index])
        pitch_fields, log_period = self._code_pitch(features[PERIOD_INDEX], voicing, state)
        pitch_bits = sum(bits for _, bits in pitch_fields)
        prediction = self._predict(state, log_period, voicing)
        residual = features[:NB_BANDS] - prediction

        # Rate control: the bits this frame would cost as a steady frame are spent; what is left
        # of the target goes to the reservoir, from which transient frames draw.
        extra = self.transient_vq_bits - self.steady_vq_bits
        steady_cost = 1 + self.allocation.voicing_bits + pitch_bits + self.steady_vq_bits
        state.credit = min(state.credit + self.allocation.target_bits - steady_cost,
                           RESERVOIR_FRAMES * extra)
        transient = state.first_frame or (
            state.credit >= extra and float(residual @ residual) > self.threshold**2)
        if transient:
            state.credit -= extra
        state.transient_share = 0.99 * state.transient_share + 0.01 * transient
        books, band_books, index_bits = (
            (self.transient_books, self.transient_band_books, self.transient_index_bits)
            if transient else (self.steady_books, self.steady_band_books, self.steady_index_bits))
        writer.write(int(transient), 1)
        writer.write(voicing_index, self.allocation.voicing_bits)
        for value, bits in pitch_fields:
            writer.write(value, bits)

        weighted = self.search_weighting or self.high_band_weight != 1.0
        weights = (search_weights(features[None, :NB_BANDS], self.search_weighting,
                                  self.high_band_weight) if weighted else None)
        indices = (rvq_encode(residual[None], books, self.search_beam, weights, band_books)[0]
                   if books else [])
        for index, bits in zip(indices, index_bits, strict=True):
            writer.write(int(index), bits)
        return self._finish(state, _reconstruct(prediction, books, indices), log_period, voicing)

    def decode(self, reader: BitReader, state: PredictiveState) -> np.ndarray:
        """Read one frame."""
        code = self.read_frame(reader, state)
        return self.finish_frame(state, self._predict(state, code.log_period, code.voicing), code)

    def read_frame(self, reader: BitReader, state: PredictiveState) -> "FrameCode":
        """The first half of `decode`: one frame's fields, read without running the predictor
        (`decode_frames_together` runs it once for the frames of many streams)."""
        transient = reader.read(1)
        books, index_bits = ((self.transient_books, self.transient_index_bits) if transient
                             else (self.steady_books, self.steady_index_bits))
        voicing = float(self.voicing[reader.read(self.allocation.voicing_bits)])
        pitch_code = reader.read(self.allocation.pitch_bits) if voicing >= VOICED else None
        log_period = self._decoded_log_period(reader, state, pitch_code)
        return FrameCode(log_period, voicing, books, [reader.read(bits) for bits in index_bits])

    def _decoded_log_period(self, reader: BitReader, state: PredictiveState,
                            pitch_code: int | None) -> float:
        """The frame's log period from its pitch code (None: unvoiced, the pitch is held); after
        the escape code the absolute pitch is read from `reader`."""
        log_period = float(np.log(state.previous[PERIOD_INDEX]))
        if pitch_code is None:
            return log_period
        if pitch_code == len(self.pitch_deltas):  # escape: an absolute pitch follows
            return float(self.pitch_absolute[reader.read(self.allocation.onset_pitch_bits)])
        return min(max(log_period + float(self.pitch_deltas[pitch_code]), LOG_PERIOD_MIN),
                   LOG_PERIOD_MAX)

    def finish_frame(self, state: PredictiveState, prediction: np.ndarray, code: "FrameCode"
                     ) -> np.ndarray:
        """The second half of `decode`: the frame from its prediction and its codewords."""
        return self._finish(state, _reconstruct(prediction, code.books, code.indices),
                            code.log_period, code.voicing)

    def conceal(self, state: PredictiveState) -> np.ndarray:
        """A lost frame: the predictor's own guess, pitch held, voicing decaying."""
        log_period = float(np.log(state.previous[PERIOD_INDEX]))
        voicing = 0.9 * float(state.previous[CORR_INDEX])
        return self._finish(state, self._predict(state, log_period, voicing), log_period, voicing)


class OnnxPredictor:
    """The trained GRU predictor, one hop per call, run by onnxruntime (no torch); calls from
    several threads at once (streams of a server) share graph runs (`GraphBatcher`)."""

    def __init__(self, path: str | Path) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options,
                                                    providers=["CPUExecutionProvider"])
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        if set(shapes) != {"previous", "current", "gru_state"}:
            raise HopcodecError(f"{path}: a predictor graph of another layout (inputs "
                             f"{', '.join(shapes)}); this build needs previous, current, gru_state")
        self.hidden = int(shapes["gru_state"][1])
        self.batcher = GraphBatcher(self.session)

    def __call__(self, previous: np.ndarray, current: np.ndarray, state: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Prediction (B, NB_BANDS) and new GRU state."""
        prediction, new_state = self.batcher.run({
            "previous": np.asarray(previous, np.float32), "current": np.asarray(current, np.float32),
            "gru_state": np.asarray(state, np.float32)})
        return prediction, new_state


JOINT_BOOK = "j12"
"""The joint 12-bit codebook of hop-1600's transient frames (bitstream format 8): one index into
4096 codewords where format 7 sent two 6-bit indices into 's1' and 's2'. Searched exhaustively
with the same weighted distance (`rvq_encode` with one stage); trained by
`models.quantizer.joint`, which starts it as the 4096 sums of `JOINT_INIT_STAGES`."""
JOINT_INIT_STAGES = ("s1", "s2")
"""The two stages whose codeword sums are the joint book's starting point."""

TIERS = ((), ("s1",), (JOINT_BOOK,), (JOINT_BOOK, "s3"))
"""The tiers of the tiered modes (hop-1200, hop-1600): no residual, 's1', 'j12', 'j12' then 's3'."""

LADDER: dict[str, tuple[int, Allocation]] = {
    "hop-800": (10, Allocation(pitch_bits=3, voicing_bits=1, steady_stages=(),
                               transient_stages=("s1",), target_bits=8,
                               search_high_band_weight=1.0)),
    "hop-1200": (11, Allocation(pitch_bits=3, voicing_bits=1, steady_stages=("s1",),
                                transient_stages=("s1", "s2"), target_bits=12, tiers=TIERS)),
    "hop-1600": (12, Allocation(pitch_bits=3, voicing_bits=1, steady_stages=("s1",),
                                transient_stages=(JOINT_BOOK,), target_bits=16, tiers=TIERS,
                                error_feedback=0.5, error_feedback_change=0.3)),
    "hop-2400": (13, Allocation(pitch_bits=4, voicing_bits=2, steady_stages=("s1", "s2"),
                                transient_stages=("s1", "s2", "s3"), target_bits=24)),
    "hop-3200": (14, Allocation(pitch_bits=5, voicing_bits=2, steady_stages=("s1", "s2"),
                                transient_stages=("s1", "s2", "s3", "s4", "s5"), target_bits=32)),
}
"""The bitrate ladder: mode name -> (header id, bit allocation). Codebooks: 's1'..'s5' have 64
entries each (stages of one residual VQ); 'j12' (`JOINT_BOOK`) has 4096, in place of 's1' +
's2' in hop-1600's transient frames. A transient frame gets one more stage than a steady one
(hop-1600: six more bits): on unseen speakers this beat (by 0.7 dB at hop-1600) a first
ladder that gave steady frames a 16-entry codebook and transient frames two or three extra
stages. hop-1600 codes voicing with 1 bit since format 4: on 20 validation clips the clean
voicing in place of the decoded one changed no metric (`scripts/ab_decoder.py --clean
voicing`), and the freed bit, spent on transient frames, raised STOI by 0.006, ViSQOL by 0.03
and DNSMOS by 0.06 and lowered WARP-Q by 0.045 (the same script with the allocation patched,
decoder version 4). hop-1600's `tiers` replace its two paths since format 9, hop-1200's since
format 10 (`streaming_core.tiered`, the same four tiers: without the empty one hop-1200 measured
PESQ-WB +0.046 where the four gained +0.012 on 80 validation clips, but its smallest tier, 's1',
could overdraw the bucket: models/README.md); their steady and transient stages remain for the
training tools that code format 8's way (`models.quantizer.train`)."""

CODEBOOK_SIZES = {"s1": 64, "s2": 64, "s3": 64, "s4": 64, "s5": 64, JOINT_BOOK: 4096}

JOINT_MODES = tuple(name for name, (_, allocation) in LADDER.items()
                    if JOINT_BOOK in allocation.transient_stages)
"""The modes whose transient frames use `JOINT_BOOK` (the frames it is trained on): hop-1600.
hop-1200's tiers use the book too since format 10; it is not retrained on their frames."""

TIERED_MODES = tuple(name for name, (_, allocation) in LADDER.items() if allocation.tiers)
"""The modes that code with `streaming_core.tiered` (formats 9 and 10): hop-1200, hop-1600."""

