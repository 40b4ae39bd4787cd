"""What the enhancer training commands keep about a run while it trains."""

import json
import time
from pathlib import Path

from tqdm import tqdm


class RunRecord:
    """The running mean of the training loss, the history the training curve is drawn from
    (`step`/`train` every 25 steps, `valid_step`/`valid` at each validation), the JSON-lines
    `train.log` of the run folder and the progress bar."""

    def __init__(self, out: Path, history: dict, steps: int, step: int, description: str,
                 loss_name: str = "loss") -> None:
        self.history, self.loss_name = history, loss_name
        self.running: float | None = None
        self.started = time.time()
        self.log = (out / "train.log").open("a")
        self.progress = tqdm(total=steps, initial=step, desc=description, unit="step")

    def trained(self, step: int, loss: float) -> None:
        """One training step done with this batch loss."""
        self.running = loss if self.running is None else 0.98 * self.running + 0.02 * loss
        self.progress.update(1)
        self.progress.set_postfix({self.loss_name: f"{self.running:.4f}"})
        if step % 25 == 0:
            self.history["step"].append(step)
            self.history["train"].append(self.running)

    def validated(self, step: int, valid: float, /, **fields: float) -> None:
        """The validation figure drawn in the curve, and a log line of `fields` (JSON names)."""
        self.history["valid_step"].append(step)
        self.history["valid"].append(valid)
        line = {"step": step, **fields, "elapsed_s": round(time.time() - self.started)}
        self.log.write(json.dumps(line) + "\n")
        self.log.flush()

    def close(self) -> None:
        """The progress bar and the log, closed."""
        self.progress.close()
        self.log.close()
