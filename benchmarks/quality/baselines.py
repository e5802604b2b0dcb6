"""Strong simple baselines on raw features: a linear model (logistic regression / ridge, its strength
chosen on val, then refitted on train + val) and gradient-boosted trees (the number of rounds found by
early stopping on val, then refitted on train + val), on each modality alone and on all of them."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score
from threadpoolctl import threadpool_limits

from benchmarks.quality.datasets import Spec
from benchmarks.quality.features import Featurizer, raw_features
from benchmarks.quality.splits import SPLITS

C_GRID = (0.01, 0.1, 1.0, 10.0)
ALPHA_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)
HGB_MAX_ITER = 300
# One thread: on a busy 2-core machine OpenMP's spinning made a 2-thread HGB fit 7x slower than 1 thread.
THREADS = 1
ALL = "all"  # the key of the baseline fitted on every modality side by side


@dataclass
class Splits:
    """Raw features (modality → features) and targets of train, val and test."""

    raw: dict[str, dict[str, Any]]
    target: dict[str, np.ndarray]

    def rows(self, parts: tuple[str, ...]) -> tuple[dict[str, Any], np.ndarray]:
        """Features and targets of several splits one after another (train + val for the refit)."""
        raw = {kind: _stack([self.raw[p][kind] for p in parts]) for kind in self.raw[parts[0]]}
        return raw, np.concatenate([self.target[p] for p in parts])


def load_splits(folder: Path, spec: Spec) -> Splits:
    tables = {split: pd.read_csv(folder / f"{split}.csv", keep_default_na=True) for split in SPLITS}
    dtype = float if spec.task == "regression" else str
    return Splits(
        {split: raw_features(table, folder, spec.inputs) for split, table in tables.items()},
        {split: table[spec.target].to_numpy().astype(dtype) for split, table in tables.items()},
    )


def score(task: str, truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """accuracy for classification; rmse and r2 for regression."""
    if task == "classification":
        return {"accuracy": float(np.mean(truth == predicted))}
    return {
        "rmse": float(np.sqrt(np.mean((truth - predicted) ** 2))),
        "r2": float(r2_score(truth, predicted)),
    }


def main_score(task: str, scores: dict[str, float]) -> float:
    """Higher is better: accuracy, or minus the rmse."""
    return scores["accuracy"] if task == "classification" else -scores["rmse"]


def linear(task: str, data: Splits, modalities: list[str]) -> dict[str, Any]:
    """Logistic regression over C_GRID (or ridge over ALPHA_GRID), picked by val, refitted on train + val."""
    train, val = data.rows(("train",)), data.rows(("val",))
    features = Featurizer(modalities).fit(train[0])
    grid = C_GRID if task == "classification" else ALPHA_GRID
    tried = {}
    for strength in grid:
        model = _linear_model(task, strength).fit(features.transform(train[0]), train[1])
        tried[strength] = score(task, val[1], model.predict(features.transform(val[0])))
    best = max(grid, key=lambda s: main_score(task, tried[s]))
    fit = data.rows(("train", "val"))
    features = Featurizer(modalities).fit(fit[0])
    model = _linear_model(task, best).fit(features.transform(fit[0]), fit[1])
    test = data.rows(("test",))
    name = "C" if task == "classification" else "alpha"
    return {
        "test": score(task, test[1], model.predict(features.transform(test[0]))),
        "val": tried[best],
        name: best,
    }


def boosted(task: str, data: Splits, modalities: list[str]) -> dict[str, Any]:
    """HistGradientBoosting with early stopping on val (10 rounds without gain), refitted on train + val
    for the number of rounds it kept."""
    train, val = data.rows(("train",)), data.rows(("val",))
    features = Featurizer(modalities).fit(train[0])
    model = _boosted_model(task, HGB_MAX_ITER, early_stopping=True)
    seen = np.isin(val[1], train[1]) if task == "classification" else np.ones(len(val[1]), bool)
    stop_on = _dense(features.transform(val[0]))[seen], val[1][seen]  # a class train lacks cannot score
    model.fit(_dense(features.transform(train[0])), train[1], X_val=stop_on[0], y_val=stop_on[1])
    rounds = int(model.n_iter_)
    val_score = score(task, val[1], model.predict(_dense(features.transform(val[0]))))
    fit = data.rows(("train", "val"))
    features = Featurizer(modalities).fit(fit[0])
    model = _boosted_model(task, rounds, early_stopping=False).fit(_dense(features.transform(fit[0])), fit[1])
    test = data.rows(("test",))
    return {
        "test": score(task, test[1], model.predict(_dense(features.transform(test[0])))),
        "val": val_score,
        "rounds": rounds,
    }


BASELINES = {"linear": linear, "hgb": boosted}


def run_baselines(folder: Path, spec: Spec, say: Callable[[str], object] = print) -> dict[str, Any]:
    """{"linear": {modality or "all": result}, "hgb": {...}, "best": {...}}; best is picked by val score,
    so the test split plays no part in choosing it."""
    data = load_splits(folder, spec)
    modalities = spec.modalities()
    groups = [[m] for m in modalities] + ([modalities] if len(modalities) > 1 else [])
    results: dict[str, Any] = {name: {} for name in BASELINES}
    for name, fit in BASELINES.items():
        for group in groups:
            key = group[0] if len(group) == 1 else ALL
            started = time.time()
            with warnings.catch_warnings(), threadpool_limits(THREADS):
                warnings.simplefilter("ignore", ConvergenceWarning)
                results[name][key] = fit(spec.task, data, group) | {"seconds": time.time() - started}
            found = results[name][key]
            chosen = ", ".join(f"{k} {found[k]}" for k in ("C", "alpha", "rounds") if k in found)
            say(
                f"  {spec.name}: {name} on {key} ({chosen}): {_short(found['test'])} ({found['seconds']:.0f} s)"
            )
    candidates = [(name, key) for name in BASELINES for key in results[name]]
    name, key = max(candidates, key=lambda c: main_score(spec.task, results[c[0]][c[1]]["val"]))
    results["best"] = {"model": name, "inputs": key, "test": results[name][key]["test"]}
    return results


def _short(scores: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in scores.items())


def _linear_model(task: str, strength: float) -> LogisticRegression | Ridge:
    return (
        LogisticRegression(C=strength, max_iter=1000) if task == "classification" else Ridge(alpha=strength)
    )


def _boosted_model(task: str, rounds: int, early_stopping: bool) -> Any:
    kind = HistGradientBoostingClassifier if task == "classification" else HistGradientBoostingRegressor
    return kind(max_iter=rounds, early_stopping=early_stopping, n_iter_no_change=10, random_state=0)


def _dense(matrix: Any) -> np.ndarray:
    return matrix.toarray() if hasattr(matrix, "toarray") else matrix


def _stack(parts: list[Any]) -> Any:
    return [text for part in parts for text in part] if isinstance(parts[0], list) else np.concatenate(parts)
