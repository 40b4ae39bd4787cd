"""Train the FeatureEnhancer on pairs (decoded features, clean features) from the feature cache.

    python -m models.vocoder.train_enhancer --cache data/cache --out runs/enhancer --steps 3000

1. pairs: random windows of the cache's train and valid splits are coded by the real quantizer
   (one mode of `--quantize` per window, a fresh quantizer state at the window's start, as after
   a periodic reset) and saved once in `OUT/pairs.npz` (2 processes, progress bar);
2. training: the enhancer's output cepstrum is compared with the clean one by the squared error
   (the log-spectral error) and so are its frame-to-frame changes (`--smoothness`: the decoded
   envelope jumps by its quantization error where the clean one glides); validation reports
   the cepstral error beside that of the decoded cepstrum as it is, so the gain is plain to read.
Resumable (re-run after an interruption); writes `train.log` (JSON lines) and
`training_curve.png` into the run folder.
"""

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.data.loader import FeatureDataset
from models.plots import save_training_curve
from models.run_record import RunRecord
from models.schedule import cosine_schedule, take_step
from models.vocoder.enhancer import FeatureEnhancer
from models.vocoder.train import quantize_features
from streaming_core.constants import NB_BANDS

DEFAULT_MODES = ("hop-800,hop-1200,hop-1600,hop-1600,hop-2400,hop-3200,scalar-2400,scalar-4000,"
                 "unquantized")
"""Every mode, the low ones more often, and unquantized windows (to be left alone)."""


def _quantize_chunk(args: tuple[np.ndarray, str, int]) -> tuple[np.ndarray, np.ndarray]:
    features, modes, seed = args
    torch.set_num_threads(1)
    return quantize_features(features, modes, seed=seed)


def make_pairs(cache: Path, split: str, windows: int, frames: int, modes: str, seed: int,
               workers: int = 2, with_signal: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(decoded, clean) feature windows (windows, frames, 20) of one split, each window's
    bitrate (windows, frames, 1) in kbit/s, and its recorded signal (windows, frames * 160)
    when `with_signal` (else None)."""
    dataset = FeatureDataset(cache, split, seq_len=frames, copies=None, with_signal=with_signal)
    batch = dataset.batch(np.random.default_rng(seed), windows)
    clean = batch.features.astype(np.float32)
    chunks = [(clean[i : i + 16], modes, seed + i) for i in range(0, windows, 16)]
    with ProcessPoolExecutor(workers) as pool:
        coded = list(tqdm(pool.map(_quantize_chunk, chunks), total=len(chunks),
                          desc=f"coding {split} windows", unit="chunk"))
    kbps = np.concatenate([k for _, k in coded])
    bitrate = np.broadcast_to(kbps[:, None, None], (windows, frames, 1)).astype(np.float32)
    return np.concatenate([d for d, _ in coded]), clean, bitrate, batch.signal


def cepstral_mse(enhanced: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Mean squared cepstrum error (the first frame of each window only warms the GRU up)."""
    return ((enhanced[:, 1:, :NB_BANDS] - clean[:, 1:, :NB_BANDS]) ** 2).mean()


def trajectory_mse(enhanced: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the frame-to-frame cepstrum changes: the clean envelope moves
    smoothly, the decoded one jumps by its quantization error."""
    def change(x: torch.Tensor) -> torch.Tensor:
        return x[:, 2:, :NB_BANDS] - x[:, 1:-1, :NB_BANDS]

    return ((change(enhanced) - change(clean)) ** 2).mean()


def enhancer_loss(enhanced: torch.Tensor, clean: torch.Tensor, smoothness: float) -> torch.Tensor:
    """Cepstral error plus `smoothness` times the error of its frame-to-frame changes."""
    return cepstral_mse(enhanced, clean) + smoothness * trajectory_mse(enhanced, clean)


def save_checkpoint(path: Path, model: FeatureEnhancer, optimizer: torch.optim.Optimizer,
                    step: int, history: dict) -> None:
    """The enhancer's constructor arguments, weights, optimizer and history (written whole:
    a stopped run never leaves half a file); `models.vocoder.export --enhancer` reads it."""
    tmp = path.with_suffix(".tmp")
    torch.save({"config": {"hidden": model.hidden}, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "step": step, "history": history}, tmp)
    tmp.replace(path)


def resume(path: Path, lr: float) -> tuple[FeatureEnhancer, torch.optim.Optimizer, int, dict]:
    """The enhancer, its optimizer, step and history from a run's checkpoint."""
    saved = torch.load(path, weights_only=False)
    model = FeatureEnhancer(**saved["config"])
    model.load_state_dict(saved["model"])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    optimizer.load_state_dict(saved["optimizer"])
    return model, optimizer, saved["step"], saved["history"]


def plot_history(history: dict, path: Path) -> None:
    """Training and validation curves as PNG, with the decoded features' error for reference."""
    def draw(ax) -> None:  # noqa: ANN001
        ax.plot(history["step"], history["train"], alpha=0.8,
                label="train loss: error + smoothness x change error (running mean)")
        ax.plot(history["valid_step"], history["valid"], "o-", label="valid error: enhanced")
        ax.axhline(history["valid_decoded"], color="gray", ls="--",
                   label="valid error: decoded as is")

    save_training_curve(path, "FeatureEnhancer training", "cepstral squared error", draw)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True, help="feature cache")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--quantize", default=DEFAULT_MODES, metavar="MODES",
                        help="modes to code the windows with (a mode named twice: twice as often)")
    parser.add_argument("--windows", type=int, default=3000, help="training windows to code")
    parser.add_argument("--frames", type=int, default=200, help="hops per window")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--smoothness", type=float, default=1.0,
                        help="weight of the frame-to-frame change error in the loss")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--valid-every", type=int, default=250)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    pairs_path = args.out / "pairs.npz"
    if not pairs_path.exists():
        train_decoded, train_clean, train_bitrate, _ = make_pairs(
            args.cache, "train", args.windows, args.frames, args.quantize, seed=1)
        valid_decoded, valid_clean, valid_bitrate, _ = make_pairs(
            args.cache, "valid", max(args.windows // 10, 32), args.frames, args.quantize, seed=2)
        np.savez(pairs_path, train_decoded=train_decoded, train_clean=train_clean,
                 train_bitrate=train_bitrate, valid_decoded=valid_decoded,
                 valid_clean=valid_clean, valid_bitrate=valid_bitrate)
    pairs = {k: torch.from_numpy(v) for k, v in np.load(pairs_path).items()}

    checkpoint_path = args.out / "checkpoint.pt"
    model = FeatureEnhancer(hidden=args.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    step = 0
    with torch.no_grad():
        decoded_error = float(cepstral_mse(pairs["valid_decoded"], pairs["valid_clean"]))
    history = {"step": [], "train": [], "valid_step": [], "valid": [], "valid_decoded": decoded_error}
    if checkpoint_path.exists():
        model, optimizer, step, history = resume(checkpoint_path, args.lr)
    schedule = cosine_schedule(optimizer, args.lr, args.steps, step)

    rng = np.random.default_rng(step)
    record = RunRecord(args.out, history, args.steps, step, "enhancer")
    n_train = len(pairs["train_clean"])
    while step < args.steps:
        pick = torch.from_numpy(rng.integers(n_train, size=args.batch))
        enhanced, _ = model(pairs["train_decoded"][pick], pairs["train_bitrate"][pick])
        loss = enhancer_loss(enhanced, pairs["train_clean"][pick], args.smoothness)
        take_step(loss, model, optimizer, schedule)
        step += 1
        record.trained(step, loss.item())
        if step % args.valid_every == 0 or step == args.steps:
            with torch.no_grad():
                enhanced, _ = model(pairs["valid_decoded"], pairs["valid_bitrate"])
                valid = float(cepstral_mse(enhanced, pairs["valid_clean"]))
            record.validated(step, valid, train=record.running, valid=valid,
                             valid_decoded=decoded_error)
            save_checkpoint(checkpoint_path, model, optimizer, step, history)
            plot_history(history, args.out / "training_curve.png")
    record.close()


if __name__ == "__main__":
    main()
