"""task: regression — one or more real-valued targets per row."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from mumo.baseline import LinearBaseline
from mumo.config import TaskOptions
from mumo.data.prepare import Split
from mumo.data.table import Table
from mumo.data.targets import RegressionTarget
from mumo.metrics import regression_metrics
from mumo.report import figure, image_html, note
from mumo.tasks.base import TASKS, Direction, Evaluated, ReportSection, SupervisedTask

if TYPE_CHECKING:
    from mumo.predictor import Predictor


class RegressionOptions(TaskOptions):
    type: Literal["regression"] = "regression"


@TASKS.register("regression")
class Regression(SupervisedTask):
    """Mean squared error on standardized targets; outputs and metrics are in the target's own units."""

    name = "regression"
    Options = RegressionOptions
    target_class = RegressionTarget
    target: RegressionTarget

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(logits.float(), target)

    def outputs(self, logits: Tensor) -> Tensor:
        return self.target.decode(logits.float().cpu())  # (B, K) in target units

    def metrics(self, targets: Tensor, outputs: Tensor) -> dict[str, float]:
        true = self.target.decode(targets.float().cpu())
        return regression_metrics(np.asarray(true), np.asarray(outputs.cpu()))

    def directions(self) -> dict[str, Direction]:
        return {"rmse": "min", "mae": "min", "r2": "max", "loss": "min"}

    @property
    def main_metric(self) -> str:
        return "rmse"

    def baseline(self) -> LinearBaseline:
        return LinearBaseline("values", len(self.target.columns), decode=self.target.decode)

    def rows(self, outputs: Tensor) -> list[dict[str, Any]]:
        """One target: {"prediction": value}; several: {"prediction": {target: value, ...}} (flattened to
        one prediction_<target> column each)."""
        columns = self.target.columns
        if len(columns) == 1:
            return [{"prediction": values[0]} for values in outputs.tolist()]
        return [{"prediction": dict(zip(columns, values, strict=True))} for values in outputs.tolist()]

    def report_sections(
        self, predictor: Predictor, split: Split, table: Table | None, evaluated: Evaluated
    ) -> list[ReportSection]:
        true = self.target.decode(evaluated.details["targets"].float()).numpy()
        predicted = evaluated.details["outputs"].numpy()
        return [("Regression details", residuals_section(true, predicted, self.target.columns))]


def residuals_section(y_true: np.ndarray, y_pred: np.ndarray, names: list[str], shown: int = 6) -> str:
    """Predicted against true, and residuals against predicted, for the first `shown` targets."""
    if not len(y_true):
        return note("No rows to show.")
    true = np.asarray(y_true, dtype=float).reshape(len(y_true), -1)
    predicted = np.asarray(y_pred, dtype=float).reshape(len(y_pred), -1)
    count = min(true.shape[1], shown)
    fig = figure(10, 4 * count)
    for o in range(count):
        t, p = true[:, o], predicted[:, o]
        suffix = f" ({names[o]})" if true.shape[1] > 1 else ""
        left = fig.add_subplot(count, 2, 2 * o + 1)
        left.scatter(t, p, s=10, alpha=0.6, edgecolors="none")
        finite = np.concatenate([t, p])
        finite = finite[np.isfinite(finite)]
        if len(finite):
            lo, hi = float(finite.min()), float(finite.max())
            left.plot([lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=1)
        left.set(xlabel="true", ylabel="predicted", title="Predicted vs true" + suffix)
        left.grid(alpha=0.3)
        right = fig.add_subplot(count, 2, 2 * o + 2)
        right.scatter(p, t - p, s=10, alpha=0.6, edgecolors="none")
        right.axhline(0.0, color="grey", linestyle="--", linewidth=1)
        right.set(xlabel="predicted", ylabel="residual (true - predicted)", title="Residuals" + suffix)
        right.grid(alpha=0.3)
    out = image_html(fig, "residual plots")
    if true.shape[1] > count:
        out += note(f"Showing the first {count} of {true.shape[1]} outputs.")
    return out
