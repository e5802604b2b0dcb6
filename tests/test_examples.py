"""Every YAML under examples/ parses and trains (one epoch on a small copy of its data); `mumo train
CONFIG.yaml` and `mumo demo` succeed from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import mumo
from conftest import REPO, run_cli
from mumo.config import build_config, load_raw

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_config_trains(path: Path, tmp_path: Path) -> None:
    raw = load_raw(path)
    overrides = {"train.epochs": 1, "train.progress": False, "data.builtin.n": 60}
    config = build_config(raw, overrides, source=str(path))
    run = mumo.train(config, out=tmp_path / "run", quiet=True)
    assert run.model is not None
    main = run.model.task.main_metric
    assert main in run.metrics["val"]
    assert (run.path / "model.safetensors").is_file()


def test_train_from_a_yaml_config_on_the_command_line(table_dir: Path, tmp_path: Path) -> None:
    config = {
        "name": "from-yaml",
        "data": {"train": str(table_dir / "train.csv"), "val": str(table_dir / "val.csv"), "target": "label",
                 "ignore": ["y", "z", "m1", "m2"]},
        "model": {"dim": 16},
        "train": {"epochs": 8, "batch_size": 16},
    }  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_cli("train", str(path), "--out", str(tmp_path / "run"), "--set", "train.progress=false")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val"]["accuracy"] > 0.6  # three colours, told by caption, image and category (chance 1/3)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (
        saved["name"] == "from-yaml"
        and saved["train"]["epochs"] == 8
        and saved["task"]
        == {
            "type": "classification",
            "label_smoothing": 0.0,
        }
    )


def test_demo_runs_with_a_small_n(tmp_path: Path) -> None:
    result = run_cli("demo", "--out", str(tmp_path / "demo"), "--n", "80", "--epochs", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    compare = json.loads((tmp_path / "demo" / "compare.json").read_text())
    names = [variant["name"] for variant in compare["variants"]]
    assert names == [
        "fusion: concat",
        "only image (image)",
        "only sound (audio)",
        "only caption (text)",
        "only weight (numeric)",
    ]
    assert (Path(compare["variants"][0]["runs"][0]) / "model.safetensors").is_file()
    assert "fused accuracy" in result.stdout
