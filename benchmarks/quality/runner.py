"""One dataset through the suite: build (or reuse) it, fit the baselines, train default mumo."""

from __future__ import annotations

import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.quality.baselines import main_score, run_baselines
from benchmarks.quality.datasets import DATASETS, Spec, folder_for, materialize
from benchmarks.quality.splits import SPLITS
from mumo.bench.common import console, epoch_seconds


def run_dataset(
    name: str, seed: int, overrides: dict[str, Any], baselines: bool = True, mumo: bool = True
) -> dict[str, Any]:
    """Everything measured on one dataset, as plain values for the JSON."""
    spec = DATASETS[name]
    reused = (folder_for(spec, seed) / "train.csv").is_file()
    started = time.time()
    folder = materialize(name, seed)
    result: dict[str, Any] = {
        "task": spec.task,
        "folder": str(folder),
        "generate_seconds": None if reused else time.time() - started,
        "rows": {split: len(pd.read_csv(folder / f"{split}.csv", usecols=[spec.target])) for split in SPLITS},
    }
    console.print(f"{name}: {'reused' if reused else f'generated in {time.time() - started:.0f} s'} {folder}")
    if baselines:
        result["baselines"] = run_baselines(folder, spec, say=console.print)
    if mumo:
        result["mumo"] = train_mumo(spec, folder, overrides)
    if "test" in result.get("mumo", {}) and baselines:
        best = result["baselines"]["best"]["test"]
        metric = "accuracy" if spec.task == "classification" else "rmse"
        result["mumo_minus_best"] = {metric: result["mumo"]["test"][metric] - best[metric]}
        result["mumo_beats_best"] = main_score(spec.task, result["mumo"]["test"]) > main_score(
            spec.task, best
        )
    return result


def train_mumo(spec: Spec, folder: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """mumo.train with nothing but the data (and --set overrides); the run is written to a temp folder.
    A failure is recorded, not raised, so one broken dataset does not lose the others' results."""
    import mumo

    config = {
        "name": f"quality-{spec.name}",
        "data": {**{split: str(folder / f"{split}.csv") for split in SPLITS}, "target": spec.target},
    }
    with tempfile.TemporaryDirectory(prefix="mumo-quality-") as tmp:
        console.print(f"  {spec.name}: training mumo (defaults{', ' + str(overrides) if overrides else ''})")
        started = time.time()
        try:
            run = mumo.train(config, overrides, out=Path(tmp) / "run", quiet=True)
        except Exception as err:  # a benchmark keeps going; the error is in the JSON and on screen
            console.print(f"  {spec.name}: mumo failed: {type(err).__name__}: {err}")
            return {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
        seconds = time.time() - started
        epochs = len(epoch_seconds(run.path))
    test = {k: float(v) for k, v in run.metrics.get("test", {}).items() if isinstance(v, int | float)}
    shown = ", ".join(f"{k} {test[k]:.3f}" for k in ("accuracy", "rmse", "r2") if k in test)
    console.print(f"  {spec.name}: mumo {shown} ({seconds:.0f} s, {epochs} epochs)")
    return {"test": test, "metrics": run.metrics, "seconds": seconds, "epochs": epochs}
