"""The neural decoder at run time: the HopVocoder ONNX graph, then the LPC filter.

The graph (`models.vocoder.model.HopDecoderGraph`) takes T hops of decoded features: a causal
GRU (the feature enhancer) estimates the clean spectral shape, and the vocoder's GRU shapes the
excitation; the background postfilter (`streaming_core.background`: bands at their recent
floor lowered), the LPC synthesis and de-emphasis filters follow here (each hop's envelope,
eased in from the previous hop's except at onsets: `ENVELOPE_SUBFRAMES`). A live stream calls it once
per 10 ms hop; a packet of several frames goes through in one call, which is the same
computation with less overhead. One `onnxruntime.InferenceSession` (one thread) is shared by
every stream; a stream is a `NeuralSynthState`: the states the graph takes and returns, the
noise generator that feeds it, and the filter memories. Streams decoded at once from several
threads (a server's) share graph runs: `GraphBatcher` stacks their hops along the batch axis.
No torch at run time.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime

from streaming_core.background import BackgroundState, applies_at, lower_background
from streaming_core.constants import HOP, NB_BANDS, NB_FEATURES
from streaming_core.dsp_synth import DECODER_DELAY
from streaming_core.errors import HopcodecError
from streaming_core.graph_batcher import GraphBatcher
from streaming_core.lpc import lpc_from_cepstrum
from streaming_core.synthesis_filter import SynthesisFilterState, synthesis_filter

EnvelopePieces = tuple[tuple[int, float], ...]
"""Consecutive pieces of a hop's 160 output samples, each (samples, weight of this hop's
cepstrum against the previous hop's): a piece's LPC envelope is
`weight * this + (1 - weight) * previous`. Output hop n stands for input samples
[160 n - 80, 160 n + 80) (`DECODER_DELAY`); frame n's analysis window is centred on sample
160 n and frame n - 1's on 160 n - 160, so a weight of 1 + t / 160 puts a piece on the straight
line through the two frames at t samples from frame n's centre. The cepstra are log band
energies, so an interpolated envelope is a weighted geometric mean of two spectra (a weight
above 1 extrapolates the log spectrum) and its filter is as stable as any other spectrum's.
Moving the envelope between sub-frames is the sub-frame interpolation of the LPC parameters in
CELP coders (ITU-T G.729 interpolates its LSPs between 5 ms sub-frames)."""


@dataclass(frozen=True)
class EnvelopeScheme:
    """How the LPC envelope moves within a hop: its pieces, and in which hops they apply."""

    pieces: EnvelopePieces
    max_rise_db: float | None = None
    """Move only in hops whose level (c0, dB of mean band level) rose by less than this from the
    previous hop's; the others, the onsets, hold their own envelope for the whole hop, so they
    are heard at once. None: move in every hop."""


HELD_ENVELOPE = EnvelopeScheme(((HOP, 1.0),))
"""Each hop's envelope held for the whole hop (decoder versions up to 11)."""

EASED_ENVELOPE = EnvelopeScheme(((40, 0.75), (120, 1.0)), max_rise_db=1.0)
"""The release (since decoder version 12): in a hop whose level falls or rises by less than 1 dB, the
first 40 samples (2.5 ms) take the envelope three quarters of the way from the previous hop's to
this one's (the whole cepstrum, shape and level); a hop whose level rises more (an onset) holds
its own. The step from one hop's envelope to the next is where the formants jump by the frame's
quantization error; easing it where speech does not start costs no onset time. On 120
validation clips at hop-1600 against holding (paired change, standard error), easing only the
hops whose level falls: PESQ-WB +0.031 (0.006), STOI 0.000, ViSQOL +0.002 (0.006), WARP-Q -0.012
(0.003), DNSMOS +0.004 (0.005); easing also those that rise by less than 1 dB, against that:
+0.004 (0.001), 0.000, +0.001 (0.002), -0.003 (0.001), +0.005 (0.002). `hopcodec latency
--algorithmic-only` measures every mode within 0.2 ms of the held envelope's (15.2-15.9 ms); a
longer or deeper easing (80 samples, or a weight of 0.6 or 0.5 in the first 40), or easing hops
that rise by up to 3 dB, moved hop-800's or hop-1200's measured latency to 16.7-17.4 ms
(`models/README.md`)."""

INTERPOLATED_ENVELOPE = EnvelopeScheme(((40, 0.5), (40, 0.75), (80, 1.0)))
"""Measured, not used: the first half of the hop (between the two frames' centres) interpolated
at each 40-sample piece's start, the second half (past frame n's centre) held. On 120
validation clips at hop-1600 it raised PESQ-WB by 0.13, ViSQOL by 0.006 and DNSMOS by 0.03 and
lowered WARP-Q by 0.056 against holding (STOI -0.004; `models/README.md`), but the envelope then
lags: a noise burst's onset is heard 2-4 ms later (`hopcodec latency --algorithmic-only`
measures 17.1-18.9 ms against the configured 15)."""

RAMPED_ENVELOPE = EnvelopeScheme(((40, 0.625), (40, 0.875), (40, 1.125), (40, 1.375)))
"""Measured, not used: the envelope on the straight line through the previous and this frame,
each 40-sample piece at the line's value at its middle: the first half of the hop interpolates,
the second half extrapolates the move from the previous frame past this frame's centre (no
lookahead: the line is drawn through past frames only). The ramp is centred on the frame, so
the envelope does not lag: the measured algorithmic latency stays at or below the held
envelope's. An extrapolated level may overshoot the higher of the two frames' by at most
`LEVEL_OVERSHOOT_DB` (a sudden onset would otherwise be boosted by 3/8 of its step for the
hop's last quarter). On 40 validation clips at hop-1600 it raised PESQ-WB by 0.046 and lowered
WARP-Q by 0.025 against holding, but in `hopcodec bench` DNSMOS fell in every mode (by
0.03-0.11 on the test clips, by 0.09 on the validation clips at hop-1600) and ViSQOL on the
validation clips by 0.04 (`models/README.md`)."""

LEVEL_OVERSHOOT_DB = 6.0
"""How far (dB of mean band level) an extrapolated envelope's level may rise above the higher
of the previous and this frame's levels."""

C0_PER_DB = math.sqrt(NB_BANDS) / 10.0
"""c0 per dB of mean band level: c0 is the orthonormal DCT's first coefficient of the log10
band energies, sqrt(NB_BANDS) times their mean."""

ENVELOPE_SUBFRAMES: EnvelopeScheme = EASED_ENVELOPE
"""How the LPC envelope moves within a hop at run time and in training (`models.vocoder.dsp`).
The released vocoder was trained holding each hop's envelope (`HELD_ENVELOPE`); version 12
filters its output with `EASED_ENVELOPE`, a run-time change of the filter after the graph."""


NOISE_SEED = 0x4E53
UNQUANTIZED_KBPS = 64.0
"""The graph's bitrate input for features that were not quantized (20 float32 per 10 ms)."""


@dataclass
class NeuralSynthState:
    """Per-stream state of the neural decoder."""

    gru_state: np.ndarray
    """(1, hidden) float32: the GRU's hidden state after the last hop."""
    enhancer_state: np.ndarray
    """(1, enhancer hidden) float32: the feature enhancer's GRU state after the last hop."""
    phase: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), np.float64))
    """(1, 1) float64: phase of the harmonic source's fundamental, radians."""
    filters: SynthesisFilterState = field(default_factory=SynthesisFilterState)
    """LPC synthesis and de-emphasis memories."""
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(NOISE_SEED))
    """Source of the noise input (seeded: decoding is deterministic)."""
    previous_cepstrum: np.ndarray | None = None
    """(NB_BANDS,) float64: the LPC envelope of the last hop, which the next hop's envelope
    starts from (`ENVELOPE_SUBFRAMES`); None before the first hop."""
    background: BackgroundState = field(default_factory=BackgroundState)
    """The background postfilter's band floors and absences (`streaming_core.background`)."""


class NeuralSynthesizer:
    """Runs a HopVocoder graph; stateless itself, shareable across streams and threads."""

    delay = DECODER_DELAY

    def __init__(self, model_path: str | Path, threads: int = 1) -> None:
        model_path = Path(model_path)
        if not model_path.is_file():
            raise HopcodecError(f"neural decoder model not found: {model_path}")
        self.metadata = json.loads(model_path.with_suffix(".json").read_text())
        self.name = f"{self.metadata['name']}-{self.metadata['version']}"
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"])
        inputs = self.metadata["inputs"]
        if "enhancer_state" not in inputs or "bitrate" not in inputs:
            raise HopcodecError(f"{model_path} is a decoder graph of an older layout "
                                f"(inputs {', '.join(inputs)}); re-export it")
        self.batcher = GraphBatcher(self.session)
        self.hidden = int(inputs["gru_state"][1])
        self.enhancer_hidden = int(inputs["enhancer_state"][1])

    def new_state(self) -> NeuralSynthState:
        """A fresh per-stream state."""
        return NeuralSynthState(gru_state=np.zeros((1, self.hidden), np.float32),
                                enhancer_state=np.zeros((1, self.enhancer_hidden), np.float32))

    def _feed(self, features: np.ndarray, state: NeuralSynthState, bitrate_bps: float | None
              ) -> dict[str, np.ndarray]:
        """The graph's inputs for n frames (n, NB_FEATURES) of one stream (batch axis 1); draws
        their noise."""
        noise = state.rng.standard_normal((1, len(features), HOP)).astype(np.float32)
        kbps = UNQUANTIZED_KBPS if bitrate_bps is None else bitrate_bps / 1000
        return {"features": np.asarray(features, np.float32).reshape(1, -1, NB_FEATURES),
                "bitrate": np.full((1, len(features), 1), kbps, np.float32),
                "noise": noise, "gru_state": state.gru_state, "phase": state.phase,
                "enhancer_state": state.enhancer_state}

    @staticmethod
    def _advance(state: NeuralSynthState, outputs: list[np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Keep one stream's new graph states; its (excitation, cepstrum) as float64."""
        excitation, cepstrum, state.gru_state, state.phase, state.enhancer_state = outputs
        return excitation[0].astype(np.float64), cepstrum[0].astype(np.float64)

    def run_graph(self, features: np.ndarray, state: NeuralSynthState,
                  bitrate_bps: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(excitation (n, HOP), cepstrum (n, NB_BANDS)) of n frames decoded at `bitrate_bps`
        (None: unquantized features); advances the graph's states.

        The excitation has unit level: the LPC residual power scales it.
        """
        return self._advance(state, self.batcher.run(self._feed(features, state, bitrate_bps)))

    def synthesize(self, features: np.ndarray, state: NeuralSynthState,
                   bitrate_bps: float | None = None) -> np.ndarray:
        """Audio (n * HOP,) float32 for features (n, NB_FEATURES) decoded at `bitrate_bps`
        (the packet's mode; None: unquantized features)."""
        features = np.asarray(features, dtype=np.float32).reshape(-1, NB_FEATURES)
        if not len(features):
            return np.empty(0, dtype=np.float32)
        return _filtered(*self.run_graph(features, state, bitrate_bps), state,
                         lower_background_bands=applies_at(bitrate_bps))

    def synthesize_together(self, items: list[tuple[np.ndarray, NeuralSynthState, float | None]]
                            ) -> list[np.ndarray]:
        """`synthesize` for several streams' features (each item: features, state, bitrate), in
        one graph run when they hold the same number of frames. Each stream's audio equals its
        own `synthesize` call's to float rounding (the rows of a batched run)."""
        frames = {np.asarray(features).size // NB_FEATURES for features, _, _ in items}
        if len(items) < 2 or len(frames) != 1 or not frames.pop():
            return [self.synthesize(*item) for item in items]
        feeds = [self._feed(np.asarray(features).reshape(-1, NB_FEATURES), state, bitrate_bps)
                 for features, state, bitrate_bps in items]
        stacked = self.batcher.run({name: np.concatenate([feed[name] for feed in feeds])
                                    for name in feeds[0]})
        return [_filtered(*self._advance(state, [output[i : i + 1] for output in stacked]), state,
                          lower_background_bands=applies_at(bitrate_bps))
                for i, (_, state, bitrate_bps) in enumerate(items)]


def hop_envelopes(cepstrum: np.ndarray, previous: np.ndarray | None
                  ) -> list[tuple[int, np.ndarray]]:
    """(samples, cepstrum) of the pieces of one hop's LPC envelope (`ENVELOPE_SUBFRAMES`); the
    first hop of a stream (no previous one) holds its own for the whole hop, as does every hop
    whose level rose by `max_rise_db` or more."""
    scheme = ENVELOPE_SUBFRAMES
    if (previous is None or scheme == HELD_ENVELOPE
            or (scheme.max_rise_db is not None
                and cepstrum[0] - previous[0] >= scheme.max_rise_db * C0_PER_DB)):
        return [(HOP, cepstrum)]
    highest_level = max(cepstrum[0], previous[0]) + LEVEL_OVERSHOOT_DB * C0_PER_DB
    pieces = []
    for length, weight in scheme.pieces:
        if weight == 1.0:
            pieces.append((length, cepstrum))
            continue
        envelope = weight * cepstrum + (1.0 - weight) * previous
        envelope[0] = min(envelope[0], highest_level)
        pieces.append((length, envelope))
    return pieces


def _filtered(excitation: np.ndarray, cepstrum: np.ndarray, state: NeuralSynthState, *,
              lower_background_bands: bool) -> np.ndarray:
    """The background postfilter (where `lower_background_bands`: the mode's rate is low enough,
    `background.applies_at`), then the LPC synthesis and de-emphasis filters, over one stream's
    graph output (n frames)."""
    out = np.empty(len(excitation) * HOP, dtype=np.float32)
    for i, current in enumerate(cepstrum):
        if lower_background_bands:
            current = lower_background(current, state.background)
        start = 0
        for length, envelope in hop_envelopes(current, state.previous_cepstrum):
            a, residual_power = lpc_from_cepstrum(envelope)
            out[i * HOP + start : i * HOP + start + length] = synthesis_filter(
                excitation[i, start : start + length] * math.sqrt(max(residual_power, 0.0)), a,
                state.filters)
            start += length
        state.previous_cepstrum = current
    return np.clip(out, -1.0, 1.0, out=out)
