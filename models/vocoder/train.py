"""Train the HopVocoder on the feature cache (CPU is enough; resumable; logs and plots).

    python -m models.vocoder.train --cache /work/data/cache_wb --out runs/vocoder --steps 6000

Each step draws `batch` random windows of `frames` hops (features + the aligned signal),
synthesizes speech through the LPC filter and compares it with the recording by a
multi-resolution STFT loss. Frame n's output stands for samples [160 n - 80, 160 n + 80) of the
window, so the first frame is dropped and the target starts 80 samples in.
With `--quantize MODE` the features are first passed through that bitrate mode's quantizer, to
fine-tune on what the decoder will really receive.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.data.loader import FeatureDataset
from models.vocoder.dsp import LpcFromCepstrum, filter_frames, synthesis_response
from models.vocoder.losses import multi_resolution_stft_loss
from models.vocoder.model import HopVocoder
from streaming_core.constants import HOP, NB_BANDS
from streaming_core.dsp_synth import DECODER_DELAY


def synthesize(model: HopVocoder, lpc: LpcFromCepstrum, features: torch.Tensor,
               noise: torch.Tensor) -> torch.Tensor:
    """Speech (B, T * HOP) for a batch of feature windows."""
    excitation, _, _ = model(features, noise)
    a, residual = lpc(features[..., :NB_BANDS])
    excitation = excitation * residual.clamp(min=0).sqrt()[..., None]
    return filter_frames(excitation, synthesis_response(a))


def batch_loss(model: HopVocoder, lpc: LpcFromCepstrum, features: np.ndarray, signal: np.ndarray,
               generator: torch.Generator) -> torch.Tensor:
    """Loss of one batch; the first frame only warms up the state."""
    features_t = torch.from_numpy(features)
    noise = torch.randn(features.shape[0], features.shape[1], HOP, generator=generator)
    speech = synthesize(model, lpc, features_t, noise)[:, HOP:]
    target = torch.from_numpy(signal[:, HOP - DECODER_DELAY : HOP - DECODER_DELAY + speech.shape[1]])
    return multi_resolution_stft_loss(speech, target)


def quantize_features(features: np.ndarray, mode_names: str, seed: int = 0) -> np.ndarray:
    """Features as the decoder receives them after coding; `mode_names` is a comma-separated
    list, one drawn at random per sequence."""
    from streaming_core.bitpack import BitWriter
    from streaming_core.modes import get_mode

    rng = np.random.default_rng(seed)
    quantizers = [get_mode(name).quantizer for name in mode_names.split(",")]
    out = np.empty_like(features)
    for b in range(features.shape[0]):
        quantizer = quantizers[rng.integers(len(quantizers))]
        state = quantizer.new_state()
        for t in range(features.shape[1]):
            out[b, t] = quantizer.encode(features[b, t], BitWriter(), state)
    return out


def save_checkpoint(path: Path, model: HopVocoder, optimizer: torch.optim.Optimizer, step: int,
                    history: dict) -> None:
    """Model constructor arguments, weights, optimizer and history: enough to resume or rebuild."""
    tmp = path.with_suffix(".tmp")
    torch.save({"config": model.config, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "step": step, "history": history}, tmp)
    tmp.replace(path)


def plot_history(history: dict, path: Path) -> None:
    """Training and validation loss curves as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(history["step"], history["train"], label="train (running mean)", alpha=0.8)
    if history["valid_step"]:
        ax.plot(history["valid_step"], history["valid"], "o-", label="valid")
    ax.set_xlabel("step")
    ax.set_ylabel("multi-resolution STFT loss")
    ax.set_title("HopVocoder training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True, help="feature cache (with signal)")
    parser.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, log, plots)")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=101, help="hops per window (first is warm-up)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quantize", metavar="MODES",
                        help="fine-tune on decoded features of these modes (comma-separated)")
    parser.add_argument("--init", type=Path, help="start from this checkpoint's weights")
    parser.add_argument("--valid-every", type=int, default=250)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = args.out / "checkpoint.pt"
    train = FeatureDataset(args.cache, "train", seq_len=args.frames, with_signal=True)
    valid = FeatureDataset(args.cache, "valid", seq_len=args.frames, with_signal=True, copies=[0])

    model, lpc = HopVocoder(), LpcFromCepstrum()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    step, history = 0, {"step": [], "train": [], "valid_step": [], "valid": []}
    if checkpoint_path.exists():
        saved = torch.load(checkpoint_path, weights_only=False)
        model = HopVocoder(**saved["config"])
        model.load_state_dict(saved["model"])
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
        optimizer.load_state_dict(saved["optimizer"])
        step, history = saved["step"], saved["history"]
    elif args.init:
        saved = torch.load(args.init, weights_only=False)
        model = HopVocoder(**saved["config"])
        model.load_state_dict(saved["model"])
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    print(f"HopVocoder: {model.parameter_count():,} parameters; step {step} of {args.steps}")
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + np.cos(np.pi * min(s / args.steps, 1.0))) * 0.95 + 0.05,
        last_epoch=step - 1)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", args.lr)

    generator = torch.Generator().manual_seed(step)
    batches = train.batches(args.batch, seed=step)
    valid_batches = list(zip(range(8), valid.batches(args.batch, seed=1234), strict=False))
    log = (args.out / "train.log").open("a")
    running, started, skipped = None, time.time(), 0
    progress = tqdm(total=args.steps, initial=step, desc="vocoder", unit="step")
    while step < args.steps:
        batch = next(batches)
        features = batch.features
        if args.quantize:
            features = quantize_features(features, args.quantize, seed=step)
        loss = batch_loss(model, lpc, features, batch.signal, generator)
        optimizer.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if torch.isfinite(loss) and torch.isfinite(norm):
            optimizer.step()
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        else:  # a batch whose loss or gradient is not finite is skipped, not learned from
            skipped += 1
            log.write(json.dumps({"step": step, "skipped_non_finite": skipped}) + "\n")
            log.flush()
        schedule.step()
        step += 1
        progress.update(1)
        if running is not None:
            progress.set_postfix(loss=f"{running:.4f}")
        if step % 25 == 0 and running is not None:
            history["step"].append(step)
            history["train"].append(running)
        if step % args.valid_every == 0 or step == args.steps:
            with torch.no_grad():
                valid_gen = torch.Generator().manual_seed(99)
                losses = []
                for _, vb in valid_batches:
                    vf = quantize_features(vb.features, args.quantize) if args.quantize else vb.features
                    losses.append(batch_loss(model, lpc, vf, vb.signal, valid_gen).item())
            history["valid_step"].append(step)
            history["valid"].append(float(np.mean(losses)))
            record = {"step": step, "train": running, "valid": history["valid"][-1],
                      "lr": schedule.get_last_lr()[0], "elapsed_s": round(time.time() - started)}
            log.write(json.dumps(record) + "\n")
            log.flush()
            save_checkpoint(checkpoint_path, model, optimizer, step, history)
            plot_history(history, args.out / "training_curve.png")
    progress.close()


if __name__ == "__main__":
    main()
