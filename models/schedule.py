"""The learning-rate schedule the training commands share."""

import math

import torch


def cosine_schedule(optimizer: torch.optim.Optimizer, lr: float, steps: int, step: int = 0
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine decay from `lr` to 5 % of it over `steps`, taken up at `step` (a resumed run)."""
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", lr)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))) * 0.95 + 0.05,
        last_epoch=step - 1)
