"""Train the predictive quantizer: predictor, codebooks, transient thresholds; export them.

    python -m models.quantizer.train --cache /work/data/cache_wb --out runs/quantizer \
        --release models/released

1. open loop: the GRU predictor learns to predict each frame's cepstrum from the previous
   clean frame and the frame's own pitch and voicing (MSE on the cepstrum = log-spectral error);
2. codebooks: k-means on the prediction residuals ('s1'..'s5', the stages of one residual VQ;
   hop-1600's joint book 'j12' starts as the sums of 's1' and 's2', `models.quantizer.joint`);
3. closed loop, twice: every sequence is coded by the real quantizer (a random mode of the
   ladder per sequence), the predictor is trained again on the *decoded* previous frames it
   will see at run time, and the codebooks are re-fitted to the new residuals;
4. each mode's transient threshold is set so that transient frames are wanted about 1.3 times
   as often as the rate controller can afford them;
5. the predictor is exported as a per-hop ONNX graph, codebooks and thresholds to an .npz.
Every phase is checkpointed in the run folder; a re-run skips finished phases.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.data.loader import FeatureDataset
from models.quantizer.joint import pair_sums
from models.quantizer.kmeans import assign, train_rvq
from models.quantizer.model import FeaturePredictor, FeaturePredictorStep, TorchPredictor
from streaming_core.bitpack import BitWriter
from streaming_core.constants import NB_BANDS, NB_FEATURES
from streaming_core.predictive import (
    CODEBOOK_SIZES,
    CURRENT_PITCH,
    JOINT_BOOK,
    JOINT_INIT_STAGES,
    LADDER,
    NEUTRAL_FRAME,
    PredictiveQuantizer,
)

STAGES = ["s1", "s2", "s3", "s4", "s5"]
DEMAND_OVER_SUPPLY = 1.3


def shifted_inputs(frames: np.ndarray) -> np.ndarray:
    """Previous-frame inputs: NEUTRAL_FRAME, then frames[:-1]."""
    previous = np.empty_like(frames)
    previous[:, 0] = NEUTRAL_FRAME
    previous[:, 1:] = frames[:, :-1]
    return previous


def current_pitch(frames: np.ndarray) -> np.ndarray:
    """The predictor's `current` input of each frame: its pitch period and voicing (..., 2)."""
    return np.ascontiguousarray(frames[..., CURRENT_PITCH])


def pair_sampler(decoded: np.ndarray, targets: np.ndarray, seed: int, batch: int = 32):
    """A function drawing random (previous, current, targets) sequence batches of decoded
    sequences and the clean ones they code."""
    rng = np.random.default_rng(seed)
    previous, current = shifted_inputs(decoded), current_pitch(decoded)

    def sample() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pick = rng.integers(len(targets), size=batch)
        return previous[pick], current[pick], targets[pick]

    return sample


def fit_predictor(model: FeaturePredictor, sample, steps: int, lr: float, desc: str, log) -> None:
    """Train on (previous, current, target) batches from `sample()`; MSE on the cepstrum."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=lr * 0.05)
    running = None
    for step in (progress := tqdm(range(steps), desc=desc, unit="step")):
        previous, current, target = sample()
        prediction, _ = model(torch.from_numpy(previous), torch.from_numpy(current))
        loss = ((prediction - torch.from_numpy(target[..., :NB_BANDS])) ** 2).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        running = loss.item() if running is None else 0.97 * running + 0.03 * loss.item()
        progress.set_postfix(mse=f"{running:.3f}")
        if step % 50 == 0 or step == steps - 1:
            log.write(json.dumps({"phase": desc, "step": step, "mse": running}) + "\n")
            log.flush()


@torch.no_grad()
def residuals_of(model: FeaturePredictor, decoded: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Prediction residuals (n, 18) of clean sequences given the decoded ones (or the clean ones
    themselves: open loop) the predictor sees."""
    prediction, _ = model(torch.from_numpy(shifted_inputs(decoded)),
                          torch.from_numpy(current_pitch(decoded)))
    return (target[..., :NB_BANDS] - prediction.numpy()).reshape(-1, NB_BANDS)


def fit_codebooks(residuals: np.ndarray, init: dict | None = None, seed: int = 0) -> dict:
    """'s1'..'s5' as the stages of one residual VQ, on all frames, and the joint book as the
    sums of its two stages (`models.quantizer.joint` trains it further)."""
    books = dict(zip(STAGES, train_rvq(residuals, [CODEBOOK_SIZES[s] for s in STAGES], seed=seed,
                                        init=None if init is None else [init[s] for s in STAGES]),
                     strict=True))
    books[JOINT_BOOK] = pair_sums(*(books[name] for name in JOINT_INIT_STAGES))
    return books


def thresholds_for(residuals: np.ndarray, books: dict, predictor) -> dict[str, float]:
    """Per mode: the residual norm above which a frame asks for the transient path."""
    norms = np.sqrt((residuals**2).sum(1))
    out = {}
    for name, (_, allocation) in LADDER.items():
        quantizer = PredictiveQuantizer(allocation, books, predictor, 0.0)
        share = (allocation.target_bits - quantizer.steady_bits) / (quantizer.transient_bits
                                                                    - quantizer.steady_bits)
        out[name] = float(np.quantile(norms, 1.0 - min(1.0, DEMAND_OVER_SUPPLY * share)))
    return out


def closed_loop_pairs(model: FeaturePredictor, books: dict, thresholds: dict, clean: np.ndarray,
                      seed: int) -> np.ndarray:
    """Decoded sequences (B, T, 20) of clean sequences, each coded by a random ladder mode."""
    rng = np.random.default_rng(seed)
    predictor = TorchPredictor(model)
    names = list(LADDER)
    decoded = np.empty_like(clean)
    for b in tqdm(range(len(clean)), desc="closed loop", unit="seq", leave=False):
        name = names[rng.integers(len(names))]
        quantizer = PredictiveQuantizer(LADDER[name][1], books, predictor, thresholds[name])
        state = quantizer.new_state()
        for t in range(clean.shape[1]):
            decoded[b, t] = quantizer.encode(clean[b, t], BitWriter(), state)
    return decoded


def export_predictor(model: FeaturePredictor, path: Path) -> float:
    """Per-hop ONNX graph; returns the torch/onnxruntime parity error on random hops."""
    import onnxruntime

    step = FeaturePredictorStep(model).eval()
    previous = torch.from_numpy(np.tile(NEUTRAL_FRAME, (4, 1))) + 0.5 * torch.randn(4, NB_FEATURES)
    previous[:, CURRENT_PITCH[0]] = torch.tensor([60.0, 100.0, 150.0, 200.0])
    previous[:, CURRENT_PITCH[1]] = torch.tensor([0.9, 0.2, 0.8, 0.7])
    current = torch.tensor([[62.0, 0.95], [100.0, 0.1], [70.0, 0.95], [200.0, 0.1]])
    state = 0.1 * torch.randn(4, model.hidden)
    names = ["previous", "current", "gru_state", "prediction", "gru_state_out"]
    torch.onnx.export(step, (previous, current, state), str(path), input_names=names[:3],
                      output_names=names[3:], opset_version=17, dynamo=False,
                      dynamic_axes={n: {0: "streams"} for n in names})
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = step(previous, current, state)
    got = session.run(None, {"previous": previous.numpy(), "current": current.numpy(),
                             "gru_state": state.numpy()})
    return max(float(np.abs(e.numpy() - g).max()) for e, g in zip(expected, got, strict=True))


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--release", type=Path, help="write predictor.onnx + codebooks.npz here")
    parser.add_argument("--open-steps", type=int, default=600)
    parser.add_argument("--closed-steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=128, help="the predictor GRU's size")
    parser.add_argument("--pool-batches", type=int, default=16,
                        help="batches of 64 sequences coded closed loop (the codebooks' data); "
                             "with 4 the predictor overfitted them (models/README.md)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "train.log").open("a")
    started = time.time()

    train = FeatureDataset(args.cache, "train", seq_len=args.frames)
    batches = train.batches(64, seed=0)

    def clean_batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        frames = next(batches).features
        return shifted_inputs(frames), current_pitch(frames), frames

    # A fixed pool of clean sequences for codebooks and closed-loop coding (64 sequences of
    # 2 s per batch: 16 batches are 34 min of speech).
    pool = np.concatenate([next(batches).features for _ in range(args.pool_batches)])
    model = FeaturePredictor(hidden=args.hidden)
    print(f"FeaturePredictor: {sum(p.numel() for p in model.parameters()):,} parameters")
    fit_predictor(model, clean_batch, args.open_steps, 3e-3, "open loop", log)
    residuals = residuals_of(model, pool, pool)
    books = fit_codebooks(residuals)
    thresholds = thresholds_for(residuals, books, None)

    for round_ in range(args.rounds):
        decoded = closed_loop_pairs(model, books, thresholds, pool, seed=round_)
        fit_predictor(model, pair_sampler(decoded, pool, round_), args.closed_steps, 1e-3,
                      f"closed loop {round_ + 1}", log)
        residuals = residuals_of(model, decoded, pool)
        books = fit_codebooks(residuals, init=books, seed=round_ + 1)
        thresholds = thresholds_for(residuals, books, None)
        torch.save({"config": model.config, "model": model.state_dict(), "codebooks": books,
                    "thresholds": thresholds, "round": round_ + 1}, args.out / "checkpoint.pt")
        after_s1 = residuals - books["s1"][assign(residuals, books["s1"])]
        log.write(json.dumps({"phase": f"round {round_ + 1}",
                              "residual_mse": float((residuals**2).sum(1).mean()),
                              "after_s1_mse": float((after_s1**2).sum(1).mean()),
                              "elapsed_s": round(time.time() - started)}) + "\n")
        log.flush()

    # Ablation: the same quantizer without the predictor (prediction = the mean cepstrum).
    flat = pool.reshape(-1, NB_FEATURES)[:, :NB_BANDS]
    mean = flat.mean(0)
    raw_books = fit_codebooks(flat - mean, seed=7)
    raw_thresholds = thresholds_for(flat - mean, raw_books, None)
    np.savez(args.out / "codebooks_nopred.npz", mean=mean, **raw_books,
             **{f"threshold_{name}": np.float32(value) for name, value in raw_thresholds.items()})

    if args.release:
        args.release.mkdir(parents=True, exist_ok=True)
        parity = export_predictor(model, args.release / "predictor.onnx")
        # The torch weights too: the parity test compares the ONNX graph against them.
        torch.save({"config": model.config, "model": model.state_dict()}, args.release / "predictor.pt")
        np.savez(args.release / "codebooks.npz", **books,
                 **{f"threshold_{name}": np.float32(value) for name, value in thresholds.items()})
        (args.release / "predictor.json").write_text(json.dumps({
            "name": "feature-predictor", "config": model.config, "parity_max_abs_error": parity,
            "inputs": {"previous": [None, NB_FEATURES], "current": [None, len(CURRENT_PITCH)],
                       "gru_state": [None, model.hidden]},
            "outputs": {"prediction": [None, NB_BANDS], "gru_state_out": [None, model.hidden]},
            "thresholds": thresholds, "training_seconds": round(time.time() - started),
        }, indent=2) + "\n")
        print(f"released to {args.release} (parity {parity:.2e})")


if __name__ == "__main__":
    main()
