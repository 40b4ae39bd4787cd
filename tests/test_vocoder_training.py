"""Training pieces of the neural decoder: the feature enhancer and the adversarial loss."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs torch: pip install torch==2.13.0")

from models.vocoder.discriminator import (  # noqa: E402
    MultiResolutionDiscriminator,
    discriminator_loss,
    generator_losses,
)
from models.vocoder.enhancer import FeatureEnhancer, unquantized_bitrate  # noqa: E402
from models.vocoder.train_enhancer import enhancer_loss, trajectory_mse  # noqa: E402
from streaming_core.analysis import analyze_signal  # noqa: E402


def test_untrained_enhancer_is_the_identity(speech):
    features = torch.from_numpy(analyze_signal(speech[:16000]).astype(np.float32))[None]
    enhanced, state = FeatureEnhancer(hidden=32)(features, unquantized_bitrate(features))
    torch.testing.assert_close(enhanced, features)
    assert state.shape == (1, 32)


def test_trajectory_loss_punishes_jitter_not_offsets(speech):
    clean = torch.from_numpy(analyze_signal(speech[:16000]).astype(np.float32))[None]
    offset = clean.clone()
    offset[..., :18] += 0.3  # a constant error: no change in the trajectory
    jitter = clean.clone()
    jitter[:, 1::2, :18] += 0.3  # the same size of error, alternating frame to frame
    assert float(trajectory_mse(offset, clean)) < 1e-10
    assert float(trajectory_mse(jitter, clean)) == pytest.approx(0.09, rel=1e-3)
    assert float(enhancer_loss(jitter, clean, 1.0)) > float(enhancer_loss(offset, clean, 1.0))


def test_discriminator_learns_recorded_from_decoded(speech):
    torch.manual_seed(0)
    real = torch.from_numpy(speech[:2 * 16000].reshape(2, 16000).astype(np.float32))
    fake = real + 0.05 * torch.randn_like(real)  # recorded speech with audible added noise
    discriminator = MultiResolutionDiscriminator(channels=16)
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = discriminator_loss(discriminator(real), discriminator(fake))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    adversarial, matching = generator_losses(discriminator(real), discriminator(fake))
    assert float(adversarial.detach()) > 0.5  # the trained discriminator scores the noisy copy as fake
    assert float(matching.detach()) > 0.0
