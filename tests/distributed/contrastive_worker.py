"""One process of the distributed tests. The contrastive gather parity test: the loss and gradients of a ContrastiveNetwork on
its share of a fixed global batch, under DistributedDataParallel (gloo) when WORLD_SIZE > 1 (loss
"matching": a MatchingNetwork's, its ITM head scoring every pair 0 so that the ITC part is compared). Rank zero
writes them as JSON. With "rows" instead of a loss: how validation rows are split and gathered. Run by tests/test_distributed.py with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT."""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist
from torch import nn

from mumo.data.dataset import Batch
from mumo.outputs import EncoderOutput
from mumo.tasks.contrastive import ContrastiveNetwork
from mumo.tasks.matching import MatchingNetwork

ROWS = 16


class Encoder(nn.Module):
    def __init__(self, width: int, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, dim)

    def forward(self, inputs: dict[str, torch.Tensor]) -> EncoderOutput:
        pooled = torch.tanh(self.linear(inputs["x"]))
        return EncoderOutput(pooled, pooled[:, None], torch.ones(len(pooled), 1, dtype=torch.bool))


class Fusion(nn.Module):
    out_dim = 8


def rows(out: str) -> None:
    """EveryRowOnce and gather_rows on 21 validation rows."""
    from mumo.distributed import EveryRowOnce, gather_rows

    dist.init_process_group("gloo")
    sampler = EveryRowOnce(21)
    sampler.shard = True
    mine = torch.tensor(list(sampler))
    counts: list[int] = [0] * dist.get_world_size()
    dist.all_gather_object(counts, len(mine))
    (gathered,) = gather_rows(mine)
    if dist.get_rank() == 0:
        with open(out, "w") as handle:
            json.dump({"ranks": counts, "gathered": gathered.tolist()}, handle)
    dist.destroy_process_group()


def main(out: str, loss: str) -> None:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if loss == "rows":
        return rows(out)
    if world > 1:
        dist.init_process_group("gloo")
    torch.manual_seed(0)
    encoders = {"a": Encoder(6, 8), "b": Encoder(5, 8)}
    if loss == "matching":  # ITC + ITM; the ITM head's mined negatives are drawn per rank: scored 0 here
        network: ContrastiveNetwork = MatchingNetwork(encoders, ("a", "b"), 8, 4, Fusion())
        network.score = lambda outputs, left, right: torch.zeros(len(left))  # type: ignore[method-assign]
    else:
        network = ContrastiveNetwork(encoders, [("a", "b")], 8, 4, loss=loss)
    data = torch.Generator().manual_seed(1)
    a, b = torch.randn(ROWS, 6, generator=data), torch.randn(ROWS, 5, generator=data)
    has_b = torch.ones(ROWS, dtype=torch.bool)
    has_b[[3, 12, 13]] = False  # rows without their partner: left out of the loss, ranks hold unequal pairs
    mine = slice(rank * ROWS // world, (rank + 1) * ROWS // world)
    batch = Batch(
        inputs={"a": {"x": a[mine]}, "b": {"x": b[mine]}},
        presence={"a": torch.ones(ROWS, dtype=torch.bool)[mine], "b": has_b[mine]},
    )
    unused = loss == "matching"  # the ITM head, scored 0 here
    model = (
        nn.parallel.DistributedDataParallel(network, find_unused_parameters=unused) if world > 1 else network
    )
    network.train()
    value = model(batch)
    value.backward()
    grads = {name: p.grad.flatten().tolist() for name, p in network.named_parameters() if p.grad is not None}
    if rank == 0:
        with open(out, "w") as handle:
            json.dump({"loss": value.item(), "grads": grads}, handle)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
