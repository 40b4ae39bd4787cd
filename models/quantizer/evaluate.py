"""Measure the quantizers on unseen speakers: spectral distortion, pitch error, bitrate,
the predictor's contribution (ablation) and robustness to packet loss.

    python -m models.quantizer.evaluate --corpus /work/data/corpus --clips 60 \
        --ablation runs/quantizer/codebooks_nopred.npz --out docs

Writes `quantizer_eval.json`, `quantizer_eval.md` and PNG plots into --out. Every figure comes
from the real bitstream: clips are encoded by `StreamEncoder` and the packets decoded by
`StreamDecoder`, so header-level behaviour (resets, concealment) is included.
"""

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.quantizer.joint import pair_sums
from streaming_core.analysis import analyze_signal
from streaming_core.audio_io import load_for_codec
from streaming_core.bitstream import PACKET_HEADER
from streaming_core.codec import decode_features
from streaming_core.constants import CORR_INDEX, NB_BANDS, PERIOD_INDEX
from streaming_core.encoder import StreamEncoder
from streaming_core.loss import GilbertElliott, drop_packets
from streaming_core.modes import Mode, list_modes
from streaming_core.predictive import (
    JOINT_BOOK,
    JOINT_INIT_STAGES,
    LADDER,
    PredictiveQuantizer,
    ZeroPredictor,
)
from streaming_core.spectrum import log_energies_from_cepstrum

LOSS_RATES = (0.05, 0.10, 0.20)
PACKET_FRAMES = 20
"""Frames per packet for the bitrate (as in .hop files: 200 ms)."""
LOSS_PACKET_FRAMES = 2
"""Frames per packet (20 ms) in the loss simulation."""


def test_clips(corpus: Path, count: int) -> list[Path]:
    """Wideband test-split clips of at least 1.5 s, spread over the test speakers."""
    with (corpus / "manifest.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "test"
                and int(r["native_rate"]) >= 16000 and float(r["duration_s"]) >= 1.5]
    rows.sort(key=lambda r: r["path"])
    step = max(1, len(rows) // count)
    return [corpus / r["path"] for r in rows[::step][:count]]


def distortion(reference: np.ndarray, decoded: np.ndarray) -> dict[str, float]:
    """Band-energy spectral distortion (dB, RMS over bands, mean over active frames) and pitch."""
    n = min(len(reference), len(decoded))
    reference, decoded = reference[:n], decoded[:n]
    log_ref = log_energies_from_cepstrum(reference[:, :NB_BANDS])
    log_dec = log_energies_from_cepstrum(decoded[:, :NB_BANDS])
    active = reference[:, 0] > reference[:, 0].max() - 12.0  # about 40 dB below the loudest
    sd = np.sqrt(np.mean((10 * (log_ref - log_dec)) ** 2, axis=1))[active]
    voiced = active & (reference[:, CORR_INDEX] > 0.6)
    ratio = np.log2(decoded[voiced, PERIOD_INDEX] / reference[voiced, PERIOD_INDEX])
    gross = np.abs(ratio) > np.log2(1.2)
    return {"sd_db": float(sd.mean()), "sd_outliers_4db": float(np.mean(sd > 4.0)),
            "pitch_gross": float(gross.mean()) if len(gross) else 0.0,
            "pitch_fine_cents": float(np.sqrt(np.mean((1200 * ratio[~gross]) ** 2))) if len(ratio) else 0.0,
            "frames": int(active.sum())}


class RecordingQuantizer:
    """Wraps a frame quantizer and keeps every frame the encoder reconstructs."""

    def __init__(self, quantizer) -> None:
        self.quantizer = quantizer
        self.frames: list[np.ndarray] = []

    def __getattr__(self, name: str):
        return getattr(self.quantizer, name)

    def encode(self, features: np.ndarray, writer, state) -> np.ndarray:
        """Encode through the wrapped quantizer and record the reconstruction."""
        frame = self.quantizer.encode(features, writer, state)
        self.frames.append(frame)
        return frame


def evaluate_mode(mode: Mode, clips: list[tuple[np.ndarray, np.ndarray]], loss_rate: float = 0.0,
                  seed: int = 0) -> dict[str, float]:
    """Mean distortion and measured payload bitrate of one mode over the clips.

    Without loss the decoded features are the encoder's own reconstruction (identical to the
    decoder's, which `tests/test_predictive.py` checks), so ablation modes that no decoder
    registry knows can be measured too; with loss the packets go through `StreamDecoder`.
    """
    results, bits, seconds = [], 0, 0.0
    for index, (signal, reference) in enumerate(clips):
        recorder = RecordingQuantizer(mode.quantizer)
        recorded = Mode(id=mode.id, name=mode.name, quantizer=recorder, description=mode.description)
        encoder = StreamEncoder(recorded, frames_per_packet=LOSS_PACKET_FRAMES if loss_rate
                                else PACKET_FRAMES)
        packets = encoder.push(signal) + encoder.flush()
        bits += 0 if loss_rate else 8 * sum(len(p) - PACKET_HEADER.size for p in packets)
        seconds += len(signal) / 16000
        decoded = np.stack(recorder.frames)
        if loss_rate:
            packets = drop_packets(packets, GilbertElliott(loss_rate, seed=seed + index))
            decoded, _ = decode_features(packets or packets[:1])
        results.append(distortion(reference, decoded))
    weights = np.array([r["frames"] for r in results], dtype=float)
    summary = {key: float(np.average([r[key] for r in results], weights=weights))
               for key in results[0] if key != "frames"}
    summary["bitrate_bps"] = bits / seconds if bits else float(mode.bitrate_bps)
    return summary


def ablation_modes(path: Path) -> list[Mode]:
    """The predictive ladder with the predictor removed (codebooks trained for that case)."""
    stored = np.load(path)
    books = {n: stored[n] for n in stored.files if not n.startswith("threshold_") and n != "mean"}
    if JOINT_BOOK not in books:  # a file from before format 8: the two-stage book as one
        books[JOINT_BOOK] = pair_sums(*(books[name] for name in JOINT_INIT_STAGES))
    predictor = ZeroPredictor(stored["mean"])
    return [Mode(id=100 + mode_id, name=f"{name} no predictor",
                 quantizer=PredictiveQuantizer(allocation, books, predictor,
                                               float(stored[f"threshold_{name}"])),
                 description="ablation") for name, (mode_id, allocation) in LADDER.items()]


def plot(results: dict, out: Path) -> None:
    """Spectral distortion and fine pitch error against bitrate; distortion against packet loss.
    (Gross pitch errors, 0 % in every mode so far, are in the table.)"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    groups = {"predictive": [], "no predictor": [], "scalar (baseline)": []}
    for name, r in results["clean"].items():
        key = ("no predictor" if "no predictor" in name
               else "predictive" if name.startswith("hop-") else "scalar (baseline)")
        groups[key].append((r["bitrate_bps"], r["sd_db"], r["pitch_fine_cents"], name))
    for label, points in groups.items():
        if not points:
            continue
        points.sort()
        rate, sd, cents, _ = zip(*points, strict=True)
        axes[0].plot(np.array(rate) / 1000, sd, "o-", label=label)
        axes[1].plot(np.array(rate) / 1000, cents, "o-", label=label)
    axes[0].set(xlabel="payload bitrate (kbit/s)", ylabel="band-energy distortion (dB)",
                title="Spectral distortion, unseen speakers")
    axes[1].set(xlabel="payload bitrate (kbit/s)", ylabel="RMS pitch error (cents)",
                title="Fine pitch error, voiced frames")
    for name, by_rate in results["loss"].items():
        rates = [0.0] + [float(k) for k in by_rate]
        sd = [results["clean"][name]["sd_db"]] + [v["sd_db"] for v in by_rate.values()]
        axes[2].plot(100 * np.array(rates), sd, "o-", label=name)
    axes[2].set(xlabel="packets lost (%, bursty Gilbert-Elliott)", ylabel="band-energy distortion (dB)",
                title="Distortion under packet loss")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "quantizer_eval.png", dpi=110)
    plt.close(fig)


def write_markdown(results: dict, command: str, out: Path) -> None:
    """The tables of `results` as markdown."""
    lines = ["# Quantizer evaluation", "", f"Command: `{command}`", "",
             f"{results['clips']} test-split clips (unseen speakers, {results['seconds']:.0f} s). "
             "Distortion is the RMS over the 18 bands of the band-energy error in dB, averaged "
             "over active frames; pitch errors over frames voiced in the original.", "",
             "| mode | payload bit/s | band distortion dB | frames > 4 dB | gross pitch errors "
             "| fine pitch error (cents) |",
             "|---|---|---|---|---|---|"]
    for name, r in results["clean"].items():
        lines.append(f"| {name} | {r['bitrate_bps']:.0f} | {r['sd_db']:.2f} "
                     f"| {100 * r['sd_outliers_4db']:.1f} % | {100 * r['pitch_gross']:.1f} % "
                     f"| {r['pitch_fine_cents']:.0f} |")
    lines += ["", f"Under packet loss ({LOSS_PACKET_FRAMES} frames per packet, bursty "
              "Gilbert-Elliott losses with mean burst 3 packets; lost frames concealed by the "
              "predictor, which resets every second):", "",
              "| mode | " + " | ".join(f"{100 * r:.0f} % loss" for r in LOSS_RATES) + " |",
              "|---|" + "---|" * len(LOSS_RATES)]
    for name, by_rate in results["loss"].items():
        lines.append(f"| {name} | " + " | ".join(f"{v['sd_db']:.2f} dB" for v in by_rate.values()) + " |")
    lines += ["", "![quantizer evaluation](quantizer_eval.png)", ""]
    (out / "quantizer_eval.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    import sys

    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=60)
    parser.add_argument("--ablation", type=Path, help="codebooks_nopred.npz from training")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args(argv)
    paths = test_clips(args.corpus, args.clips)
    clips = []
    for path in tqdm(paths, desc="analysis", unit="clip"):
        signal = load_for_codec(path)[0]
        clips.append((signal, analyze_signal(signal)))
    modes = list_modes() + (ablation_modes(args.ablation) if args.ablation else [])
    results = {"clips": len(clips), "seconds": sum(len(s) for s, _ in clips) / 16000,
               "clean": {}, "loss": {}}
    for mode in tqdm(modes, desc="modes", unit="mode"):
        results["clean"][mode.name] = evaluate_mode(mode, clips)
    for mode in tqdm([m for m in list_modes() if m.name.startswith("hop-")], desc="loss", unit="mode"):
        results["loss"][mode.name] = {str(rate): evaluate_mode(mode, clips, rate) for rate in LOSS_RATES}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quantizer_eval.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, "python -m models.quantizer.evaluate " + " ".join(sys.argv[1:]), args.out)
    plot(results, args.out)
    print((args.out / "quantizer_eval.md").read_text())


if __name__ == "__main__":
    main()
