"""Numeric and categorical columns: standardized numbers through an MLP, categories through embeddings."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mumo.cells import CellError, as_number
from mumo.config_model import EmbeddingOptions, MLPOptions
from mumo.modalities.base import ENCODERS, PROCESSORS, Processor, encoder_key
from mumo.outputs import EncoderOutput

UNKNOWN = "<unknown>"


@PROCESSORS.register("numeric")
class NumericProcessor(Processor):
    """Standardize with the train mean and std."""

    kind = "numeric"
    fixed_rows = True

    def __init__(self, column: str) -> None:
        super().__init__(column)
        self.mean, self.std = 0.0, 1.0

    def fit(self, cells: list[Any], base_dir: Path) -> None:
        numbers = torch.tensor([n for n in map(as_number, cells) if n is not None], dtype=torch.float64)
        if len(numbers):
            self.mean = float(numbers.mean())
            self.std = float(numbers.std(unbiased=False)) or 1.0

    def load(self, cell: Any, base_dir: Path) -> float:
        number = as_number(cell)
        if number is None:
            raise CellError(f"{cell!r} is not a number")
        return (number - self.mean) / self.std

    def load_many(self, cells: list[Any], base_dir: Path) -> list[tuple[Any, str | None]]:
        """load_cell for each cell, with finite floats and numeric text (most cells) done inline."""
        mean, std = self.mean, self.std
        out: list[tuple[Any, str | None]] = []
        for cell in cells:
            kind = type(cell)
            number = cell if kind is float else math.nan
            if kind is str:
                try:
                    number = float(cell)
                except ValueError:
                    pass
            if number - number == 0.0:  # finite
                out.append(((number - mean) / std, None))
            else:  # absent, not a number, inf/nan, other types: the general path and its message
                out.append(self.load_cell(cell, base_dir))
        return out

    def collate(self, items: list[Any | None], train: bool) -> dict[str, Tensor]:
        values = [0.0 if item is None else item for item in items]
        return {"value": torch.tensor(values, dtype=torch.float32).unsqueeze(1)}  # (B, 1)

    def baseline_features(self, items: list[Any | None]) -> np.ndarray:
        """The standardized value and whether it is missing."""
        present = np.array([item is not None for item in items], np.float32)
        values = np.array([0.0 if item is None else item for item in items], np.float32)
        return np.stack([values, 1.0 - present], axis=1)

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def set_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = state["mean"], state["std"]


@PROCESSORS.register("categorical")
class CategoricalProcessor(Processor):
    """Index categories seen in train; anything else maps to an unknown bucket (index 0)."""

    kind = "categorical"
    fixed_rows = True

    def __init__(self, column: str) -> None:
        super().__init__(column)
        self.categories: list[str] = [UNKNOWN]
        self._index: dict[str, int] = {UNKNOWN: 0}

    def fit(self, cells: list[Any], base_dir: Path) -> None:
        self.set_state({"categories": [UNKNOWN, *sorted({_key(c) for c in cells if c is not None})]})

    def load(self, cell: Any, base_dir: Path) -> int:
        if isinstance(cell, dict | list):
            raise CellError(f"{cell!r} is not a category")
        return self._index.get(_key(cell), 0)

    def collate(self, items: list[Any | None], train: bool) -> dict[str, Tensor]:
        return {"index": torch.tensor([0 if item is None else item for item in items], dtype=torch.long)}

    def baseline_features(self, items: list[Any | None]) -> Any:
        """One-hot categories (index 0, the unknown bucket, also for absent cells)."""
        from scipy.sparse import csr_matrix

        index = np.array([0 if item is None else item for item in items])
        ones = np.ones(len(items), np.float32)
        return csr_matrix((ones, (np.arange(len(items)), index)), shape=(len(items), len(self.categories)))

    def state(self) -> dict[str, Any]:
        return {"categories": self.categories}

    def set_state(self, state: dict[str, Any]) -> None:
        self.categories = list(state["categories"])
        self._index = {name: i for i, name in enumerate(self.categories)}


def _key(cell: Any) -> str:
    number = as_number(cell) if not isinstance(cell, str) else None
    if number is not None and number.is_integer():
        return str(int(number))  # 3 and 3.0 are one category
    return str(cell)


@ENCODERS.register(encoder_key("numeric", "mlp"))
class NumericMLP(nn.Module):
    """One number → a dim-sized vector through a small MLP (a learned, non-linear feature embedding)."""

    def __init__(self, options: MLPOptions, dim: int, processor: Processor) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(1, options.hidden),
            nn.GELU(),
            nn.Linear(options.hidden, dim),
            nn.Dropout(options.dropout),
        )

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        pooled = self.net(inputs["value"])  # (B, D)
        tokens = pooled.unsqueeze(1)  # (B, 1, D)
        return EncoderOutput(
            pooled, tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        )


@ENCODERS.register(encoder_key("categorical", "embedding"))
class CategoryEmbedding(nn.Module):
    """A learned vector per category (index 0 is the unknown bucket)."""

    def __init__(self, options: EmbeddingOptions, dim: int, processor: Processor) -> None:
        super().__init__()
        assert isinstance(processor, CategoricalProcessor)
        self.embedding = nn.Embedding(len(processor.categories), dim)
        self.dropout = nn.Dropout(options.dropout)

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        pooled = self.dropout(self.embedding(inputs["index"]))  # (B, D)
        tokens = pooled.unsqueeze(1)  # (B, 1, D)
        return EncoderOutput(
            pooled, tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        )
