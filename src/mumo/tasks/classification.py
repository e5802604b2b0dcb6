"""task: classification — one label per row from any inputs (binary or multi-class)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from mumo.baseline import LinearBaseline
from mumo.config import TaskOptions
from mumo.data.prepare import Schema, Split
from mumo.data.table import Table
from mumo.data.targets import ClassTarget
from mumo.errors import DataError
from mumo.metrics import classification_metrics, confusion_matrix, per_class_scores
from mumo.report import MAX_CM_CLASSES, confusion_image, note, prf_table
from mumo.tasks.base import TASKS, Direction, Evaluated, ReportSection, SupervisedTask

if TYPE_CHECKING:
    from mumo.predictor import Predictor


class ClassificationOptions(TaskOptions):
    type: Literal["classification"] = "classification"
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the cross-entropy.")


@TASKS.register("classification")
class Classification(SupervisedTask):
    """Cross-entropy on the class logits; predictions are the most likely class and every probability."""

    name = "classification"
    Options = ClassificationOptions
    target_class = ClassTarget
    options: ClassificationOptions
    target: ClassTarget

    @classmethod
    def check_data(cls, schema: Schema, train: Table) -> None:
        labels = {str(v) for v in train.values(schema.targets[0]) if v is not None}
        if len(labels) < 2:
            found = f"only {sorted(labels)[0]!r}" if labels else "no labels"
            raise DataError(
                f"target {schema.targets[0]!r} has {found} in train; classification needs at least two classes",
                file=train.name,
            )

    @classmethod
    def stratify(cls, table: Table, schema: Schema) -> list[Any] | None:
        return table.values(schema.targets[0])

    @property
    def classes(self) -> list[str]:
        return self.target.classes

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), target, label_smoothing=self.options.label_smoothing)

    def outputs(self, logits: Tensor) -> Tensor:
        return logits.float().softmax(-1)  # (B, C) class probabilities

    def metrics(self, targets: Tensor, outputs: Tensor) -> dict[str, float]:
        return classification_metrics(targets.cpu().numpy(), outputs.cpu().double().numpy())

    def directions(self) -> dict[str, Direction]:
        return {"accuracy": "max", "f1_macro": "max", "auroc": "max", "log_loss": "min", "loss": "min"}

    @property
    def main_metric(self) -> str:
        return "accuracy"

    def baseline(self) -> LinearBaseline:
        return LinearBaseline("classes", len(self.classes))

    def rows(self, outputs: Tensor) -> list[dict[str, Any]]:
        results = []
        for values in outputs.tolist():
            probabilities = dict(zip(self.classes, values, strict=True))
            prediction = max(probabilities, key=probabilities.__getitem__)
            results.append({"prediction": prediction, "probabilities": probabilities})
        return results

    def report_sections(
        self, predictor: Predictor, split: Split, table: Table | None, evaluated: Evaluated
    ) -> list[ReportSection]:
        targets = evaluated.details["targets"].numpy()
        probabilities = evaluated.details["outputs"].numpy()
        return [("Classification details", classification_section(targets, probabilities, self.classes))]


def classification_section(y_true: np.ndarray, probs: np.ndarray, class_names: list[str]) -> str:
    """Confusion matrix (as an image, up to MAX_CM_CLASSES classes) and per-class precision/recall/F1."""
    if not len(y_true):
        return note("No rows to show.")
    true = np.asarray(y_true).astype(np.int64).ravel()
    predicted = np.asarray(probs).argmax(axis=1)
    n = len(class_names)
    parts = ["<h3>Confusion matrix</h3>"]
    if n > MAX_CM_CLASSES:
        parts.append(note(f"{n} classes: confusion matrix omitted (shown for at most {MAX_CM_CLASSES})."))
    else:
        parts.append(confusion_image(confusion_matrix(true, predicted, n), class_names))
    onehot = np.eye(n, dtype=bool)
    parts.append("<h3>Per-class scores</h3>")
    parts.append(prf_table(per_class_scores(onehot[true], onehot[predicted]), class_names, "class"))
    return "".join(parts)
