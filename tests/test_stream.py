"""data.stream: a Parquet train table read one row group at a time while training."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import mumo
from conftest import run_cli
from mumo.data import stream
from mumo.data.stream import ParquetSource, StreamingDataset
from mumo.data.targets import RegressionTarget
from mumo.modalities import PROCESSORS

WORDS = ["red", "green", "blue", "round", "square", "small", "large", "bright"]


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"id": np.arange(n), "x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    frame["note"] = [" ".join(rng.choice(WORDS, size=4)) for _ in range(n)]
    frame["label"] = np.where(frame["x1"] + frame["x2"] > 0, "up", "down")
    return frame


def _write(folder: Path, frame: pd.DataFrame, group: int = 128) -> dict[str, str]:
    n = len(frame)
    parts = {
        "train": frame[: int(0.7 * n)],
        "val": frame[int(0.7 * n) : int(0.85 * n)],
        "test": frame[int(0.85 * n) :],
    }
    paths = {}
    for name, part in parts.items():
        paths[name] = str(folder / f"{name}.parquet")
        part.to_parquet(paths[name], row_group_size=group, index=False)
    return paths


@pytest.mark.slow
def test_a_streamed_run_reaches_the_accuracy_of_an_in_memory_run(tmp_path: Path) -> None:
    paths = _write(tmp_path, _table(4000, 0))
    config = {
        "data": {**paths, "target": "label", "ignore": ["id"]},
        "model": {"dim": 16},
        "train": {"epochs": 8, "batch_size": 32, "progress": False, "baseline": False},
    }
    memory = mumo.train(config, out=tmp_path / "memory", quiet=True).metrics
    streamed = mumo.train(
        config, {"data.stream": True, "data.stream_sample": 500}, out=tmp_path / "streamed", quiet=True
    ).metrics
    for split in ("val", "test"):  # 600 rows each
        assert memory[split]["accuracy"] > 0.95
        assert abs(streamed[split]["accuracy"] - memory[split]["accuracy"]) <= 0.01, (memory, streamed)


def _dataset(path: Path, batch: int = 10, on_error: str = "fail") -> StreamingDataset:
    source = ParquetSource.open(path)
    numbers = PROCESSORS.get("numeric")("x1")  # type: ignore[call-arg]
    numbers.fit(source.sample(100).values("x1"), path.parent)
    target = RegressionTarget(["id"])  # not fitted: encodes an id as itself
    return StreamingDataset(source, {"x1": numbers}, target, batch, on_error, seed=3)


def _ids(
    dataset: StreamingDataset,
    rank: int,
    ranks: int,
    worker: int,
    workers: int,
    monkeypatch: pytest.MonkeyPatch,
) -> list[list[int]]:
    """The row ids of each batch one (rank, worker) slot yields in an epoch."""
    monkeypatch.setattr(stream, "world", lambda: (rank, ranks))
    monkeypatch.setattr(stream, "get_worker_info", lambda: SimpleNamespace(id=worker, num_workers=workers))
    monkeypatch.setattr(dataset, "_batch", lambda rows: [int(round(t[0])) for _, t in rows])
    return list(dataset)


@pytest.mark.parametrize("group", [7, 100])  # many row groups per slot, and fewer row groups than slots
def test_rows_are_shared_out_over_ranks_and_workers_without_overlap(
    group: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.parquet"
    _table(203, 0).to_parquet(path, row_group_size=group, index=False)
    dataset = _dataset(path)
    per_rank: dict[int, list[list[int]]] = {}
    for rank in range(2):
        per_rank[rank] = []
        for worker in range(2):
            per_rank[rank] += _ids(dataset, rank, 2, worker, 2, monkeypatch)
    assert [len(per_rank[r]) for r in range(2)] == [10, 10]  # 203 // (2 x 10): DDP steps in lockstep
    rows = [i for r in range(2) for batch in per_rank[r] for i in batch]
    assert all(1 <= len(batch) <= 10 for r in range(2) for batch in per_rank[r])
    assert len(rows) == len(set(rows)) >= 195  # no row twice in an epoch, and few left out
    assert set(rows) <= set(range(203))


def test_each_epoch_has_its_own_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.parquet"
    _table(200, 0).to_parquet(path, row_group_size=20, index=False)
    dataset = _dataset(path)
    first = _ids(dataset, 0, 1, 0, 1, monkeypatch)
    again = _ids(dataset, 0, 1, 0, 1, monkeypatch)
    dataset.set_epoch(1)
    second = _ids(dataset, 0, 1, 0, 1, monkeypatch)
    assert first == again and first != second
    assert sorted(sum(first, [])) == sorted(sum(second, [])) == list(range(200))


def test_rows_skipped_in_the_loaders_workers_are_counted_once(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.parquet"
    frame = _table(200, 0).astype({"id": float})
    frame.loc[[4, 57, 58, 190], "id"] = None  # empty targets in three row groups
    frame.to_parquet(path, row_group_size=20, index=False)
    dataset = _dataset(path, on_error="skip")
    loader = stream.stream_loader(dataset, num_workers=2)
    for epoch in range(2):  # the same rows skipped again in the second epoch: still four
        dataset.set_epoch(epoch)
        ids = [i for batch in loader for i in batch.target.flatten().round().int().tolist()]
        assert len(ids) == len(set(ids)) == 196
    assert dataset.skipped_rows() == [5, 58, 59, 191]
    assert "t.parquet: row group 2: 2 rows skipped (first: row 58, empty target)" in capfd.readouterr().err


def test_stream_errors_name_the_file_and_what_to_do(tmp_path: Path) -> None:
    paths = _write(tmp_path, _table(400, 0))
    frame = pd.read_parquet(paths["train"])
    frame.to_csv(tmp_path / "train.csv", index=False)
    base = ["train", "--target", "label", "--set", "data.stream=true", "--set", "train.epochs=1"]
    as_csv = run_cli(
        *base, "--train", str(tmp_path / "train.csv"), "--val", paths["val"], "--out", str(tmp_path / "a")
    )
    assert as_csv.returncode == 2
    assert "train.csv: data.stream reads Parquet row groups; write the table as .parquet" in as_csv.stderr
    no_val = run_cli(*base, "--train", paths["train"], "--out", str(tmp_path / "b"))
    assert no_val.returncode == 2
    assert "data.stream: give data.val too" in no_val.stderr
    frame.loc[150, "label"] = None  # an empty target in the streamed part of the table
    frame.to_parquet(tmp_path / "bad.parquet", row_group_size=64, index=False)
    on_bad = [*base, "--train", str(tmp_path / "bad.parquet"), "--val", paths["val"]]
    on_bad += ["--set", "data.stream_sample=100"]
    bad = run_cli(*on_bad, "--out", str(tmp_path / "c"))
    assert bad.returncode == 2, bad.stderr[-2000:]
    assert "bad.parquet, row 151, column 'label': empty target (use --on-error skip|absent" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "c").exists() and not (tmp_path / ".c.partial").exists()
    skipped = run_cli(*on_bad, "--on-error", "skip", "--out", str(tmp_path / "d"))
    assert skipped.returncode == 0, skipped.stderr[-2000:]
    assert "train: 1 rows skipped while streaming (rows 151; why: above)" in skipped.stderr


def test_a_ddp_streamed_run_counts_each_skipped_row_once_over_ranks(tmp_path: Path) -> None:
    paths = _write(tmp_path, _table(800, 0))
    frame = pd.read_parquet(paths["train"])
    frame.loc[[10, 150, 300], "label"] = None  # row groups 0, 2 and 4: read by different ranks
    frame.to_parquet(tmp_path / "bad.parquet", row_group_size=64, index=False)
    out = run_cli(
        "train",
        "--train",
        str(tmp_path / "bad.parquet"),
        "--val",
        paths["val"],
        "--target",
        "label",
        "--on-error",
        "skip",
        *("--set", "data.stream=true", "--set", "data.stream_sample=100", "--set", "train.epochs=2"),
        *("--set", "train.devices=2", "--set", "train.strategy=ddp", "--out", str(tmp_path / "run")),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "train: 3 rows skipped while streaming (rows 11, 151, 301; why: above)" in out.stderr
    assert (tmp_path / "run" / "metrics.json").is_file()
