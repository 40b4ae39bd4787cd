"""Training curves as PNG, the same frame for every model's training script."""

from collections.abc import Callable
from pathlib import Path


def save_training_curve(path: Path, title: str, ylabel: str, draw: Callable) -> None:
    """Draw the curves with `draw(ax)` on a fresh matplotlib axis; label, save as PNG, close."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    draw(ax)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
