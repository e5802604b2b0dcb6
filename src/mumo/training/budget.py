"""How long training runs: epochs from the data size (about train.steps optimizer steps), patience from
the epochs, and a time budget (train.time_limit) that the epochs and the learning-rate schedule are
fitted to once the first epoch has shown how fast this machine trains this model."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import lightning as L

from mumo.config import TrainConfig, seconds

MIN_EPOCHS, MAX_EPOCHS = 10, 300
# train.steps: auto — one optimizer step per training row, within these bounds. Measured on the quality
# suite: the relational datasets (2,800 rows) were still improving at 1,500 steps and reached their best
# near 3,000; the digits (1,260 rows) had converged by 1,500.
MIN_STEPS, MAX_STEPS = 1500, 3000


@dataclass
class Plan:
    epochs: int
    patience: int
    time_limit: float | None  # seconds


def step_budget(train: TrainConfig, steps_per_epoch: int) -> int:
    """train.steps, or with auto one step per training row (batches x batch size), 1500 to 3000."""
    if train.steps != "auto":
        return int(train.steps)
    rows = steps_per_epoch * train.batch_size * train.accumulate
    return min(MAX_STEPS, max(MIN_STEPS, rows))


def plan(train: TrainConfig, steps_per_epoch: int) -> Plan:
    """The epochs (and patience) a run starts with; a time limit may shorten them after one epoch."""
    if train.epochs == "auto":
        wanted = step_budget(train, steps_per_epoch)
        epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(wanted / max(1, steps_per_epoch))))
    else:
        epochs = int(train.epochs)
    # auto: half the epochs. On the relational datasets validation accuracy sat on a plateau for 10-15
    # epochs before it rose again; a quarter of the epochs (16 of 64) stopped one run there at 0.74
    # where the same run given room reached 0.86.
    patience = max(5, round(epochs / 2)) if train.patience == "auto" else int(train.patience)
    return Plan(epochs, patience, seconds(train.time_limit) if train.time_limit else None)


class TimeBudget(L.Callback):
    """After the first epoch: the epochs that fit in what is left of the time limit (with room for the
    final evaluation), and a learning-rate schedule that ends with them."""

    def __init__(self, limit: float, steps_per_epoch: int) -> None:
        self.limit, self.steps_per_epoch = limit, steps_per_epoch
        self.started = time.monotonic()
        self.fitted = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.monotonic()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.fitted or trainer.sanity_checking:
            return
        self.fitted = True
        done = trainer.current_epoch + 1
        per_epoch = (time.monotonic() - self.started) / done
        fits = max(done, int(0.95 * self.limit / max(per_epoch, 1e-6)))
        epochs = min(trainer.fit_loop.max_epochs or fits, fits)
        trainer.fit_loop.max_epochs = epochs
        schedule: Any = getattr(pl_module, "schedule", None)  # the module's WarmupCosine
        if schedule is not None:
            schedule.total = max(1, epochs * self.steps_per_epoch)
