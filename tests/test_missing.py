"""Missing modalities as a first-class case: empty cells, modality dropout, contribution, compare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import mumo
from mumo.data.dataset import make_batch
from mumo.network import module_key

WORDS = {0: ["north", "up", "top"], 1: ["south", "down", "bottom"], 2: ["east", "right", "sunrise"]}


def _redundant(n: int, seed: int) -> pd.DataFrame:
    """Three inputs that each carry the label on their own (with some noise)."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, n)

    def noisy(y: int) -> int:  # 5% of the time an input shows a random class
        return int(rng.integers(0, 3)) if rng.random() < 0.05 else y

    return pd.DataFrame(
        {
            "note": [f"heading {rng.choice(WORDS[noisy(int(y))])} now" for y in label],
            "reading": np.round(label * 2.0 + rng.normal(0, 0.4, n), 3),
            "zone": [f"z{noisy(int(y))}{rng.integers(0, 2)}" for y in label],
            "label": [f"c{int(y)}" for y in label],
        }
    )


def _train(tmp_path: Path, name: str, dropout: float) -> dict:
    frame = _redundant(900, 0)
    for part, rows in (("train", slice(0, 600)), ("val", slice(600, 750)), ("test", slice(750, 900))):
        frame.iloc[rows].to_csv(tmp_path / f"{part}.csv", index=False)
    config = {
        "data": {"train": str(tmp_path / "train.csv"), "val": str(tmp_path / "val.csv"), "test": str(tmp_path / "test.csv"), "target": "label"},
        "model": {"dim": 32, "modality_dropout": dropout, "wide": False},
        "train": {"epochs": 12, "batch_size": 32, "progress": False, "patience": 12},
    }  # fmt: skip
    mumo.train(config, out=tmp_path / name, quiet=True)
    return json.loads((tmp_path / name / "metrics.json").read_text())["contribution"]


def test_modality_dropout_keeps_accuracy_when_one_input_is_absent(tmp_path: Path) -> None:
    with_dropout = _train(tmp_path, "dropout", 0.3)
    without_dropout = _train(tmp_path, "plain", 0.0)
    print("modality_dropout=0.3:", with_dropout["all"], with_dropout["without"])
    print("modality_dropout=0.0:", without_dropout["all"], without_dropout["without"])
    assert with_dropout["all"] > 0.9
    for column, score in with_dropout["without"].items():
        assert with_dropout["all"] - score <= 0.05, (column, with_dropout)
    assert set(with_dropout["without"]) == {"note", "reading", "zone"}


def test_thirty_percent_empty_images_use_the_absent_embedding(shapes_copy: Path, tmp_path: Path) -> None:
    manifest = shapes_copy / "train.csv"
    frame = pd.read_csv(manifest)
    empty = np.random.default_rng(0).choice(len(frame), size=int(0.3 * len(frame)), replace=False)
    frame.loc[empty, "image"] = None
    frame.to_csv(manifest, index=False)
    config = {
        "data": {"train": str(manifest), "val": str(shapes_copy / "val.csv"), "target": "label"},
        "model": {"dim": 16},
        "train": {"epochs": 1, "batch_size": 32, "progress": False},
    }
    run = mumo.train(config, out=tmp_path / "run", quiet=True)
    model = run.model
    assert model is not None
    split = model.prepare(model.table(frame.drop(columns=["label"]), base_dir=shapes_copy))
    assert split.absent["image"] == len(empty)
    rows = sorted(int(r) for r in empty[:4]) + [int(r) for r in range(len(frame)) if r not in set(empty)][:4]
    items = {c: [values[r] for r in rows] for c, values in split.items.items()}
    batch = make_batch(items, model.processors, None, None, train=False)
    with torch.no_grad():
        out = model.network.encode_column("image", batch.inputs["image"], batch.presence["image"])
    absent = model.network.absent[module_key("image")]
    assert torch.equal(out.pooled[:4], absent.expand(4, -1))
    assert not torch.allclose(out.pooled[4:], absent.expand(4, -1))
    assert out.mask[:4, 0].all() and not out.mask[:4, 1:].any()
    predictions = model.predict(frame.drop(columns=["label"]).iloc[rows], base_dir=shapes_copy)
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-5 for p in predictions)


def test_any_subset_of_inputs_predicts_finite(shapes_dir: Path, tmp_path: Path) -> None:
    config = {
        "data": {
            "train": str(shapes_dir / "train.csv"),
            "val": str(shapes_dir / "val.csv"),
            "target": "label",
        },
        "model": {"dim": 16, "modality_dropout": 0.2},
        "train": {"epochs": 1, "batch_size": 32, "progress": False},
    }
    model = mumo.train(config, out=tmp_path / "run", quiet=True).model
    assert model is not None
    full = pd.read_csv(shapes_dir / "test.csv").drop(columns=["label"]).iloc[0].to_dict()
    columns = list(full)
    for mask in range(1, 1 << len(columns)):  # every non-empty subset of the inputs
        row = {c: full[c] for i, c in enumerate(columns) if mask >> i & 1}
        result = model.predict([row], base_dir=shapes_dir)[0]
        assert all(np.isfinite(list(result["probabilities"].values()))), row


def test_contribution_is_in_metrics_and_report(shapes_dir: Path, tmp_path: Path) -> None:
    config = {
        "data": {"train": str(shapes_dir / "train.csv"), "val": str(shapes_dir / "val.csv"), "test": str(shapes_dir / "test.csv"), "target": "label"},
        "model": {"dim": 16},
        "train": {"epochs": 1, "batch_size": 32, "progress": False},
    }  # fmt: skip
    run = mumo.train(config, out=tmp_path / "run", quiet=True)
    metrics = json.loads((run.path / "metrics.json").read_text())
    contribution = metrics["contribution"]
    assert contribution["split"] == "test" and contribution["metric"] == "accuracy"
    assert contribution["all"] == metrics["test"]["accuracy"]
    assert (
        set(contribution["without"]) == set(contribution["only"]) == {"image", "sound", "caption", "weight"}
    )
    assert all(0.0 <= v <= 1.0 for v in [*contribution["without"].values(), *contribution["only"].values()])
    assert "Modality contribution" in (run.path / "report.html").read_text()


def test_compare_writes_table_json_plot_and_page(shapes_dir: Path, tmp_path: Path, capsys) -> None:
    from mumo.cli import main

    out = tmp_path / "cmp"
    code = main([
        "compare", "--train", str(shapes_dir / "train.csv"), "--val", str(shapes_dir / "val.csv"), "--target", "label",
        "--fusions", "concat,gated", "--unimodal", "--repeats", "2", "--out", str(out),
        "--set", "train.epochs=1", "--set", "model.dim=16", "--set", "data.ignore=[sound,image]",
    ])  # fmt: skip
    assert code == 0
    result = json.loads((out / "compare.json").read_text())
    names = [v["name"] for v in result["variants"]]
    assert names == ["fusion: concat", "fusion: gated", "only caption (text)", "only weight (numeric)"]
    assert all(len(v["scores"]) == 2 and v["parameters"] > 0 for v in result["variants"])
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data:image/png;base64" in (out / "report.html").read_text()
    assert "fusion: gated" in capsys.readouterr().out
