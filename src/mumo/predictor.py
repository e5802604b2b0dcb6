"""A loaded run (`mumo.load`): its processors, network and task, ready to predict on rows of cells.

One Predictor may serve concurrent callers: predict() keeps nothing between calls (timing goes into a
dict the caller passes), and the network is only read.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from mumo.config import Config
from mumo.data.dataset import make_batch
from mumo.data.prepare import Schema, Split, load_split
from mumo.data.table import Table, clean_frame, frame_from_rows, read_table
from mumo.data.targets import TargetProcessor
from mumo.errors import MumoError
from mumo.modalities import Processor
from mumo.rundir import CONFIG, MANIFEST, WEIGHTS, check_loadable, load_preprocess, load_run_config, reading
from mumo.tasks import TASKS, Task

CHUNK = 256  # rows decoded, and run through the network, at a time


@dataclass
class Predictor:
    """A trained network with its processors and task: predicts on rows of cells, as the CLI and a
    server do."""

    config: Config
    schema: Schema
    processors: dict[str, Processor]
    target: TargetProcessor | None
    network: nn.Module
    task: Task
    path: Path | None = None

    def __post_init__(self) -> None:
        self.network.eval()

    @classmethod
    def load(cls, run_dir: str | Path) -> Predictor:
        """Load a finished run, after checking its files against manifest.json; any damage is one line
        naming the file."""
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise MumoError(f"{run_dir}: {'is a file, not' if run_dir.exists() else 'no such'} run folder")
        if (run_dir / MANIFEST).is_file():
            check_loadable(run_dir)  # a run mumo finished: every damage is named by its file
        if not (run_dir / WEIGHTS).is_file():
            partial = run_dir.parent / f".{run_dir.name}.partial"
            hint = " (training did not finish: continue it with --resume)" if partial.is_dir() else ""
            if (run_dir / CONFIG).is_file() and not hint:
                hint = " (training did not finish, or the file was deleted)"
            raise MumoError(f"{run_dir}: not a finished mumo run, {WEIGHTS} is missing{hint}")
        check_loadable(run_dir)
        with reading(run_dir / CONFIG):
            config = load_run_config(run_dir)
        schema, processors, target = load_preprocess(run_dir / "preprocess")
        with reading(run_dir / "preprocess" / "schema.json"):
            task = TASKS.get(schema.task)(config.task, schema.inputs, target)
        with reading(run_dir / CONFIG):
            network = task.build_network(config.model, processors)
        with reading(run_dir / WEIGHTS):
            weights = load_file(str(run_dir / WEIGHTS))
        try:
            network.load_state_dict(weights)
        except RuntimeError as err:
            lines = str(err).splitlines()
            reason = (lines[1] if len(lines) > 1 else lines[0] if lines else "").strip()
            raise MumoError(
                f"{run_dir / WEIGHTS}: does not fit the network {run_dir / CONFIG} describes ({reason[:160]})"
            ) from None
        return cls(config, schema, processors, target, network, task, run_dir)

    @property
    def inputs(self) -> dict[str, str]:
        return self.schema.inputs

    def with_task_options(self, overrides: dict[str, Any]) -> Predictor:
        """The same model with some task options changed for prediction (e.g. a generation run's
        num_beams, do_sample, temperature, num_return_sequences, seed); `overrides` maps option names
        (with or without the `task.` prefix) to values. The network is shared, not copied."""
        from dataclasses import replace

        from mumo.tasks import task_options

        raw = self.config.task.model_dump(mode="json")
        for key, value in overrides.items():
            name = key.removeprefix("task.")
            if name == "type" or name not in raw:
                known = ", ".join(sorted(k for k in raw if k != "type")) or "none"
                raise MumoError(f"--set {key}: not an option of task {self.task.name} (its options: {known})")
            raw[name] = value
        options = task_options(raw)
        task = type(self.task)(options, self.schema.inputs, self.target)
        config = self.config.model_copy(update={"task": options})
        return replace(self, config=config, task=task)

    # ------------------------------------------------------------------------------------- rows in
    def table(
        self, rows: list[dict[str, Any]] | pd.DataFrame | str | Path, base_dir: str | Path | None = None
    ) -> Table:
        if isinstance(rows, str | Path):  # a manifest file: its paths are relative to its folder
            return read_table(rows)
        if not isinstance(rows, pd.DataFrame | list | tuple) or (
            not isinstance(rows, pd.DataFrame) and not all(isinstance(row, dict) for row in rows)
        ):
            raise MumoError(
                f"predict: rows must be a list of dicts, a DataFrame or a manifest path, not {type(rows).__name__}"
            )
        frame = clean_frame(rows) if isinstance(rows, pd.DataFrame) else frame_from_rows(list(rows))
        return Table("input", Path(base_dir or Path.cwd()).resolve(), frame)

    def prepare(self, table: Table, on_error: str = "fail", with_target: bool = False) -> Split:
        """Validated, decoded rows (and the targets, for evaluation)."""
        given = set(table.columns)
        if not any(c in given for c in self.processors) and len(table):
            raise MumoError(
                f"{table.name}: none of the model's input columns are given; inputs: {', '.join(self.processors)}"
            )
        return load_split(table.name, table, self.processors, self.target if with_target else None, on_error)

    # ------------------------------------------------------------------------------------ outputs
    @torch.no_grad()
    def outputs(
        self,
        split: Split,
        batch_size: int = CHUNK,
        absent: Iterable[str] = (),
        timing: dict[str, float] | None = None,
    ) -> Tensor:
        """The task's outputs for every row of a prepared split; the columns in `absent` are treated as
        absent in every row. `timing` gets the seconds spent stacking batches (added to "preprocess")
        and in the network ("forward")."""
        hidden = set(absent)
        chunks = []
        stacking = forward = 0.0
        for start in range(0, len(split), batch_size):
            started = time.perf_counter()
            rows = range(start, min(start + batch_size, len(split)))
            items = {c: [None] * len(rows) if c in hidden else split.take(c, rows) for c in split.items}
            batch = make_batch(items, self.processors, None, None, train=False)
            stacked = time.perf_counter()
            chunks.append(self.task.predict_outputs(self.network, batch))
            stacking, forward = stacking + stacked - started, forward + time.perf_counter() - stacked
        if timing is not None:
            timing["preprocess"] = timing.get("preprocess", 0.0) + stacking
            timing["forward"] = timing.get("forward", 0.0) + forward
        return torch.cat(chunks) if chunks else torch.zeros(0, 0)

    def predict(
        self,
        rows: list[dict[str, Any]] | pd.DataFrame | str | Path,
        base_dir: str | Path | None = None,
        on_error: str = "fail",
        timing: dict[str, float] | None = None,
    ) -> list[dict[str, Any]]:
        """One dict per row (of a list of dicts, a DataFrame, or a manifest file), as the task describes a prediction (classification: `prediction` and
        `probabilities`; regression: `prediction`; matching: `prediction` and `match_probability`; ...).

        A column missing from a row (or an empty cell) is an absent modality. Relative file paths are
        resolved against base_dir (default: the current folder). A dict passed as `timing` gets the
        seconds of this call per phase: preprocess, forward, postprocess.
        """
        started = time.perf_counter()
        table = self.table(rows, base_dir)
        spent = {"preprocess": time.perf_counter() - started, "forward": 0.0}
        chunks = [table]
        if len(table) > CHUNK:
            chunks = [
                table.subset(list(range(i, min(i + CHUNK, len(table))))) for i in range(0, len(table), CHUNK)
            ]
        results, kept_rows = [], []
        for chunk in chunks:  # decoded a chunk at a time: memory stays bounded on a large input
            started = time.perf_counter()
            split = self.prepare(chunk, on_error)
            spent["preprocess"] += time.perf_counter() - started
            outputs = self.outputs(split, CHUNK, timing=spent)
            started = time.perf_counter()
            results += self.task.rows(outputs) if len(split) else []
            kept_rows += split.rows
            spent["postprocess"] = spent.get("postprocess", 0.0) + time.perf_counter() - started
        if len(kept_rows) != len(table):
            kept = dict(zip(kept_rows, results, strict=True))  # rows dropped by on_error=skip
            results = [kept.get(i + 1, self.task.skipped_row()) for i in range(len(table))]
        if timing is not None:
            timing.update(spent)
        return results

    def flatten(self, results: list[dict[str, Any]]) -> pd.DataFrame:
        """Predictions as a table: `row` (1-based) and one column per output, as the task flattens them."""
        return pd.DataFrame([{"row": i + 1, **self.task.flatten(result)} for i, result in enumerate(results)])

    # --------------------------------------------------------------------------- evaluation, embedding
    def evaluate(self, table: Table, on_error: str = "fail") -> dict[str, float]:
        """Metrics on a manifest that has the target column(s) (for pair tasks: the paired columns)."""
        split = self.prepare(table, on_error, with_target=self.target is not None)
        if not len(split):
            raise MumoError(f"{table.name}: no rows left to evaluate")
        return self.task.evaluate(self, split).metrics

    def embed(
        self,
        rows: list[dict[str, Any]] | pd.DataFrame | list[Any],
        column: str,
        base_dir: str | Path | None = None,
        on_error: str = "fail",
    ) -> np.ndarray:
        """Embeddings (N, P) of `column` for rows (dicts, a DataFrame, or bare cells of that column);
        see mumo.embedding.embed."""
        from mumo.embedding import embed

        return embed(self, rows, column, base_dir, on_error)

    def generate(
        self,
        rows: list[dict[str, Any]],
        n: int = 1,
        seed: int | None = None,
        base_dir: str | Path | None = None,
    ) -> list[list[Any]]:
        """An image_generation run: n PIL images per row of inputs (the same seed, the same images)."""
        generate = getattr(self.task, "generate", None)
        if generate is None:
            raise MumoError(f"generate: a {self.task.name} run does not draw images (use predict)")
        return generate(self, rows, n, seed, base_dir)  # type: ignore[no-any-return]

    def zero_shot(
        self,
        rows: list[dict[str, Any]] | pd.DataFrame,
        labels: list[str],
        prompt: str = "{}",
        column: str | None = None,
        base_dir: str | Path | None = None,
        on_error: str = "fail",
    ) -> list[dict[str, Any]]:
        """CLIP-style zero-shot classification; see mumo.embedding.zero_shot."""
        from mumo.embedding import zero_shot

        return zero_shot(self, rows, labels, prompt, column, base_dir, on_error)


def load(run_dir: str | Path) -> Predictor:
    """Reload a finished run in any process; no network, nothing unpickled."""
    return Predictor.load(run_dir)


__all__ = ["Predictor", "load"]
