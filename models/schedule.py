"""The learning-rate schedule and optimisation step the training commands share."""

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


def take_step(loss: torch.Tensor, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
              schedule: torch.optim.lr_scheduler.LRScheduler, max_norm: float = 1.0) -> None:
    """One optimisation step on `loss`: gradients clipped to `max_norm`, then the schedule."""
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    schedule.step()
