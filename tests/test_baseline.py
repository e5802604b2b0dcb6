"""Every run fits a linear model on cheap raw features beside the deep model, writes its scores as
baseline/<metric> and says so when the deep model does not beat it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mumo
from mumo.cli import main


def _write(tmp_path: Path, frame: pd.DataFrame) -> dict[str, str]:
    paths = {}
    for name, part in (("train", frame[:300]), ("val", frame[300:400]), ("test", frame[400:])):
        paths[name] = str(tmp_path / f"{name}.csv")
        part.to_csv(paths[name], index=False)
    return paths


def test_baseline_matches_a_linear_rule_and_the_report_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500)})
    frame["label"] = np.where(frame["a"] - 0.5 * frame["b"] > 0, "yes", "no")  # linear: the baseline's home
    paths = _write(tmp_path, frame)
    config = {"data": {**paths, "target": "label"}, "model": {"dim": 8}, "train": {"epochs": 1, "lr": 1e-5}}
    run = mumo.train(config, out=tmp_path / "run", quiet=False)
    assert run.metrics["test"]["baseline/accuracy"] > 0.9  # plain scikit-learn LogisticRegression: 0.93
    assert run.metrics["test"]["accuracy"] < run.metrics["test"]["baseline/accuracy"]  # one epoch at lr 1e-5
    assert "warning: the linear baseline on raw features (test accuracy" in capsys.readouterr().err
    report = (run.path / "report.html").read_text()
    assert "<h2>Baseline</h2>" in report and "<b>Warning:</b>" in report


def test_baseline_uses_images_text_and_sound(shapes_dir: Path, tmp_path: Path) -> None:
    """builtin:shapes: the label is shape (from the image or the caption) x pitch (from the sound)."""
    config = {
        "data": {k: str(shapes_dir / f"{k}.csv") for k in ("train", "val", "test")} | {"target": "label"},
        "model": {"dim": 8},
        "train": {"epochs": 1},
    }
    run = mumo.train(config, out=tmp_path / "run", quiet=True)
    assert (
        run.metrics["val"]["baseline/accuracy"] >= 0.3
    )  # 8 classes: chance 0.125 (0.4 here; 0.56 on 1000 rows)
    only_image = mumo.train(
        config, {"data.ignore": ["sound", "caption", "weight"]}, out=tmp_path / "i", quiet=True
    )
    assert only_image.metrics["val"]["baseline/accuracy"] < run.metrics["val"]["baseline/accuracy"]


def test_regression_baseline_is_in_target_units_and_can_be_switched_off(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=500)})
    frame["y"] = 1000 + 50 * frame["a"] + rng.normal(0, 1, 500)
    paths = _write(tmp_path, frame)
    config = {"data": {**paths, "target": "y"}, "model": {"dim": 8}, "train": {"epochs": 1}}
    run = mumo.train(config, out=tmp_path / "run", quiet=True)
    assert run.metrics["test"]["baseline/rmse"] < 2.0  # ridge fits 1000 + 50 a within the noise
    assert run.metrics["test"]["baseline/r2"] > 0.99
    code = main(["train", "--train", paths["train"], "--val", paths["val"], "--target", "y", "--out",
                 str(tmp_path / "off"), "--set", "train.baseline=false", "--set", "train.epochs=1", "--quiet"])  # fmt: skip
    assert code == 0
    assert not any(k.startswith("baseline/") for k in mumo.load(tmp_path / "off").evaluate(
        mumo.load(tmp_path / "off").table(pd.read_csv(paths["val"]), tmp_path)))  # fmt: skip
    import json

    assert "baseline/rmse" not in json.loads((tmp_path / "off" / "metrics.json").read_text())["val"]
