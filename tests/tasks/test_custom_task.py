"""A task defined and registered in this file alone works end to end: config, training, report, reload,
predict, flat columns, evaluation. This is the proof that adding a task is a one-file change."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

import mumo
from mumo.cells import CellError, as_number
from mumo.config import TaskOptions
from mumo.data.targets import TargetProcessor
from mumo.tasks import TASKS, SupervisedTask
from mumo.tasks.base import Direction


# ---------------------------------------------------------------------------- the task (one file)
class SignOptions(TaskOptions):
    type: Literal["sign"] = "sign"
    threshold: float = Field(0.0, description="A target above this is positive.")


class SignTarget(TargetProcessor):
    """A numeric target as 1.0 (above the threshold) or 0.0."""

    threshold = 0.0

    def encode(self, values: list[Any]) -> list[float]:
        number = as_number(values[0])
        if number is None:
            raise CellError(f"target {values[0]!r} is not a number")
        return [float(number > self.threshold)]

    def stack(self, encoded: list[Any]) -> Tensor:
        return torch.tensor(encoded, dtype=torch.float32)

    @property
    def out_dim(self) -> int:
        return 1


@TASKS.register("sign")
class Sign(SupervisedTask):
    """Is the target above a threshold? One logit, binary cross-entropy."""

    name = "sign"
    Options = SignOptions
    target_class = SignTarget

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits.float(), target)

    def outputs(self, logits: Tensor) -> Tensor:
        return logits.float().sigmoid()

    def metrics(self, targets: Tensor, outputs: Tensor) -> dict[str, float]:
        return {"accuracy": float(((outputs >= 0.5).float() == targets).float().mean())}

    def directions(self) -> dict[str, Direction]:
        return {"accuracy": "max", "loss": "min"}

    @property
    def main_metric(self) -> str:
        return "accuracy"

    def rows(self, outputs: Tensor) -> list[dict[str, Any]]:
        return [{"positive": p >= 0.5, "probability": p} for (p,) in outputs.tolist()]


# ---------------------------------------------------------------------------------------- the test
def test_a_task_registered_in_a_test_file_trains_reloads_and_predicts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=600), "b": rng.normal(size=600)})
    frame["t"] = frame["a"] - frame["b"] + rng.normal(0, 0.1, size=600)
    for name, part in (("train", frame[:400]), ("val", frame[400:500]), ("test", frame[500:])):
        part.to_csv(tmp_path / f"{name}.csv", index=False)
    config = {
        "data": {
            "train": str(tmp_path / "train.csv"),
            "val": str(tmp_path / "val.csv"),
            "test": str(tmp_path / "test.csv"),
            "target": "t",
        },
        "task": {"type": "sign", "threshold": 0.0},
        "model": {"dim": 16},
        "train": {"epochs": 15, "batch_size": 32, "progress": False},
    }
    run = mumo.train(config, out=tmp_path / "run", quiet=True)
    assert run.metrics["test"]["accuracy"] > 0.9
    assert "threshold: 0.0" in (run.path / "config.yaml").read_text()
    assert "task: sign" in (run.path / "report.html").read_text()

    model = mumo.load(run.path)  # a fresh load goes through the registry, config and run folder
    rows = model.predict([{"a": 2.0, "b": -1.0}, {"a": -2.0, "b": 1.0}, {"a": 1.0}])
    assert [r["positive"] for r in rows[:2]] == [True, False]
    flat = model.flatten(rows)
    assert list(flat.columns) == ["row", "positive", "probability"]
    test = pd.read_csv(tmp_path / "test.csv")
    assert model.evaluate(model.table(test, tmp_path)) == run.metrics["test"]
