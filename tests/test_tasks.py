"""Every task trains end to end on generated data and beats chance by a clear margin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mumo


def _write(tmp_path: Path, frame: pd.DataFrame) -> dict[str, str]:
    n = len(frame)
    parts = {
        "train": frame.iloc[: int(0.7 * n)],
        "val": frame.iloc[int(0.7 * n) : int(0.85 * n)],
        "test": frame.iloc[int(0.85 * n) :],
    }
    paths = {}
    for name, part in parts.items():
        paths[name] = str(tmp_path / f"{name}.csv")
        part.to_csv(paths[name], index=False)
    return paths


def _features(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    frame["color"] = rng.choice(["red", "green", "blue"], size=n)
    return frame


FAST = {"train": {"epochs": 15, "batch_size": 32, "progress": False}, "model": {"dim": 16}}


def test_regression_learns_a_linear_function(tmp_path: Path) -> None:
    frame = _features(600, 0)
    shift = frame["color"].map({"red": 1.0, "green": 0.0, "blue": -1.0})
    frame["y"] = (
        3 * frame["x1"] - 2 * frame["x2"] + shift + np.random.default_rng(1).normal(0, 0.1, len(frame))
    )
    paths = _write(tmp_path, frame)
    run = mumo.train({"data": {**paths, "target": "y"}, **FAST}, out=tmp_path / "run", quiet=True)
    assert run.model is not None and run.model.task.name == "regression"
    assert run.metrics["test"]["r2"] > 0.9
    assert run.metrics["test"]["rmse"] < 1.0
    prediction = run.model.predict([{"x1": 1.0, "x2": 0.0, "color": "green"}])[0]["prediction"]
    assert abs(prediction - 3.0) < 1.0  # outputs are in the target's own units


def test_multilabel_learns_two_labels(tmp_path: Path) -> None:
    frame = _features(600, 2)
    frame["positive"] = (frame["x1"] > 0).astype(int)
    frame["red"] = (frame["color"] == "red").astype(int)
    paths = _write(tmp_path, frame)
    run = mumo.train(
        {"data": {**paths, "target": ["positive", "red"]}, **FAST}, out=tmp_path / "run", quiet=True
    )
    assert run.model is not None and run.model.task.name == "multilabel"
    assert run.metrics["test"]["f1_macro"] > 0.85
    assert set(run.metrics["test"]) >= {"accuracy", "f1_macro", "auroc", "log_loss"}
    result = run.model.predict([{"x1": 2.0, "x2": 0.0, "color": "red"}])[0]
    assert sorted(result["prediction"]) == ["positive", "red"]


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_binary_classification(tmp_path: Path, precision: str) -> None:
    frame = _features(600, 3)
    frame["label"] = np.where(frame["x1"] + frame["x2"] > 0, "yes", "no")
    paths = _write(tmp_path, frame)
    config = {"data": {**paths, "target": "label"}, **FAST}
    run = mumo.train(config, {"train.precision": precision}, out=tmp_path / "run", quiet=True)
    assert run.metrics["test"]["accuracy"] > 0.9
    assert run.metrics["test"]["auroc"] > 0.95
    probabilities = run.model.predict([{"x1": 2.0, "x2": 2.0, "color": "blue"}])[0]["probabilities"]  # type: ignore[union-attr]
    assert set(probabilities) == {"no", "yes"} and probabilities["yes"] > 0.9
