"""Train the joint 12-bit codebook 'j12' of hop-1600's transient frames.

    python -m models.quantizer.joint --cache data/cache --release models/released --rounds 2

Format 7 coded a transient frame's residual at hop-1600 with two stages of 64 codewords ('s1'
then 's2', 6 + 6 bits, searched by the encoder's M-best search). The same 12 bits index one
codebook of 4096 codewords searched exhaustively: a two-stage VQ can only place its codewords at
the 4096 sums of its stages, an unstructured one anywhere (Gersho & Gray, "Vector Quantization
and Signal Compression", 1992, ch. 12: multistage VQ trades distortion for search and storage,
which at 4096 x 18 numbers are no concern here). The command starts 'j12' as those sums
(`pair_sums` of the stored 's1' and 's2': exactly the two-stage book; `--resume` goes on from
the stored 'j12' instead); each round here

1. codes `--windows` training windows of the feature cache with the real quantizer in the
   modes of `JOINT_MODES`, closed loop, recording every frame the search coded with 'j12':
   its residual (as log band energies) and the search's band weights (`search_weights`);
2. runs `--iterations` steps of the generalised Lloyd algorithm (Linde, Buzo & Gray, IEEE Trans.
   Commun. 1980) on those frames with the search's own distance: each frame goes to the
   codeword of least weighted band error, each codeword moves to the weighted mean of its
   frames, band by band (the band weights make the metric diagonal in that domain);
3. installs the book, so the next round codes with it (the predictor sees its decoded frames).

Validation windows are coded before the first round and after every round; `OUT/joint.log`
(JSON lines) keeps the weighted error per frame and `OUT/joint_curve.png` plots it. The
predictor, the other books and the thresholds stay as they are. A new 'j12' changes what its
indices mean: the bitstream format version goes up with it.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.data.loader import FeatureDataset
from models.plots import save_training_curve
from models.quantizer.refine import (
    TO_BANDS,
    SearchRecord,
    code_windows,
    codebooks_changed,
    foreign_predictor,
    install_codebooks,
    recording_search,
)
from streaming_core.constants import NB_BANDS
from streaming_core.modes import get_mode
from streaming_core.predictive import JOINT_BOOK, JOINT_INIT_STAGES, JOINT_MODES

MIN_USES = 5
"""A codeword chosen for fewer frames than this in a Lloyd step keeps its value."""


def pair_sums(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(K1 K2, D): every sum of a codeword of `first` and one of `second`, entry i K2 + j being
    first[i] + second[j]: the two-stage book as one."""
    return (first[:, None, :] + second[None, :, :]).reshape(-1, first.shape[1])


def nearest_weighted(targets: np.ndarray, weights: np.ndarray, book: np.ndarray,
                     chunk: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the codeword of `book` (K, D) with the least weighted squared error to
    `targets` (N, D) under `weights` (N, D), and that error: (indices, errors)."""
    indices = np.empty(len(targets), dtype=np.int64)
    errors = np.empty(len(targets))
    book_t, book_sq = book.T.astype(np.float32), (book**2).T.astype(np.float32)
    for start in range(0, len(targets), chunk):
        t, w = targets[start:start + chunk], weights[start:start + chunk]
        distances = (w * t * t).sum(1)[:, None] - 2 * (w * t) @ book_t + w @ book_sq
        best = distances.argmin(1)
        indices[start:start + chunk] = best
        errors[start:start + chunk] = distances[np.arange(len(t)), best]
    return indices, np.maximum(errors, 0.0)


def lloyd_step(targets: np.ndarray, weights: np.ndarray, book: np.ndarray,
               min_uses: int = MIN_USES) -> tuple[np.ndarray, float]:
    """One weighted Lloyd step in the band domain: the new book and the mean weighted error of
    the assignment it was computed from. Codewords with fewer than `min_uses` frames stay."""
    indices, errors = nearest_weighted(targets, weights, book)
    numerator, denominator = np.zeros_like(book), np.zeros_like(book)
    np.add.at(numerator, indices, weights * targets)
    np.add.at(denominator, indices, weights)
    moved = np.bincount(indices, minlength=len(book)) >= min_uses
    new = book.copy()
    new[moved] = numerator[moved] / denominator[moved]
    return new, float(errors.mean())


def joint_frames(windows: np.ndarray, desc: str) -> tuple[np.ndarray, np.ndarray]:
    """Code `windows` closed loop in the modes of `JOINT_MODES` (in turn); the band-domain
    residuals (N, NB_BANDS) and search weights of the frames coded with the joint book (alone,
    or first: in format 9's largest tier 's3' follows it, and the joint book's target is the
    residual less the 's3' codeword)."""
    record = SearchRecord()
    with recording_search(record):
        code_windows(windows, JOINT_MODES, desc)
    chosen = [n for n, stages in enumerate(record.stages) if stages[:1] == (JOINT_BOOK,)]
    if not chosen:
        raise ValueError("no frame was coded with the joint book")
    books = get_mode(JOINT_MODES[0]).quantizer.codebooks
    # what the joint book had to code: the residual less the codewords of the stages after it
    residuals = np.stack([record.residuals[n] - sum(
        (books[s][record.indices[n][j]] for j, s in enumerate(record.stages[n]) if j > 0),
        np.zeros(NB_BANDS)) for n in chosen]) @ TO_BANDS
    weights = np.stack([record.weights[n] for n in chosen])
    return residuals.astype(np.float32), weights.astype(np.float32)


def weighted_error(targets: np.ndarray, weights: np.ndarray, book: np.ndarray) -> float:
    """Mean weighted error per frame of the exhaustive search over `book` (band domain)."""
    return float(nearest_weighted(targets, weights, book)[1].mean())


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True, help="feature cache")
    parser.add_argument("--release", type=Path, default=Path("models/released"),
                        help="folder with codebooks.npz (rewritten) and the installed predictor.onnx")
    parser.add_argument("--out", type=Path, default=Path("runs/joint"), help="run folder (log, curve)")
    parser.add_argument("--windows", type=int, default=8000, help="training windows per round")
    parser.add_argument("--valid-windows", type=int, default=300)
    parser.add_argument("--frames", type=int, default=200, help="frames per window")
    parser.add_argument("--rounds", type=int, default=2, help="closed-loop coding rounds")
    parser.add_argument("--iterations", type=int, default=10, help="Lloyd steps per round")
    parser.add_argument("--resume", action="store_true",
                        help=f"go on from the stored {JOINT_BOOK!r} instead of the sums of "
                             "its two stages")
    args = parser.parse_args(argv)

    if refusal := foreign_predictor(args.release):
        parser.error(refusal)
    stored = dict(np.load(args.release / "codebooks.npz"))
    if args.resume and JOINT_BOOK not in stored:
        parser.error(f"--resume: {args.release / 'codebooks.npz'} has no {JOINT_BOOK!r} to go on from")
    if not args.resume:  # start from the two stages as they are now (after any refinement)
        stored[JOINT_BOOK] = pair_sums(*(stored[name] for name in JOINT_INIT_STAGES))
    args.out.mkdir(parents=True, exist_ok=True)
    live = install_codebooks(stored)

    def windows(split: str, count: int, seed: int) -> np.ndarray:
        return FeatureDataset(args.cache, split, seq_len=args.frames, copies=[0]).batch(
            np.random.default_rng(seed), count).features.astype(np.float32)

    valid = windows("valid", args.valid_windows, 1)
    log = (args.out / "joint.log").open("a")
    started = time.time()
    curve: list[tuple[int, float, float]] = []  # (Lloyd step, counted over rounds; train; valid)

    def report(round_: int) -> None:
        targets, weights = joint_frames(valid, "coding validation windows")
        error = weighted_error(targets, weights, live[JOINT_BOOK] @ TO_BANDS)
        log.write(json.dumps({"round": round_, "valid_coded": error, "valid_frames": len(targets),
                              "elapsed_s": round(time.time() - started)}) + "\n")
        log.flush()
        print(f"round {round_}: validation windows coded closed loop, weighted error {error:.4f}")

    report(0)
    for round_ in range(1, args.rounds + 1):
        targets, weights = joint_frames(windows("train", args.windows, 100 + round_),
                                        f"round {round_}: coding training windows")
        valid_targets, valid_weights = joint_frames(valid, "coding validation windows")
        book = live[JOINT_BOOK] @ TO_BANDS
        for step in tqdm(range(args.iterations), desc=f"round {round_}: Lloyd", unit="step"):
            book, train_error = lloyd_step(targets, weights, book)
            valid_error = weighted_error(valid_targets, valid_weights, book)
            curve.append((len(curve) + 1, train_error, valid_error))
            log.write(json.dumps({"round": round_, "step": step, "train": train_error,
                                  "valid": valid_error, "train_frames": len(targets),
                                  "elapsed_s": round(time.time() - started)}) + "\n")
            log.flush()
        np.copyto(live[JOINT_BOOK], (book @ np.linalg.inv(TO_BANDS)).astype(np.float32))
        codebooks_changed()
        stored[JOINT_BOOK] = live[JOINT_BOOK].copy()
        np.savez(args.release / "codebooks.npz", **stored)
        report(round_)
    plot_curve(curve, args.iterations, args.out / "joint_curve.png")
    print(f"wrote {args.release / 'codebooks.npz'} ({time.time() - started:.0f} s)")


def plot_curve(curve: list[tuple[int, float, float]], iterations: int, path: Path) -> None:
    """The Lloyd steps' weighted error per frame on training and validation frames; a new round
    (frames coded again with the book so far) starts every `iterations` steps."""
    steps, train, valid = zip(*curve, strict=True)

    def draw(ax) -> None:  # noqa: ANN001
        ax.plot(steps, train, marker=".", label="training frames (as assigned)")
        ax.plot(steps, valid, marker=".", label="validation frames (exhaustive search)")
        for start in range(iterations, len(steps), iterations):
            ax.axvline(start + 0.5, color="grey", linestyle=":", linewidth=1)

    save_training_curve(path, f"joint codebook {JOINT_BOOK}: Lloyd steps, {iterations} per round",
                        "weighted band error per frame", draw)


if __name__ == "__main__":
    main()
