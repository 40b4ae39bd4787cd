"""Refine the released codebooks for the encoder's search (loudness-weighted, M-best).

    python -m models.quantizer.refine --cache data/cache --release models/released --rounds 9

`models.quantizer.train` fits the codebooks by k-means to plain residuals coded by the greedy
search; the encoder searches with a beam and weighs each band's error by its loudness
(`rvq_encode`, `SEARCH_BEAM`, `SEARCH_WEIGHTING` in `streaming_core/predictive.py`). Each round
here:

1. codes `--windows` training windows of the feature cache with the real quantizer, closed
   loop (one mode of `MODES` per window), keeping every frame's residual, the stages and
   codewords the search chose, and the frame's band weights;
2. moves each codeword, stage after stage, to the weighted centroid of what it coded: with t_i
   the frame's residual minus the other stages' codewords of its path and M_i = T diag(w_i) T'
   the frame's weighted band-error metric (T: cepstrum -> log10 band energies), the codeword
   c = (sum M_i)^-1 sum M_i t_i minimises sum (t_i - c)' M_i (t_i - c) (the centroid step of
   the generalised Lloyd algorithm, Linde, Buzo & Gray, IEEE Trans. Commun. 1980, with the
   stages updated jointly in turn as in LeBlanc et al. 1993).

The search keeps the codebooks also as band energies; they are recomputed after every round
(`codebooks_changed`), so each round searches with the codewords it refines. The predictor is
the installed one (`streaming_core.modes.RELEASED`): a `--release` folder with another
`predictor.onnx` is refused. Validation windows are coded before and after every round;
`OUT/refine.log` (JSON lines) keeps each mode's weighted error per frame and band distortion in
dB. The predictor and the transient
thresholds stay as they are. A new codebook changes what every index means: the bitstream
format version goes up with it.
"""

import argparse
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.data.loader import FeatureDataset
from streaming_core import predictive
from streaming_core.bitpack import BitWriter
from streaming_core.constants import NB_BANDS
from streaming_core.modes import RELEASED, get_mode, predictive_modes
from streaming_core.spectrum import log_energies_from_cepstrum

MODES = ("hop-1200", "hop-1600", "hop-1600", "hop-2400", "hop-3200")
"""The modes whose residuals the codebooks serve, the default mode twice as often. hop-800
(prediction alone in steady frames, s1 in transient ones) is left out: its residuals are the
largest and would pull s1 towards them."""

STAGES = ("s1", "s2", "s3", "s4", "s5")
MIN_USES = 20
"""A codeword the search chose for fewer frames than this in a round keeps its value."""
TO_BANDS = log_energies_from_cepstrum(np.eye(NB_BANDS))
"""(NB_BANDS, NB_BANDS): cepstrum row vector @ TO_BANDS = log10 band energies."""


class SearchRecord:
    """What the encoder's residual-VQ search saw and chose, frame by frame."""

    def __init__(self) -> None:
        self.residuals: list[np.ndarray] = []
        self.stages: list[tuple[str, ...]] = []
        self.indices: list[np.ndarray] = []
        self.weights: list[np.ndarray] = []

    def clear(self) -> None:
        """Forget everything recorded."""
        self.__init__()


@contextmanager
def recording_search(record: SearchRecord) -> Iterator[None]:
    """Within the block, every `rvq_encode` call of the predictive quantizers is recorded."""
    names = {}
    for mode in predictive_modes():
        for books, stages in mode.quantizer.search_paths():
            names[tuple(map(id, books))] = tuple(stages)
    search = predictive.rvq_encode

    def recorded(residual, books, beam=1, weights=None, band_books=None):  # noqa: ANN001, ANN202
        indices = search(residual, books, beam, weights, band_books)
        record.residuals.append(np.asarray(residual[0], np.float64))
        record.stages.append(names[tuple(map(id, books))])
        record.indices.append(indices[0])
        record.weights.append(np.ones(NB_BANDS) if weights is None else np.asarray(weights[0]))
        return indices

    predictive.rvq_encode = recorded
    try:
        yield
    finally:
        predictive.rvq_encode = search


def code_windows(windows: np.ndarray, modes: tuple[str, ...], desc: str) -> dict[str, np.ndarray]:
    """Decoded features of each window, coded closed loop by mode `modes[i % len(modes)]`;
    returns {mode: (decoded, clean)} stacked over that mode's windows."""
    coded: dict[str, list] = {}
    for i, window in enumerate(tqdm(windows, desc=desc, unit="window", leave=False)):
        name = modes[i % len(modes)]
        quantizer = get_mode(name).quantizer
        state = quantizer.new_state()
        decoded = np.stack([quantizer.encode(frame, BitWriter(), state) for frame in window])
        coded.setdefault(name, []).append((decoded, window))
    return {name: (np.concatenate([d for d, _ in pairs]), np.concatenate([c for _, c in pairs]))
            for name, pairs in coded.items()}


def weighted_errors(coded: dict) -> dict[str, dict[str, float]]:
    """Per mode: the search's weighted band error per frame and the plain band distortion (dB)."""
    out = {}
    for name, (decoded, clean) in sorted(coded.items()):
        weights = predictive.search_weights(
            clean[:, :NB_BANDS], high_band_weight=predictive.high_band_weight_of(name))
        error = (clean[:, :NB_BANDS] - decoded[:, :NB_BANDS]) @ TO_BANDS
        out[name] = {"weighted": float((weights * error**2).sum(1).mean()),
                     "distortion_db": float(np.sqrt(((10 * error) ** 2).mean(1)).mean())}
    return out


def refine_stages(books: dict[str, np.ndarray], record: SearchRecord,
                  min_uses: int = MIN_USES) -> None:
    """One centroid step per stage, in stage order, each with the stages before it updated;
    codewords chosen for fewer than `min_uses` frames keep their value."""
    metrics = np.einsum("bk,nk,ck->nbc", TO_BANDS, np.stack(record.weights), TO_BANDS)
    for stage in STAGES:
        book = books[stage]
        normal = np.zeros((len(book), NB_BANDS, NB_BANDS))
        moment = np.zeros((len(book), NB_BANDS))
        uses = np.zeros(len(book), dtype=int)
        for n, (residual, stages, indices) in enumerate(
                zip(record.residuals, record.stages, record.indices, strict=True)):
            if stage not in stages:
                continue
            position = stages.index(stage)
            target = residual - sum(books[s][indices[j]] for j, s in enumerate(stages) if j != position)
            normal[indices[position]] += metrics[n]
            moment[indices[position]] += metrics[n] @ target
            uses[indices[position]] += 1
        for k in np.flatnonzero(uses >= min_uses):
            book[k] = np.linalg.solve(normal[k], moment[k])


def foreign_predictor(release: Path) -> str | None:
    """Why `release` cannot be refitted here (it holds a predictor other than the installed one,
    which the quantizer codes with), or None."""
    other = release / "predictor.onnx"
    if other.is_file() and other.read_bytes() != (RELEASED / "predictor.onnx").read_bytes():
        return (f"{other} is not the installed predictor ({RELEASED / 'predictor.onnx'}), "
                "which the quantizer runs with")
    return None


def codebooks_changed() -> None:
    """Tell every predictive mode that the shared codebooks changed in place: the weighted
    search keeps them as band energies too, which would otherwise go stale."""
    for mode in predictive_modes():
        mode.quantizer.codebooks_changed()


def install_codebooks(stored: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Copy the books of a stored `codebooks.npz` (a `--release` folder's, which need not be the
    installed one) into the arrays every predictive mode searches; those arrays."""
    books = predictive_modes()[0].quantizer.codebooks
    if missing := sorted(set(books) - set(stored)):
        raise ValueError(f"the stored codebooks lack {', '.join(missing)}")
    for name, book in books.items():
        np.copyto(book, stored[name])
    codebooks_changed()
    return books


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True, help="feature cache")
    parser.add_argument("--release", type=Path, default=Path("models/released"),
                        help="folder with codebooks.npz (rewritten) and the installed predictor.onnx "
                        "or none")
    parser.add_argument("--out", type=Path, default=Path("runs/refine"), help="run folder (log, rounds)")
    parser.add_argument("--windows", type=int, default=1500, help="training windows per round")
    parser.add_argument("--valid-windows", type=int, default=300)
    parser.add_argument("--frames", type=int, default=200, help="frames per window")
    parser.add_argument("--rounds", type=int, default=9,
                        help="refinement rounds (the released format-7 codebooks had 9)")
    args = parser.parse_args(argv)

    if refusal := foreign_predictor(args.release):
        parser.error(refusal)
    args.out.mkdir(parents=True, exist_ok=True)
    stored = dict(np.load(args.release / "codebooks.npz"))
    books = install_codebooks(stored)
    train = FeatureDataset(args.cache, "train", seq_len=args.frames, copies=[0]).batch(
        np.random.default_rng(0), args.windows).features.astype(np.float32)
    valid = FeatureDataset(args.cache, "valid", seq_len=args.frames, copies=[0]).batch(
        np.random.default_rng(1), args.valid_windows).features.astype(np.float32)
    valid_modes = tuple(dict.fromkeys(MODES))
    log = (args.out / "refine.log").open("a")
    started = time.time()

    def report(round_: int) -> None:
        errors = weighted_errors(code_windows(valid, valid_modes, "coding validation windows"))
        log.write(json.dumps({"round": round_, "valid": errors,
                              "elapsed_s": round(time.time() - started)}) + "\n")
        log.flush()
        print(f"round {round_}: " + ", ".join(
            f"{name} {e['weighted']:.4f} ({e['distortion_db']:.2f} dB)" for name, e in errors.items()))

    report(0)
    record = SearchRecord()
    for round_ in range(1, args.rounds + 1):
        record.clear()
        with recording_search(record):
            code_windows(train, MODES, f"round {round_}: coding training windows")
        refine_stages(books, record)
        codebooks_changed()
        np.savez(args.out / f"codebooks_round{round_}.npz", **{**stored, **books})
        report(round_)
    np.savez(args.release / "codebooks.npz", **{**stored, **{s: books[s] for s in STAGES}})
    print(f"wrote {args.release / 'codebooks.npz'}")


if __name__ == "__main__":
    main()
