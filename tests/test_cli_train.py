"""The happy paths of the command line and the Python API: train → run directory → eval → predict.

DESIGN.md §2 "CLI", "Run directory" and "Python API". Every training is tiny (tiny_overrides) and
each run is trained once per module and shared by the tests that read it.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

import mumo
from conftest import run_cli, tiny_overrides
from mumo.cli import main
from mumo.config import load_config, parse_overrides

RUN_FILES = {
    "manifest.json",
    "config.yaml",
    "model.safetensors",
    "preprocess",
    "metrics.json",
    "report.html",
    "checkpoints",
    "logs",
}
CLASSIFICATION_METRICS = {"accuracy", "f1_macro", "auroc", "log_loss"}
TRAIN_ROWS = 48  # rows of shapes' train split used for training (all 8 classes occur in them)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`mumo ARGS` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def tiny_dict() -> dict[str, Any]:
    """tiny_overrides() as the overrides dict of the Python API."""
    flags = tiny_overrides()
    return parse_overrides(flags[1::2])


def manifest(
    shapes_dir: Path,
    split: str,
    folder: Path,
    columns: list[str],
    rows: int | None = None,
    absolute: bool = False,
) -> pd.DataFrame:
    """A split of shapes with only `columns`; file paths relative to `folder` (or absolute)."""
    frame = pd.read_csv(shapes_dir / f"{split}.csv")[columns]
    if rows is not None:
        frame = frame.iloc[:rows]
    for column in ("image", "sound"):
        if column in frame:
            full = [shapes_dir / p for p in frame[column]]
            frame[column] = [str(p) if absolute else os.path.relpath(p, folder) for p in full]
    return frame.reset_index(drop=True)


def assert_metrics(metrics: dict[str, Any], splits: set[str]) -> None:
    assert splits <= set(metrics) and set(metrics) - splits <= {"contribution"}
    for split in splits:
        assert set(metrics[split]) >= CLASSIFICATION_METRICS, metrics[split]
        for key in CLASSIFICATION_METRICS:
            value = metrics[split][key]
            assert isinstance(value, int | float) and not isinstance(value, bool), (split, key, value)
            assert math.isfinite(value), (split, key, value)


# ---------------------------------------------------------------------- run A: no config, fresh process


@pytest.fixture(scope="module")
def data_a(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """CSVs with only image, sound and label; paths relative to the CSVs' own folder."""
    folder = tmp_path_factory.mktemp("data-a") / "manifests"
    folder.mkdir()
    paths = {}
    for split, rows in (("train", TRAIN_ROWS), ("val", None), ("test", None)):
        paths[split] = folder / f"{split}.csv"
        manifest(shapes_dir, split, folder, ["image", "sound", "label"], rows).to_csv(
            paths[split], index=False
        )
    return paths


@pytest.fixture(scope="module")
def run_a(data_a: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run-a") / "R"
    result = run_cli(
        "train",
        "--train",
        str(data_a["train"]),
        "--val",
        str(data_a["val"]),
        "--test",
        str(data_a["test"]),
        "--target",
        "label",
        "--out",
        str(out),
        *tiny_overrides(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return out


def test_train_without_config_writes_the_run_directory(run_a: Path) -> None:
    assert {p.name for p in run_a.iterdir()} == RUN_FILES
    preprocess = run_a / "preprocess"
    assert (preprocess / "schema.json").is_file()
    assert (preprocess / "target.json").is_file()
    assert {p.name for p in preprocess.iterdir() if p.is_dir()} == {"image", "sound"}
    assert (run_a / "checkpoints" / "last.ckpt").is_file()
    assert (run_a / "logs" / "csv" / "metrics.csv").is_file()
    assert list((run_a / "logs").rglob("events.out.tfevents.*"))


def test_train_without_config_resolves_the_config(run_a: Path) -> None:
    config = load_config(run_a / "config.yaml")
    assert config.data.columns == {"image": "image", "sound": "audio"}
    assert config.task.type == "classification"
    assert config.data.target == "label"
    raw = yaml.safe_load((run_a / "config.yaml").read_text())
    assert set(raw) >= {"name", "data", "model", "task", "train"}
    assert raw["train"]["lr"] == config.train.lr
    assert raw["train"]["epochs"] == 1 and raw["model"]["dim"] == 32
    assert set(raw["model"]["encoders"]) == {"image", "sound"}
    assert "fusion" in raw["model"] and "head" in raw["model"]
    assert "on_error" in raw["data"] and "image" in raw["data"] and "audio" in raw["data"]


def test_train_without_config_writes_metrics_and_report(run_a: Path) -> None:
    assert_metrics(json.loads((run_a / "metrics.json").read_text()), {"val", "test"})
    html = (run_a / "report.html").read_text()
    assert "data:image/png;base64" in html
    assert not re.search(r"""(?:href|src)\s*=\s*["']?\s*(?:https?:)?//""", html), "report links outside"
    assert not re.search(r"""url\(\s*["']?(?:https?:)?//""", html), "report loads from the network"


def test_eval_json_matches_metrics_json(capsys: pytest.CaptureFixture[str], run_a: Path) -> None:
    code, out, _ = cli(capsys, "eval", str(run_a), "--json")
    assert code == 0
    printed = json.loads(out)
    saved = json.loads((run_a / "metrics.json").read_text())
    assert_metrics(printed, {"val", "test"})
    model_keys = {s: {k for k in saved[s] if not k.startswith("baseline/")} for s in ("val", "test")}
    assert {
        s: set(printed[s]) for s in ("val", "test")
    } == model_keys  # the baseline is fitted only in training
    for split in ("val", "test"):
        for key in CLASSIFICATION_METRICS:
            assert printed[split][key] == pytest.approx(saved[split][key], abs=1e-6), (split, key)


def test_eval_on_another_manifest(
    capsys: pytest.CaptureFixture[str], run_a: Path, shapes_dir: Path, tmp_path: Path
) -> None:
    """A manifest elsewhere, with absolute paths: same rows as the run's test split → same metrics."""
    other = tmp_path / "elsewhere" / "holdout.csv"
    other.parent.mkdir()
    manifest(shapes_dir, "test", other.parent, ["image", "sound", "label"], absolute=True).to_csv(
        other, index=False
    )
    code, out, _ = cli(capsys, "eval", str(run_a), "--data", str(other), "--json")
    assert code == 0
    printed = json.loads(out)
    assert len(printed) == 1  # one manifest → one set of metrics
    assert_metrics(printed, set(printed))
    (metrics,) = printed.values()
    saved = json.loads((run_a / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(saved["test"]["accuracy"], abs=1e-6)
    assert metrics["log_loss"] == pytest.approx(saved["test"]["log_loss"], abs=1e-5)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_predict_manifest_to_file(
    capsys: pytest.CaptureFixture[str], run_a: Path, data_a: dict[str, Path], tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"P{suffix}"
    code, _, _ = cli(capsys, "predict", str(run_a), "--data", str(data_a["test"]), "--out", str(out))
    assert code == 0
    frame = {
        ".csv": pd.read_csv,
        ".jsonl": lambda p: pd.read_json(p, lines=True),
        ".parquet": pd.read_parquet,
    }[suffix](out)
    classes = json.loads((run_a / "preprocess" / "target.json").read_text())["classes"]
    assert len(classes) == 8
    assert list(frame.columns) == ["row", "prediction", *(f"prob_{c}" for c in classes)]
    n = len(pd.read_csv(data_a["test"]))
    assert len(frame) == n
    assert list(frame["row"]) == list(range(1, n + 1))
    assert set(frame["prediction"]) <= set(classes)
    probs = frame[[f"prob_{c}" for c in classes]]
    assert ((probs >= 0) & (probs <= 1)).all().all()
    assert probs.sum(axis=1).tolist() == pytest.approx([1.0] * n, abs=1e-5)
    for i, row in frame.iterrows():  # the prediction is the most probable class
        assert row["prediction"] == classes[int(probs.loc[i].to_numpy().argmax())]


def test_predict_one_item_from_flags(
    capsys: pytest.CaptureFixture[str], run_a: Path, shapes_dir: Path
) -> None:
    first = pd.read_csv(shapes_dir / "test.csv").iloc[0]
    image, sound = shapes_dir / first["image"], shapes_dir / first["sound"]
    classes = json.loads((run_a / "preprocess" / "target.json").read_text())["classes"]

    code, out, _ = cli(capsys, "predict", str(run_a), "--input", f"image={image}", f"sound={sound}")
    assert code == 0
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1
    both = json.loads(lines[0])
    assert both["prediction"] in classes
    assert set(both["probabilities"]) == set(classes)
    assert sum(both["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)

    code, out, _ = cli(capsys, "predict", str(run_a), "--input", f"image={image}")  # sound absent
    assert code == 0
    image_only = json.loads(out)
    assert image_only["prediction"] in classes
    assert all(math.isfinite(p) for p in image_only["probabilities"].values())
    assert sum(image_only["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


# ------------------------------------------------------------------------------------- data make


def test_data_make_writes_a_dataset_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "made"
    code, _, _ = cli(capsys, "data", "make", "shapes", "--out", str(out), "--n", "40")
    assert code == 0
    assert {"train.csv", "val.csv", "test.csv", "images", "audio"} <= {p.name for p in out.iterdir()}
    frames = [pd.read_csv(out / f"{split}.csv") for split in ("train", "val", "test")]
    assert sum(len(f) for f in frames) == 40
    assert all(len(f) for f in frames)
    for frame in frames:
        assert {"image", "sound", "label"} <= set(frame.columns)
        assert all((out / p).is_file() for p in frame["image"])
        assert all((out / p).is_file() for p in frame["sound"])
    train_before = (out / "train.csv").read_bytes()

    code, _, err = cli(capsys, "data", "make", "shapes", "--out", str(out), "--n", "40")
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mumo: error:") and str(out) in lines[0]
    assert (out / "train.csv").read_bytes() == train_before


def test_data_make_keeps_other_files_in_the_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my own file")
    code, _, _ = cli(capsys, "data", "make", "shapes", "--out", str(out), "--n", "20")
    assert code == 0
    assert (out / "train.csv").is_file()
    assert (out / "notes.txt").read_text() == "my own file"


# ------------------------------------------------------------------- run B: JSONL/Parquet manifests

SET_FLAGS = ["--set", "train.epochs=2", "--set", "model.head.layers=0", "--set", "data.image.augment=false"]


@pytest.fixture(scope="module")
def run_b(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    """train.jsonl (relative paths), val.parquet (absolute paths), test.csv; plus typed --set flags."""
    folder = tmp_path_factory.mktemp("data-b")
    columns = ["image", "sound", "caption", "weight", "label"]
    manifest(shapes_dir, "train", folder, columns, 32).to_json(
        folder / "train.jsonl", orient="records", lines=True
    )
    manifest(shapes_dir, "val", folder, columns, absolute=True).to_parquet(
        folder / "val.parquet", index=False
    )
    manifest(shapes_dir, "test", folder, columns).to_csv(folder / "test.csv", index=False)
    out = folder / "R"
    args = ["--train", str(folder / "train.jsonl"), "--val", str(folder / "val.parquet")]
    args += ["--test", str(folder / "test.csv"), "--target", "label", "--out", str(out), "--quiet"]
    code = main(["train", *args, *tiny_overrides(), *SET_FLAGS])
    return code, out


def test_jsonl_and_parquet_manifests_train(run_b: tuple[int, Path]) -> None:
    code, out = run_b
    assert code == 0
    assert {p.name for p in out.iterdir()} == RUN_FILES
    assert_metrics(json.loads((out / "metrics.json").read_text()), {"val", "test"})
    config = load_config(out / "config.yaml")
    assert config.data.columns == {"image": "image", "sound": "audio", "caption": "text", "weight": "numeric"}


def test_set_values_reach_the_run_with_their_types(run_b: tuple[int, Path]) -> None:
    code, out = run_b
    assert code == 0
    raw = yaml.safe_load((out / "config.yaml").read_text())
    assert raw["train"]["epochs"] == 2 and type(raw["train"]["epochs"]) is int
    assert raw["model"]["head"]["layers"] == 0 and type(raw["model"]["head"]["layers"]) is int
    assert raw["data"]["image"]["augment"] is False
    history = pd.read_csv(out / "logs" / "csv" / "metrics.csv")
    assert history["epoch"].max() == 1  # two epochs: 0 and 1


# ---------------------------------------------------------------------------- run C: Python API


@pytest.fixture(scope="module")
def api_run(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> mumo.Run:
    """mumo.train on a dict config, with a Parquet train manifest (absolute paths) and a JSONL val."""
    folder = tmp_path_factory.mktemp("data-c")
    columns = ["image", "sound", "caption", "weight", "label"]
    manifest(shapes_dir, "train", folder, columns, 48, absolute=True).to_parquet(folder / "train.parquet")
    manifest(shapes_dir, "val", folder, columns).to_json(folder / "val.jsonl", orient="records", lines=True)
    config = {
        "name": "api",
        "data": {"train": str(folder / "train.parquet"), "val": str(folder / "val.jsonl"), "target": "label"},
    }
    return mumo.train(config, overrides=tiny_dict(), out=folder / "run", quiet=True)


def test_api_train_returns_a_run(api_run: mumo.Run) -> None:
    assert isinstance(api_run.path, Path)
    assert api_run.path.is_dir()
    assert {p.name for p in api_run.path.iterdir()} == RUN_FILES
    assert_metrics(api_run.metrics, {"val"})
    saved = json.loads((api_run.path / "metrics.json").read_text())
    assert saved["val"]["accuracy"] == pytest.approx(api_run.metrics["val"]["accuracy"], abs=1e-6)


def test_api_load_and_predict(api_run: mumo.Run, shapes_dir: Path) -> None:
    model = mumo.load(api_run.path)
    classes = json.loads((api_run.path / "preprocess" / "target.json").read_text())["classes"]
    first = pd.read_csv(shapes_dir / "test.csv").iloc[0]
    row = {
        "image": str(shapes_dir / first["image"]),
        "sound": str(shapes_dir / first["sound"]),
        "caption": "a red circle",
        "weight": 2.0,
    }
    results = model.predict([row])
    assert isinstance(results, list) and len(results) == 1
    assert results[0]["prediction"] in classes
    assert set(results[0]["probabilities"]) == set(classes)
    assert sum(results[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)

    (caption_only,) = model.predict([{"caption": "a red circle"}])
    assert caption_only["prediction"] in classes
    assert all(math.isfinite(p) for p in caption_only["probabilities"].values())
    assert sum(caption_only["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_api_relative_paths_resolve_against_base_dir(api_run: mumo.Run, shapes_dir: Path) -> None:
    model = mumo.load(api_run.path)
    first = pd.read_csv(shapes_dir / "test.csv").iloc[0]
    relative = model.predict([{"image": first["image"], "sound": first["sound"]}], base_dir=shapes_dir)
    absolute = model.predict(
        [{"image": str(shapes_dir / first["image"]), "sound": str(shapes_dir / first["sound"])}]
    )
    assert relative[0]["probabilities"] == pytest.approx(absolute[0]["probabilities"], abs=1e-6)


def test_parquet_train_manifest_trains(api_run: mumo.Run) -> None:
    config = load_config(api_run.path / "config.yaml")
    assert config.data.train.endswith("train.parquet")
    assert config.data.columns == {"image": "image", "sound": "audio", "caption": "text", "weight": "numeric"}
    assert (api_run.path / "model.safetensors").stat().st_size > 0
