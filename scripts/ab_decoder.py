"""A/B comparison of decoder graphs on the bench's clips, with the bench's metric functions.

Every clip is encoded once in the chosen mode; the same packets are decoded by each graph (or
the DSP baseline), and each output is scored against the clip. The table gives the mean per
metric and the change from the first variant; `--out` also keeps the per-clip scores as JSON.
This is how decoder candidates are compared before one is released (models/README.md):

    python scripts/ab_decoder.py --set data/corpus --max-clips 12 --mode hop-1600 \\
        --graph released=models/released/hopvocoder.onnx --graph new=runs/new.onnx

A variant is `NAME=PATH.onnx` (an exported HopDecoderGraph with its .json beside it) or
`NAME=dsp` (the DSP baseline decoder). `--search-beam 1` codes with the greedy residual-VQ
search instead of the encoder's default, `--search-weighting G` and `--high-band-weight W` with
other search weights, `--error-feedback K` with a tiered mode's search repeating a share K of the
last frame's coding error (encoder choices; run the script once per setting to compare them).
`--clean shape` (or level, pitch, voicing, comma-separated) replaces that part of the decoded
features with the encoder's unquantized value before every variant decodes them: what coding
that part costs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from functools import cache
from pathlib import Path

import numpy as np

from hopcodec.bench import metrics as metric_registry
from hopcodec.bench.audio import load_16k
from hopcodec.bench.clips import find_clips
from hopcodec.bench.ours import UNQUANTIZED, Hopcodec
from hopcodec.bench.runner import SINGLE_THREAD_ENV

DEFAULT_METRICS = "pesq_wb,stoi,visqol,warpq,dnsmos_ovrl"
CLEAN_PARTS = {"level": [0], "shape": list(range(1, 18)), "pitch": [18], "voicing": [19]}
"""Feature columns by name: c0, c1..c17, pitch period, pitch correlation."""


def parse_variant(text: str) -> tuple[str, str]:
    """`NAME=PATH` -> (name, path); a path must exist unless it is `dsp`."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH.onnx or NAME=dsp, got {text!r}")
    if path != "dsp" and not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"decoder graph not found: {path}")
    return name, path


@cache
def _synthesizer(path: str):
    from streaming_core.dsp_synth import DspSynthesizer
    from streaming_core.neural_synth import NeuralSynthesizer

    return DspSynthesizer() if path == "dsp" else NeuralSynthesizer(path)


def decode(x: np.ndarray, mode: str, paths: list[str], clean: list[str] | None = None
           ) -> list[np.ndarray]:
    """The clip decoded by each synthesizer from one encoding (`mode` may be `unquantized`);
    `clean`: parts of the features (`CLEAN_PARTS`) taken unquantized from the encoder."""
    coded = Hopcodec(mode).encode(x)  # as the bench codes it: 200 ms packets
    if clean:
        return _decode_with_clean_parts(x, coded, paths, clean)
    return [Hopcodec(mode, _synthesizer(path)).decode(coded, len(x)) for path in paths]


def _decode_with_clean_parts(x: np.ndarray, packets: list[bytes], paths: list[str],
                             clean: list[str]) -> list[np.ndarray]:
    """Decode with the named parts of the decoded features replaced by the encoder's own
    (unquantized) values: what coding those parts costs."""
    from streaming_core.bitstream import parse_packet
    from streaming_core.codec import decode_features

    decoded, _ = decode_features(packets)
    original = Hopcodec(UNQUANTIZED).encode(x)  # the encoder's features, as the bench takes them
    frames = min(len(decoded), len(original))
    features = decoded[:frames].astype(np.float64)
    for part in clean:
        columns = CLEAN_PARTS[part]
        features[:, columns] = original[:frames, columns]
    bitrate = parse_packet(packets[0]).mode.bitrate_bps
    outputs = []
    for path in paths:
        synthesizer = _synthesizer(path)
        audio = synthesizer.synthesize(features, synthesizer.new_state(), bitrate)
        audio = audio[synthesizer.delay : synthesizer.delay + len(x)]
        outputs.append(np.pad(audio, (0, len(x) - len(audio))))
    return outputs


def _or_own(value: float | None) -> str:
    """A search setting as printed: the value, or the mode's own where None."""
    return "the mode's own" if value is None else str(value)


def set_search(beam: int | None, weighting: float | None = None,
               high_band_weight: float | None = None,
               error_feedback: tuple[float, float | None] | None = None) -> None:
    """Make this process's predictive encoders search the residual VQ with `beam` paths, band
    weights of exponent `weighting` and `high_band_weight` on the bands above 5 kHz, and the
    tiered ones with `error_feedback` (`Allocation.error_feedback` and `error_feedback_change`,
    the latter None: the mode's own) (None: leave the default)."""
    from dataclasses import replace

    from streaming_core.modes import predictive_modes
    from streaming_core.tiered import TieredQuantizer

    for mode in predictive_modes():
        if beam is not None:
            mode.quantizer.search_beam = beam
        if weighting is not None:
            mode.quantizer.search_weighting = weighting
        if high_band_weight is not None:
            mode.quantizer.high_band_weight = high_band_weight
        if error_feedback is not None and isinstance(mode.quantizer, TieredQuantizer):
            share, change = error_feedback
            allocation = mode.quantizer.allocation
            mode.quantizer.allocation = replace(
                allocation, error_feedback=share,
                error_feedback_change=allocation.error_feedback_change if change is None else change)


def score_clip(path: Path, mode: str, paths: list[str], metrics: list[str],
               clean: list[str] | None = None) -> list[dict]:
    """Scores of one clip for every variant, in the order of `paths`."""
    x = load_16k(path)
    rows = []
    for decoded in decode(x, mode, paths, clean):
        decoded = np.asarray(decoded, dtype=np.float32)
        rows.append({name: float(metric_registry.METRICS[name].fn(x, decoded))
                     for name in metrics})
    return rows


def gather(jobs: list[Future]) -> list:
    """The jobs' results in order, counting the clips done on stderr."""
    results = []
    for done, job in enumerate(jobs, 1):
        results.append(job.result())
        print(f"\r{done}/{len(jobs)} clips", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return results


def table(names: list[str], metrics: list[str], scores: np.ndarray) -> str:
    """Markdown table: mean per variant and metric, with the change from the first variant."""
    header = "| variant | " + " | ".join(metric_registry.METRICS[m].label for m in metrics) + " |"
    lines = [header, "|---" * (len(metrics) + 1) + "|"]
    means = scores.mean(axis=0)  # (variants, metrics)
    for v, name in enumerate(names):
        cells = []
        for m in range(len(metrics)):
            cell = f"{means[v, m]:.3f}"
            if v:
                cell += f" ({means[v, m] - means[0, m]:+.3f})"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", required=True, help="bench set folder (e.g. data/corpus)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-clips", type=int, default=12)
    parser.add_argument("--mode", default="hop-1600", help="a mode name, or 'unquantized'")
    parser.add_argument("--graph", action="append", type=parse_variant, required=True,
                        metavar="NAME=PATH", help="a variant (repeat; the first is the baseline)")
    parser.add_argument("--metrics", default=DEFAULT_METRICS)
    parser.add_argument("--clean", default="", metavar="PARTS",
                        help="comma-separated feature parts to take unquantized from the encoder "
                        f"instead of the decoded ones ({', '.join(CLEAN_PARTS)}): what coding "
                        "them costs")
    parser.add_argument("--search-beam", type=int, metavar="N",
                        help="the encoder's residual-VQ search beam (default: the encoder's own, "
                        "1: greedy)")
    parser.add_argument("--search-weighting", type=float, metavar="G",
                        help="exponent of the encoder's band-loudness search weights (default: "
                        "the encoder's own, 0: unweighted)")
    parser.add_argument("--high-band-weight", type=float, metavar="W",
                        help="the search's weight on the bands above 5 kHz (default: the "
                        "encoder's own, 1: as the other bands)")
    parser.add_argument("--error-feedback", type=float, metavar="K",
                        help="tiered modes (hop-1200, hop-1600): the share of the last frame's "
                        "coding error the search aims to repeat (default: the mode's own)")
    parser.add_argument("--error-feedback-change", type=float, metavar="D",
                        help="with --error-feedback: the feedback falls as exp(-(d/D)^2) with the "
                        "input's RMS cepstral change d from the last frame (0: it does not fall; "
                        "default: the mode's own, 0.3 at hop-1600)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, help="write per-clip scores here (JSON)")
    args = parser.parse_args(argv)

    os.environ.update(SINGLE_THREAD_ENV)  # before the metrics' libraries start threads
    metrics = metric_registry.select(args.metrics.split(","))
    clean = [part for part in args.clean.split(",") if part]
    unknown = [part for part in clean if part not in CLEAN_PARTS]
    if unknown:
        parser.error(f"unknown --clean part(s) {', '.join(unknown)}; known: {', '.join(CLEAN_PARTS)}")
    if clean and args.mode == UNQUANTIZED:
        parser.error("--clean needs a coded mode")
    if args.search_beam is not None and args.search_beam < 1:
        parser.error("--search-beam must be at least 1")
    if args.high_band_weight is not None and args.high_band_weight < 0:
        parser.error("--high-band-weight must not be negative")
    if args.error_feedback is not None and not 0 <= args.error_feedback < 1:
        parser.error("--error-feedback must be at least 0 and below 1")
    if args.error_feedback_change is not None and args.error_feedback_change < 0:
        parser.error("--error-feedback-change must not be negative")
    if args.error_feedback_change is not None and args.error_feedback is None:
        parser.error("--error-feedback-change needs --error-feedback")
    feedback = (None if args.error_feedback is None
                else (args.error_feedback, args.error_feedback_change))
    for name in metrics:
        metric_registry.require(name)
    clips = find_clips(args.set, args.split, args.max_clips)
    names = [name for name, _ in args.graph]
    paths = [path for _, path in args.graph]
    with ProcessPoolExecutor(max_workers=max(1, args.workers), initializer=set_search,
                             initargs=(args.search_beam, args.search_weighting,
                                       args.high_band_weight, feedback)) as pool:
        jobs = [pool.submit(score_clip, clip.path, args.mode, paths, metrics, clean) for clip in clips]
        results = gather(jobs)
    scores = np.array([[[row[m] for m in metrics] for row in clip_rows] for clip_rows in results])
    print(f"{len(clips)} clips, mode {args.mode}"
          + (f", unquantized {', '.join(clean)}" if clean else "")
          + (f", search beam {args.search_beam}" if args.search_beam is not None else "")
          + (f", search weighting {args.search_weighting}" if args.search_weighting is not None else "")
          + (f", high-band weight {args.high_band_weight}" if args.high_band_weight is not None else "")
          + (f", error feedback {feedback[0]} (change {_or_own(feedback[1])})" if feedback else ""))
    print(table(names, metrics, scores))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "mode": args.mode, "clean": clean, "search_beam": args.search_beam,
            "search_weighting": args.search_weighting, "high_band_weight": args.high_band_weight,
            "error_feedback": feedback,
            "variants": dict(args.graph), "metrics": metrics,
            "clips": [clip.clip_id for clip in clips],
            "scores": {name: [dict(zip(metrics, s, strict=True)) for s in scores[:, v]]
                       for v, name in enumerate(names)},
        }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
