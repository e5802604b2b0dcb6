"""What mumo needs from torch.distributed when Lightning runs it on several processes (DDP, FSDP):
which process this is before Lightning has started, validation that scores every row once, and an
all-gather that carries gradients (contrastive negatives from the global batch)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DistributedSampler

WORK_ENV = "MUMO_RUN_WORK"  # rank zero's work folder, for the processes Lightning starts after it


def launched_by() -> str | None:
    """The launcher that started this process as one of several, from its environment: torchrun (RANK
    and WORLD_SIZE) or SLURM with several tasks; None for a command the user typed (Lightning's own
    launcher starts the other processes from it)."""
    env = os.environ
    if env.get("RANK", "").isdigit() and "WORLD_SIZE" in env:
        return "torchrun"
    if env.get("SLURM_PROCID", "").isdigit() and int(env.get("SLURM_NTASKS", "1") or 1) > 1:
        return "slurm"
    return None


def first_process() -> bool:
    """Whether this process is global rank zero, known before any process group exists: RANK
    (torchrun), SLURM_PROCID (srun), or NODE_RANK and LOCAL_RANK (Lightning's launcher, which sets them
    for the processes it starts)."""
    env = os.environ
    match launched_by():
        case "torchrun":
            return env["RANK"] == "0"
        case "slurm":
            return env["SLURM_PROCID"] == "0"
    return int(env.get("NODE_RANK", 0) or 0) == 0 and int(env.get("LOCAL_RANK", 0) or 0) == 0


def world() -> tuple[int, int]:
    """(rank, world size) of the running process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EveryRowOnce(DistributedSampler[int]):
    """Validation rows split across ranks without padding: rank r takes rows r, r + W, r + 2W, ...
    (torch's DistributedSampler repeats rows to even the ranks out, which would count them twice in
    the metrics). Unsharded (every row, in order) until `shard` is set; a DistributedSampler, so that
    Lightning keeps it instead of putting its own in place."""

    def __init__(self, rows: int) -> None:  # no super().__init__: the rank is known only once DDP runs
        self.rows, self.shard = rows, False

    def _place(self) -> tuple[int, int]:
        return world() if self.shard else (0, 1)

    def __iter__(self) -> Iterator[int]:
        rank, size = self._place()
        return iter(range(rank, self.rows, size))

    def __len__(self) -> int:
        rank, size = self._place()
        return len(range(rank, self.rows, size))

    def set_epoch(self, epoch: int) -> None:
        pass


def gather_rows(*parts: Tensor) -> list[Tensor]:
    """Each part's rows from every rank, in the order of the rows before EveryRowOnce split them."""
    rank, size = world()
    if size == 1:
        return list(parts)
    everyone: list[Any] = [None] * size
    dist.all_gather_object(everyone, [part.cpu() for part in parts])
    out = []
    for i, part in enumerate(parts):
        shards = [theirs[i] for theirs in everyone]
        whole = part.new_empty((sum(len(s) for s in shards), *part.shape[1:]))
        for r, shard in enumerate(shards):
            whole[r::size] = shard
        out.append(whole)
    return out


def gather_with_grad(tensor: Tensor) -> Tensor:
    """Every rank's rows of `tensor`, concatenated in rank order; the gradient flows back to each rank's
    own rows (torch.distributed.nn.all_gather: its backward sums what every rank's loss sends back, so
    that DDP's averaging gives the gradient of one big batch). Ranks may hold different row counts."""
    rank, size = world()
    if size == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather

    counts = [torch.zeros(1, dtype=torch.long) for _ in range(size)]
    dist.all_gather(counts, torch.tensor([len(tensor)]))
    most = int(max(c.item() for c in counts))
    padded = torch.cat([tensor, tensor.new_zeros((most - len(tensor), *tensor.shape[1:]))])
    parts = all_gather(padded)
    return torch.cat([part[: int(n.item())] for part, n in zip(parts, counts, strict=True)])


__all__ = [
    "WORK_ENV",
    "EveryRowOnce",
    "first_process",
    "gather_rows",
    "gather_with_grad",
    "launched_by",
    "world",
]
