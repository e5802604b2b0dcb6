"""From tables to model-ready splits: schema (column kinds), fitted processors, validated and decoded rows."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from mumo.cells import CellError
from mumo.config import DataConfig
from mumo.data.table import Table, infer_kind, is_row_index
from mumo.data.targets import TargetProcessor
from mumo.errors import DataError
from mumo.modalities import PROCESSORS, Processor

FILE_KINDS = ("image", "audio")


@dataclass
class Schema:
    """Which columns are inputs (and of what kind), which are targets, and the task's name."""

    inputs: dict[str, str]
    targets: list[str]
    task: str
    notes: list[str] = field(default_factory=list)  # what inference decided, for the log


def resolve_schema(data: DataConfig, table: Table, task: str = "auto") -> Schema:
    """Column kinds from the config, else inferred from the train table's values. The task stays as
    the config names it (`auto` is resolved by mumo.tasks.resolve_task)."""
    for column in [*data.targets, *data.columns, *data.ignore]:
        if column not in table.columns:
            raise DataError(
                f"column {column!r} named in the config is not in the manifest; columns: {', '.join(table.columns)}",
                file=table.name,
            )
    targets = data.targets
    notes: list[str] = []
    inputs: dict[str, str] = {}
    for column in table.columns:
        if column in targets or column in data.ignore:
            continue
        if column in data.columns:
            inputs[column] = data.columns[column]
            continue
        values = table.values(column)
        if all(v is None for v in values):
            notes.append(f"column {column!r} is empty in train: ignored")
            continue
        if is_row_index(values):
            notes.append(
                f"column {column!r} looks like a row id: ignored (list it in data.columns to use it)"
            )
            continue
        inferred = infer_kind(values, table.base_dir, table.row_number)
        inputs[column] = inferred.kind
        notes.append(f"{column}: {inferred.kind} ({inferred.reason})")
    if not inputs:
        raise DataError(
            "no input columns left after removing the target and ignored columns", file=table.name
        )
    return Schema(inputs=inputs, targets=targets, task=task, notes=notes)


def make_processors(
    schema: Schema, data: DataConfig, encoders: dict[str, Any] | None = None
) -> dict[str, Processor]:
    """A processor per input column; a pretrained backbone (encoder type hf) brings its own."""
    options = {"text": data.text, "image": data.image, "audio": data.audio}
    processors: dict[str, Processor] = {}
    for column, kind in schema.inputs.items():
        encoder = (encoders or {}).get(column)
        if encoder is not None and encoder.type == "hf":
            processors[column] = PROCESSORS.get(f"{kind}/hf")(column, encoder)  # type: ignore[call-arg]
            continue
        cls = PROCESSORS.get(kind, key=f"data.columns.{column}")
        processors[column] = cls(column, options[kind]) if kind in options else cls(column)  # type: ignore[call-arg]
    return processors


@dataclass
class Issue:
    """One bad cell: where it is, why, and what was done about it."""

    file: str
    row: int  # 1-based data row (the header is not counted)
    column: str
    reason: str
    action: str  # skipped | absent


@dataclass
class Split:
    """Validated rows of one split: an item per input column (None = absent) and the encoded targets.

    Items are decoded, except in the columns of `lazy` (data.cache: false): there they are the checked
    cells, decoded each time they are taken, so a split of many files need not fit in memory.
    """

    name: str
    items: dict[str, list[Any]]
    targets: list[Any]
    rows: list[int]  # 1-based row numbers in the source manifest
    issues: list[Issue] = field(default_factory=list)
    absent: Counter[str] = field(default_factory=Counter)
    lazy: dict[str, Callable[[Any], Any]] = field(default_factory=dict)  # column → decode(cell)

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, column: str, rows: Iterable[int]) -> list[Any]:
        """The decoded items of `column` at the given row positions (None where absent)."""
        values = self.items[column]
        decode = self.lazy.get(column)
        if decode is None:
            return [values[i] for i in rows]
        return [None if values[i] is None else decode(values[i]) for i in rows]

    def sample(self, column: str, limit: int = 2000) -> list[Any]:
        """Decoded present items of a column, evenly spaced, at most `limit` when the column is lazy."""
        present = [i for i, value in enumerate(self.items[column]) if value is not None]
        if column in self.lazy:
            present = present[:: max(1, len(present) // limit)][:limit]
        return self.take(column, present)


def load_split(
    name: str,
    table: Table,
    processors: dict[str, Processor],
    target: TargetProcessor | None,
    on_error: str,
    progress: Callable[[str, int], Iterator[None]] | None = None,
    keep_decoded: bool = True,
) -> Split:
    """Validate and decode every cell; bad cells fail, skip their row, or become absent (on_error).
    With keep_decoded false, image and audio cells are checked by decoding them and then kept as cells
    (the split decodes them again when they are taken)."""
    n = len(table)
    bad: dict[int, list[tuple[str, str]]] = {}
    items: dict[str, list[Any]] = {}
    lazy: dict[str, Callable[[Any], Any]] = {}
    for column, processor in processors.items():
        if column not in table.columns:
            items[column] = [None] * n  # a column left out of the manifest is absent everywhere
            continue
        cells = table.values(column)
        decode_now = keep_decoded or processor.kind not in FILE_KINDS
        if not decode_now:
            lazy[column] = partial(processor.load, base_dir=table.base_dir)
        decoded = _decode_column(processor, cells, table.base_dir, progress, f"{name}: {column}", decode_now)
        for row, (_, error) in enumerate(decoded):
            if error is not None:
                _fail_or_note(on_error, table.name, table.row_number(row), column, error)
                bad.setdefault(row, []).append((column, error))
        items[column] = [value for value, _ in decoded]
    encoded_targets: list[Any] = [None] * n
    if target is not None:
        for column in target.columns:
            if column not in table.columns:
                raise DataError(f"target column {column!r} is missing", file=table.name)
        target_cells = table.frame[target.columns].values.tolist()
        for row, values in enumerate(target_cells):
            if any(v is None for v in values):
                error = "empty target"
            else:
                try:
                    encoded_targets[row] = target.encode_cells(values, table.base_dir)
                    continue
                except CellError as err:
                    error = str(err)
            policy = "skip" if on_error == "absent" else on_error
            _fail_or_note(policy, table.name, table.row_number(row), target.columns[0], error)
            bad.setdefault(row, []).append((target.columns[0], error + " (target)"))
    issues, keep = [], []
    for row in range(n):
        problems = bad.get(row, [])
        skip = bool(problems) and (on_error == "skip" or any(r.endswith("(target)") for _, r in problems))
        for column, reason in problems:
            action = "skipped" if skip else "absent"
            issues.append(
                Issue(table.name, table.row_number(row), column, reason.removesuffix(" (target)"), action)
            )
        if not skip:
            keep.append(row)
    split = Split(
        name=name,
        items={c: [values[r] for r in keep] for c, values in items.items()},
        targets=[encoded_targets[r] for r in keep],
        rows=[table.row_number(r) for r in keep],
        issues=issues,
        lazy=lazy,
    )
    for column, values in split.items.items():
        split.absent[column] = sum(v is None for v in values)
    return split


def _fail_or_note(on_error: str, file: str, row: int, column: str, reason: str) -> None:
    if on_error == "fail":
        raise DataError(
            f"{reason} (use --on-error skip|absent to continue past bad rows)",
            file=file,
            row=row,
            column=column,
        )


def _decode_column(
    processor: Processor,
    cells: list[Any],
    base_dir: Path,
    progress: Callable[[str, int], Iterator[None]] | None,
    label: str,
    keep: bool = True,
) -> list[tuple[Any, str | None]]:
    """(decoded value or None, error or None) per cell; file columns decode on a thread pool. With
    keep false, a good cell comes back as itself (checked, not kept decoded)."""
    if keep and (processor.kind not in FILE_KINDS or len(cells) < 8):  # a pool costs more than a few files
        return processor.load_many(cells, base_dir)
    one = (
        partial(processor.load_cell, base_dir=base_dir) if keep else partial(_check_cell, processor, base_dir)
    )
    out: list[tuple[Any, str | None]] = []
    ticks = progress(label, len(cells)) if progress is not None else None
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        for result in pool.map(one, cells, chunksize=16):
            out.append(result)
            if ticks is not None:
                next(ticks, None)
    return out


def _check_cell(processor: Processor, base_dir: Path, cell: Any) -> tuple[Any, str | None]:
    value, error = processor.load_cell(cell, base_dir)
    return (None if value is None else cell), error


def fit_processors(
    processors: dict[str, Processor], target: TargetProcessor | None, table: Table, keep: Collection[str] = ()
) -> None:
    """Fit every processor on the train table's raw cells (before decoding); those in `keep` are already
    fitted (taken from another run) and stay as they are."""
    for column, processor in processors.items():
        if column in keep:
            continue
        cells = [c for c in table.values(column) if c is not None]
        processor.fit(cells, table.base_dir)
    if target is not None:
        target.fit(table.frame[target.columns].values.tolist())


def finish_processors(processors: dict[str, Processor], split: Split, keep: Collection[str] = ()) -> None:
    """Statistics that need decoded train items (image/audio normalization)."""
    for column, processor in processors.items():
        if column in keep:
            continue
        processor.finish(split.sample(column))


def split_rows(
    table: Table, fraction: float, seed: int, labels: list[Any] | None, notes: list[str] | None = None
) -> list[int]:
    """Row numbers (1-based, as in the manifest) to hold out as validation data: `fraction` of the rows,
    stratified by label when labels are given, never the last row of a class (so train keeps every
    class); what was done is added to `notes`."""
    rng = np.random.default_rng(seed)
    groups: dict[Any, list[int]] = {}
    for row in range(len(table)):
        groups.setdefault(labels[row] if labels is not None else 0, []).append(row)
    held: list[int] = []
    for rows in groups.values():
        take = min(int(round(len(rows) * fraction)), len(rows) - 1)
        held.extend(int(r) for r in rng.permutation(rows)[:take])
    if not held:  # tiny data: one row, from the largest class that can spare one
        largest = max(groups.values(), key=len)
        if len(largest) < 2:
            what = (
                "every class has a single row" if labels is not None and len(groups) > 1 else "too few rows"
            )
            raise DataError(
                f"cannot hold out validation rows: {what} (holding one out would leave a class out of "
                "training); give validation data with data.val (--val F)",
                file=table.name,
            )
        held = [int(rng.choice(largest))]
    held.sort()
    if notes is not None:
        how = ", stratified by label" if labels is not None else ""
        notes.append(
            f"val: {len(held)} of the {len(table)} train rows held out (data.val_fraction {fraction}{how})"
        )
        if labels is not None:
            in_val = {labels[r] for r in held}
            missing = [str(label) for label in groups if label not in in_val]
            if missing:
                shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
                notes.append(
                    f"val has no rows of {len(missing)} classes ({shown}): too few rows to hold one out"
                )
    return [table.row_number(r) for r in held]


def split_off(table: Table, rows: list[int]) -> tuple[Table, Table]:
    """(train without the given rows, those rows): row numbers are 1-based, as split_rows gives them."""
    wanted = set(rows)
    held = [i for i in range(len(table)) if table.row_number(i) in wanted]
    if len(held) != len(wanted):
        raise DataError(
            f"the run's split.json names rows the train manifest does not have (it has {len(table)})",
            file=table.name,
        )
    taken = set(held)
    return table.subset([i for i in range(len(table)) if i not in taken]), table.subset(held)


def summarize_issues(issues: list[Issue]) -> str:
    """'12 rows skipped (10 × file not found, 2 × cannot decode image)'."""
    if not issues:
        return ""
    reasons = Counter(_reason_kind(i.reason) for i in issues)
    detail = ", ".join(f"{count} × {reason}" for reason, count in reasons.most_common())
    skipped = len({(i.file, i.row) for i in issues if i.action == "skipped"})
    absent = sum(i.action == "absent" for i in issues)
    parts = []
    if skipped:
        parts.append(f"{skipped} rows skipped")
    if absent:
        parts.append(f"{absent} cells treated as absent")
    return f"{' and '.join(parts)} ({detail})"


def _reason_kind(reason: str) -> str:
    """'cannot decode audio 00004.wav (...)' and 'file not found: a.png' → their kind, for grouping."""
    text = re.sub(r"\([^)]*\)", "", reason.split(":")[0])
    return " ".join(word for word in text.split() if "." not in word and "/" not in word) or reason
