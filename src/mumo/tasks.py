"""Task heads' losses, outputs and metrics: classification, multilabel, regression."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn

from mumo.config import TaskConfig
from mumo.data.dataset import Batch
from mumo.data.targets import ClassTarget, RegressionTarget, TargetProcessor
from mumo.metrics import MAIN_METRIC, classification_metrics, multilabel_metrics, regression_metrics
from mumo.registry import Registry

TASKS: Registry[type[Task]] = Registry("a task")


class Task:
    """Loss on logits, logits → user-facing outputs, outputs → metrics."""

    name = ""

    def __init__(self, options: TaskConfig, target: TargetProcessor) -> None:
        self.options, self.target = options, target

    @property
    def out_dim(self) -> int:
        return self.target.out_dim

    @property
    def main_metric(self) -> tuple[str, str]:
        """(metric name, 'max' or 'min')."""
        return MAIN_METRIC[self.name]

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def outputs(self, logits: Tensor) -> Tensor:
        raise NotImplementedError

    def training_loss(self, model: nn.Module, batch: Batch) -> Tensor:
        assert batch.target is not None
        return self.loss(model(batch), batch.target)

    def predict_logits(self, model: nn.Module, batch: Batch) -> Tensor:
        """What outputs() turns into predictions (a matching model scores each row's own pair)."""
        return model(batch)

    def eval_step(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """(loss, outputs, targets) of a validation batch; metrics() gets the outputs and targets."""
        assert batch.target is not None
        logits = model(batch)
        return self.loss(logits, batch.target), self.outputs(logits), batch.target

    def metrics(self, target: Tensor, outputs: Tensor) -> dict[str, float]:
        raise NotImplementedError


@TASKS.register("classification")
class Classification(Task):
    name = "classification"

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), target, label_smoothing=self.options.label_smoothing)

    def outputs(self, logits: Tensor) -> Tensor:
        return logits.float().softmax(-1)  # (B, C) class probabilities

    def metrics(self, target: Tensor, outputs: Tensor) -> dict[str, float]:
        return classification_metrics(target.cpu().numpy(), outputs.cpu().double().numpy())

    @property
    def classes(self) -> list[str]:
        assert isinstance(self.target, ClassTarget)
        return self.target.classes


@TASKS.register("multilabel")
class Multilabel(Task):
    name = "multilabel"

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits.float(), target)

    def outputs(self, logits: Tensor) -> Tensor:
        return logits.float().sigmoid()  # (B, L) label probabilities

    def metrics(self, target: Tensor, outputs: Tensor) -> dict[str, float]:
        return multilabel_metrics(target.cpu().numpy(), outputs.cpu().double().numpy())


@TASKS.register("regression")
class Regression(Task):
    """Trained on standardized targets; outputs and metrics are in the target's own units."""

    name = "regression"

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(logits.float(), target)

    def outputs(self, logits: Tensor) -> Tensor:
        assert isinstance(self.target, RegressionTarget)
        return self.target.decode(logits.float().cpu())  # (B, K) in target units

    def metrics(self, target: Tensor, outputs: Tensor) -> dict[str, float]:
        assert isinstance(self.target, RegressionTarget)
        true = self.target.decode(target.float().cpu())
        return regression_metrics(np.asarray(true), np.asarray(outputs.cpu()))


def uses_gradcache(task: str, train: Any) -> bool:
    """Contrastive training with train.accumulate > 1 accumulates GradCache-style (see contrastive.py)."""
    return task == "contrastive" and train.accumulate > 1


def build_task(options: TaskConfig, target: TargetProcessor) -> Task:
    return TASKS.get(options.type, key="task.type")(options, target)


__all__ = ["TASKS", "Classification", "Multilabel", "Regression", "Task", "build_task"]
