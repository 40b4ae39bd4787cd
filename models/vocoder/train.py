"""Train the HopVocoder on the feature cache (CPU is enough; resumable; logs and plots).

    python -m models.vocoder.train --cache /work/data/cache_wb --out runs/vocoder --steps 6000

Each step draws `batch` random windows of `frames` hops (features + the aligned signal),
synthesizes speech through the LPC filter and compares it with the recording by a
multi-resolution STFT loss. Frame n's output stands for samples [160 n - 80, 160 n + 80) of the
window, so the first frame is dropped and the target starts 80 samples in.
With `--quantize MODE` the features are first passed through that bitrate mode's quantizer, to
fine-tune on what the decoder will really receive; with `--enhancer CKPT` they then go through
the frozen FeatureEnhancer, as in the exported decoder graph. `--adversarial WEIGHT` adds a
multi-resolution spectrogram discriminator (`discriminator.py`) to the STFT loss, and
`--periods` a multi-period waveform discriminator beside it.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.data.loader import FeatureDataset
from models.plots import save_training_curve
from models.schedule import cosine_schedule
from models.vocoder.discriminator import (
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    discriminator_loss,
    generator_losses,
)
from models.vocoder.dsp import LpcFromCepstrum, filter_hops
from models.vocoder.enhancer import FeatureEnhancer
from models.vocoder.losses import multi_resolution_stft_loss
from models.vocoder.model import HopVocoder
from streaming_core.constants import HOP, NB_BANDS
from streaming_core.dsp_synth import DECODER_DELAY
from streaming_core.neural_synth import UNQUANTIZED_KBPS


def synthesize(model: HopVocoder, lpc: LpcFromCepstrum, features: torch.Tensor,
               noise: torch.Tensor, enhancer: FeatureEnhancer | None = None,
               kbps: np.ndarray | None = None) -> torch.Tensor:
    """Speech (B, T * HOP) for a batch of feature windows (through the frozen enhancer first,
    when there is one, as in the exported decoder graph; `kbps`: each window's bitrate)."""
    if enhancer is not None:
        bitrate = torch.full((*features.shape[:-1], 1), UNQUANTIZED_KBPS)
        if kbps is not None:
            bitrate = torch.from_numpy(kbps)[:, None, None].expand_as(bitrate)
        with torch.no_grad():
            features, _ = enhancer(features, bitrate)
    excitation, _, _ = model(features, noise)
    return filter_hops(excitation, features[..., :NB_BANDS], lpc)


def batch_speech(model: HopVocoder, lpc: LpcFromCepstrum, features: np.ndarray, signal: np.ndarray,
                 generator: torch.Generator, enhancer: FeatureEnhancer | None = None,
                 kbps: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(decoded speech, recorded speech) of one batch; the first frame only warms up the state."""
    features_t = torch.from_numpy(features)
    noise = torch.randn(features.shape[0], features.shape[1], HOP, generator=generator)
    speech = synthesize(model, lpc, features_t, noise, enhancer, kbps)[:, HOP:]
    target = torch.from_numpy(signal[:, HOP - DECODER_DELAY : HOP - DECODER_DELAY + speech.shape[1]])
    return speech, target


def batch_loss(model: HopVocoder, lpc: LpcFromCepstrum, features: np.ndarray, signal: np.ndarray,
               generator: torch.Generator, enhancer: FeatureEnhancer | None = None,
               kbps: np.ndarray | None = None) -> torch.Tensor:
    """Multi-resolution STFT loss of one batch."""
    return multi_resolution_stft_loss(*batch_speech(model, lpc, features, signal, generator,
                                                    enhancer, kbps))


def quantize_features(features: np.ndarray, mode_names: str, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Features as the decoder receives them after coding, and each sequence's bitrate in kbit/s.

    `mode_names` is a comma-separated list, one drawn at random per sequence; the name
    `unquantized` passes a sequence through as it is (bitrate `UNQUANTIZED_KBPS`)."""
    from streaming_core.bitpack import BitWriter
    from streaming_core.modes import get_mode

    rng = np.random.default_rng(seed)
    names = mode_names.split(",")
    out = np.empty_like(features)
    kbps = np.empty(features.shape[0], dtype=np.float32)
    for b in range(features.shape[0]):
        name = names[rng.integers(len(names))]
        if name == "unquantized":
            out[b], kbps[b] = features[b], UNQUANTIZED_KBPS
            continue
        mode = get_mode(name)
        quantizer, state = mode.quantizer, mode.quantizer.new_state()
        kbps[b] = mode.bitrate_bps / 1000
        for t in range(features.shape[1]):
            out[b, t] = quantizer.encode(features[b, t], BitWriter(), state)
    return out, kbps


def save_checkpoint(path: Path, model: HopVocoder, optimizer: torch.optim.Optimizer, step: int,
                    history: dict, adversary: "Adversary | None" = None) -> None:
    """Model constructor arguments, weights, optimizer and history: enough to resume or rebuild."""
    tmp = path.with_suffix(".tmp")
    saved = {"config": model.config, "model": model.state_dict(),
             "optimizer": optimizer.state_dict(), "step": step, "history": history}
    if adversary is not None:
        saved.update(adversary.state())
    torch.save(saved, tmp)
    tmp.replace(path)


def _periods_text(periods: tuple) -> str:
    return ",".join(str(p) for p in periods) if periods else "none"


class Adversary:
    """The discriminator side of adversarial fine-tuning (least-squares GAN + feature matching,
    as in HiFi-GAN): the spectrogram discriminators, and the multi-period one when `periods` are
    given, each with its own optimizer (so that a run started with `--init` can add the periods
    to a checkpoint that had only the spectrograms; a resumed run keeps its checkpoint's)."""

    def __init__(self, weight: float, warmup: int, lr: float, periods: tuple[int, ...] = ()) -> None:
        self.weight, self.warmup, self.periods = weight, warmup, tuple(periods)
        self.discriminator = MultiResolutionDiscriminator()
        self.optimizer = torch.optim.AdamW(self.discriminator.parameters(), lr=lr,
                                           betas=(0.8, 0.99))
        self.period_discriminator = MultiPeriodDiscriminator(periods) if periods else None
        self.period_optimizer = (
            torch.optim.AdamW(self.period_discriminator.parameters(), lr=lr, betas=(0.8, 0.99))
            if self.period_discriminator is not None else None)

    def load(self, saved: dict, resuming: bool = False) -> None:
        """Go on from a checkpoint that has discriminators (those it lacks start afresh). When
        `resuming` the run's own checkpoint, its periods must be these (a ValueError says so)."""
        if resuming and "discriminator" in saved:
            if "periods" in saved:
                had = _periods_text(tuple(saved["periods"]))
                mismatch = tuple(saved["periods"]) != self.periods
            else:  # written before checkpoints named their periods
                had = "(unnamed)" if "period_discriminator" in saved else "none"
                mismatch = ("period_discriminator" in saved) != bool(self.periods)
            if mismatch:
                raise ValueError(
                    f"the run's checkpoint has period discriminators {had} and "
                    f"--periods asks for {_periods_text(self.periods)}: resume with the same "
                    "--periods, or start a new run folder with --init")
        if "discriminator" in saved:
            self.discriminator.load_state_dict(saved["discriminator"])
            self.optimizer.load_state_dict(saved["discriminator_optimizer"])
        if self.period_discriminator is not None and "period_discriminator" in saved:
            self.period_discriminator.load_state_dict(saved["period_discriminator"])
            self.period_optimizer.load_state_dict(saved["period_discriminator_optimizer"])

    def state(self) -> dict:
        """What a checkpoint keeps of the discriminators."""
        saved = {"discriminator": self.discriminator.state_dict(),
                 "discriminator_optimizer": self.optimizer.state_dict()}
        if self.period_discriminator is not None:
            saved["periods"] = list(self.periods)
            saved["period_discriminator"] = self.period_discriminator.state_dict()
            saved["period_discriminator_optimizer"] = self.period_optimizer.state_dict()
        return saved

    def judge(self, signal: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        """(scores, activations) of every sub-discriminator."""
        judged = self.discriminator(signal)
        if self.period_discriminator is not None:
            judged = judged + self.period_discriminator(signal)
        return judged

    def step(self, speech: torch.Tensor, target: torch.Tensor, step: int
             ) -> tuple[torch.Tensor, dict]:
        """Train the discriminators on this batch; return the generator's adversarial loss
        (zero during the warm-up, while only the discriminators learn) and figures to log."""
        d_loss = discriminator_loss(self.judge(target), self.judge(speech.detach()))
        optimizers = [o for o in (self.optimizer, self.period_optimizer) if o is not None]
        for optimizer in optimizers:
            optimizer.zero_grad()
        d_loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        figures = {"discriminator": d_loss.item()}
        if step < self.warmup:
            return speech.new_zeros(()), figures
        with torch.no_grad():
            real = self.judge(target)
        adversarial, matching = generator_losses(real, self.judge(speech))
        figures.update(adversarial=adversarial.item(), feature_matching=matching.item())
        return self.weight * (adversarial + 2.0 * matching), figures


def plot_history(history: dict, path: Path) -> None:
    """Training and validation loss curves as PNG."""
    def draw(ax) -> None:  # noqa: ANN001
        ax.plot(history["step"], history["train"], label="train (running mean)", alpha=0.8)
        if history["valid_step"]:
            ax.plot(history["valid_step"], history["valid"], "o-", label="valid")

    save_training_curve(path, "HopVocoder training", "multi-resolution STFT loss", draw)


def parse_periods(parser: argparse.ArgumentParser, text: str | None, adversarial: float
                  ) -> tuple[int, ...]:
    """The `--periods` list as integers; a parser error when it is malformed or given without
    `--adversarial` (it would be ignored)."""
    if not text:
        return ()
    if adversarial <= 0:
        parser.error("--periods needs --adversarial WEIGHT > 0 (the periods are a discriminator)")
    try:
        periods = tuple(int(p) for p in text.split(","))
    except ValueError:
        parser.error(f"--periods must be comma-separated integers, got {text!r}")
    if any(p < 2 for p in periods):
        parser.error(f"--periods must be at least 2 samples each, got {text!r}")
    return periods


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
    parser.add_argument("--noise-pulse-depth", type=float, metavar="D",
                        help="train with the noise source modulated pitch-synchronously in voiced "
                        "frames (HopVocoder's noise_pulse_depth; default: the --init "
                        "checkpoint's, else 0)")
    parser.add_argument("--enhancer", type=Path,
                        help="FeatureEnhancer checkpoint (frozen) to put before the vocoder")
    parser.add_argument("--valid-every", type=int, default=250)
    parser.add_argument("--adversarial", type=float, default=0.0, metavar="WEIGHT",
                        help="add a spectrogram discriminator; weight of its losses (0: none)")
    parser.add_argument("--adversarial-warmup", type=int, default=100, metavar="STEPS",
                        help="steps at the start in which only the discriminator learns")
    parser.add_argument("--periods", metavar="P,P,...",
                        help="also a multi-period waveform discriminator with these periods "
                        "(e.g. 2,3,5,7,11; with --adversarial; a resumed run needs its "
                        "checkpoint's periods)")
    args = parser.parse_args(argv)
    periods = parse_periods(parser, args.periods, args.adversarial)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = args.out / "checkpoint.pt"
    train = FeatureDataset(args.cache, "train", seq_len=args.frames, with_signal=True)
    valid = FeatureDataset(args.cache, "valid", seq_len=args.frames, with_signal=True, copies=[0])

    model, lpc = HopVocoder(noise_pulse_depth=args.noise_pulse_depth or 0.0), LpcFromCepstrum()
    enhancer = None
    if args.enhancer:
        from models.vocoder.export import load_enhancer

        enhancer = load_enhancer(args.enhancer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    step, history = 0, {"step": [], "train": [], "valid_step": [], "valid": []}
    if checkpoint_path.exists():
        saved = torch.load(checkpoint_path, weights_only=False)
        model = HopVocoder(**saved["config"])
        model.load_weights(saved["model"])
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
        optimizer.load_state_dict(saved["optimizer"])
        step, history = saved["step"], saved["history"]
    elif args.init:
        saved = torch.load(args.init, weights_only=False)
        config = dict(saved["config"])
        if args.noise_pulse_depth is not None:
            config["noise_pulse_depth"] = args.noise_pulse_depth
        model = HopVocoder(**config)
        model.load_weights(saved["model"])
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    adversary = None
    if args.adversarial > 0:
        adversary = Adversary(args.adversarial, step + args.adversarial_warmup, args.lr, periods)
        if checkpoint_path.exists() or args.init:  # resume, or go on from an adversarial run
            try:
                adversary.load(saved, resuming=checkpoint_path.exists())
            except ValueError as error:
                parser.error(str(error))
    print(f"HopVocoder: {model.parameter_count():,} parameters; step {step} of {args.steps}")
    schedule = cosine_schedule(optimizer, args.lr, args.steps, step)

    generator = torch.Generator().manual_seed(step)
    batches = train.batches(args.batch, seed=step)
    valid_batches = list(zip(range(8), valid.batches(args.batch, seed=1234), strict=False))
    log = (args.out / "train.log").open("a")
    running, started, skipped = None, time.time(), 0
    progress = tqdm(total=args.steps, initial=step, desc="vocoder", unit="step")
    while step < args.steps:
        batch = next(batches)
        features, kbps = batch.features, None
        if args.quantize:
            features, kbps = quantize_features(features, args.quantize, seed=step)
        speech, target = batch_speech(model, lpc, features, batch.signal, generator, enhancer,
                                      kbps)
        loss = multi_resolution_stft_loss(speech, target)
        total, figures = loss, {}
        if adversary is not None:
            adversarial, figures = adversary.step(speech, target, step)
            total = loss + adversarial
        optimizer.zero_grad()
        total.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if torch.isfinite(total) and torch.isfinite(norm):
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
                    vf, vk = (quantize_features(vb.features, args.quantize) if args.quantize
                              else (vb.features, None))
                    losses.append(batch_loss(model, lpc, vf, vb.signal, valid_gen, enhancer,
                                             vk).item())
            history["valid_step"].append(step)
            history["valid"].append(float(np.mean(losses)))
            record = {"step": step, "train": running, "valid": history["valid"][-1],
                      "lr": schedule.get_last_lr()[0], "elapsed_s": round(time.time() - started),
                      **figures}
            log.write(json.dumps(record) + "\n")
            log.flush()
            save_checkpoint(checkpoint_path, model, optimizer, step, history, adversary)
            plot_history(history, args.out / "training_curve.png")
    progress.close()


if __name__ == "__main__":
    main()
