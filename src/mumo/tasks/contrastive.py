"""task: contrastive — two (or more) columns embedded into one space (CLIP / SigLIP pretraining).

Symmetric InfoNCE with a learned temperature (CLIP) or the pairwise sigmoid loss with a learned scale
and bias (SigLIP), a projection head per column and in-batch negatives. With train.accumulate = k the
task trains with GradCache (mumo.training.gradcache): the loss sees k * batch_size rows while autograd
holds batch_size rows at a time, and the gradients equal those of one big batch.
"""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from mumo.config import TaskOptions
from mumo.config_model import ModelConfig
from mumo.data.dataset import Batch
from mumo.data.prepare import Schema, Split
from mumo.data.table import Table
from mumo.distributed import gather_with_grad
from mumo.errors import ConfigError
from mumo.metrics import retrieval_metrics
from mumo.network import build_encoders, module_key
from mumo.report import cell_html
from mumo.tasks.base import TASKS, Direction, Evaluated, ReportSection, Task, with_inputs

if TYPE_CHECKING:
    from mumo.predictor import Predictor

Pair = tuple[str, str]


class ContrastiveOptions(TaskOptions):
    type: Literal["contrastive"] = "contrastive"
    pairs: list[list[str]] | None = Field(
        None, description="Column pairs to align, e.g. [[caption, image]]; null = the two input columns."
    )
    loss: Literal["infonce", "sigmoid"] = Field(
        "infonce", description="Symmetric InfoNCE (CLIP) or the pairwise sigmoid loss (SigLIP)."
    )
    temperature: float = Field(0.07, gt=0, description="Initial temperature (it is learned).")
    projection: int | None = Field(None, ge=1, description="Embedding width; null = model.dim.")


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


# ----------------------------------------------------------------------------------------- network
class ContrastiveNetwork(nn.Module):
    """Per column: encoder → pooled → linear projection → L2-normalized embedding; a learned logit scale
    (and, for the sigmoid loss, a bias)."""

    def __init__(
        self,
        encoders: dict[str, nn.Module],
        pairs: list[Pair],
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

    def width(self, column: str) -> int:
        return int(self.projections[module_key(column)].out_features)  # type: ignore[arg-type]

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
            full = torch.full((len(present), self.width(column)), float("nan"), device=present.device)
            if not len(rows):  # no row has this column: nothing to encode
                out[column] = full
                continue
            emb = self.embed(column, {k: v[rows] for k, v in batch.inputs[column].items()})
            out[column] = full.to(emb.dtype).index_copy(0, rows, emb)
        return out

    def pair_loss(self, embeddings: dict[str, Tensor], presence: dict[str, Tensor]) -> Tensor:
        """Mean over pairs of the loss on rows that have both columns."""
        if self.training:  # negatives from every rank's rows when DDP trains on several processes
            embeddings = {c: gather_with_grad(e) for c, e in embeddings.items()}
            presence = {c: gather_with_grad(p.to(torch.uint8)).bool() for c, p in presence.items()}
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


# -------------------------------------------------------------------------------------------- task
@TASKS.register("contrastive")
class Contrastive(Task):
    """Validation outputs are the columns' embeddings side by side (B, C * P), NaN where a column is
    absent; a prediction is the cosine similarity of each row's pair(s)."""

    name = "contrastive"
    Options = ContrastiveOptions
    gradcache = True
    compares_inputs = False

    def __init__(self, options: TaskOptions, inputs: dict[str, str], target: Any = None) -> None:
        super().__init__(options, inputs, None)
        self.pairs: list[Pair] = [(a, b) for a, b in options.pairs]  # type: ignore[attr-defined]

    @classmethod
    def plan(cls, schema: Schema, options: TaskOptions) -> tuple[Schema, TaskOptions]:
        """Inputs: the paired columns only; there is no target."""
        pairs = resolve_pairs(options, list(schema.inputs))
        used = {c: kind for c, kind in schema.inputs.items() if any(c in pair for pair in pairs)}
        unused = [c for c in schema.inputs if c not in used]
        note = f"{cls.name}: not in task.pairs, ignored: {', '.join(unused)}" if unused else None
        options = options.model_copy(update={"pairs": [list(pair) for pair in pairs]})
        return with_inputs(schema, used, note), options

    def build_network(self, model: ModelConfig, processors: dict[str, Any]) -> nn.Module:
        options: Any = self.options
        encoders = build_encoders(model, self.inputs, processors)
        return ContrastiveNetwork(
            encoders,
            self.pairs,
            model.dim,
            options.projection or model.dim,
            options.loss,
            options.temperature,
            model.freeze,
        )

    # ------------------------------------------------------------------------------------ training
    def training_loss(self, network: nn.Module, batch: Batch) -> Tensor:
        return network(batch)

    def eval_step(self, network: nn.Module, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        embeddings = self.embed_batch(network, batch)
        loss = network.pair_loss(embeddings, batch.presence)  # type: ignore[operator]
        return loss, torch.cat([embeddings[c] for c in self.inputs], dim=1), torch.zeros(len(batch))

    def metrics(self, targets: Tensor, outputs: Tensor) -> dict[str, float]:
        width = outputs.shape[1] // max(1, len(self.inputs))
        embeddings = {c: outputs[:, i * width : (i + 1) * width].numpy() for i, c in enumerate(self.inputs)}
        return pair_retrieval_metrics(embeddings, self.pairs)

    def directions(self) -> dict[str, Direction]:
        out: dict[str, Direction] = {"loss": "min", "recall_mean": "max"}
        for left, right in self.pairs:
            for name in (f"{left}_to_{right}", f"{right}_to_{left}"):
                out.update({f"{name}/recall@{k}": "max" for k in (1, 5, 10)})
                out[f"{name}/median_rank"] = "min"
        return out

    @property
    def main_metric(self) -> str:
        return "recall_mean"

    # ---------------------------------------------------------------------------------- embeddings
    def embed_batch(self, network: nn.Module, batch: Batch) -> dict[str, Tensor]:
        return network.embed_batch(batch)  # type: ignore[operator,no-any-return]

    def embedding_width(self, network: nn.Module, column: str) -> int:
        return network.width(column)  # type: ignore[operator,no-any-return]

    def similarity_scale(self, network: nn.Module) -> float:
        return float(network.scale.detach())  # type: ignore[union-attr,operator]

    # ---------------------------------------------------------------------------------- prediction
    def predict_outputs(self, network: nn.Module, batch: Batch) -> Tensor:
        """(B, pairs) cosine similarity of each row's pair; NaN where a column is absent."""
        embeddings = self.embed_batch(network, batch)
        return torch.stack([(embeddings[a] * embeddings[b]).sum(-1) for a, b in self.pairs], dim=1)

    def rows(self, outputs: Tensor) -> list[dict[str, Any]]:
        """{"similarity": cosine} (one pair), or {"similarity": {"<a>_<b>": cosine, ...}}; None where a
        column of the pair is absent."""
        names = [f"{a}_{b}" for a, b in self.pairs]
        results = []
        for values in outputs.tolist():
            cosines = [None if math.isnan(v) else v for v in values]
            similarity: Any = cosines[0] if len(names) == 1 else dict(zip(names, cosines, strict=True))
            results.append({"similarity": similarity})
        return results

    def skipped_row(self) -> dict[str, Any]:
        return {"similarity": None, "skipped": True}

    # ---------------------------------------------------------------------------------- evaluation
    def evaluate(self, predictor: Predictor, split: Split, absent: tuple[str, ...] = ()) -> Evaluated:
        from mumo.embedding import embed_split

        embeddings = {c: embed_split(predictor, split, c) for c in self.inputs}
        return Evaluated(pair_retrieval_metrics(embeddings, self.pairs), {"embeddings": embeddings})

    def report_sections(
        self, predictor: Predictor, split: Split, table: Table | None, evaluated: Evaluated
    ) -> list[ReportSection]:
        if table is None:
            return []
        html = example_queries_html(self.pairs[0], evaluated.details["embeddings"], split, table, self.inputs)
        return [("Example queries", html)]


def pair_retrieval_metrics(embeddings: dict[str, np.ndarray], pairs: list[Pair]) -> dict[str, float]:
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


def resolve_pairs(options: TaskOptions, inputs: list[str]) -> list[Pair]:
    """task.pairs checked against the input columns; by default the two inputs, when there are two."""
    pairs: list[list[str]] | None = getattr(options, "pairs", None)
    if pairs is None:
        if len(inputs) != 2:
            raise ConfigError(
                f"task.pairs: needed when there are not exactly two input columns; inputs: {', '.join(inputs)}"
            )
        return [(inputs[0], inputs[1])]
    for pair in pairs:
        if len(pair) != 2:
            raise ConfigError(f"task.pairs: {pair} is not a pair of two columns")
        for column in pair:
            if column not in inputs:
                raise ConfigError(f"task.pairs: no input column {column!r}; inputs: {', '.join(inputs)}")
        if pair[0] == pair[1]:
            raise ConfigError(f"task.pairs: {pair} pairs a column with itself")
    return [(a, b) for a, b in pairs]


def example_queries_html(
    pair: Pair,
    embeddings: dict[str, np.ndarray],
    split: Split,
    table: Table,
    kinds: dict[str, str],
    queries: int = 5,
    top: int = 5,
) -> str:
    """A few queries from the pair's left column and their top right-column results (the correct one
    outlined); images are shown as thumbnails, text as text, audio as its file name."""
    left, right = pair
    a, b = embeddings[left], embeddings[right]
    index = np.flatnonzero(~np.isnan(a).any(1) & ~np.isnan(b).any(1))
    if not len(index):
        return "<p>No rows with both columns.</p>"
    similarity = a[index] @ b[index].T
    numbers = {table.row_number(i): i for i in range(len(table))}
    cells = {c: table.values(c) for c in pair}

    def cell(column: str, position: int) -> str:
        return cell_html(cells[column][numbers[split.rows[position]]], kinds[column], table.base_dir)

    rows = []
    for q in range(min(queries, len(index))):
        best = np.argsort(-similarity[q])[:top]
        results = "".join(
            f"<td style='{'outline:3px solid #2a7' if j == q else ''}'>{cell(right, int(index[j]))}"
            f"<br><small>{similarity[q, j]:.3f}</small></td>"
            for j in best
        )
        rows.append(f"<tr><td><b>{cell(left, int(index[q]))}</b></td>{results}</tr>")
    return (
        f"<p>Queries from <b>{escape(left)}</b>, top {top} of {len(index)} <b>{escape(right)}</b> cells by "
        "cosine similarity; the correct one is outlined.</p><table>" + "".join(rows) + "</table>"
    )
