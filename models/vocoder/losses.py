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
