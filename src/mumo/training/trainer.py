"""The Lightning Trainer with mumo's callbacks, checkpoints without pickle, and fit(): a task's network
trained on its loaders, the best checkpoint's weights left in the network."""

from __future__ import annotations

import csv
import io
import logging
import math
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import Tensor, nn

from mumo.config import Config, TrainConfig
from mumo.distributed import EveryRowOnce, first_process
from mumo.errors import ConfigError
from mumo.io import atomic_path, write_bytes, write_text
from mumo.tasks import Task
from mumo.training.budget import Plan, TimeBudget, plan
from mumo.training.module import TrainingModule, uses_gradcache


class SafeCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written atomically and loaded with weights_only=True: nothing is unpickled."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(
        self, path: _PATH, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


def load_weights(path: Path, prefix: str = "model.") -> dict[str, Tensor]:
    """The network's tensors from a Lightning checkpoint, without unpickling anything."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def monitor_for(task: Task, train: TrainConfig, network: nn.Module | None = None) -> tuple[str | None, str]:
    """The logged value that selects checkpoints and stops early, and its direction: the task's main
    metric by default, else train.monitor, whose direction the task declares; None: the last epoch's
    model is kept and nothing stops early (train.monitor: last, or the task's choice for `network`)."""
    if train.monitor == "last" or (not train.monitor and network is not None and task.keeps_last(network)):
        return None, "min"
    if not train.monitor:
        return "val/selection", task.directions()[task.main_metric]
    name = train.monitor.removeprefix("val/")
    directions = task.directions()
    if name not in directions:
        raise ConfigError(
            f"train.monitor: {train.monitor!r} is not a metric of task {task.name}; "
            f"choose one of {', '.join(sorted(directions))}, or last"
        )
    return f"val/{name}", directions[name]


def build_trainer(
    run_dir: Path,
    train: TrainConfig,
    monitor: str | None,
    mode: str,
    steps_per_epoch: int,
    manual: bool,
    budget: Plan,
    extra: list[L.Callback] | None = None,
) -> tuple[L.Trainer, ModelCheckpoint]:
    """`manual`: the module steps the optimizer and clips itself (GradCache); `budget`: epochs, patience
    and time limit. checkpoints/last.ckpt is every epoch's (what --resume continues from; Lightning's
    save_last writes it only when the best one changes); best.ckpt the best by `monitor` (None: the
    last is the one kept)."""
    last = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False
    )
    callbacks: list[L.Callback] = [last, LearningRateMonitor(logging_interval="epoch")]
    checkpoint = last
    if monitor is not None:
        checkpoint = ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="best",
            monitor=monitor,
            mode=mode,
            save_top_k=1,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        )
        callbacks += [checkpoint, EarlyStopping(monitor=monitor, mode=mode, patience=budget.patience)]
    if budget.time_limit:
        callbacks.append(TimeBudget(budget.time_limit, steps_per_epoch))
    callbacks += extra or []
    fancy = train.progress and sys.stderr.isatty()
    if train.progress:
        callbacks.append(RichProgressBar(leave=True) if fancy else PlainProgress())
    loggers = [
        KeepingCSVLogger(save_dir=run_dir, name="logs", version="csv"),
        TensorBoardLogger(save_dir=run_dir, name="logs", version="tensorboard", default_hp_metric=False),
    ]
    try:
        trainer = L.Trainer(
            default_root_dir=run_dir,
            max_epochs=budget.epochs,
            max_time=timedelta(seconds=budget.time_limit) if budget.time_limit else None,
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
    except (ValueError, MisconfigurationException) as err:  # Lightning's checks of the devices it is given
        raise ConfigError(
            f"train: Lightning refuses accelerator={train.accelerator}, devices={train.devices}, "
            f"strategy={train.strategy}, num_nodes={train.num_nodes}, precision={train.precision}: "
            + " ".join(str(err).split())
        ) from None
    return trainer, checkpoint


def check_distributed(task: Task, config: Config, manual: bool) -> None:
    """What does not run on several processes yet, said before the processes start."""
    if manual:
        raise ConfigError(
            "train.accumulate: GradCache (a contrastive batch larger than memory) runs in one process; "
            "with several devices, raise train.batch_size instead (negatives are gathered from every rank)"
        )


def fit(
    config: Config,
    run_dir: Path,
    network: nn.Module,
    task: Task,
    loaders: dict[str, Any],
    resume: bool,
    quiet: bool,
    callbacks: list[L.Callback] | None = None,
) -> nn.Module:
    """Lightning fit; returns the network holding the best checkpoint's weights (on rank zero)."""
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    manual = uses_gradcache(task, config.train)  # one optimizer step per (big) batch
    monitor, mode = monitor_for(task, config.train, network)
    last = run_dir / "checkpoints" / "last.ckpt"
    if resume:
        keep_logged_rows(run_dir / "logs" / "csv" / "metrics.csv", last)
    rank_zero = first_process()
    if not resume:
        talk = rank_zero and not quiet and config.train.progress
        task.before_fit(network, lambda: loaders["train"], config.train, _say if talk else None)
    with quiet_lightning(run_dir / "logs" / "warnings.txt" if rank_zero else None, quiet):
        options = config.train.model_copy(update={"progress": False}) if quiet else config.train
        processes = 1
        while True:  # once more when Lightning says it runs several processes: each sees 1/n of the batches
            steps_per_epoch = math.ceil(len(loaders["train"]) / processes)
            if not manual:
                steps_per_epoch = math.ceil(steps_per_epoch / config.train.accumulate)
            budget = plan(config.train, steps_per_epoch)
            trainer, checkpoint = build_trainer(
                run_dir, options, monitor, mode, steps_per_epoch, manual, budget, callbacks or []
            )
            if trainer.world_size == processes:
                break
            processes = trainer.world_size
            if options.strategy in ("auto", "ddp"):
                # A batch may lack a modality, and then its encoder gets no gradient on that step.
                options = options.model_copy(update={"strategy": "ddp_find_unused_parameters_true"})
        if processes > 1:
            check_distributed(task, config, manual)
            sampler = loaders["val"].sampler
            if isinstance(sampler, EveryRowOnce):
                sampler.shard = True  # each rank scores its share of the val rows
        module = TrainingModule(network, task, config.train, total_steps=steps_per_epoch * budget.epochs)
        handler = signal.getsignal(signal.SIGINT)
        try:
            trainer.fit(module, loaders["train"], loaders["val"], ckpt_path=str(last) if resume else None)
        finally:  # Lightning ignores SIGINT after an interrupt; the process (and its children) keep Ctrl-C
            if handler is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, handler)
    best = Path(checkpoint.best_model_path) if checkpoint.best_model_path else last
    if trainer.global_rank == 0:
        network.load_state_dict(load_weights(best))
    network.eval()
    return network


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextmanager
def quiet_lightning(log: Path | None, quiet: bool = False) -> Iterator[None]:
    """Lightning's and PyTorch's start-up chatter and warnings are not printed raw: they go to `log`
    (logs/warnings.txt), and one line says how many there were; dropped where `log` is None (the
    processes after the first of a distributed run)."""
    names = ["lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning"]
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for n, level in levels.items():
                logging.getLogger(n).setLevel(level)
            seen = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
            if seen and log is not None:
                previous = log.read_text() if log.is_file() else ""
                write_text(log, previous + "".join(f"{line}\n" for line in seen))
                if not quiet:
                    print(f"({len(seen)} warnings from the training libraries: {log})", file=sys.stderr)


class KeepingCSVLogger(CSVLogger):
    """Lightning's CSV logger deletes an existing metrics.csv when it starts; this one appends to it
    (keep_logged_rows has already trimmed it to the epochs a resumed run keeps)."""

    @property
    def experiment(self) -> Any:
        if self._experiment is not None:
            return self._experiment
        path = Path(self.log_dir) / "metrics.csv"
        kept = path.read_bytes() if path.is_file() else None
        writer = super().experiment
        if kept is not None and self._experiment is not None:  # rank zero: the writer removed the file
            write_bytes(path, kept)
            with open(path, newline="") as handle:
                writer.metrics_keys = sorted(next(csv.reader(handle), []))
        return writer


def keep_logged_rows(path: Path, checkpoint: Path) -> None:
    """Before resuming: the log rows of epochs the checkpoint has finished stay; rows of the epoch that
    was cut short go (it is trained again)."""
    if not path.is_file() or not checkpoint.is_file():
        return
    finished = int(torch.load(checkpoint, map_location="cpu", weights_only=True).get("epoch", -1))
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = [row for row in reader if row.get("epoch") and float(row["epoch"]) <= finished]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


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
