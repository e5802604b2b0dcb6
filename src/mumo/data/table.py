"""Manifests (CSV, JSONL, Parquet) → a Table of plain Python cells, and column-kind inference."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from mumo.cells import as_number, is_empty
from mumo.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
READERS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


@dataclass
class Table:
    """Rows of a manifest. Cells are str / int / float / bool, or None for an empty cell (absent)."""

    name: str  # how errors name the file, e.g. data/train.csv
    base_dir: Path  # file paths in cells are relative to this folder
    frame: pd.DataFrame  # object dtype; None marks an empty cell
    numbers: list[int] | None = None  # 1-based row numbers in the source file (None: 1..n)

    def row_number(self, index: int) -> int:
        return self.numbers[index] if self.numbers is not None else index + 1

    @cached_property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def __len__(self) -> int:
        return len(self.frame)

    def values(self, column: str) -> list[Any]:
        return self.frame[column].tolist()

    def subset(self, rows: list[int]) -> Table:
        numbers = [self.row_number(r) for r in rows]
        return Table(self.name, self.base_dir, self.frame.iloc[rows].reset_index(drop=True), numbers)


def _clean(value: Any) -> Any:
    kind = type(value)  # the common cells first: this runs once per cell of every table
    if kind is float:
        return None if value != value else value  # NaN is empty
    if kind is int or kind is bool:
        return value
    if kind is str:
        return value.strip() or None
    if is_empty(value):
        return None
    if isinstance(value, str):
        return value.strip()
    if hasattr(value, "item") and not isinstance(value, list | tuple | dict):
        return value.item()  # numpy scalar → Python
    return value


def read_table(path: str | Path) -> Table:
    """Read a manifest; every cell becomes a plain Python value or None."""
    path = Path(path)
    if not path.is_file():
        raise DataError("manifest not found", file=str(path))
    fmt = READERS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"unknown manifest format {path.suffix!r}; use .csv, .jsonl or .parquet", file=str(path)
        )
    if fmt in ("csv", "tsv"):
        _check_header(path, "\t" if fmt == "tsv" else ",")
    try:
        if fmt in ("csv", "tsv"):
            frame = pd.read_csv(
                path, sep="\t" if fmt == "tsv" else ",", dtype=str, keep_default_na=False, na_filter=False
            )
        elif fmt == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            frame = pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"cannot read manifest ({reason})", file=str(path)) from None
    if frame.columns.duplicated().any():
        dup = frame.columns[frame.columns.duplicated()][0]
        raise DataError(f"column {dup!r} appears twice in the header", file=str(path))
    return Table(name=str(path), base_dir=path.resolve().parent, frame=clean_frame(frame))


def clean_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns of plain Python cells with None for empty ones (pandas would turn None into NaN)."""
    return _object_frame({str(c).strip(): [_clean(v) for v in frame[c]] for c in frame.columns}, len(frame))


def frame_from_rows(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """clean_frame for rows given as dicts (the Python API and the server): the columns in first-seen
    order, a key missing from a row is an empty cell."""
    names = list(dict.fromkeys(name for row in rows for name in row))
    return _object_frame({str(n).strip(): [_clean(row.get(n)) for row in rows] for n in names}, len(rows))


def _object_frame(columns: dict[str, list[Any]], length: int) -> pd.DataFrame:
    return pd.DataFrame(columns, dtype=object, index=pd.RangeIndex(length))


def _check_header(path: Path, delimiter: str) -> None:
    """pandas silently renames a repeated header (a, a.1): catch it first."""
    import csv

    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        header = next(csv.reader(handle, delimiter=delimiter), [])
    seen: set[str] = set()
    for name in (h.strip() for h in header):
        if name in seen:
            raise DataError(f"column {name!r} appears twice in the header", file=str(path))
        seen.add(name)


def infer_kind(values: list[Any]) -> str:
    """Guess a column's kind from its non-empty values: extensions, numbers, then cardinality."""
    present = [v for v in values if v is not None]
    if not present:
        return "categorical"
    if all(isinstance(v, bool) for v in present):
        return "categorical"
    strings = [v.lower() for v in present if isinstance(v, str)]
    share = len(strings) / len(present)
    if share >= 0.9 and strings:
        if _share(strings, IMAGE_EXTENSIONS) >= 0.9:
            return "image"
        if _share(strings, AUDIO_EXTENSIONS) >= 0.9:
            return "audio"
    numbers = sum(as_number(v) is not None for v in present)
    if numbers / len(present) >= 0.9:
        return "numeric"
    distinct = len({str(v) for v in present})
    words = sum(len(str(v).split()) for v in present) / len(present)
    if words <= 3 and distinct <= max(2, min(100, len(present) // 5)):
        return "categorical"
    return "text"


def _share(strings: list[str], extensions: tuple[str, ...]) -> float:
    return sum(s.endswith(extensions) for s in strings) / len(strings)


def is_row_index(values: list[Any]) -> bool:
    """An integer column 0..n-1 or 1..n in order is a row id, not a feature."""
    numbers = [as_number(v) for v in values]
    if len(numbers) < 10 or any(n is None or n != int(n) for n in numbers):
        return False
    start = numbers[0]
    return start in (0.0, 1.0) and all(n == start + i for i, n in enumerate(numbers))
