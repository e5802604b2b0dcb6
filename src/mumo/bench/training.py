"""Training overhead: samples/s of `mumo.train` (Lightning; per-batch stacking, augmentation, logging,
checkpoints) against a minimal hand-written PyTorch loop over the same network, the same batches already
stacked into tensors, the same batch size, the same AdamW (parameter groups, fused kernel) and gradient
clipping. The two take turns, and each side's fastest epoch counts."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mumo.bench.common import GOALS, epoch_seconds, logged, row
from mumo.predictor import Predictor


def train_overhead(
    name: str, raw: dict[str, Any], work: Path, epochs: int, rounds: int
) -> tuple[dict[str, Any], Predictor]:
    """mumo's training throughput against a plain loop on the identical network and batches.

    The two take turns (`rounds` times `epochs` epochs each), and each side's fastest epoch counts:
    on a shared machine other work only ever slows an epoch, and turns spread that noise over both.
    """
    import mumo

    raw = {**raw, "train": {**raw.get("train", {}), "epochs": epochs, "patience": epochs, "progress": False}}
    mumo_epochs: list[float] = []
    plain_epochs: list[float] = []
    waits: list[float] = []
    plain: PlainLoop | None = None
    model: Predictor | None = None
    for turn in range(rounds):
        run = mumo.train(raw, out=work / f"{name}-{turn}", quiet=True)
        mumo_epochs += epoch_seconds(run.path)[1:]  # the first epoch warms up
        waits += logged(run.path, "train/data_wait_share")[1:]
        model = run.model
        assert model is not None
        if plain is None:
            plain = PlainLoop(model)
            plain.epoch()  # warm-up
        plain_epochs += [plain.epoch() for _ in range(epochs)]
    assert plain is not None and model is not None
    wait = statistics.median(waits) if waits else float("nan")
    return row(
        f"training, {name} model ({plain.parameters / 1e6:.1f}M parameters)",
        "a plain PyTorch loop",
        plain.samples / min(mumo_epochs),
        plain.samples / min(plain_epochs),
        "samples/s",
        GOALS["train"],
        samples_per_epoch=plain.samples,
        epochs_timed={"mumo": len(mumo_epochs), "plain": len(plain_epochs)},
        data_wait_share=wait,
        notes=[
            f"{100 * wait:.1f}% of each mumo training epoch is spent between steps (fetching the next batch)"
        ],
    ), model


class PlainLoop:
    """The reference: a fresh copy of the run's network (same seed), the train split stacked into
    batches once (without augmentation), and the textbook step: forward, loss, zero_grad, backward,
    clip, AdamW step."""

    def __init__(self, model: Predictor) -> None:
        from mumo.data.dataset import make_batch
        from mumo.data.table import read_table
        from mumo.training import build_optimizer

        options = model.config.train
        split = model.prepare(read_table(model.config.data.train), with_target=True)
        size = options.batch_size
        steps = len(split) // size  # the training loader drops the last partial batch
        self.samples = steps * size
        torch.manual_seed(options.seed)
        self.task = model.task
        self.network = self.task.build_network(model.config.model, model.processors)
        self.parameters = sum(p.numel() for p in self.network.parameters())
        order = np.random.default_rng(options.seed).permutation(len(split))
        self.batches = []
        for step in range(steps):
            rows = order[step * size : (step + 1) * size]
            items = {c: [values[i] for i in rows] for c, values in split.items.items()}
            targets = [split.targets[i] for i in rows]
            self.batches.append(make_batch(items, model.processors, targets, model.target, train=False))
        self.optimizer = build_optimizer(self.network, options)  # the same AdamW, groups and kernel
        self.clip = options.grad_clip

    def epoch(self) -> float:
        """One pass over the batches; its seconds."""
        self.network.train()
        started = time.perf_counter()
        for batch in self.batches:
            assert batch.target is not None
            loss = self.task.training_loss(self.network, batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.clip:
                torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.clip)
            self.optimizer.step()
        return time.perf_counter() - started


def digits_config(folder: Path) -> dict[str, Any]:
    """A small model: sklearn digits as 64 numeric columns (an MLP encoder each)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    frame = pd.DataFrame(x, columns=[f"p{i}" for i in range(64)])
    frame["label"] = [f"d{v}" for v in y]
    frame.iloc[:1500].to_csv(folder / "digits-train.csv", index=False)
    frame.iloc[1500:].to_csv(folder / "digits-val.csv", index=False)
    return {
        "data": {
            "train": str(folder / "digits-train.csv"),
            "val": str(folder / "digits-val.csv"),
            "target": "label",
        }
    }


def shapes_config(folder: Path, rows: int) -> dict[str, Any]:
    """A medium model: builtin:shapes (image, sound, caption, weight), the default encoders."""
    from mumo.data.builtin import materialize

    shapes = materialize("shapes", rows, 0, out_dir=folder / "shapes")
    return {
        "data": {"train": str(shapes["train"]), "val": str(shapes["val"]), "target": "label"},
        "train": {"batch_size": 64},
    }
