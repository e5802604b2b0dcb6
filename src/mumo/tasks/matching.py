"""task: matching — is (a, b) a true pair? Trained from positive pairs only.

As in ALBEF / BLIP: the two columns are also aligned contrastively (ITC, in-batch InfoNCE), and those
similarities pick hard negatives in the batch: for every a_i a b_j (j != i) drawn with probability
softmax(similarity) — the closest wrong partners most often — and likewise for every b_i an a_k. A
fusion of the two columns' encoder outputs and a small head score each pair (ITM, binary
cross-entropy over the positives and the mined negatives), with the pair's ITC cosine added to the logit.
Validation scores true pairs against fixed mismatches (the next row's partner); the evaluation adds
AUROC against the hardest negative of the whole split.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from mumo.config import TaskOptions
from mumo.config_model import ModelConfig
from mumo.data.dataset import Batch, make_batch
from mumo.data.prepare import Schema, Split
from mumo.errors import ConfigError
from mumo.fusion import build_fusion
from mumo.metrics import roc_auc
from mumo.network import build_encoders, module_key
from mumo.outputs import EncoderOutput
from mumo.tasks.base import TASKS, Direction, Evaluated
from mumo.tasks.contrastive import Contrastive, ContrastiveNetwork, Pair, pair_retrieval_metrics

if TYPE_CHECKING:
    from mumo.predictor import Predictor


class MatchingOptions(TaskOptions):
    type: Literal["matching"] = "matching"
    pairs: list[list[str]] | None = Field(
        None, description="The one column pair to score, e.g. [[caption, image]]; null = the two inputs."
    )
    temperature: float = Field(0.07, gt=0, description="Initial temperature of the alignment (learned).")
    projection: int | None = Field(None, ge=1, description="Alignment embedding width; null = model.dim.")


def _take(output: EncoderOutput, index: Tensor) -> EncoderOutput:
    return EncoderOutput(output.pooled[index], output.tokens[index], output.mask[index])


class MatchingNetwork(ContrastiveNetwork):
    """ContrastiveNetwork (ITC) + a fusion of the pair and a binary head (ITM)."""

    def __init__(
        self,
        encoders: dict[str, nn.Module],
        pair: Pair,
        dim: int,
        projection: int,
        fusion: nn.Module,
        temperature: float = 0.07,
    ) -> None:
        super().__init__(encoders, [pair], dim, projection, "infonce", temperature)
        self.pair = pair
        self.fusion = fusion
        self.itm = nn.Sequential(nn.Linear(fusion.out_dim, dim), nn.GELU(), nn.Linear(dim, 1))  # type: ignore[arg-type]
        # The pair's ITC cosine, scaled, is added to the head's logit: matching starts from alignment and
        # the fusion learns what the cosine misses.
        self.cosine_weight = nn.Parameter(torch.tensor(10.0))
        self.cosine_bias = nn.Parameter(torch.tensor(-5.0))

    def encode_pair(self, batch: Batch) -> tuple[dict[str, EncoderOutput], Tensor]:
        """Encoder outputs of both columns for the rows that have both, and those rows' indices."""
        left, right = self.pair
        rows = (batch.presence[left] & batch.presence[right]).nonzero().squeeze(1)
        outputs = {
            c: self.encoders[module_key(c)]({k: v[rows] for k, v in batch.inputs[c].items()})
            for c in self.pair
        }
        return outputs, rows

    def embeddings(self, outputs: dict[str, EncoderOutput]) -> dict[str, Tensor]:
        return {
            c: F.normalize(self.projections[module_key(c)](o.pooled).float(), dim=-1)
            for c, o in outputs.items()
        }

    def score(self, outputs: dict[str, EncoderOutput], left_index: Tensor, right_index: Tensor) -> Tensor:
        """ITM logits (N,) of the pairs (left row left_index[n], right row right_index[n])."""
        left, right = self.pair
        pairs = {left: _take(outputs[left], left_index), right: _take(outputs[right], right_index)}
        ones = torch.ones(len(left_index), dtype=torch.bool, device=left_index.device)
        emb = self.embeddings(pairs)
        cosine = (emb[left] * emb[right]).sum(-1)
        fused = self.itm(self.fusion(pairs, {c: ones for c in self.pair}).pooled).squeeze(-1)
        return fused + self.cosine_weight * cosine + self.cosine_bias

    def negatives(self, similarity: Tensor, mined: bool) -> Tensor:
        """For each row, a different partner: drawn by softmax over the similarities (hard negatives, for
        training), or the next row's (a fixed mismatch, so validation scores do not move with the
        model's own similarities)."""
        n = len(similarity)
        if not mined:
            return (torch.arange(n, device=similarity.device) + 1) % n
        masked = similarity.masked_fill(torch.eye(n, dtype=torch.bool, device=similarity.device), -1e4)
        return torch.multinomial(masked.float().softmax(dim=1), 1).squeeze(1)

    def losses(self, batch: Batch, mined: bool = True) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(ITC + ITM loss, ITC embeddings of the left and right column, ITM logits [positives, negatives])."""
        left, right = self.pair
        outputs, rows = self.encode_pair(batch)
        emb = self.embeddings(outputs)
        n = len(rows)
        # ITC through pair_loss: while DDP trains on several processes its negatives are every rank's
        # pairs (gathered with gradients), so every rank takes part even with fewer than 2 pairs here.
        ones = torch.ones(n, dtype=torch.bool, device=rows.device)
        itc = self.pair_loss(emb, dict.fromkeys(self.pair, ones))
        if n < 2:
            return itc, emb[left], emb[right], itc.reshape(1)[:0]
        with torch.no_grad():
            similarity = emb[left] @ emb[right].T
            right_neg = self.negatives(similarity, mined)  # a wrong partner for each left row
            left_neg = self.negatives(similarity.T, mined)  # a wrong partner for each right row
        index = torch.arange(n, device=rows.device)
        logits = torch.cat(
            [
                self.score(outputs, index, index),
                self.score(outputs, index, right_neg),
                self.score(outputs, left_neg, index),
            ]
        )
        labels = torch.cat([torch.ones(n), torch.zeros(2 * n)]).to(logits.device)
        # Positives and negatives weigh the same (there are twice as many negatives).
        weights = torch.cat([torch.full((n,), 2.0), torch.ones(2 * n)]).to(logits.device)
        itm = F.binary_cross_entropy_with_logits(logits.float(), labels, weight=weights) / 1.5
        return itc + itm, emb[left], emb[right], logits

    def forward(self, batch: Batch) -> Tensor:
        return self.losses(batch, mined=self.training)[0]

    def match_logits(self, batch: Batch) -> Tensor:
        """ITM logits of each row's own (left, right) pair; NaN where a column is absent."""
        outputs, rows = self.encode_pair(batch)
        out = torch.full((len(batch),), float("nan"), device=rows.device)
        if len(rows):
            index = torch.arange(len(rows), device=rows.device)
            out[rows] = self.score(outputs, index, index).float()
        return out


@TASKS.register("matching")
class Matching(Contrastive):
    """Validation outputs: per row the match probability of its true pair and of a mismatched pair. A
    prediction is whether each row's pair matches, with its probability. Embeddings and zero-shot work
    as for a contrastive run."""

    name = "matching"
    Options = MatchingOptions  # type: ignore[assignment]
    gradcache = False

    @classmethod
    def plan(cls, schema: Schema, options: TaskOptions) -> tuple[Schema, TaskOptions]:
        schema, options = super().plan(schema, options)
        pairs = getattr(options, "pairs", None) or []
        if len(pairs) != 1:
            raise ConfigError(f"task.pairs: matching scores one pair of columns, got {len(pairs)}")
        return schema, options

    def build_network(self, model: ModelConfig, processors: dict[str, Any]) -> nn.Module:
        options: Any = self.options
        pair = self.pairs[0]
        kinds = {c: self.inputs[c] for c in pair}
        encoders = build_encoders(model, kinds, processors)
        fusion = build_fusion(model.fusion, kinds, model.dim, model.dim)
        if fusion.produces_logits:
            raise ConfigError(
                f"model.fusion.type: {getattr(model.fusion, 'type', '')!r} cannot score pairs; use cross, concat, ..."
            )
        return MatchingNetwork(
            encoders, pair, model.dim, options.projection or model.dim, fusion, options.temperature
        )

    def eval_step(self, network: nn.Module, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        loss, _, _, logits = network.losses(batch, mined=False)  # type: ignore[operator]
        n = len(logits) // 3
        probs = logits.float().sigmoid()
        outputs = torch.stack([probs[:n], probs[n : 2 * n]], dim=1)  # (n, 2): true pair, mismatched pair
        return loss, outputs, torch.zeros(n)

    def metrics(self, targets: Tensor, outputs: Tensor) -> dict[str, float]:
        return itm_metrics(outputs[:, 0].numpy(), outputs[:, 1].numpy())

    def directions(self) -> dict[str, Direction]:
        return {**super().directions(), "itm_accuracy": "max", "itm_auroc": "max", "itm_auroc_hardest": "max"}

    @property
    def main_metric(self) -> str:
        return "itm_auroc"

    def predict_outputs(self, network: nn.Module, batch: Batch) -> Tensor:
        return network.match_logits(batch).float().sigmoid().unsqueeze(-1)  # type: ignore[operator]

    def rows(self, outputs: Tensor) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for (probability,) in outputs.tolist():
            if math.isnan(probability):  # a column of the pair is absent
                results.append({"prediction": None, "match_probability": None})
            else:
                results.append({"prediction": probability >= 0.5, "match_probability": probability})
        return results

    def skipped_row(self) -> dict[str, Any]:
        return {"prediction": None, "match_probability": None, "skipped": True}

    def evaluate(self, predictor: Predictor, split: Split, absent: tuple[str, ...] = ()) -> Evaluated:
        """ITC retrieval metrics; ITM accuracy / AUROC of every true pair against a mismatched one (the
        next row's partner), and AUROC against its hardest negative over the whole split (by ITC
        similarity: often an equally good description, e.g. the same caption words)."""
        from mumo.embedding import embed_split

        left, right = self.pairs[0]
        a, b = embed_split(predictor, split, left), embed_split(predictor, split, right)
        embeddings = {left: a, right: b}
        metrics = pair_retrieval_metrics(embeddings, self.pairs)
        both = np.flatnonzero(~np.isnan(a).any(1) & ~np.isnan(b).any(1))
        if len(both) < 2:
            return Evaluated({**metrics, **itm_metrics(np.zeros(0), np.zeros(0))}, {"embeddings": embeddings})
        similarity = a[both] @ b[both].T
        np.fill_diagonal(similarity, -np.inf)
        hardest = both[similarity.argmax(1)]
        positive = self._probabilities(predictor, split, both, both)
        shifted = self._probabilities(predictor, split, both, np.roll(both, -1))
        hard = itm_metrics(positive, self._probabilities(predictor, split, both, hardest))
        metrics = {**metrics, **itm_metrics(positive, shifted), "itm_auroc_hardest": hard["itm_auroc"]}
        return Evaluated(metrics, {"embeddings": embeddings})

    def _probabilities(
        self,
        predictor: Predictor,
        split: Split,
        left_rows: np.ndarray,
        right_rows: np.ndarray,
        size: int = 256,
    ) -> np.ndarray:
        """Match probabilities of the pairs (left cell of row left_rows[i], right cell of right_rows[i])."""
        left, right = self.pairs[0]
        processors = {c: predictor.processors[c] for c in (left, right)}
        out = []
        with torch.no_grad():
            for start in range(0, len(left_rows), size):
                items = {
                    left: split.take(left, left_rows[start : start + size]),
                    right: split.take(right, right_rows[start : start + size]),
                }
                batch = make_batch(items, processors, None, None, train=False)
                out.append(self.predict_outputs(predictor.network, batch)[:, 0].numpy())
        return np.concatenate(out)


def itm_metrics(positive: np.ndarray, negative: np.ndarray) -> dict[str, float]:
    """Accuracy (threshold 0.5) and AUROC of match probabilities of true pairs vs mismatched ones."""
    scores = np.concatenate([positive, negative])
    labels = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    if not len(scores):
        return {"itm_accuracy": float("nan"), "itm_auroc": float("nan")}
    return {
        "itm_accuracy": float(((scores >= 0.5) == labels).mean()),
        "itm_auroc": float(roc_auc(labels, scores)),
    }
