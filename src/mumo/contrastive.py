"""Contrastive pretraining (`task: contrastive`): two (or more) columns embedded into one space.

Symmetric InfoNCE with a learned temperature (CLIP) or the pairwise sigmoid loss with a learned scale
and bias (SigLIP), projection heads per column, in-batch negatives, and GradCache-style accumulation:
with train.accumulate = k the loss is computed over k * batch_size rows at once while only batch_size
rows are held in autograd memory at a time, and the gradients equal those of one big batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mumo.config import TaskConfig
from mumo.data.dataset import Batch
from mumo.metrics import retrieval_metrics
from mumo.model import module_key
from mumo.tasks import TASKS, Task


# ------------------------------------------------------------------------------------------ losses
def infonce_loss(a: Tensor, b: Tensor, scale: Tensor) -> Tensor:
    """CLIP: cross-entropy of a→b and b→a over in-batch negatives; a, b are L2-normalized (N, P)."""
    logits = scale * a @ b.T  # (N, N)
    labels = torch.arange(a.shape[0], device=a.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def sigmoid_loss(a: Tensor, b: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    """SigLIP: every (i, j) pair is a binary problem, positive on the diagonal; summed, divided by N."""
    logits = scale * a @ b.T + bias  # (N, N)
    signs = 2 * torch.eye(a.shape[0], device=a.device) - 1
    return -F.logsigmoid(signs * logits).sum() / a.shape[0]


# ------------------------------------------------------------------------------------------- model
class ContrastiveModel(nn.Module):
    """Per column: encoder → pooled → linear projection → L2-normalized embedding; a learned logit scale
    (and, for the sigmoid loss, a bias)."""

    def __init__(
        self,
        encoders: dict[str, nn.Module],
        pairs: list[tuple[str, str]],
        dim: int,
        projection: int,
        loss: str = "infonce",
        temperature: float = 0.07,
        frozen: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.columns = list(encoders)
        self.pairs = pairs
        self.loss_type = loss
        self.encoders = nn.ModuleDict({module_key(c): e for c, e in encoders.items()})
        self.projections = nn.ModuleDict({module_key(c): nn.Linear(dim, projection) for c in encoders})
        for column in frozen or []:  # a locked tower (LiT) keeps its projection too: a fixed embedding
            self.projections[module_key(column)].requires_grad_(False)
        if loss == "sigmoid":  # SigLIP's initialization: t = 10, b = -10
            self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
            self.bias = nn.Parameter(torch.tensor(-10.0))
        else:
            self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
            self.bias = None  # type: ignore[assignment]

    @property
    def scale(self) -> Tensor:
        return self.log_scale.clamp(max=math.log(100.0)).exp()

    def embed(self, column: str, inputs: dict[str, Tensor]) -> Tensor:
        """(B, P) unit vectors for rows that have the column (the caller passes only those)."""
        key = module_key(column)
        pooled = self.encoders[key](inputs).pooled  # (B, D)
        return F.normalize(self.projections[key](pooled).float(), dim=-1)

    def embed_batch(self, batch: Batch) -> dict[str, Tensor]:
        """Embeddings of every column the batch carries, for every row; absent rows are NaN (never used
        in a loss)."""
        out = {}
        for column in [c for c in self.columns if c in batch.presence]:
            present = batch.presence[column]
            rows = present.nonzero().squeeze(1)
            width = int(self.projections[module_key(column)].out_features)  # type: ignore[arg-type]
            full = torch.full((len(present), width), float("nan"), device=present.device)
            if not len(rows):  # no row has this column: nothing to encode
                out[column] = full
                continue
            emb = self.embed(column, {k: v[rows] for k, v in batch.inputs[column].items()})
            out[column] = full.to(emb.dtype).index_copy(0, rows, emb)
        return out

    def pair_loss(self, embeddings: dict[str, Tensor], presence: dict[str, Tensor]) -> Tensor:
        """Mean over pairs of the loss on rows that have both columns."""
        losses = []
        for left, right in self.pairs:
            both = presence[left] & presence[right]
            if int(both.sum()) < 2:
                continue
            a, b = embeddings[left][both], embeddings[right][both]
            if self.loss_type == "sigmoid":
                losses.append(sigmoid_loss(a, b, self.scale, self.bias))
            else:
                losses.append(infonce_loss(a, b, self.scale))
        if not losses:  # nothing paired in this batch: a zero that still reaches the parameters
            return self.log_scale * 0.0
        return torch.stack(losses).mean()

    def forward(self, batch: Batch) -> Tensor:
        """The loss on the batch (in-batch negatives)."""
        return self.pair_loss(self.embed_batch(batch), batch.presence)


def gradcache_loss(
    model: ContrastiveModel, batch: Batch, chunk: int, backward: Callable[[Tensor], None]
) -> Tensor:
    """Loss of the whole batch, and its gradients accumulated into the parameters, holding the autograd
    graph of only `chunk` rows at a time (Gao et al. 2021, GradCache).

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
            pieces.append(model.embed_batch(_rows(batch, start, start + chunk)))
    cached = {c: torch.cat([p[c] for p in pieces]).requires_grad_(True) for c in model.columns}
    loss = model.pair_loss(cached, batch.presence)
    backward(loss)  # grads on the cached embeddings, on log_scale and bias
    grads = {
        c: torch.nan_to_num(e.grad) if e.grad is not None else torch.zeros_like(e) for c, e in cached.items()
    }
    rng = _rng_state()
    for start, state in zip(starts, states, strict=True):
        _set_rng_state(state)
        part = _rows(batch, start, start + chunk)
        embeddings = model.embed_batch(part)
        surrogate = sum(
            (torch.nan_to_num(embeddings[c]) * grads[c][start : start + chunk]).sum() for c in model.columns
        )
        if isinstance(surrogate, Tensor) and surrogate.requires_grad:  # a chunk with no input at all: nothing
            backward(surrogate)
    _set_rng_state(rng)
    return loss.detach()


def _rng_state() -> tuple[Tensor, list[Tensor]]:
    """CPU and (when present) every CUDA generator's state: dropout in the re-forward must repeat."""
    return torch.get_rng_state(), (torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])


def _set_rng_state(state: tuple[Tensor, list[Tensor]]) -> None:
    torch.set_rng_state(state[0])
    if state[1]:
        torch.cuda.set_rng_state_all(state[1])


def _rows(batch: Batch, start: int, stop: int) -> Batch:
    return Batch(
        inputs={c: {k: v[start:stop] for k, v in d.items()} for c, d in batch.inputs.items()},
        presence={c: p[start:stop] for c, p in batch.presence.items()},
        target=None if batch.target is None else batch.target[start:stop],
    )


# -------------------------------------------------------------------------------------------- task
@TASKS.register("contrastive")
class Contrastive(Task):
    """Outputs are the columns' embeddings side by side (B, C * P), NaN where a column is absent."""

    name = "contrastive"

    def __init__(self, options: TaskConfig, target: Any = None) -> None:
        super().__init__(options, target)  # type: ignore[arg-type]  # no target: the data are pairs
        self.columns: list[str] = []
        self.pairs: list[tuple[str, str]] = []

    @property
    def out_dim(self) -> int:
        return 0

    @property
    def main_metric(self) -> tuple[str, str]:
        return ("recall_mean", "max")

    def training_loss(self, model: nn.Module, batch: Batch) -> Tensor:
        return model(batch)

    def eval_step(self, model: nn.Module, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        assert isinstance(model, ContrastiveModel)
        embeddings = model.embed_batch(batch)
        loss = model.pair_loss(embeddings, batch.presence)
        return loss, torch.cat([embeddings[c] for c in model.columns], dim=1), torch.zeros(len(batch))

    def metrics(self, target: Tensor, outputs: Tensor) -> dict[str, float]:
        width = outputs.shape[1] // max(1, len(self.columns))
        embeddings = {c: outputs[:, i * width : (i + 1) * width].numpy() for i, c in enumerate(self.columns)}
        return pair_retrieval_metrics(embeddings, self.pairs)


def pair_retrieval_metrics(
    embeddings: dict[str, np.ndarray], pairs: list[tuple[str, str]]
) -> dict[str, float]:
    """Recall@1/5/10 and median rank both ways per pair, over rows that have both columns; recall_mean
    averages every recall (the selection metric)."""
    out: dict[str, float] = {}
    for left, right in pairs:
        both = ~np.isnan(embeddings[left]).any(1) & ~np.isnan(embeddings[right]).any(1)
        if both.sum() < 1:
            continue
        out.update(retrieval_metrics(embeddings[left][both] @ embeddings[right][both].T, left, right))
    recalls = [v for k, v in out.items() if "/recall@" in k]
    out["recall_mean"] = float(np.mean(recalls)) if recalls else float("nan")
    return out


# ------------------------------------------------------------------------------------------- build
def resolve_pairs(options: TaskConfig, inputs: list[str]) -> list[tuple[str, str]]:
    """task.pairs checked against the input columns; by default the two inputs, when there are two."""
    from mumo.errors import ConfigError

    if options.pairs is None:
        if len(inputs) != 2:
            raise ConfigError(
                f"task.pairs: needed when there are not exactly two input columns; inputs: {', '.join(inputs)}"
            )
        return [(inputs[0], inputs[1])]
    for pair in options.pairs:
        for column in pair:
            if column not in inputs:
                raise ConfigError(f"task.pairs: no input column {column!r}; inputs: {', '.join(inputs)}")
        if pair[0] == pair[1]:
            raise ConfigError(f"task.pairs: {pair} pairs a column with itself")
    return [(a, b) for a, b in options.pairs]


def build_contrastive(
    model: Any, task: TaskConfig, inputs: dict[str, str], processors: dict[str, Any]
) -> tuple[ContrastiveModel, Contrastive]:
    from mumo.model import build_encoders

    pairs = resolve_pairs(task, list(inputs))
    encoders = build_encoders(model, inputs, processors)
    network = ContrastiveModel(
        encoders, pairs, model.dim, task.projection or model.dim, task.loss, task.temperature, model.freeze
    )
    contrastive = Contrastive(task)
    contrastive.columns, contrastive.pairs = list(inputs), pairs
    return network, contrastive


def contrastive_schema(schema: Any, config: Any) -> Any:
    """Inputs of a contrastive run: the paired columns only; there is no target."""
    from dataclasses import replace

    inputs = list(schema.inputs)
    if config.task.pairs is None:
        inputs = [c for c in inputs if c not in schema.targets]
    pairs = resolve_pairs(config.task, inputs)
    used = [c for c in inputs if any(c in pair for pair in pairs)]
    notes = [*schema.notes]
    unused = [c for c in schema.inputs if c not in used]
    if unused:
        notes.append(f"contrastive: not in task.pairs, ignored: {', '.join(unused)}")
    return replace(schema, inputs={c: schema.inputs[c] for c in used}, targets=[], notes=notes)
