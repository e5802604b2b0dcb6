"""The baseline every run fits beside its model: a linear model (logistic regression, ridge) on cheap
raw features of the inputs (pooled pixels, log-mel statistics, TF-IDF of word pieces, the numbers,
one-hot categories), fitted on the train split in seconds and scored with the task's own metrics. It
tells at once whether the deep model earns its keep."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mumo.data.prepare import Split
from mumo.modalities import Processor

MAX_ROWS = 20_000  # the baseline is fitted on at most this many train rows (a sample beyond)
CHUNK = 2048


class LinearBaseline:
    """What a task asks for: `classes` (multinomial logistic regression over C classes: outputs are
    (N, C) probabilities), `labels` (one logistic regression per 0/1 label: (N, L) probabilities) or
    `values` (ridge on the standardized targets; `decode` maps its outputs to the target's units)."""

    def __init__(self, kind: str, width: int, decode: Callable[[Tensor], Tensor] | None = None) -> None:
        self.kind, self.width, self.decode = kind, width, decode
        self.model: Any = None

    def fit(self, features: Any, targets: Tensor) -> None:
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.multiclass import OneVsRestClassifier

        y = targets.numpy()
        if self.kind == "classes":
            self.model = LogisticRegression(C=1.0, max_iter=500)
        elif self.kind == "labels":
            self.model = OneVsRestClassifier(LogisticRegression(C=1.0, max_iter=500))
        else:
            self.model = Ridge(alpha=1.0)
        with warnings.catch_warnings():  # a baseline that has not fully converged is still a baseline
            warnings.simplefilter("ignore")
            self.model.fit(features, y)

    def outputs(self, features: Any) -> Tensor:
        if self.kind == "values":
            values = torch.as_tensor(np.asarray(self.model.predict(features), np.float32)).reshape(
                -1, self.width
            )
            return self.decode(values) if self.decode is not None else values
        probabilities = np.asarray(self.model.predict_proba(features), np.float64)
        if self.kind == "labels":
            return torch.as_tensor(probabilities.reshape(-1, self.width))
        out = np.zeros((probabilities.shape[0], self.width))  # classes absent from train keep 0
        out[:, np.asarray(self.model.classes_, int)] = probabilities
        return torch.as_tensor(out)


class NearestBaseline:
    """For a text target: each row gets the target of its nearest train row (cosine similarity of the raw
    features), the retrieval baseline of captioning. Outputs are laid out as the generation task's: the
    neighbour's first `width` pieces, then two zero counts (no teacher-forced token accuracy)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.features: Any = None
        self.targets: Tensor | None = None

    def fit(self, features: Any, targets: Tensor) -> None:
        from sklearn.preprocessing import normalize

        self.features, self.targets = normalize(features), targets

    def outputs(self, features: Any) -> Tensor:
        from sklearn.preprocessing import normalize

        assert self.targets is not None
        query = normalize(features)
        nearest = np.concatenate(
            [
                np.asarray((query[start : start + CHUNK] @ self.features.T).todense()).argmax(1).ravel()
                for start in range(0, query.shape[0], CHUNK)
            ]
        )
        ids = torch.zeros(len(nearest), self.width + 2, dtype=torch.long)
        chosen = self.targets[torch.as_tensor(nearest, dtype=torch.long)][:, : self.width]
        ids[:, : chosen.shape[1]] = chosen
        return ids


class Features:
    """Per-column raw features, scaled on train: dense blocks standardized, sparse counts as TF-IDF."""

    def __init__(self, processors: dict[str, Processor]) -> None:
        self.processors = processors
        self.scalers: dict[str, Any] = {}

    def matrix(self, split: Split, rows: list[int], fit: bool = False) -> Any:
        from scipy.sparse import csr_matrix, hstack, issparse
        from sklearn.feature_extraction.text import TfidfTransformer
        from sklearn.preprocessing import StandardScaler

        blocks = []
        for column, processor in self.processors.items():
            parts = [
                processor.baseline_features(split.take(column, rows[start : start + CHUNK]))
                for start in range(0, len(rows), CHUNK)
            ]
            if not parts or parts[0] is None:
                continue
            block = _stack(parts)
            if not issparse(block):  # inf / 1e400 cells: finite, and small enough to square
                block = np.clip(
                    np.nan_to_num(np.asarray(block, np.float64), posinf=0.0, neginf=0.0), -1e9, 1e9
                )
            if fit:
                self.scalers[column] = (
                    TfidfTransformer(sublinear_tf=True) if issparse(block) else StandardScaler()
                )
                self.scalers[column].fit(block)
            if column in self.scalers:
                blocks.append(csr_matrix(self.scalers[column].transform(block)))
        if not blocks:
            return None
        return hstack(blocks).tocsr()


def fit_and_score(
    task: Any, processors: dict[str, Processor], train: Split, splits: dict[str, Split], seed: int = 0
) -> dict[str, dict[str, float]]:
    """{split: {metric: value}} of the task's linear baseline; {} when the task has none or the inputs
    give no features."""
    baseline = task.baseline()
    if baseline is None or task.target is None or not len(train):
        return {}
    rows = list(range(len(train)))
    if len(rows) > MAX_ROWS:
        rows = sorted(np.random.default_rng(seed).choice(len(train), MAX_ROWS, replace=False).tolist())
    features = Features(processors)
    x = features.matrix(train, rows, fit=True)
    if x is None:
        return {}
    targets = task.target.stack([train.targets[i] for i in rows])
    try:
        baseline.fit(x, targets)
    except ValueError:  # e.g. a single class in the (sampled) train rows: no baseline to speak of
        return {}
    scores = {}
    for name, split in splits.items():
        if not len(split):
            continue
        outputs = baseline.outputs(features.matrix(split, list(range(len(split)))))
        scores[name] = task.metrics(task.target.stack(split.targets), outputs)
    return scores


def _stack(parts: list[Any]) -> Any:
    from scipy.sparse import issparse, vstack

    return vstack(parts).tocsr() if issparse(parts[0]) else np.concatenate(parts)
