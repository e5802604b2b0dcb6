"""A saved run reloads in a fresh process and predicts exactly what the model at the end of training did."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import mumo
from conftest import run_cli
from mumo.errors import MumoError


def test_fresh_process_predicts_same_probabilities(shapes_dir: Path, tmp_path: Path) -> None:
    config = {
        "data": {
            "train": str(shapes_dir / "train.csv"),
            "val": str(shapes_dir / "val.csv"),
            "target": "label",
        },
        "model": {"dim": 32},
        "train": {"epochs": 2, "batch_size": 32, "progress": False},
    }
    run = mumo.train(config, out=tmp_path / "run", quiet=True)
    assert run.model is not None
    rows = pd.read_csv(shapes_dir / "test.csv").drop(columns=["label"])
    rows.loc[0, "image"] = None  # an absent image must round-trip too
    in_memory = run.model.predict(rows, base_dir=shapes_dir)

    manifest = shapes_dir / "test.csv"
    damaged = tmp_path / "test.csv"
    frame = pd.read_csv(manifest)
    frame["image"] = [str(shapes_dir / p) for p in frame["image"]]
    frame["sound"] = [str(shapes_dir / p) for p in frame["sound"]]
    frame.loc[0, "image"] = None
    frame.to_csv(damaged, index=False)
    result = run_cli("predict", str(run.path), "--data", str(damaged), "--out", str(tmp_path / "p.jsonl"))
    assert result.returncode == 0, result.stderr
    reloaded = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]

    assert len(reloaded) == len(in_memory) == len(frame)
    classes = list(in_memory[0]["probabilities"])
    for before, after in zip(in_memory, reloaded, strict=True):
        for name in classes:
            assert abs(before["probabilities"][name] - after[f"prob_{name}"]) < 1e-6
        assert before["prediction"] == after["prediction"]


def test_load_in_process_matches_training_model(shapes_dir: Path, tmp_path: Path) -> None:
    config = {
        "data": {
            "train": str(shapes_dir / "train.csv"),
            "val": str(shapes_dir / "val.csv"),
            "target": "label",
        },
        "model": {"dim": 16, "encoders": {"caption": {"type": "gru"}}},
        "train": {"epochs": 1, "batch_size": 32, "progress": False},
    }
    run = mumo.train(config, out=tmp_path / "run", quiet=True)
    assert run.model is not None
    rows = pd.read_csv(shapes_dir / "test.csv").drop(columns=["label"]).head(8)
    first = run.model.predict(rows, base_dir=shapes_dir)
    second = mumo.load(run.path).predict(rows, base_dir=shapes_dir)
    for a, b in zip(first, second, strict=True):
        assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]) < 1e-6
    # a manifest path works as its rows do (paths relative to its folder); other things are one clear error
    from_file = mumo.load(run.path).predict(shapes_dir / "test.csv")
    assert [r["prediction"] for r in from_file[:8]] == [r["prediction"] for r in first]
    for bad, named in ((rows.iloc[0].to_dict(), "dict"), (["a.png"], "list"), (3, "int")):
        with pytest.raises(
            MumoError, match=f"rows must be a list of dicts, a DataFrame or a manifest path, not {named}"
        ):
            run.model.predict(bad)  # type: ignore[arg-type]
