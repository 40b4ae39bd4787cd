"""A multi-resolution spectral discriminator for adversarial fine-tuning of the HopVocoder.

The STFT loss alone rewards the average spectrum: where the harmonics of the decoded pitch do
not land exactly on those of the recording, the cheapest answer is to fill the gaps with noise,
which listeners (and DNSMOS) hear as hoarseness and background noise. A discriminator that
judges whether a spectrogram looks recorded pushes back (the GAN recipe of HiFi-GAN, Kong, Kim
and Bae 2020, with the spectrogram discriminators of UnivNet, Jang et al. 2021). Here each
resolution's log-magnitude frames go through 1-D convolutions over time with the frequency bins
as channels, which is cheap enough to train on two CPU cores.

The spectrogram discriminators see magnitudes only. The multi-period discriminator of HiFi-GAN
(Kong, Kim and Bae 2020, section 2.2) looks at the waveform folded by a period p, so that 2-D
convolutions along the folded axis compare samples p apart: it judges the periodic structure
(how regular the glottal pulses are, how the noise sits between them) that the magnitudes
average away. Here with narrow layers, so that it too trains on two CPU cores.
"""

import torch
from torch import nn

RESOLUTIONS = ((1024, 256), (512, 128), (256, 64))
PERIODS = (2, 3, 5, 7, 11)


class SpectrogramDiscriminator(nn.Module):
    """Scores the log-magnitude STFT of one resolution, frame by frame."""

    def __init__(self, fft_size: int, hop: int, channels: int = 64) -> None:
        super().__init__()
        self.fft_size, self.hop = fft_size, hop
        self.register_buffer("window", torch.hann_window(fft_size))
        bins = fft_size // 2 + 1
        self.layers = nn.ModuleList([
            nn.Conv1d(bins, channels, 3, padding=1),
            nn.Conv1d(channels, channels, 3, padding=2, dilation=2),
            nn.Conv1d(channels, channels, 3, padding=4, dilation=4),
        ])
        self.output = nn.Conv1d(channels, 1, 3, padding=1)

    def forward(self, signal: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """signal (B, N) -> scores (B, frames) and the hidden activations (for feature matching)."""
        spectrum = torch.stft(signal, self.fft_size, self.hop, window=self.window,
                              return_complex=True)
        x = torch.log(spectrum.abs().clamp(min=1e-5))
        features = []
        for layer in self.layers:
            x = nn.functional.leaky_relu(layer(x), 0.2)
            features.append(x)
        return self.output(x)[:, 0], features


class MultiResolutionDiscriminator(nn.Module):
    """One SpectrogramDiscriminator per STFT resolution."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            SpectrogramDiscriminator(size, hop, channels) for size, hop in RESOLUTIONS)

    def forward(self, signal: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        """(scores, activations) of every resolution."""
        return [d(signal) for d in self.discriminators]


class PeriodDiscriminator(nn.Module):
    """Scores the waveform folded into columns of `period` samples (HiFi-GAN's sub-discriminator)."""

    def __init__(self, period: int, channels: tuple[int, ...] = (16, 32, 64, 64)) -> None:
        super().__init__()
        self.period = period
        widths = (1, *channels)
        self.layers = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], (5, 1), stride=(3, 1), padding=(2, 0))
            for i in range(len(channels)))
        self.output = nn.Conv2d(channels[-1], 1, (3, 1), padding=(1, 0))

    def forward(self, signal: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """signal (B, N) -> scores (B, rows * period) and the hidden activations."""
        batch, length = signal.shape
        padding = (-length) % self.period
        x = nn.functional.pad(signal, (0, padding), mode="reflect")
        x = x.view(batch, 1, -1, self.period)
        features = []
        for layer in self.layers:
            x = nn.functional.leaky_relu(layer(x), 0.2)
            features.append(x)
        return self.output(x).flatten(1), features


class MultiPeriodDiscriminator(nn.Module):
    """One PeriodDiscriminator per period (primes, as in HiFi-GAN, so that the periods'
    multiples overlap as little as possible)."""

    def __init__(self, periods: tuple[int, ...] = PERIODS) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p) for p in periods)

    def forward(self, signal: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        """(scores, activations) of every period."""
        return [d(signal) for d in self.discriminators]


def discriminator_loss(real: list, fake: list) -> torch.Tensor:
    """Least-squares GAN loss of the discriminator: recorded -> 1, decoded -> 0."""
    return sum(((r - 1) ** 2).mean() + (f**2).mean() for (r, _), (f, _) in zip(real, fake, strict=True))


def generator_losses(real: list, fake: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial loss, feature-matching loss) of the generator."""
    adversarial = sum(((f - 1) ** 2).mean() for f, _ in fake)
    matching = sum((fr.detach() - ff).abs().mean()
                   for (_, real_features), (_, fake_features) in zip(real, fake, strict=True)
                   for fr, ff in zip(real_features, fake_features, strict=True))
    return adversarial, matching
