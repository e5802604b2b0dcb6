"""TrainingModule: the Lightning wrapper that trains a task's network (loss, validation metrics,
optimizer and schedule, epoch timing)."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from mumo.config import TrainConfig
from mumo.data.dataset import Batch
from mumo.distributed import gather_rows
from mumo.tasks import Task
from mumo.training.optim import WarmupCosine, build_optimizer

WORST = 1e30  # val/selection of an epoch whose main metric is not a number


def uses_gradcache(task: Task, train: TrainConfig) -> bool:
    """A task that asks for GradCache gets it when train.accumulate > 1: one optimizer step per big batch."""
    return task.gradcache and train.accumulate > 1


class TrainingModule(L.LightningModule):
    """Trains `network` on `task`; logs train/loss, val/loss, val/<metric> and val/selection (the main
    metric, ties broken by the val loss), the value checkpoints and early stopping watch."""

    def __init__(self, network: nn.Module, task: Task, train: TrainConfig, total_steps: int) -> None:
        super().__init__()
        # `model` is the attribute name checkpoints store the network's weights under ("model.<key>").
        self.model, self.task, self.options, self.total_steps = network, task, train, total_steps
        self.gradcache = uses_gradcache(task, train)
        self.automatic_optimization = not self.gradcache  # GradCache steps the optimizer itself
        self._val_outputs: list[Tensor] = []
        self._val_targets: list[Tensor] = []
        self._val_losses: list[Tensor] = []  # per row, its batch's loss
        self._epoch_started: float | None = None
        self._step_ended: float | None = None
        self._between_steps = 0.0

    def forward(self, batch: Batch) -> Tensor:
        return self.model(batch)

    # Wall time of the training part of each epoch (data + steps, without validation): train/epoch_seconds;
    # and the share of it spent between steps, mostly waiting for the next batch: train/data_wait_share.
    def on_train_epoch_start(self) -> None:
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        set_epoch = getattr(dataset, "set_epoch", None)
        if callable(set_epoch):  # a streamed table: its row groups are shuffled per epoch
            set_epoch(self.current_epoch)
        self._epoch_started = self._step_ended = time.perf_counter()
        self._between_steps = 0.0

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._step_ended is not None:
            self._between_steps += time.perf_counter() - self._step_ended

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._step_ended = time.perf_counter()

    def on_validation_epoch_start(self) -> None:
        if not self.trainer.sanity_checking:
            self._log_epoch_time()

    def on_train_epoch_end(self) -> None:
        self._log_epoch_time()  # when there was no validation this epoch

    def _log_epoch_time(self) -> None:
        if self._epoch_started is None:
            return
        seconds = time.perf_counter() - self._epoch_started
        self.log("train/epoch_seconds", seconds)
        self.log("train/data_wait_share", self._between_steps / max(seconds, 1e-9))
        self._epoch_started = self._step_ended = None

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss = self._gradcache_step(batch) if self.gradcache else self.task.training_loss(self.model, batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch))
        auxiliary = getattr(self.model, "auxiliary_loss", lambda: None)()  # model.align's, when on
        if auxiliary is None:
            return loss
        self.log("train/align_loss", auxiliary, on_step=False, on_epoch=True, batch_size=len(batch))
        return loss + auxiliary

    def _gradcache_step(self, batch: Batch) -> Tensor:
        """The loss over batch_size * accumulate rows, backpropagated batch_size rows at a time."""
        from mumo.training.gradcache import gradcache_loss

        optimizer: Any = self.optimizers()
        schedule: Any = self.lr_schedulers()
        optimizer.zero_grad()
        loss = gradcache_loss(self.model, batch, self.options.batch_size, self.manual_backward)  # type: ignore[arg-type]
        if self.options.grad_clip:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.options.grad_clip, gradient_clip_algorithm="norm"
            )
        optimizer.step()
        schedule.step()
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, outputs, targets = self.task.eval_step(self.model, batch)
        self._val_losses.append(loss.detach().float().cpu().reshape(1).expand(len(batch)))
        self._val_outputs.append(outputs.detach().cpu())
        self._val_targets.append(targets.detach().cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        # Every rank scores the whole val set, each row once (EveryRowOnce split it without padding), so
        # that checkpointing and early stopping decide the same on every rank.
        outputs, targets, losses = gather_rows(
            torch.cat(self._val_outputs), torch.cat(self._val_targets), torch.cat(self._val_losses)
        )
        self.log("val/loss", losses.mean(), sync_dist=False)  # the batches' losses, weighed by their rows
        metrics = self.task.metrics(targets, outputs)
        name = self.task.main_metric
        for key, value in metrics.items():
            if math.isfinite(value):
                self.log(f"val/{key}", value, prog_bar=key == name, sync_dist=False)
        # Checkpoint selection: the main metric, ties broken by the val loss (lower is better). A metric
        # that is not finite (a diverged model, a split too small to score) counts as the worst value.
        main, higher = metrics.get(name, float("nan")), self.task.directions()[name] == "max"
        loss = float(losses.mean())
        tiebreak = 1e-6 * loss if math.isfinite(loss) else 0.0
        if not math.isfinite(main):
            main, tiebreak = (-WORST if higher else WORST), 0.0
        self.log("val/selection", main - tiebreak if higher else main + tiebreak)
        for kept in (self._val_outputs, self._val_targets, self._val_losses):
            kept.clear()

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.model, self.options)
        # Kept, so that a time budget can stretch or shorten the schedule once it knows the epochs.
        self.schedule = WarmupCosine(self.options.warmup, self.total_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if not isinstance(batch, Batch):
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        if device.type == "cpu":  # the loader builds batches there: nothing to move (and ~130 calls saved)
            return batch
        return Batch(
            inputs={c: {k: v.to(device) for k, v in d.items()} for c, d in batch.inputs.items()},
            presence={c: p.to(device) for c, p in batch.presence.items()},
            target=batch.target.to(device) if batch.target is not None else None,
        )
