"""Tune a trained FeatureEnhancer through the frozen vocoder, on the speech it makes.

    python -m models.vocoder.tune_enhancer --cache data/cache --out runs/enhancer_tuned \
        --enhancer runs/enhancer/checkpoint.pt --vocoder runs/vocoder_ft/checkpoint.pt

`train_enhancer` fits the enhancer to the clean cepstrum by the squared error, which counts
every cepstral coefficient alike, whatever it does to the sound. Here the enhanced features
drive the frozen HopVocoder and the LPC synthesis filter, as in the exported decoder graph
(with the export's noise pulse depth and voiced noise gain), and the loss is the log-mel
distance between the decoded speech and the recording (the mel-spectrogram loss of HiFi-GAN,
Kong, Kim and Bae 2020) plus `--cepstral-weight` times `train_enhancer`'s loss, which keeps the
estimate near the clean cepstrum. Only the enhancer learns; the gradient reaches it through the
vocoder and through the LPC filter's envelope (`dsp.levinson` writes nothing in place).
Windows coded at `--distill-from` kbit/s or above are not tuned but held to the starting
enhancer's output (knowledge distillation, Hinton, Vinyals and Dean 2015): the enhancer is told
only the bitrate, and scalar-2400 shares 2.4 kbit/s with hop-2400, so tuning every mode on its
speech moved the scalar mode's output to where it sounded worse. `--excess-weight` makes the
log-mel distance count energy the decoder adds (noise in valleys and pauses) more than energy
it leaves out.

1. pairs: random windows coded by the real quantizer as `train_enhancer` codes them, with their
   recorded signal, saved once in `OUT/pairs.npz`;
2. tuning from `--enhancer`'s weights; validation reports the log-mel loss of the tuned windows'
   decoded speech and the cepstral error, both also for the starting enhancer, so the change is
   plain to read, and the held windows' distance to the starting enhancer's output.
Resumable; writes `train.log` (JSON lines), `training_curve.png` and `checkpoint.pt` in
`train_enhancer`'s format (`models.vocoder.export --enhancer` reads it).
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from models.plots import save_training_curve
from models.run_record import RunRecord
from models.schedule import cosine_schedule, take_step
from models.vocoder.dsp import LpcFromCepstrum, filter_hops
from models.vocoder.enhancer import FeatureEnhancer
from models.vocoder.export import load_checkpoint, load_enhancer
from models.vocoder.losses import log_mel_loss
from models.vocoder.model import HopVocoder
from models.vocoder.train_enhancer import (
    DEFAULT_MODES,
    cepstral_mse,
    enhancer_loss,
    make_pairs,
    resume,
    save_checkpoint,
)
from streaming_core.constants import HOP, NB_BANDS
from streaming_core.dsp_synth import DECODER_DELAY


class SpeechThroughVocoder:
    """The frozen decoder behind the enhancer: enhanced features -> speech, and the losses.

    Windows coded below `distill_from` kbit/s are tuned on their speech; the others are held
    to `teacher`'s output (the enhancer tuned from), so that the modes that already sound
    right, which share the bitrate input with each other, keep what they had."""

    def __init__(self, vocoder: HopVocoder, smoothness: float, cepstral_weight: float,
                 teacher: FeatureEnhancer | None = None, distill_from: float = float("inf"),
                 distill_weight: float = 10.0, excess_weight: float = 0.0) -> None:
        self.vocoder, self.lpc = vocoder.eval(), LpcFromCepstrum()
        self.teacher = teacher.eval() if teacher is not None else None
        for model in (self.vocoder, self.teacher):
            if model is not None:
                model.requires_grad_(False)
        if self.teacher is None and distill_from != float("inf"):
            raise ValueError("holding windows to the starting enhancer needs a teacher")
        self.smoothness, self.cepstral_weight = smoothness, cepstral_weight
        self.distill_from, self.distill_weight = distill_from, distill_weight
        self.excess_weight = excess_weight

    def tuned_windows(self, bitrate: torch.Tensor) -> torch.Tensor:
        """Which windows of a batch (bitrate (B, T, 1)) are tuned on their speech."""
        return bitrate[:, 0, 0] < self.distill_from

    def speech(self, enhanced: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Decoded speech (B, (T - 1) * HOP): the first hop only warms the states up."""
        excitation, _, _ = self.vocoder(enhanced, noise)
        return filter_hops(excitation, enhanced[..., :NB_BANDS], self.lpc)[:, HOP:]

    def losses(self, enhancer: FeatureEnhancer, decoded: torch.Tensor, clean: torch.Tensor,
               bitrate: torch.Tensor, signal: torch.Tensor, noise: torch.Tensor
               ) -> dict[str, torch.Tensor]:
        """The tuning loss ("total") and its parts for one batch of windows: "mel" and the
        cepstral anchor over the tuned windows, "distill" over the held ones (0 where none)."""
        enhanced, _ = enhancer(decoded, bitrate)
        tuned = self.tuned_windows(bitrate)
        mel = anchor = distill = enhanced.sum() * 0.0
        if tuned.any():
            speech = self.speech(enhanced[tuned], noise[tuned])
            start = HOP - DECODER_DELAY
            mel = log_mel_loss(speech, signal[tuned, start : start + speech.shape[1]],
                               self.excess_weight)
            anchor = enhancer_loss(enhanced[tuned], clean[tuned], self.smoothness)
        if not tuned.all():
            held = ~tuned
            with torch.no_grad():
                target, _ = self.teacher(decoded[held], bitrate[held])
            distill = ((enhanced[held] - target) ** 2).mean()
        total = mel + self.cepstral_weight * anchor + self.distill_weight * distill
        return {"total": total, "mel": mel, "cepstral": cepstral_mse(enhanced, clean),
                "distill": distill}


def plot_history(history: dict, path: Path) -> None:
    """Log-mel loss of the tuned windows' decoded speech (train and valid), with the starting
    enhancer's."""
    def draw(ax) -> None:  # noqa: ANN001
        ax.plot(history["step"], history["train"], alpha=0.8, label="train (running mean)")
        ax.plot(history["valid_step"], history["valid"], "o-", label="valid")
        ax.axhline(history["valid_start"], color="gray", ls="--", label="valid: the enhancer tuned from")

    save_training_curve(path, "FeatureEnhancer tuned through the vocoder",
                        "log-mel L1 of the tuned windows' decoded speech", draw)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True, help="feature cache (with signal)")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--enhancer", type=Path, required=True,
                        help="train_enhancer checkpoint to start from")
    parser.add_argument("--vocoder", type=Path, required=True,
                        help="HopVocoder checkpoint (frozen), the one the export will use")
    parser.add_argument("--noise-pulse-depth", type=float, default=0.99,
                        help="the vocoder's noise pulse depth, as exported")
    parser.add_argument("--voiced-noise-gain", type=float, default=0.7,
                        help="the vocoder's voiced noise gain, as exported")
    parser.add_argument("--quantize", default=DEFAULT_MODES, metavar="MODES",
                        help="modes to code the windows with (a mode named twice: twice as often)")
    parser.add_argument("--windows", type=int, default=4000, help="training windows to code")
    parser.add_argument("--frames", type=int, default=101, help="hops per window (first: warm-up)")
    parser.add_argument("--cepstral-weight", type=float, default=1.0,
                        help="weight of train_enhancer's loss beside the log-mel loss")
    parser.add_argument("--smoothness", type=float, default=3.0,
                        help="train_enhancer's weight of the frame-to-frame change error")
    parser.add_argument("--distill-from", type=float, default=2.0, metavar="KBPS",
                        help="windows coded at this bitrate or above (unquantized ones too) are "
                             "held to the starting enhancer's output instead of tuned; 0: none "
                             "is tuned, a large value: every window is")
    parser.add_argument("--distill-weight", type=float, default=10.0,
                        help="weight of the squared distance to the starting enhancer's output")
    parser.add_argument("--excess-weight", type=float, default=0.0,
                        help="a mel bin of the decoded speech louder than the recording's counts "
                             "1 + this times one as far below it (0: the plain log-mel distance)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--valid-every", type=int, default=250)
    args = parser.parse_args(argv)
    for option, path in (("--enhancer", args.enhancer), ("--vocoder", args.vocoder)):
        if not path.is_file():
            parser.error(f"{option} {path}: no such checkpoint")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    pairs_path = args.out / "pairs.npz"
    if not pairs_path.exists():
        train = make_pairs(args.cache, "train", args.windows, args.frames, args.quantize, seed=1,
                           with_signal=True)
        valid = make_pairs(args.cache, "valid", max(args.windows // 30, 32), args.frames,
                           args.quantize, seed=2, with_signal=True)
        names = ("decoded", "clean", "bitrate", "signal")
        np.savez(pairs_path, **{f"train_{n}": a for n, a in zip(names, train, strict=True)},
                 **{f"valid_{n}": a for n, a in zip(names, valid, strict=True)})
    pairs = {k: torch.from_numpy(v) for k, v in np.load(pairs_path).items()}

    decoder = SpeechThroughVocoder(
        load_checkpoint(args.vocoder, args.noise_pulse_depth, args.voiced_noise_gain),
        args.smoothness, args.cepstral_weight, teacher=load_enhancer(args.enhancer),
        distill_from=args.distill_from, distill_weight=args.distill_weight,
        excess_weight=args.excess_weight)
    checkpoint_path = args.out / "checkpoint.pt"
    model = load_enhancer(args.enhancer)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    step, history = 0, None
    if checkpoint_path.exists():
        model, optimizer, step, history = resume(checkpoint_path, args.lr)
    model.train()

    def validate() -> dict[str, float]:
        """Each loss part averaged over the windows it covers (tuned, held, or all)."""
        noise_generator = torch.Generator().manual_seed(99)
        sums = {"mel": 0.0, "cepstral": 0.0, "distill": 0.0}
        counts = dict.fromkeys(sums, 0)
        with torch.no_grad():
            for start in range(0, len(pairs["valid_decoded"]), 32):
                part = slice(start, start + 32)
                decoded, bitrate = pairs["valid_decoded"][part], pairs["valid_bitrate"][part]
                noise = torch.randn(*decoded.shape[:2], HOP, generator=noise_generator)
                losses = decoder.losses(model, decoded, pairs["valid_clean"][part], bitrate,
                                        pairs["valid_signal"][part], noise)
                tuned = int(decoder.tuned_windows(bitrate).sum())
                windows = {"mel": tuned, "cepstral": len(decoded), "distill": len(decoded) - tuned}
                for name, count in windows.items():
                    sums[name] += losses[name].item() * count
                    counts[name] += count
        return {name: sums[name] / max(counts[name], 1) for name in sums}

    if history is None:
        start = validate()
        history = {"step": [], "train": [], "valid_step": [], "valid": [],
                   "valid_start": start["mel"], "valid_start_cepstral": start["cepstral"]}
    schedule = cosine_schedule(optimizer, args.lr, args.steps, step)

    rng = np.random.default_rng(step)
    noise_generator = torch.Generator().manual_seed(step)
    record = RunRecord(args.out, history, args.steps, step, "enhancer through the vocoder",
                       loss_name="mel")
    n_train = len(pairs["train_decoded"])
    while step < args.steps:
        pick = torch.from_numpy(rng.integers(n_train, size=args.batch))
        decoded = pairs["train_decoded"][pick]
        noise = torch.randn(*decoded.shape[:2], HOP, generator=noise_generator)
        losses = decoder.losses(model, decoded, pairs["train_clean"][pick],
                                pairs["train_bitrate"][pick], pairs["train_signal"][pick], noise)
        take_step(losses["total"], model, optimizer, schedule)
        step += 1
        record.trained(step, losses["mel"].item())
        if step % args.valid_every == 0 or step == args.steps:
            valid = validate()
            record.validated(step, valid["mel"], train_mel=record.running, valid_mel=valid["mel"],
                             valid_cepstral=valid["cepstral"], valid_distill=valid["distill"],
                             valid_mel_start=history["valid_start"],
                             valid_cepstral_start=history["valid_start_cepstral"])
            save_checkpoint(checkpoint_path, model, optimizer, step, history)
            plot_history(history, args.out / "training_curve.png")
    record.close()


if __name__ == "__main__":
    main()
