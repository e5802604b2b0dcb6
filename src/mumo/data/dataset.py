"""A Split as a torch Dataset, and the collate that builds a Batch with a presence mask per input."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mumo.data.prepare import Split
from mumo.data.targets import TargetProcessor
from mumo.distributed import EveryRowOnce
from mumo.modalities import Processor


@dataclass
class Batch:
    """Model inputs per column, which rows have each column (presence), and the targets if known."""

    inputs: dict[str, dict[str, Tensor]]
    presence: dict[str, Tensor]  # column → (B,) bool
    target: Tensor | None = None

    def __len__(self) -> int:
        return len(next(iter(self.presence.values())))


class SplitDataset(Dataset[int]):
    """Yields row indices; the collate looks the decoded items up, so the per-row cost is nil."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> int:
        return index


class Collate:
    """Builds a Batch from row indices: processors stack their items (and augment when training).

    Columns whose processor has `fixed_rows` (numbers, categories), the presence masks and the targets
    are stacked once for the whole split, side by side in one tensor per dtype: a batch of them is a
    few index operations and views, however many such columns a table has.
    """

    def __init__(
        self, split: Split, processors: dict[str, Processor], target: TargetProcessor | None, train: bool
    ) -> None:
        self.processors, self.train, self.split = processors, train, split
        items_of = {c: split.items.get(c, [None] * len(split)) for c in processors}
        whole: dict[tuple[str, str], Tensor] = {}
        for column, items in items_of.items():
            whole[column, ""] = torch.tensor([item is not None for item in items], dtype=torch.bool)
            if processors[column].fixed_rows:
                for key, tensor in processors[column].collate(items, False).items():
                    whole[column, key] = tensor
        self.side_by_side = SideBySide(whole, len(split))
        self.stacked = {c: [key for (column, key) in whole if column == c and key] for c in processors}
        self.targets = target.stack(split.targets) if target is not None else None

    def __call__(self, indices: list[int]) -> Batch:
        index = torch.as_tensor(indices, dtype=torch.long)
        taken = self.side_by_side.take(index)
        inputs = {}
        for column, processor in self.processors.items():
            if self.stacked[column]:
                inputs[column] = {key: taken[column, key] for key in self.stacked[column]}
            else:
                inputs[column] = processor.collate(self._take(column, indices), self.train)
        presence = {c: taken[c, ""] for c in self.processors}
        return Batch(inputs, presence, self.targets[index] if self.targets is not None else None)

    def _take(self, column: str, indices: list[int]) -> list[Any]:
        if column not in self.split.items:  # a column the split does not have is absent in every row
            return [None] * len(indices)
        return self.split.take(column, indices)


class SideBySide:
    """Tensors with the same first dimension, kept as one (N, width) tensor per dtype; take(rows) indexes
    each block once and hands every tensor back as a view of its slice."""

    def __init__(self, tensors: dict[Any, Tensor], rows: int) -> None:
        self.slices: dict[Any, tuple[torch.dtype, int, int, tuple[int, ...]]] = {}
        parts: dict[torch.dtype, list[Tensor]] = {}
        widths: dict[torch.dtype, int] = {}
        for name, tensor in tensors.items():
            flat = tensor.reshape(rows, math.prod(tensor.shape[1:]))
            start = widths.get(tensor.dtype, 0)
            widths[tensor.dtype] = start + flat.shape[1]
            parts.setdefault(tensor.dtype, []).append(flat)
            self.slices[name] = (tensor.dtype, start, start + flat.shape[1], tuple(tensor.shape[1:]))
        self.blocks = {dtype: torch.cat(group, dim=1) for dtype, group in parts.items()}

    def take(self, index: Tensor) -> dict[Any, Tensor]:
        blocks = {dtype: block[index] for dtype, block in self.blocks.items()}
        taken = {}
        for name, (dtype, start, end, shape) in self.slices.items():
            if not shape:  # (N,): one column of the block
                taken[name] = blocks[dtype][:, start]
            elif len(shape) == 1:  # (N, width): already the block's slice
                taken[name] = blocks[dtype][:, start:end]
            else:
                taken[name] = blocks[dtype][:, start:end].reshape(len(index), *shape)
        return taken


def make_batch(
    items: dict[str, list[Any]],
    processors: dict[str, Processor],
    targets: list[Any] | None,
    target: TargetProcessor | None,
    train: bool,
) -> Batch:
    """Items per column (None = absent) → a Batch; columns the model knows but items lack are absent."""
    size = len(next(iter(items.values()))) if items else len(targets or [])
    inputs, presence = {}, {}
    for column, processor in processors.items():
        column_items = items.get(column, [None] * size)
        presence[column] = torch.tensor([item is not None for item in column_items], dtype=torch.bool)
        inputs[column] = processor.collate(column_items, train)
    target_tensor = target.stack(targets) if target is not None and targets is not None else None
    return Batch(inputs, presence, target_tensor)


def make_loader(
    split: Split,
    processors: dict[str, Processor],
    target: TargetProcessor | None,
    *,
    batch_size: int,
    train: bool,
    num_workers: int = 0,
    seed: int = 0,
) -> DataLoader[Any]:
    """Training: shuffled (Lightning shards it across ranks); otherwise in order, through a sampler that
    scores every row once when validation runs on several ranks (EveryRowOnce)."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        SplitDataset(split),
        batch_size=batch_size,
        shuffle=train,
        sampler=None if train else EveryRowOnce(len(split)),
        drop_last=train and len(split) > batch_size,
        collate_fn=Collate(split, processors, target, train),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=generator if train else None,
    )
