"""GradCache (Gao et al. 2021): a loss over a big batch whose gradients equal the big batch's, while the
autograd graph holds only `chunk` rows at a time. A training technique any task whose network embeds
rows into a loss (contrastive) can ask for with `Task.gradcache`; the trainer uses it when
train.accumulate > 1."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from mumo.data.dataset import Batch


class Embedding(Protocol):
    """What GradCache needs of a network: per-column embeddings of a batch, and the loss on them."""

    columns: list[str]

    def embed_batch(self, batch: Batch) -> dict[str, Tensor]: ...

    def pair_loss(self, embeddings: dict[str, Tensor], presence: dict[str, Tensor]) -> Tensor: ...


def gradcache_loss(
    network: Embedding, batch: Batch, chunk: int, backward: Callable[[Tensor], None]
) -> Tensor:
    """Loss of the whole batch, and its gradients accumulated into the parameters:

    1. embed every chunk without a graph (saving each chunk's RNG state, so dropout repeats exactly);
    2. the loss on all embeddings, and its gradient with respect to the embeddings;
    3. per chunk: embed again with a graph and backpropagate that chunk's embedding gradients.
    """
    size = len(batch)
    starts = list(range(0, size, chunk))
    states, pieces = [], []
    with torch.no_grad():
        for start in starts:
            states.append(_rng_state())
            pieces.append(network.embed_batch(rows(batch, start, start + chunk)))
    cached = {c: torch.cat([p[c] for p in pieces]).requires_grad_(True) for c in network.columns}
    loss = network.pair_loss(cached, batch.presence)
    backward(loss)  # grads on the cached embeddings, and on the loss's own parameters (scale, bias)
    grads = {
        c: torch.nan_to_num(e.grad) if e.grad is not None else torch.zeros_like(e) for c, e in cached.items()
    }
    rng = _rng_state()
    for start, state in zip(starts, states, strict=True):
        _set_rng_state(state)
        embeddings = network.embed_batch(rows(batch, start, start + chunk))
        surrogate = sum(
            (torch.nan_to_num(embeddings[c]) * grads[c][start : start + chunk]).sum() for c in network.columns
        )
        if isinstance(surrogate, Tensor) and surrogate.requires_grad:  # a chunk with no input at all: nothing
            backward(surrogate)
    _set_rng_state(rng)
    return loss.detach()


def rows(batch: Batch, start: int, stop: int) -> Batch:
    """Rows start:stop of a batch."""
    return Batch(
        inputs={c: {k: v[start:stop] for k, v in d.items()} for c, d in batch.inputs.items()},
        presence={c: p[start:stop] for c, p in batch.presence.items()},
        target=None if batch.target is None else batch.target[start:stop],
    )


def _rng_state() -> tuple[Tensor, list[Tensor]]:
    """CPU and (when present) every CUDA generator's state: dropout in the re-forward must repeat."""
    return torch.get_rng_state(), (torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])


def _set_rng_state(state: tuple[Tensor, list[Tensor]]) -> None:
    torch.set_rng_state(state[0])
    if state[1]:
        torch.cuda.set_rng_state_all(state[1])
