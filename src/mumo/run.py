"""A run directory and the Model it reloads into: preprocess/ + config.yaml + model.safetensors → predict()."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from mumo.config import Config, load_config
from mumo.data.dataset import make_batch
from mumo.data.prepare import Schema, Split, load_split
from mumo.data.table import Table, clean_frame, frame_from_rows
from mumo.data.targets import ClassTarget, MultilabelTarget, RegressionTarget, TargetProcessor, restore_target
from mumo.errors import MumoError
from mumo.modalities import PROCESSORS, Processor
from mumo.modalities.base import length_order, write_json
from mumo.model import build_model, module_key
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


PAIR_TASKS = ("contrastive", "matching")  # no target: the data are pairs of columns


def build_network(
    config: Config, schema: Schema, processors: dict[str, Processor], target: TargetProcessor | None
) -> tuple[nn.Module, Task]:
    """The network and task a run's config describes (MultimodalModel, or ContrastiveModel)."""
    if schema.task == "contrastive":
        from mumo.contrastive import build_contrastive

        return build_contrastive(config.model, config.task, schema.inputs, processors)
    if schema.task == "matching":
        from mumo.matching import build_matching

        return build_matching(config.model, config.task, schema.inputs, processors)
    if target is None:
        raise MumoError("no target: set data.target (or --target COLUMN)")
    network = build_model(config.model, schema.inputs, processors, target.out_dim)
    return network, build_task(config.task, target)


def inherit_processors(processors: dict[str, Processor], schema: Schema, run_dir: Path) -> list[str]:
    """model.init_from: the columns this model shares with the run (same name and kind) take its fitted
    processors, so their encoders see inputs exactly as they were pretrained. Returns those columns."""
    if not (run_dir / WEIGHTS).is_file():
        raise MumoError(f"model.init_from: {run_dir} is not a finished mumo run ({WEIGHTS} is missing)")
    source, source_processors, _ = load_preprocess(run_dir / "preprocess")
    shared = [c for c, kind in schema.inputs.items() if source.inputs.get(c) == kind]
    if not shared:
        raise MumoError(
            f"model.init_from: {run_dir} shares no input column with this data "
            f"(its inputs: {', '.join(source.inputs)}; these: {', '.join(schema.inputs)})"
        )
    for column in shared:
        processors[column] = source_processors[column]
    return shared


def init_from_run(network: nn.Module, run_dir: str | Path) -> str:
    """Copy the run's encoder weights into the network's encoders of the same columns."""
    weights = load_file(str(Path(run_dir) / WEIGHTS))
    loaded = []
    for key, encoder in network.encoders.items():  # type: ignore[union-attr,operator]
        prefix = f"encoders.{key}."
        state = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        if state:
            encoder.load_state_dict(state)
            loaded.append(key)
    return f"model.init_from: encoders of {', '.join(loaded) or 'no column'} loaded from {run_dir}"


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
    network: nn.Module
    task: Task
    path: Path | None = None
    # Seconds spent by the latest predict() in each phase: preprocess (read and decode cells, stack
    # batches), forward (the network and the task's output function), postprocess (one dict per row).
    last_timing: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
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
        network, task = build_network(config, schema, processors, target)
        network.load_state_dict(load_file(str(run_dir / WEIGHTS)))
        return cls(config, schema, processors, target, network, task, run_dir)

    @property
    def inputs(self) -> dict[str, str]:
        return self.schema.inputs

    # ------------------------------------------------------------------------------ prediction
    def table(self, rows: list[dict[str, Any]] | pd.DataFrame, base_dir: str | Path | None = None) -> Table:
        frame = clean_frame(rows) if isinstance(rows, pd.DataFrame) else frame_from_rows(list(rows))
        return Table("input", Path(base_dir or Path.cwd()).resolve(), frame)

    def prepare(self, table: Table, on_error: str = "fail", with_target: bool = False) -> Split:
        given = set(table.columns)
        known = [c for c in self.processors if c in given]
        if not known and len(table):
            raise MumoError(
                f"{table.name}: none of the model's input columns are given; inputs: {', '.join(self.processors)}"
            )
        return load_split(table.name, table, self.processors, self.target if with_target else None, on_error)

    @torch.no_grad()
    def outputs(
        self,
        split: Split,
        batch_size: int = 256,
        absent: Iterable[str] = (),
        timing: dict[str, float] | None = None,
    ) -> Tensor:
        """Task outputs (class probabilities / values) for every row of a prepared split; the columns
        in `absent` are treated as absent in every row. `timing` gets the seconds spent stacking batches
        (added to "preprocess") and in the network ("forward")."""
        hidden = set(absent)
        chunks = []
        stacking = forward = 0.0
        for start in range(0, len(split), batch_size):
            started = time.perf_counter()
            items = {
                c: [None] * len(values[start : start + batch_size])
                if c in hidden
                else values[start : start + batch_size]
                for c, values in split.items.items()
            }
            batch = make_batch(items, self.processors, None, None, train=False)
            stacked = time.perf_counter()
            chunks.append(self.task.outputs(self.task.predict_logits(self.network, batch)))
            stacking, forward = stacking + stacked - started, forward + time.perf_counter() - stacked
        if timing is not None:
            timing["preprocess"] = timing.get("preprocess", 0.0) + stacking
            timing["forward"] = timing.get("forward", 0.0) + forward
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
        resolved against base_dir (default: the current folder). The seconds spent per phase are left
        in `last_timing`.
        """
        started = time.perf_counter()
        table = self.table(rows, base_dir)
        timing = {"preprocess": time.perf_counter() - started, "forward": 0.0}
        size = 256
        chunks = [table]
        if len(table) > size:
            chunks = [
                table.subset(list(range(i, min(i + size, len(table))))) for i in range(0, len(table), size)
            ]
        outputs, kept_rows = [], []
        for chunk in chunks:  # decoded a chunk at a time: memory stays bounded on a large input
            started = time.perf_counter()
            split = self.prepare(chunk, on_error)
            timing["preprocess"] += time.perf_counter() - started
            outputs.append(self.outputs(split, size, timing=timing))
            kept_rows += split.rows
        started = time.perf_counter()
        results = [self.describe(row) for row in torch.cat(outputs).tolist()]
        if len(kept_rows) != len(rows):
            kept = dict(zip(kept_rows, results, strict=True))  # rows dropped by on_error=skip get None
            results = [kept.get(i + 1, {"prediction": None, "skipped": True}) for i in range(len(rows))]
        timing["postprocess"] = time.perf_counter() - started
        self.last_timing = timing
        return results

    # ------------------------------------------------------------------------------- embeddings
    @torch.no_grad()
    def embed_split(self, split: Split, column: str, batch_size: int = 256) -> np.ndarray:
        """(N, P) L2-normalized embeddings of one column for every row of a prepared split; NaN rows where
        the cell is absent. Needs a contrastive run."""
        network = self._embedder(column)
        width = int(network.projections[module_key(column)].out_features)  # type: ignore[index,union-attr]
        cells = split.items[column]
        order = length_order(cells)  # batches of similar length pad less
        out = np.zeros((len(cells), width), np.float32)
        for start in range(0, len(cells), batch_size):
            rows = order[start : start + batch_size]
            items = {column: [cells[i] for i in rows]}
            batch = make_batch(items, {column: self.processors[column]}, None, None, train=False)
            out[rows] = network.embed_batch(batch)[column].cpu().numpy()  # type: ignore[operator]
        return out

    def embed(
        self,
        rows: list[dict[str, Any]] | pd.DataFrame | list[Any],
        column: str,
        base_dir: str | Path | None = None,
        on_error: str = "fail",
    ) -> np.ndarray:
        """Embeddings (N, P) of `column` for rows (dicts, a DataFrame, or bare cells of that column)."""
        if isinstance(rows, list) and rows and not isinstance(rows[0], dict):
            rows = [{column: cell} for cell in rows]
        self._embedder(column)
        table = self.table(rows, base_dir)
        split = load_split(table.name, table, {column: self.processors[column]}, None, on_error)
        return self.embed_split(split, column)

    def _embedder(self, column: str) -> nn.Module:
        if not hasattr(self.network, "embed_batch"):
            raise MumoError(
                f"{self.path}: embeddings need a contrastive run (task: contrastive); this is {self.task.name}"
            )
        if column not in self.processors:
            raise MumoError(
                f"--column: {column!r} is not embedded by this run; columns: {', '.join(self.processors)}"
            )
        return self.network

    def zero_shot(
        self,
        rows: list[dict[str, Any]] | pd.DataFrame,
        labels: list[str],
        prompt: str = "{}",
        column: str | None = None,
        base_dir: str | Path | None = None,
        on_error: str = "fail",
    ) -> list[dict[str, Any]]:
        """Classify each row's `column` by its similarity to the text prompts made from `labels`
        (CLIP-style zero-shot). The prompts go through the text column paired with `column`."""
        item_column, text_column = self._zero_shot_columns(column)
        if not labels:
            raise MumoError("--labels: give at least one label, e.g. --labels 'red circle,blue square'")
        if "{}" not in prompt:
            raise MumoError(
                f"--prompt {prompt!r}: needs {{}} where the label goes, e.g. 'a picture of a {{}}'"
            )
        prompts = self.embed([prompt.format(label) for label in labels], text_column)
        items = self.embed(rows, item_column, base_dir, on_error)
        scale = float(self.network.scale.detach()) if hasattr(self.network, "scale") else 100.0  # type: ignore[operator]
        results: list[dict[str, Any]] = []
        for vector in items:
            if np.isnan(vector).any():
                results.append({"prediction": None, "absent": item_column})
                continue
            logits = scale * (prompts @ vector)
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            results.append(
                {
                    "prediction": labels[int(np.argmax(probs))],
                    "probabilities": {label: float(p) for label, p in zip(labels, probs, strict=True)},
                }
            )
        return results

    def _zero_shot_columns(self, column: str | None) -> tuple[str, str]:
        self._embedder(next(iter(self.processors)))
        for left, right in self.task.pairs:  # type: ignore[attr-defined]
            for item, text in ((left, right), (right, left)):
                if self.schema.inputs[text] == "text" and column in (None, item):
                    return item, text
        raise MumoError(
            f"--zero-shot: needs a pair of a text column with {column or 'another column'}; "
            f"this run's pairs: {self.task.pairs}"  # type: ignore[attr-defined]
        )

    def retrieval(self, split: Split) -> dict[str, float]:
        """Retrieval metrics of every trained pair on a prepared split (rows that have both columns); a
        matching run adds its match accuracy and AUROC against the hardest negatives."""
        from mumo.contrastive import pair_retrieval_metrics

        if self.task.name == "matching":
            from mumo.matching import split_metrics

            return split_metrics(self, split)

        embeddings = {c: self.embed_split(split, c) for c in self.processors}
        return pair_retrieval_metrics(embeddings, self.task.pairs)  # type: ignore[attr-defined]

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

    def describe(self, values: list[float]) -> dict[str, Any]:
        """One row's task outputs as the result dict predict() returns."""
        if self.task.name == "matching":
            if math.isnan(values[0]):
                return {"prediction": None, "match_probability": None}
            return {"prediction": values[0] >= 0.5, "match_probability": values[0]}
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
        """Metrics on a manifest that has the target column(s) (a contrastive run: its paired columns)."""
        if self.task.name in PAIR_TASKS:
            split = self.prepare(table, on_error)
            return self.retrieval(split), split, torch.zeros(0)
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
