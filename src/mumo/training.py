"""Lightning wrapping: the LightningModule, checkpoints without pickle, and the Trainer with its callbacks."""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import Tensor, nn

from mumo.config import TrainConfig
from mumo.data.dataset import Batch
from mumo.tasks import Task, uses_gradcache


class LitModel(L.LightningModule):
    """Trains a MultimodalModel on a Task; logs train/loss, val/loss and val/<metric>."""

    def __init__(self, model: nn.Module, task: Task, train: TrainConfig, total_steps: int) -> None:
        super().__init__()
        self.model, self.task, self.options, self.total_steps = model, task, train, total_steps
        # Contrastive with accumulation: one big-batch loss via GradCache, so the optimizer is stepped here.
        self.gradcache = uses_gradcache(task.name, train)
        self.automatic_optimization = not self.gradcache
        self._val_outputs: list[Tensor] = []
        self._val_targets: list[Tensor] = []
        self._epoch_started: float | None = None
        self._step_ended: float | None = None
        self._between_steps = 0.0

    def forward(self, batch: Batch) -> Tensor:
        return self.model(batch)

    # Wall time of the training part of each epoch (data + steps, without validation): train/epoch_seconds;
    # and the share of it spent between steps, mostly waiting for the next batch: train/data_wait_share.
    def on_train_epoch_start(self) -> None:
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
        if self.gradcache:
            loss = self._gradcache_step(batch)
        else:
            loss = self.task.training_loss(self.model, batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch))
        return loss

    def _gradcache_step(self, batch: Batch) -> Tensor:
        """Contrastive loss over batch_size * accumulate rows, backpropagated batch_size rows at a time."""
        from mumo.contrastive import gradcache_loss

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
        self.log("val/loss", loss, on_epoch=True, batch_size=len(batch))
        self._val_outputs.append(outputs.detach().cpu())
        self._val_targets.append(targets.detach().cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        outputs, targets = torch.cat(self._val_outputs), torch.cat(self._val_targets)
        if self.trainer.world_size > 1:  # every rank scores the whole val set
            outputs = torch.as_tensor(self.all_gather(outputs)).flatten(0, 1).cpu()
            targets = torch.as_tensor(self.all_gather(targets)).flatten(0, 1).cpu()
        metrics = self.task.metrics(targets, outputs)
        name, mode = self.task.main_metric
        for key, value in metrics.items():
            if math.isfinite(value):
                self.log(f"val/{key}", value, prog_bar=key == name, sync_dist=False)
        # Checkpoint selection: the main metric, ties broken by the val loss (lower is better).
        main = metrics.get(name, float("nan"))
        if math.isfinite(main):
            tiebreak = 1e-6 * float(self.trainer.callback_metrics.get("val/loss", 0.0))
            self.log("val/selection", main - tiebreak if mode == "max" else main + tiebreak)
        self._val_outputs.clear()
        self._val_targets.clear()

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.model, self.options)
        warmup = int(self.options.warmup * self.total_steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup, self.total_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

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


def build_optimizer(model: nn.Module, options: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with no weight decay on biases, norms, embeddings and absent-input vectors, and a
    learning-rate multiple per parameter where a pretrained encoder asks for one (lr_scale, layer-wise
    decay). Fused (one kernel for all parameters) where torch has it: on a CPU model with many small
    tensors the per-tensor loop is a large share of each step."""
    scales: dict[str, float] = {}
    for column, encoder in getattr(model, "encoders", {}).items():
        if hasattr(encoder, "lr_scales"):
            scales.update({f"encoders.{column}.{k}": v for k, v in encoder.lr_scales().items()})
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        plain = param.ndim < 2 or name.startswith("absent") or "norm" in name or "embed" in name
        groups.setdefault((plain, scales.get(name, 1.0)), []).append(param)
    params = [p for group in groups.values() for p in group]
    # Not with mixed precision: Lightning's AMP plugin refuses to clip a fused optimizer's gradients.
    fused = "mixed" not in options.precision and all(
        type(p.data) is torch.Tensor and p.device.type in ("cpu", "cuda") for p in params
    )
    return torch.optim.AdamW(
        [
            {
                "params": group,
                "weight_decay": 0.0 if plain else options.weight_decay,
                "lr": options.lr * scale,
            }
            for (plain, scale), group in sorted(groups.items(), key=lambda kv: kv[0])
        ],
        lr=options.lr,
        fused=fused or None,
    )


class WarmupCosine:
    """Linear warmup to the peak rate, then cosine decay to 0 (a class, so the scheduler state pickles cleanly)."""

    def __init__(self, warmup: int, total: int) -> None:
        self.warmup, self.total = warmup, max(total, 1)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))


class SafeCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written atomically and loaded with weights_only=True: nothing is unpickled."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            torch.save(checkpoint, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load_checkpoint(
        self, path: _PATH, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


def load_weights(path: Path, prefix: str = "model.") -> dict[str, Tensor]:
    """The model's tensors from a Lightning checkpoint, without unpickling anything."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def build_trainer(
    run_dir: Path, train: TrainConfig, monitor: str, mode: str, steps_per_epoch: int = 10, task: str = ""
) -> tuple[L.Trainer, ModelCheckpoint]:
    manual = uses_gradcache(task, train)  # LitModel steps the optimizer and clips itself
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        save_last=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    callbacks: list[L.Callback] = [
        checkpoint,
        EarlyStopping(monitor=monitor, mode=mode, patience=train.patience),
        LearningRateMonitor(logging_interval="epoch"),
    ]
    fancy = train.progress and sys.stderr.isatty()
    if train.progress:
        callbacks.append(RichProgressBar(leave=True) if fancy else PlainProgress())
    loggers = [
        CSVLogger(save_dir=run_dir, name="logs", version="csv"),
        TensorBoardLogger(save_dir=run_dir, name="logs", version="tensorboard", default_hp_metric=False),
    ]
    trainer = L.Trainer(
        default_root_dir=run_dir,
        max_epochs=train.epochs,
        max_time=timedelta(minutes=train.max_minutes) if train.max_minutes else None,
        accelerator=train.accelerator,
        devices=train.devices,
        strategy=train.strategy,
        num_nodes=train.num_nodes,
        precision=train.precision,
        gradient_clip_val=None if manual else train.grad_clip or None,
        accumulate_grad_batches=1 if manual else train.accumulate,
        callbacks=callbacks,
        logger=loggers,
        plugins=[SafeCheckpointIO()],
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(10, steps_per_epoch)),
        enable_progress_bar=fancy,
        enable_model_summary=False,
        deterministic=False,
    )
    return trainer, checkpoint


class PlainProgress(L.Callback):
    """One line per epoch when output is not a terminal (CI logs, files): no control characters."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        names = {"train/loss_epoch": "train/loss"}
        metrics = {
            names.get(k, k): float(v)
            for k, v in trainer.callback_metrics.items()
            if k in ("train/loss_epoch", "train/epoch_seconds")
            or (k.startswith("val/") and k != "val/selection")
        }
        shown = "  ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
        print(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  {shown}", file=sys.stderr, flush=True)
