"""Embeddings of one column, and CLIP-style zero-shot classification, with a run whose task embeds
columns into one space (contrastive, matching): any task that implements the Embedder protocol."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from mumo.data.dataset import Batch, make_batch
from mumo.data.prepare import Split, load_split
from mumo.errors import MumoError
from mumo.modalities.base import length_order

if TYPE_CHECKING:
    from mumo.predictor import Predictor


@runtime_checkable
class Embedder(Protocol):
    """A task whose network embeds columns into one space."""

    pairs: list[tuple[str, str]]

    def embed_batch(self, network: nn.Module, batch: Batch) -> dict[str, Tensor]: ...

    def embedding_width(self, network: nn.Module, column: str) -> int: ...

    def similarity_scale(self, network: nn.Module) -> float: ...


def embedder(predictor: Predictor, column: str) -> Embedder:
    task = predictor.task
    if not isinstance(task, Embedder):
        raise MumoError(
            f"{predictor.path}: embeddings need a run that embeds its columns (task: contrastive or "
            f"matching); this is a {task.name} run"
        )
    if column not in predictor.processors:
        raise MumoError(
            f"--column: {column!r} is not embedded by this run; columns: {', '.join(predictor.processors)}"
        )
    return task


@torch.no_grad()
def embed_split(predictor: Predictor, split: Split, column: str, batch_size: int = 256) -> np.ndarray:
    """(N, P) L2-normalized embeddings of one column for every row of a prepared split; NaN rows where
    the cell is absent."""
    task = embedder(predictor, column)
    items = split.take(column, range(len(split)))
    order = length_order(items)  # batches of similar length pad less
    out = np.zeros((len(items), task.embedding_width(predictor.network, column)), np.float32)
    for start in range(0, len(items), batch_size):
        rows = order[start : start + batch_size]
        batch = make_batch(
            {column: [items[i] for i in rows]},
            {column: predictor.processors[column]},
            None,
            None,
            train=False,
        )
        out[rows] = task.embed_batch(predictor.network, batch)[column].cpu().numpy()
    return out


def embed(
    predictor: Predictor,
    rows: list[dict[str, Any]] | pd.DataFrame | list[Any],
    column: str,
    base_dir: str | Path | None = None,
    on_error: str = "fail",
) -> np.ndarray:
    """Embeddings (N, P) of `column` for rows (dicts, a DataFrame, or bare cells of that column)."""
    if isinstance(rows, list) and rows and not isinstance(rows[0], dict):
        rows = [{column: cell} for cell in rows]
    embedder(predictor, column)
    table = predictor.table(rows, base_dir)
    split = load_split(table.name, table, {column: predictor.processors[column]}, None, on_error)
    return embed_split(predictor, split, column)


def zero_shot(
    predictor: Predictor,
    rows: list[dict[str, Any]] | pd.DataFrame,
    labels: list[str],
    prompt: str = "{}",
    column: str | None = None,
    base_dir: str | Path | None = None,
    on_error: str = "fail",
) -> list[dict[str, Any]]:
    """Classify each row's `column` by its similarity to the text prompts made from `labels`. The
    prompts go through the text column paired with `column`."""
    item_column, text_column = _zero_shot_columns(predictor, column)
    if not labels:
        raise MumoError("--labels: give at least one label, e.g. --labels 'red circle,blue square'")
    if "{}" not in prompt:
        raise MumoError(f"--prompt {prompt!r}: needs {{}} where the label goes, e.g. 'a picture of a {{}}'")
    prompts = embed(predictor, [prompt.format(label) for label in labels], text_column)
    items = embed(predictor, rows, item_column, base_dir, on_error)
    scale = embedder(predictor, item_column).similarity_scale(predictor.network)
    results: list[dict[str, Any]] = []
    for vector in items:
        if np.isnan(vector).any():
            results.append({"prediction": None, "absent": item_column})
            continue
        logits = scale * (prompts @ vector)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        results.append(
            {
                "prediction": labels[int(np.argmax(probs))],
                "probabilities": {label: float(p) for label, p in zip(labels, probs, strict=True)},
            }
        )
    return results


def _zero_shot_columns(predictor: Predictor, column: str | None) -> tuple[str, str]:
    task = embedder(predictor, next(iter(predictor.processors)))
    for left, right in task.pairs:
        for item, text in ((left, right), (right, left)):
            if predictor.schema.inputs[text] == "text" and column in (None, item):
                return item, text
    raise MumoError(
        f"--zero-shot: needs a pair of a text column with {column or 'another column'}; "
        f"this run's pairs: {task.pairs}"
    )
