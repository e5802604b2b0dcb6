"""Manifests (CSV, JSONL, Parquet) → a Table of plain Python cells, and column-kind inference."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

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
    if path.stat().st_size == 0:
        raise DataError("empty file: no header and no data rows", file=str(path))
    if fmt in ("csv", "tsv"):
        _check_header(path, "\t" if fmt == "tsv" else ",")
    try:
        if fmt in ("csv", "tsv"):
            frame = pd.read_csv(
                path, sep="\t" if fmt == "tsv" else ",", dtype=str, keep_default_na=False, na_filter=False
            )
        elif fmt == "jsonl":
            frame = frame_from_rows(_read_jsonl(path))
        else:
            frame = pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError("no header and no data rows", file=str(path)) from None
    except (ValueError, OSError, pd.errors.ParserError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"cannot read manifest ({reason})", file=str(path)) from None
    if frame.columns.duplicated().any():
        dup = frame.columns[frame.columns.duplicated()][0]
        raise DataError(f"column {dup!r} appears twice in the header", file=str(path))
    if not len(frame):
        raise DataError(
            "no data rows (only a header)" if len(frame.columns) else "no data rows", file=str(path)
        )
    return Table(name=str(path), base_dir=path.resolve().parent, frame=clean_frame(frame))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One JSON object per line (blank lines skipped); a bad line is an error naming its line number."""
    import json

    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as err:
                reason = getattr(err, "msg", str(err))
                raise DataError(f"line {number}: not valid JSON ({reason})", file=str(path)) from None
            if not isinstance(row, dict):
                raise DataError(
                    f"line {number}: a JSON object per line is expected, got {type(row).__name__}",
                    file=str(path),
                )
            rows.append(row)
    return rows


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


class Inferred(NamedTuple):
    kind: str
    reason: str  # why, for the log: "97% of cells parse as numbers; 3 bad cells, first at row 12"


# The first bytes of the files mumo reads, for file cells without an extension.
MAGIC: tuple[tuple[bytes, int, str, str], ...] = (
    (b"\x89PNG", 0, "image", "PNG"),
    (b"\xff\xd8\xff", 0, "image", "JPEG"),
    (b"GIF8", 0, "image", "GIF"),
    (b"BM", 0, "image", "BMP"),
    (b"WEBP", 8, "image", "WEBP"),
    (b"II*\x00", 0, "image", "TIFF"),
    (b"MM\x00*", 0, "image", "TIFF"),
    (b"WAVE", 8, "audio", "WAV"),
    (b"fLaC", 0, "audio", "FLAC"),
    (b"OggS", 0, "audio", "OGG"),
    (b"ID3", 0, "audio", "MP3"),
    (b"\xff\xfb", 0, "audio", "MP3"),
)


def infer_kind(
    values: list[Any], base_dir: Path | None = None, row_number: Callable[[int], int] | None = None
) -> Inferred:
    """A column's kind from its non-empty values: file extensions (or, for paths without one, the
    files' first bytes), numbers, then cardinality; with the reason."""
    row_number = row_number or (lambda index: index + 1)
    present = [(i, v) for i, v in enumerate(values) if v is not None]
    n = len(present)
    if not n:
        return Inferred("categorical", "no values")
    if all(isinstance(v, bool) for _, v in present):
        return Inferred("categorical", "true/false values")
    strings = [v for _, v in present if isinstance(v, str)]
    if strings and len(strings) / n >= 0.9:
        for kind, extensions in (("image", IMAGE_EXTENSIONS), ("audio", AUDIO_EXTENSIONS)):
            share = sum(s.lower().endswith(extensions) for s in strings) / len(strings)
            if share >= 0.9:
                return Inferred(kind, f"{share:.0%} of cells are {kind} file names")
        if base_dir is not None:
            sniffed = _sniff(strings, base_dir)
            if sniffed is not None:
                return sniffed
    numbers = [i for i, v in present if as_number(v) is not None]
    numeric_looking = [i for i, v in present if _parses_as_float(v)]  # also nan, inf, 1e400
    if len(numeric_looking) / n >= 0.9 and numbers:
        bad = [i for i, v in present if as_number(v) is None]
        reason = f"{len(numbers) / n:.0%} of cells parse as numbers"
        if bad:
            reason += f"; {len(bad)} bad cells (not finite numbers), first at row {row_number(bad[0])}"
        return Inferred("numeric", reason)
    distinct = len({str(v) for _, v in present})
    words = sum(len(str(v).split()) for _, v in present) / n
    if words <= 3 and distinct <= max(2, min(100, n // 5)):
        return Inferred("categorical", f"{distinct} distinct values of {words:.1f} words on average")
    return Inferred("text", f"{distinct} distinct values of {words:.1f} words on average")


def _parses_as_float(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int | float):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _sniff(cells: list[str], base_dir: Path, sample: int = 16) -> Inferred | None:
    """Paths without a known extension: the kind their files' first bytes say, when at least 90% of a
    sample of cells name existing files of one kind."""
    chosen = cells[:: max(1, len(cells) // sample)][:sample]
    found: list[tuple[str, str]] = []
    for cell in chosen:
        if len(cell) > 1000 or "\n" in cell:
            return None
        path = Path(cell).expanduser()
        path = path if path.is_absolute() else base_dir / path
        try:
            with open(path, "rb") as handle:
                head = handle.read(16)
        except (OSError, ValueError):  # ValueError: a NUL byte in the cell, which no path holds
            continue
        found += [(kind, name) for magic, at, kind, name in MAGIC if head[at : at + len(magic)] == magic][:1]
    kinds = Counter(kind for kind, _ in found)
    if not kinds:
        return None
    kind, count = kinds.most_common(1)[0]
    if count / len(chosen) < 0.9:
        return None
    formats = ", ".join(sorted({name for k, name in found if k == kind}))
    article = "an" if kind[0] in "aeiou" else "a"
    return Inferred(
        kind, f"files without {article} {kind} extension, recognised by their first bytes ({formats})"
    )


def is_row_index(values: list[Any]) -> bool:
    """An integer column 0..n-1 or 1..n in order is a row id, not a feature."""
    numbers = [as_number(v) for v in values]
    if len(numbers) < 10 or any(n is None or n != int(n) for n in numbers):
        return False
    start = numbers[0]
    return start in (0.0, 1.0) and all(n == start + i for i, n in enumerate(numbers))
