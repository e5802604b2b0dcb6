"""task: multilabel — several independent 0/1 labels per row (data.target is a list of 0/1 columns)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from mumo.baseline import LinearBaseline
from mumo.config import TaskOptions
from mumo.data.prepare import Split
from mumo.data.table import Table
from mumo.data.targets import MultilabelTarget
from mumo.metrics import multilabel_metrics, per_class_scores
from mumo.report import note, prf_table
from mumo.tasks.base import TASKS, Direction, Evaluated, ReportSection, SupervisedTask

if TYPE_CHECKING:
    from mumo.predictor import Predictor


class MultilabelOptions(TaskOptions):
    type: Literal["multilabel"] = "multilabel"


@TASKS.register("multilabel")
class Multilabel(SupervisedTask):
    """Binary cross-entropy per label; a label is predicted when its probability is at least 0.5."""

    name = "multilabel"
    Options = MultilabelOptions
    target_class = MultilabelTarget
    target: MultilabelTarget

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits.float(), target)

    def outputs(self, logits: Tensor) -> Tensor:
        return logits.float().sigmoid()  # (B, L) label probabilities

    def metrics(self, targets: Tensor, outputs: Tensor) -> dict[str, float]:
        return multilabel_metrics(targets.cpu().numpy(), outputs.cpu().double().numpy())

    def directions(self) -> dict[str, Direction]:
        return {
            "accuracy": "max",
            "subset_accuracy": "max",
            "f1_macro": "max",
            "auroc": "max",
            "log_loss": "min",
            "loss": "min",
        }

    @property
    def main_metric(self) -> str:
        return "f1_macro"

    def baseline(self) -> LinearBaseline:
        return LinearBaseline("labels", len(self.target.columns))

    def rows(self, outputs: Tensor) -> list[dict[str, Any]]:
        results = []
        for values in outputs.tolist():
            probabilities = dict(zip(self.target.columns, values, strict=True))
            labels = [name for name, p in probabilities.items() if p >= 0.5]
            results.append({"prediction": labels, "probabilities": probabilities})
        return results

    def report_sections(
        self, predictor: Predictor, split: Split, table: Table | None, evaluated: Evaluated
    ) -> list[ReportSection]:
        targets = evaluated.details["targets"].numpy()
        probabilities = evaluated.details["outputs"].numpy()
        return [("Multilabel details", multilabel_section(targets, probabilities, self.target.columns))]


def multilabel_section(y_true: np.ndarray, probs: np.ndarray, labels: list[str]) -> str:
    if not len(y_true):
        return note("No rows to show.")
    true = np.asarray(y_true).astype(bool).reshape(len(y_true), -1)
    predicted = (np.asarray(probs) >= 0.5).reshape(len(probs), -1)
    return "<h3>Per-label scores (threshold 0.5)</h3>" + prf_table(
        per_class_scores(true, predicted), labels, "label"
    )
