"""A run directory and the Model it reloads into: preprocess/ + config.yaml + model.safetensors → predict()."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from mumo.config import Config, load_config
from mumo.data.dataset import make_batch
from mumo.data.prepare import Schema, Split, load_split
from mumo.data.table import Table, clean_frame
from mumo.data.targets import ClassTarget, MultilabelTarget, RegressionTarget, TargetProcessor, restore_target
from mumo.errors import MumoError
from mumo.modalities import PROCESSORS, Processor
from mumo.modalities.base import write_json
from mumo.model import MultimodalModel, build_model
from mumo.tasks import Task, build_task

WEIGHTS = "model.safetensors"


def column_folder(column: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in column) or "_"


def save_preprocess(
    folder: Path, schema: Schema, processors: dict[str, Processor], target: TargetProcessor | None
) -> None:
    """preprocess/: schema.json, target.json, and <column>/processor.json (+ tokenizer.json) per input."""
    folders = {column: column_folder(column) for column in processors}
    meta = {
        "inputs": [[column, kind] for column, kind in schema.inputs.items()],  # a list: order is the model's
        "targets": schema.targets,
        "task": schema.task,
        "folders": folders,
    }
    write_json(folder / "schema.json", meta)
    if target is not None:
        write_json(folder / "target.json", target.state())
    for column, processor in processors.items():
        processor.save(folder / folders[column])


def load_preprocess(folder: Path) -> tuple[Schema, dict[str, Processor], TargetProcessor | None]:
    meta = json.loads((folder / "schema.json").read_text())
    inputs = {column: kind for column, kind in meta["inputs"]}
    schema = Schema(inputs=inputs, targets=meta["targets"], task=meta["task"])
    processors: dict[str, Processor] = {}
    for column, kind in schema.inputs.items():
        saved = json.loads((folder / meta["folders"][column] / "processor.json").read_text())
        processor = PROCESSORS.get(saved.get("processor", kind))(column)
        processor.restore(folder / meta["folders"][column])
        processors[column] = processor
    target_file = folder / "target.json"
    target = restore_target(json.loads(target_file.read_text())) if target_file.is_file() else None
    return schema, processors, target


def save_weights(network: torch.nn.Module, path: Path) -> None:
    """Atomic safetensors export of the model's weights."""
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}, str(tmp))
    tmp.replace(path)


@dataclass
class Model:
    """A trained model with its processors: predicts on rows of cells, as the CLI and server do."""

    config: Config
    schema: Schema
    processors: dict[str, Processor]
    target: TargetProcessor | None
    network: MultimodalModel
    path: Path | None = None
    task: Task = field(init=False)

    def __post_init__(self) -> None:
        assert self.target is not None, "a predicting model needs its target processor"
        self.task = build_task(self.config.task, self.target)
        self.network.eval()

    @classmethod
    def load(cls, run_dir: str | Path) -> Model:
        run_dir = Path(run_dir)
        if not (run_dir / WEIGHTS).is_file():
            hint = (
                " (training did not finish: continue it with --resume)"
                if (run_dir / "config.yaml").is_file()
                else ""
            )
            raise MumoError(f"{run_dir}: not a finished mumo run, {WEIGHTS} is missing{hint}")
        config = load_config(run_dir / "config.yaml")
        schema, processors, target = load_preprocess(run_dir / "preprocess")
        assert target is not None
        network = build_model(config.model, schema.inputs, processors, target.out_dim)
        network.load_state_dict(load_file(str(run_dir / WEIGHTS)))
        return cls(config, schema, processors, target, network, run_dir)

    @property
    def inputs(self) -> dict[str, str]:
        return self.schema.inputs

    # ------------------------------------------------------------------------------ prediction
    def table(self, rows: list[dict[str, Any]] | pd.DataFrame, base_dir: str | Path | None = None) -> Table:
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        return Table("input", Path(base_dir or Path.cwd()).resolve(), clean_frame(frame))

    def prepare(self, table: Table, on_error: str = "fail", with_target: bool = False) -> Split:
        known = [c for c in self.processors if c in table.columns]
        if not known and len(table):
            raise MumoError(
                f"{table.name}: none of the model's input columns are given; inputs: {', '.join(self.processors)}"
            )
        return load_split(table.name, table, self.processors, self.target if with_target else None, on_error)

    @torch.no_grad()
    def outputs(self, split: Split, batch_size: int = 256, absent: Iterable[str] = ()) -> Tensor:
        """Task outputs (class probabilities / values) for every row of a prepared split; the columns
        in `absent` are treated as absent in every row."""
        hidden = set(absent)
        chunks = []
        for start in range(0, len(split), batch_size):
            items = {
                c: [None] * len(values[start : start + batch_size])
                if c in hidden
                else values[start : start + batch_size]
                for c, values in split.items.items()
            }
            batch = make_batch(items, self.processors, None, None, train=False)
            chunks.append(self.task.outputs(self.network(batch)))
        if not chunks:
            return torch.zeros(0, self.task.out_dim)
        return torch.cat(chunks)

    def predict(
        self,
        rows: list[dict[str, Any]] | pd.DataFrame,
        base_dir: str | Path | None = None,
        on_error: str = "fail",
    ) -> list[dict[str, Any]]:
        """One dict per row: `prediction`, and `probabilities` per class for classification.

        A column missing from a row (or an empty cell) is an absent modality. Relative file paths are
        resolved against base_dir (default: the current folder).
        """
        split = self.prepare(self.table(rows, base_dir), on_error)
        outputs = self.outputs(split)
        results = [self.describe(row) for row in outputs]
        if len(split) == len(rows):
            return results
        kept = dict(zip(split.rows, results, strict=True))  # rows dropped by on_error=skip get None
        return [kept.get(i + 1, {"prediction": None, "skipped": True}) for i in range(len(rows))]

    def contribution(self, split: Split) -> dict[str, Any]:
        """The main metric with all inputs, with each input absent, and with only that input present."""
        assert self.target is not None
        name, mode = self.task.main_metric
        targets = self.target.stack(split.targets)

        def score(absent: Iterable[str]) -> float:
            return self.task.metrics(targets, self.outputs(split, absent=absent))[name]

        columns = list(self.processors)
        return {
            "split": split.name,
            "metric": name,
            "higher_is_better": mode == "max",
            "all": score(()),
            "without": {c: score([c]) for c in columns},
            "only": {c: score([o for o in columns if o != c]) for c in columns},
        }

    def describe(self, output: Tensor) -> dict[str, Any]:
        values = [float(v) for v in output]
        if isinstance(self.target, ClassTarget):
            probs = dict(zip(self.target.classes, values, strict=True))
            return {"prediction": max(probs, key=probs.__getitem__), "probabilities": probs}
        if isinstance(self.target, MultilabelTarget):
            probs = dict(zip(self.target.columns, values, strict=True))
            return {"prediction": [k for k, p in probs.items() if p >= 0.5], "probabilities": probs}
        assert isinstance(self.target, RegressionTarget)
        if len(values) == 1:
            return {"prediction": values[0]}
        return {"prediction": dict(zip(self.target.columns, values, strict=True))}

    def evaluate(self, table: Table, on_error: str = "fail") -> tuple[dict[str, float], Split, Tensor]:
        """Metrics on a manifest that has the target column(s)."""
        split = self.prepare(table, on_error, with_target=True)
        if not len(split):
            raise MumoError(f"{table.name}: no rows left to evaluate")
        assert self.target is not None
        outputs = self.outputs(split)
        metrics = self.task.metrics(self.target.stack(split.targets), outputs)
        return {k: (v if math.isfinite(v) else float("nan")) for k, v in metrics.items()}, split, outputs


@dataclass
class Run:
    """What mumo.train returns: where the run is, its metrics, and the trained model."""

    path: Path
    metrics: dict[str, dict[str, float]]
    model: Model | None = None
    issues: list[Any] = field(default_factory=list)


def load(run_dir: str | Path) -> Model:
    """Reload a finished run in any process; no network, nothing unpickled."""
    return Model.load(run_dir)
