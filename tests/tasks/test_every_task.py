"""Every registered task, end to end on a small table: build → train → predict → flat columns (through
`mumo predict --out`) → `mumo eval` → its report sections, and every metric with a declared direction."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import mumo
from mumo.cli import main

OTHERS = ["caption", "image", "x", "color", "label", "y", "z", "m1", "m2"]
TINY = {
    "model": {
        "dim": 16,
        "encoders": {
            "caption": {"type": "transformer", "layers": 1, "heads": 2},
            "image": {"type": "cnn", "channels": [8]},
        },
        "head": {"hidden": 16},
    },
    "train": {"epochs": 1, "batch_size": 16, "progress": False},
}
PAIR = {"columns": {"caption": "text", "image": "image"}}
# Per task: its data section (besides the manifests), its task section, the flat prediction columns
# (besides `row`), and a heading its report must have.
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], set[str], str]] = {
    "classification": (
        {"target": "label", "ignore": ["y", "z", "m1", "m2"]},
        {"type": "classification"},
        {"prediction", "prob_blue", "prob_green", "prob_red"},
        "Classification details",
    ),
    "multilabel": (
        {"target": ["m1", "m2"], "ignore": ["label", "y", "z"]},
        {"type": "multilabel"},
        {"prediction", "prob_m1", "prob_m2"},
        "Multilabel details",
    ),
    "regression": (
        {"target": ["y", "z"], "ignore": ["label", "m1", "m2"]},
        {"type": "regression"},
        {"prediction_y", "prediction_z"},
        "Regression details",
    ),
    "contrastive": (
        PAIR,
        {"type": "contrastive", "pairs": [["caption", "image"]]},
        {"similarity"},
        "Example queries",
    ),
    "matching": (
        PAIR,
        {"type": "matching", "pairs": [["caption", "image"]]},
        {"prediction", "match_probability"},
        "Example queries",
    ),
    "image_generation": (
        {"target": "image", "ignore": ["label", "y", "z", "m1", "m2"]},
        {"type": "image_generation"},
        {"generated"},
        "Generated images",
    ),
    "generation": (
        {"target": "caption", "ignore": ["label", "y", "z", "m1", "m2"]},
        {"type": "generation"},
        {"generated"},
        "Generated text",
    ),
}
NUMERIC = {"prob_blue", "prob_green", "prob_red", "prob_m1", "prob_m2", "prediction_y", "prediction_z"}
NUMERIC |= {"similarity", "match_probability"}


def test_importing_mumo_registers_exactly_the_builtin_tasks() -> None:
    """In a fresh process: `import mumo` then mumo.tasks lists all seven; the cases above cover each one
    (a new task needs its line there)."""
    code = "import mumo; print(','.join(mumo.tasks.TASKS.names()))"
    names = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert names.strip().split(",") == sorted(CASES)


@pytest.fixture(scope="module", params=sorted(CASES))
def trained(request: pytest.FixtureRequest, table_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    name = request.param
    data, task, _, _ = CASES[name]
    manifests = {split: str(table_dir / f"{split}.csv") for split in ("train", "val", "test")}
    config = {"name": name, "data": {**manifests, **data}, "task": task, **TINY}
    if data.get("target") in ("caption", "image"):  # not an input: no encoder
        encoders = {c: e for c, e in TINY["model"]["encoders"].items() if c != data["target"]}
        config["model"] = {**TINY["model"], "encoders": encoders, "decoder": {"layers": 1, "heads": 2}}
    out = tmp_path_factory.mktemp(name) / "run"
    return name, mumo.train(config, out=out, quiet=True)


def test_trains_and_declares_every_metric(trained: Any) -> None:
    name, run = trained
    task = run.model.task
    assert task.name == name
    directions = task.directions()
    for split in ("val", "test"):
        assert task.main_metric in run.metrics[split]
        names = {key.removeprefix("baseline/") for key in run.metrics[split]}
        assert names <= set(directions), names - set(directions)
        # a task with a target is compared with its baseline on every metric (image_generation has none:
        # a nearest image has no likelihood to score)
        baseline = {key for key in run.metrics[split] if key.startswith("baseline/")}
        compared = task.target is not None and task.baseline() is not None
        if task.target is not None:  # of the tasks with a target, only image_generation has no baseline
            assert (task.baseline() is None) == (name == "image_generation")
        assert baseline == (
            {f"baseline/{k}" for k in run.metrics[split] if "/" not in k} if compared else set()
        )
    assert set(directions.values()) <= {"min", "max"}
    assert directions["loss"] == "min"
    history = pd.read_csv(run.path / "logs" / "csv" / "metrics.csv")
    assert f"val/{task.main_metric}" in history.columns  # logged while training, watched by checkpoints


def test_report_has_the_tasks_sections(trained: Any) -> None:
    name, run = trained
    report = (run.path / "report.html").read_text()
    assert f"<h2>{CASES[name][3]}</h2>" in report
    assert f"task: {name}" in report


def test_predict_out_writes_one_column_per_output(
    trained: Any, table_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, run = trained
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(run.path), "--data", str(table_dir / "test.csv"), "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert set(frame.columns) == {"row", *CASES[name][2]}
    assert list(frame["row"]) == list(range(1, 31))
    for column in set(frame.columns) & NUMERIC:
        assert pd.api.types.is_float_dtype(frame[column]), (column, frame[column].head())
        assert frame[column].notna().all()
    # the API's rows, flattened by the task, are what the CLI wrote
    rows = run.model.predict(pd.read_csv(table_dir / "test.csv"), base_dir=table_dir)
    api = run.model.flatten(rows)
    assert list(api.columns) == list(frame.columns)
    for column in set(frame.columns) & NUMERIC:
        assert api[column].to_numpy() == pytest.approx(frame[column].to_numpy(), abs=1e-6)


def test_eval_recomputes_the_metrics_of_the_run(trained: Any, capsys: pytest.CaptureFixture[str]) -> None:
    name, run = trained
    capsys.readouterr()
    assert main(["eval", str(run.path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((run.path / "metrics.json").read_text())
    assert set(printed) == {"val", "test"}
    for split in ("val", "test"):  # the model's metrics (the baseline is fitted only while training)
        model = {key: value for key, value in saved[split].items() if not key.startswith("baseline/")}
        assert printed[split] == pytest.approx(model, abs=1e-6, nan_ok=True)
