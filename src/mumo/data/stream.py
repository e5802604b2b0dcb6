"""data.stream: a training table larger than memory. The manifest is a Parquet file read one row group
at a time in the DataLoader's workers, its cells decoded as batches are built; row groups are shared
out over ranks and workers without overlap. Schema, task and processors come from a sample of the
table (data.stream_sample rows spread over its row groups); validation and test tables stay in memory.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mumo.cells import CellError
from mumo.data.dataset import Batch, make_batch
from mumo.data.table import Table, clean_frame
from mumo.data.targets import TargetProcessor
from mumo.distributed import world
from mumo.errors import DataError
from mumo.modalities import Processor


@dataclass
class ParquetSource:
    """A Parquet manifest known by its metadata: its columns and the rows of each row group."""

    path: Path
    columns: list[str]
    groups: list[int]  # rows per row group

    @classmethod
    def open(cls, path: str | Path) -> ParquetSource:
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.is_file():
            raise DataError("manifest not found", file=str(path))
        if path.suffix.lower() != ".parquet":
            raise DataError(
                "data.stream reads Parquet row groups; write the table as .parquet "
                "(pandas: frame.to_parquet(path, row_group_size=65536))",
                file=str(path),
            )
        try:
            meta = pq.ParquetFile(path).metadata
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read manifest ({str(err).splitlines()[0]})", file=str(path)) from None
        groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        if not sum(groups):
            raise DataError("no data rows", file=str(path))
        return cls(path, [str(c) for c in meta.schema.names], groups)

    @property
    def rows(self) -> int:
        return sum(self.groups)

    def starts(self) -> list[int]:
        return [0, *np.cumsum(self.groups)[:-1].tolist()]

    def read(self, group: int, columns: list[str] | None = None) -> Table:
        """One row group as a Table whose row numbers are those of the whole file."""
        import pyarrow.parquet as pq

        frame = pq.ParquetFile(self.path).read_row_group(group, columns=columns).to_pandas()
        start = self.starts()[group]
        return Table(
            str(self.path),
            self.path.resolve().parent,
            clean_frame(frame),
            list(range(start + 1, start + len(frame) + 1)),
        )

    def sample(self, rows: int) -> Table:
        """About `rows` rows spread over the file: whole row groups, evenly spaced, thinned to `rows`."""
        if rows >= self.rows:
            parts = [self.read(g) for g in range(len(self.groups))]
        else:
            mean = self.rows / len(self.groups)
            count = min(len(self.groups), max(1, math.ceil(rows / mean)))
            picked = np.linspace(0, len(self.groups) - 1, count).round().astype(int)
            parts = [self.read(int(g)) for g in dict.fromkeys(picked.tolist())]
        frame = pd.concat([p.frame for p in parts], ignore_index=True)
        numbers = [n for p in parts for n in (p.numbers or [])]
        if len(frame) > rows:
            keep = np.linspace(0, len(frame) - 1, rows).round().astype(int)
            frame, numbers = frame.iloc[keep].reset_index(drop=True), [numbers[i] for i in keep]
        return Table(str(self.path), self.path.resolve().parent, frame, numbers)


class StreamingDataset(IterableDataset[Batch]):
    """Training batches decoded from the row groups as they are read. Every epoch the row groups are
    shuffled (the same order on every rank) and dealt out to the (rank, worker) slots; rows are
    shuffled within what a slot reads. Every rank yields the same number of batches (DDP steps in
    lockstep), total rows // (ranks x batch_size): a slot whose rows run out first yields the rest as
    a shorter batch, and only if that is still short (row groups of very uneven size) goes round its
    row groups again. With fewer row groups than slots, each slot takes every slots-th row instead."""

    def __init__(
        self,
        source: ParquetSource,
        processors: dict[str, Processor],
        target: TargetProcessor | None,
        batch_size: int,
        on_error: str,
        seed: int = 0,
    ) -> None:
        self.source, self.processors, self.target = source, processors, target
        self.batch_size, self.on_error, self.seed = batch_size, on_error, seed
        self.columns = [c for c in [*processors, *(target.columns if target else [])] if c in source.columns]
        self.epoch = 0
        # One flag per row of the file, in shared memory: the DataLoader's workers mark the rows they
        # skip, the same row marked again in a later epoch counts once (skipped_rows()).
        self.skipped = torch.zeros(source.rows, dtype=torch.bool).share_memory_()

    def skipped_rows(self) -> list[int]:
        """The row numbers (1-based, of the file) skipped so far, on every rank."""
        mine = (self.skipped.nonzero().flatten() + 1).tolist()
        rank, size = world()
        if size == 1:
            return mine  # type: ignore[no-any-return]
        everyone: list[Any] = [None] * size
        dist.all_gather_object(everyone, mine)
        return sorted({row for theirs in everyone for row in theirs})

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """Batches per rank and epoch."""
        return max(1, self.source.rows // (world()[1] * self.batch_size))

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rank, ranks = world()
        slot, slots = rank * workers + worker, ranks * workers
        quota = len(self) // workers + (worker < len(self) % workers)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.source.groups))
        mine = order[slot::slots] if len(order) >= slots else order
        stride = 1 if len(order) >= slots else slots
        shuffle = np.random.default_rng([self.seed, self.epoch, slot])
        buffer: list[tuple[dict[str, Any], Any]] = []
        made = 0
        while made < quota:
            before = made
            for group in mine.tolist():
                rows = self._rows(int(group), slot if stride > 1 else 0, stride)
                buffer += [rows[i] for i in shuffle.permutation(len(rows))]
                while len(buffer) >= self.batch_size and made < quota:
                    taken, buffer = buffer[: self.batch_size], buffer[self.batch_size :]
                    yield self._batch(taken)
                    made += 1
                if made >= quota:
                    return
            if buffer:  # the end of this slot's rows: what is left, as a shorter batch
                yield self._batch(buffer)
                buffer, made = [], made + 1
            if made == before:
                return  # nothing usable in this slot's rows (every row skipped)
            # still short of the quota (row groups of uneven size): round again, repeating rows

    def _rows(self, group: int, offset: int, stride: int) -> list[tuple[dict[str, Any], Any]]:
        """(items per column, encoded target) of the usable rows of one row group (every stride-th)."""
        table = self.source.read(group, self.columns)
        if stride > 1:
            start = self.source.starts()[group]
            table = table.subset([i for i in range(len(table)) if (start + i) % stride == offset])
        bad: dict[int, str] = {}
        items: dict[str, list[Any]] = {}
        for column, processor in self.processors.items():
            if column not in table.columns:
                items[column] = [None] * len(table)
                continue
            decoded = processor.load_many(table.values(column), table.base_dir)
            for row, (_, error) in enumerate(decoded):
                if error is not None:
                    self._bad(table, row, column, error)
                    if self.on_error == "skip":
                        bad[row] = error
            items[column] = [value for value, _ in decoded]
        targets: list[Any] = [None] * len(table)
        if self.target is not None:
            cells = table.frame[self.target.columns].values.tolist()
            for row, values in enumerate(cells):
                try:
                    if any(v is None for v in values):
                        raise CellError("empty target")
                    targets[row] = self.target.encode_cells(values, table.base_dir)
                except CellError as err:
                    self._bad(table, row, self.target.columns[0], str(err))
                    bad[row] = str(err)
        if bad:
            self.skipped[[table.row_number(row) - 1 for row in bad]] = True
            print(
                f"{table.name}: row group {group}: {len(bad)} rows skipped (first: row "
                f"{table.row_number(min(bad))}, {bad[min(bad)]})",
                file=sys.stderr,
            )
        return [
            ({c: values[row] for c, values in items.items()}, targets[row])
            for row in range(len(table))
            if row not in bad
        ]

    def _bad(self, table: Table, row: int, column: str, reason: str) -> None:
        """A bad cell fails the run under on_error: fail; otherwise its row is skipped (a target, or
        on_error: skip) or the cell is absent."""
        if self.on_error == "fail":
            raise DataError(
                f"{reason} (use --on-error skip|absent to continue past bad rows)",
                file=table.name,
                row=table.row_number(row),
                column=column,
            )

    def _batch(self, rows: list[tuple[dict[str, Any], Any]]) -> Batch:
        items = {c: [row[c] for row, _ in rows] for c in self.processors}
        targets = [t for _, t in rows] if self.target is not None else None
        return make_batch(items, self.processors, targets, self.target, train=True)


def _as_is(batch: Any) -> Any:
    return batch


def stream_loader(dataset: StreamingDataset, num_workers: int) -> DataLoader[Any]:
    """Batches come whole from the dataset (batch_size None): the workers decode, the loader passes on."""
    return DataLoader(dataset, batch_size=None, num_workers=num_workers, collate_fn=_as_is)


__all__ = ["ParquetSource", "StreamingDataset", "stream_loader"]
