"""Manifests → Table cells, column-kind and task inference, and the stratified held-out split."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from mumo.data.prepare import split_off, split_rows
from mumo.data.table import (
    Table,
    as_number,
    infer_kind,
    is_row_index,
    read_table,
)
from mumo.errors import DataError
from mumo.tasks import infer_target_task

ROWS = [
    {"caption": "a red circle", "label": "cat", "price": "3.5", "image": "img/0.png"},
    {"caption": None, "label": "dog", "price": None, "image": "img/1.png"},
    {"caption": "two blue squares", "label": "cat", "price": "-10", "image": None},
]


def _write_all(folder: Path) -> dict[str, Path]:
    """The same rows as CSV (an empty cell and a whitespace-only cell), JSONL (null) and Parquet (null)."""
    csv = folder / "m.csv"
    csv.write_text(
        "caption,label,price,image\n"
        "a red circle,cat,3.5,img/0.png\n"
        ",dog,   ,img/1.png\n"
        "  two blue squares ,cat,-10,\n"
    )
    jsonl = folder / "m.jsonl"
    with jsonl.open("w") as handle:
        for row in ROWS:
            price = None if row["price"] is None else float(row["price"])
            handle.write(json.dumps({**row, "price": price}) + "\n")
    parquet = folder / "m.parquet"
    frame = pd.DataFrame(ROWS)
    frame["price"] = [3.5, None, -10.0]
    frame.to_parquet(parquet)
    return {"csv": csv, "jsonl": jsonl, "parquet": parquet}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_read_table_cells(tmp_path: Path, fmt: str) -> None:
    table = read_table(_write_all(tmp_path)[fmt])
    assert table.columns == ["caption", "label", "price", "image"]
    assert len(table) == 3
    assert table.base_dir == tmp_path.resolve()
    for column in ("caption", "label", "image"):
        assert table.values(column) == [row[column] for row in ROWS], column
    prices = table.values("price")
    assert prices[1] is None  # empty / whitespace-only / null → None, never NaN
    assert [as_number(p) for p in prices] == [3.5, None, -10.0]
    cells = [cell for column in table.columns for cell in table.values(column)]
    assert not [cell for cell in cells if isinstance(cell, float) and cell != cell]  # no NaN anywhere


def test_formats_give_the_same_cells(tmp_path: Path) -> None:
    paths = _write_all(tmp_path)
    tables = {fmt: read_table(path) for fmt, path in paths.items()}
    reference = tables["csv"]
    for fmt, table in tables.items():
        assert table.columns == reference.columns, fmt
        for column in ("caption", "label", "image"):
            assert table.values(column) == reference.values(column), (fmt, column)
        assert [as_number(v) for v in table.values("price")] == [3.5, None, -10.0], fmt


def test_csv_empty_and_blank_cells_are_none(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("a,b,c\n1,,x\n2,  ,\n")
    table = read_table(path)
    assert table.values("b") == [None, None]
    assert table.values("c") == ["x", None]
    assert table.values("a") == ["1", "2"]


def test_csv_numbers_stay_strings_but_parse(tmp_path: Path) -> None:
    path = tmp_path / "n.csv"
    path.write_text("x,y\n1,0.25\n007,1e3\n")
    table = read_table(path)
    assert table.values("x") == ["1", "007"]
    assert table.values("y") == ["0.25", "1e3"]
    assert [as_number(v) for v in table.values("x")] == [1.0, 7.0]
    assert [as_number(v) for v in table.values("y")] == [0.25, 1000.0]


def test_as_number() -> None:
    assert as_number("2.5") == 2.5
    assert as_number(3) == 3.0
    assert as_number(True) == 1.0
    assert as_number("abc") is None
    assert as_number("nan") is None
    assert as_number(float("inf")) is None
    assert as_number(None) is None


def test_infer_kind_on_csv_column_with_empty_cells(tmp_path: Path) -> None:
    """Empty cells must not count as values: a numeric column with gaps is still numeric."""
    path = tmp_path / "gaps.csv"
    lines = ["price,caption"] + [f"{'' if i % 3 == 0 else i * 1.5},word{i} and more words" for i in range(30)]
    path.write_text("\n".join(lines) + "\n")
    table = read_table(path)
    assert infer_kind(table.values("price")).kind == "numeric"


# ---------------------------------------------------------------------------------- inference
def test_infer_kind_images() -> None:
    cells = [f"img/{i}.png" for i in range(10)] + [f"photos/{i}.JPG" for i in range(10)]
    assert infer_kind(cells).kind == "image"


def test_infer_kind_audio() -> None:
    cells = (
        [f"a/{i}.wav" for i in range(5)]
        + [f"a/{i}.flac" for i in range(5)]
        + [f"b/{i}.MP3" for i in range(5)]
    )
    assert infer_kind(cells).kind == "audio"


def test_infer_kind_numbers_with_one_bad_value() -> None:
    cells = [str(i * 0.5) for i in range(29)] + ["n/a"]
    assert infer_kind(cells).kind == "numeric"
    assert infer_kind([1.5, 2, 3] * 10).kind == "numeric"
    assert infer_kind([str(i) for i in range(20)] + ["x"] * 10) != "numeric"  # a third bad: not numeric


def test_infer_kind_categorical_and_text() -> None:
    assert infer_kind(["red", "green", "blue"] * 10).kind == "categorical"
    assert infer_kind(["new york", "paris", "rome"] * 10).kind == "categorical"
    assert infer_kind([f"a sentence number {i} about things" for i in range(30)]).kind == "text"
    assert infer_kind([True, False, True] * 10).kind == "categorical"
    assert infer_kind([None, None]).kind == "categorical"


def test_is_row_index() -> None:
    assert is_row_index(list(range(20)))
    assert is_row_index([str(i) for i in range(1, 21)])
    assert not is_row_index(list(range(5)))  # too short to tell
    assert not is_row_index(list(range(2, 22)))  # does not start at 0 or 1
    assert not is_row_index([0, 2, 1, *range(3, 20)])  # out of order
    assert not is_row_index([i + 0.5 for i in range(20)])


def test_infer_target_task() -> None:
    assert infer_target_task(["cat", "dog"] * 5) == "classification"
    assert infer_target_task(["0", "1"] * 5) == "classification"
    assert infer_target_task(list(range(20))) == "classification"  # 20 integer classes
    assert infer_target_task([0.5, 1.25, 3.0]) == "regression"  # real values
    assert infer_target_task([str(i) for i in range(50)]) == "regression"  # many integers
    assert infer_target_task([None, "1.5", "2"]) == "regression"
    assert infer_target_task(["a red circle on the left", "a big blue square"] * 5) == "generation"
    assert infer_target_task([f"item {i}" for i in range(150)]) == "generation"  # mostly distinct
    assert infer_target_task([f"class {i % 120}" for i in range(1200)]) == "classification"
    assert infer_target_task([f"img/{i}.png" for i in range(10)]) == "image_generation"


# --------------------------------------------------------------------------------------- errors
def test_duplicated_header_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(DataError) as info:
        read_table(path)
    assert str(info.value) == f"{path}: column 'a' appears twice in the header"
    assert info.value.file == str(path)


def test_unknown_extension_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "m.txt"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError) as info:
        read_table(path)
    assert str(info.value) == f"{path}: unknown manifest format '.txt'; use .csv, .jsonl or .parquet"


def test_missing_manifest_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "none.csv"
    with pytest.raises(DataError) as info:
        read_table(path)
    assert str(info.value) == f"{path}: manifest not found"


# -------------------------------------------------------------------------------------- split_off
def _labelled_table(tmp_path: Path) -> tuple[Table, list[str]]:
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    frame = pd.DataFrame({"id": list(range(100)), "label": labels}).astype(object)
    return Table("t.csv", tmp_path, frame), labels


def _split(table: Table, fraction: float, seed: int, labels: list[str] | None) -> tuple[Table, Table]:
    return split_off(table, split_rows(table, fraction, seed, labels))


def test_split_off_is_stratified_disjoint_and_sized(tmp_path: Path) -> None:
    table, labels = _labelled_table(tmp_path)
    kept, held = _split(table, 0.2, seed=0, labels=labels)
    kept_ids, held_ids = kept.values("id"), held.values("id")
    assert len(held) == 20 and len(kept) == 80
    assert not set(kept_ids) & set(held_ids)
    assert sorted(kept_ids + held_ids) == list(range(100))
    assert Counter(held.values("label")) == {"a": 12, "b": 6, "c": 2}


def test_split_off_is_deterministic_per_seed(tmp_path: Path) -> None:
    table, labels = _labelled_table(tmp_path)
    first = _split(table, 0.2, seed=3, labels=labels)[1].values("id")
    again = _split(table, 0.2, seed=3, labels=labels)[1].values("id")
    other = _split(table, 0.2, seed=4, labels=labels)[1].values("id")
    assert first == again
    assert first != other


def test_split_off_without_labels(tmp_path: Path) -> None:
    table, _ = _labelled_table(tmp_path)
    kept, held = _split(table, 0.15, seed=0, labels=None)
    assert len(held) == 15 and len(kept) == 85
    assert not set(kept.values("id")) & set(held.values("id"))


def test_split_keeps_every_class_in_train_and_says_which_val_lacks(tmp_path: Path) -> None:
    """3 rows, classes a, b, a: the only b stays in train; val gets an a."""
    table = Table("t.csv", tmp_path, pd.DataFrame({"label": ["a", "b", "a"]}).astype(object))
    notes: list[str] = []
    kept, held = split_off(table, split_rows(table, 0.15, 0, ["a", "b", "a"], notes))
    assert held.values("label") == ["a"] and sorted(kept.values("label")) == ["a", "b"]
    assert notes == [
        "val: 1 of the 3 train rows held out (data.val_fraction 0.15, stratified by label)",
        "val has no rows of 1 classes (b): too few rows to hold one out",
    ]


def test_split_of_single_row_classes_asks_for_val(tmp_path: Path) -> None:
    table = Table("t.csv", tmp_path, pd.DataFrame({"label": ["a", "b", "c"]}).astype(object))
    with pytest.raises(DataError) as info:
        split_rows(table, 0.15, 0, ["a", "b", "c"])
    assert str(info.value) == (
        "t.csv: cannot hold out validation rows: every class has a single row (holding one out would leave a "
        "class out of training); give validation data with data.val (--val F)"
    )


def test_infer_kind_says_why() -> None:
    cells = [str(i * 0.5) for i in range(27)] + ["NaN", "inf", "1e400"]  # a tenth of the cells not finite
    assert infer_kind(cells, row_number=lambda i: i + 2) == (
        "numeric",
        "90% of cells parse as numbers; 3 bad cells (not finite numbers), first at row 29",
    )
    assert infer_kind(["a.png"] * 9 + ["b.txt"]) == ("image", "90% of cells are image file names")


def test_infer_kind_sniffs_files_without_an_extension(tmp_path: Path) -> None:
    from PIL import Image

    for i in range(12):
        Image.new("RGB", (4, 4)).save(tmp_path / f"img{i}", format="PNG")
    cells = [f"img{i}" for i in range(12)]
    assert infer_kind(cells, tmp_path) == (
        "image",
        "files without an image extension, recognised by their first bytes (PNG)",
    )
    assert infer_kind(cells).kind == "text"  # without the folder nothing can be opened
