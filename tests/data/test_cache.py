"""data.cache: false keeps image and audio cells checked but not decoded; batches decode them, and
training sees exactly the same data as with everything decoded up front."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mumo
from mumo.config import DataConfig
from mumo.data.dataset import make_loader
from mumo.data.prepare import finish_processors, fit_processors, load_split, make_processors, resolve_schema
from mumo.data.table import read_table
from mumo.errors import DataError


def _processors(shapes_dir: Path) -> tuple[dict, object]:
    table = read_table(shapes_dir / "train.csv")
    data = DataConfig(train=str(shapes_dir / "train.csv"), target="label")
    schema = resolve_schema(data, table)
    processors = make_processors(schema, data)
    fit_processors(processors, None, table)
    finish_processors(processors, load_split("train", table, processors, None, "fail"))
    return processors, table


def test_lazy_split_holds_cells_and_decodes_the_same_items(shapes_dir: Path) -> None:
    processors, table = _processors(shapes_dir)
    eager = load_split("train", table, processors, None, "fail")
    lazy = load_split("train", table, processors, None, "fail", keep_decoded=False)
    assert set(lazy.lazy) == {"image", "sound"}
    assert lazy.items["image"][:2] == table.values("image")[:2]  # cells, not pixels
    assert lazy.items["caption"] == eager.items["caption"]  # text and numbers are decoded as usual
    rows = list(range(len(eager)))
    for column in ("image", "sound"):
        for a, b in zip(eager.take(column, rows), lazy.take(column, rows), strict=True):
            assert np.array_equal(a, b)


def test_lazy_split_still_checks_every_file(shapes_copy: Path) -> None:
    processors, table = _processors(shapes_copy)
    (shapes_copy / table.values("image")[4]).write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"row 5, column 'image': cannot decode image"):
        load_split("train", table, processors, None, "fail", keep_decoded=False)


def test_batches_without_the_cache_equal_batches_with_it(shapes_dir: Path) -> None:
    """The same seed gives the same training batches (shuffled, augmented) either way."""
    processors, table = _processors(shapes_dir)
    epochs = []
    for keep in (True, False):
        split = load_split("train", table, processors, None, "fail", keep_decoded=keep)
        loader = make_loader(split, processors, None, batch_size=32, train=True, seed=3)
        torch.manual_seed(0)  # augmentation draws from the global generator
        epochs.append(list(loader))
    assert len(epochs[0]) == len(epochs[1]) == 5
    for eager, lazy in zip(*epochs, strict=True):
        for column, tensors in eager.inputs.items():
            for key, tensor in tensors.items():
                assert torch.equal(tensor, lazy.inputs[column][key]), (column, key)


def test_training_without_the_cache(shapes_dir: Path, tmp_path: Path) -> None:
    config = {
        "data": {
            "train": str(shapes_dir / "train.csv"),
            "val": str(shapes_dir / "val.csv"),
            "target": "label",
        },
        "model": {"dim": 16},
        "train": {"epochs": 1, "batch_size": 32, "progress": False},
        "task": "classification",
    }
    run = mumo.train(config, {"data.cache": False}, out=tmp_path / "run", quiet=True)
    assert {"accuracy", "f1_macro", "auroc", "log_loss", "baseline/accuracy"} <= set(run.metrics["val"])
    assert mumo.load(run.path).config.data.cache is False
