"""Multi-resolution STFT loss (spectral convergence + log magnitude), as in Parallel WaveGAN
(Yamamoto, Song, Kim 2020)."""

import torch

RESOLUTIONS = ((1024, 256), (512, 128), (256, 64), (128, 32))
"""(FFT size, hop) pairs; each window is a Hann window of the FFT size."""


def _magnitude(signal: torch.Tensor, size: int, hop: int) -> torch.Tensor:
    window = torch.hann_window(size, device=signal.device)
    spectrum = torch.stft(signal, size, hop, window=window, return_complex=True)
    return spectrum.abs().clamp(min=1e-5)


def multi_resolution_stft_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over resolutions of spectral convergence + L1 log-magnitude distance."""
    total = output.new_zeros(())
    for size, hop in RESOLUTIONS:
        out, ref = _magnitude(output, size, hop), _magnitude(target, size, hop)
        convergence = torch.linalg.norm(ref - out) / torch.linalg.norm(ref).clamp(min=1e-5)
        log_distance = (out.log() - ref.log()).abs().mean()
        total = total + convergence + log_distance
    return total / len(RESOLUTIONS)


MEL_FFT, MEL_HOP, MEL_BANDS = 1024, 160, 80
"""The log-mel loss's analysis: 64 ms Hann windows every 10 ms, 80 mel bands over 0-8 kHz."""


def mel_filterbank(sample_rate: int = 16000, fft_size: int = MEL_FFT,
                   bands: int = MEL_BANDS) -> torch.Tensor:
    """(bands, fft_size // 2 + 1) triangular filters equally spaced on the mel scale
    (2595 log10(1 + f / 700)), each peaking at 1, from 0 Hz to the Nyquist frequency."""
    def mel(hz: torch.Tensor) -> torch.Tensor:
        return 2595.0 * torch.log10(1.0 + hz / 700.0)

    top = mel(torch.tensor(sample_rate / 2.0, dtype=torch.float64))
    edges_mel = torch.linspace(0.0, float(top), bands + 2, dtype=torch.float64)
    edges = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    bins = torch.linspace(0.0, sample_rate / 2.0, fft_size // 2 + 1, dtype=torch.float64)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


_MEL_FILTERS = mel_filterbank()


def log_mel_loss(output: torch.Tensor, target: torch.Tensor, excess_weight: float = 0.0
                 ) -> torch.Tensor:
    """Mean L1 distance of the log mel spectrograms (the mel-spectrogram loss of HiFi-GAN,
    Kong, Kim and Bae 2020): the spectral envelope weighted as the ear spaces it.

    `excess_weight` > 0 makes it asymmetric: a bin where `output` is louder than `target`
    counts 1 + excess_weight times one as far below it (divided by 1 + excess_weight / 2, so an
    even mix of both costs what the plain distance does): energy the decoder adds in spectral
    valleys and pauses, which is heard as noise, costs more than energy it leaves out."""
    window = torch.hann_window(MEL_FFT, device=output.device)

    def log_mel(signal: torch.Tensor) -> torch.Tensor:
        spectrum = torch.stft(signal, MEL_FFT, MEL_HOP, window=window, return_complex=True)
        return torch.log((_MEL_FILTERS.to(signal.device, signal.dtype) @ spectrum.abs()).clamp(min=1e-5))

    difference = log_mel(output) - log_mel(target)
    if not excess_weight:
        return difference.abs().mean()
    weights = 1.0 + excess_weight * (difference > 0)
    return (difference.abs() * weights).mean() / (1.0 + excess_weight / 2.0)
