"""Targets: label maps for classification, standardization for regression, 0/1 columns for multilabel."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mumo.cells import CellError, as_number

TRUE = {"1", "1.0", "true", "yes", "y", "t"}
FALSE = {"0", "0.0", "false", "no", "n", "f"}


class TargetProcessor:
    """Encodes target cells (one list of values per target column) into a tensor per row."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns

    def fit(self, values: list[list[Any]]) -> None: ...

    def encode(self, values: list[Any]) -> Any:
        raise NotImplementedError

    def stack(self, encoded: list[Any]) -> Tensor:
        raise NotImplementedError

    @property
    def out_dim(self) -> int:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        return {"columns": self.columns}

    def set_state(self, state: dict[str, Any]) -> None:
        self.columns = list(state["columns"])


class ClassTarget(TargetProcessor):
    def __init__(self, columns: list[str]) -> None:
        super().__init__(columns)
        self.classes: list[str] = []
        self._index: dict[str, int] = {}

    def fit(self, values: list[list[Any]]) -> None:
        labels = {_label(v[0]) for v in values if v[0] is not None}
        self.set_state({"columns": self.columns, "classes": sorted(labels, key=_natural)})

    def encode(self, values: list[Any]) -> int:
        label = _label(values[0])
        if label not in self._index:
            raise CellError(f"label {label!r} does not occur in the train data")
        return self._index[label]

    def stack(self, encoded: list[Any]) -> Tensor:
        return torch.tensor(encoded, dtype=torch.long)

    @property
    def out_dim(self) -> int:
        return len(self.classes)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "classes": self.classes}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.classes = list(state["classes"])
        self._index = {c: i for i, c in enumerate(self.classes)}


class RegressionTarget(TargetProcessor):
    def __init__(self, columns: list[str]) -> None:
        super().__init__(columns)
        self.mean, self.std = [0.0], [1.0]

    def fit(self, values: list[list[Any]]) -> None:
        numbers = torch.tensor(
            [[as_number(v) for v in row] for row in values if all(as_number(v) is not None for v in row)],
            dtype=torch.float64,
        ).reshape(-1, len(self.columns))
        if len(numbers):
            self.mean = numbers.mean(0).tolist()
            spread = numbers.std(0, unbiased=False).tolist()
            # A (numerically) constant target is not scaled up by its rounding noise.
            self.std = [
                s if s > 1e-9 * max(1.0, abs(m)) else 1.0 for s, m in zip(spread, self.mean, strict=True)
            ]

    def encode(self, values: list[Any]) -> list[float]:
        out = []
        for value, mean, std in zip(values, self.mean, self.std, strict=True):
            number = as_number(value)
            if number is None:
                raise CellError(f"target {value!r} is not a number")
            out.append((number - mean) / std)
        return out

    def decode(self, outputs: Tensor) -> Tensor:
        return outputs * torch.tensor(self.std) + torch.tensor(self.mean)

    def stack(self, encoded: list[Any]) -> Tensor:
        return torch.tensor(encoded, dtype=torch.float32)

    @property
    def out_dim(self) -> int:
        return len(self.columns)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "mean": self.mean, "std": self.std}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.mean, self.std = list(state["mean"]), list(state["std"])


class MultilabelTarget(TargetProcessor):
    """One 0/1 (true/false, yes/no) column per label."""

    def encode(self, values: list[Any]) -> list[float]:
        out = []
        for value, column in zip(values, self.columns, strict=True):
            text = str(value).strip().lower()
            if text not in TRUE | FALSE:
                raise CellError(f"multilabel target {column!r} must be 0/1, got {value!r}")
            out.append(1.0 if text in TRUE else 0.0)
        return out

    def stack(self, encoded: list[Any]) -> Tensor:
        return torch.tensor(encoded, dtype=torch.float32)

    @property
    def out_dim(self) -> int:
        return len(self.columns)


def _label(value: Any) -> str:
    number = as_number(value) if not isinstance(value, str) else None
    if number is not None and number.is_integer():
        return str(int(number))
    return str(value)


def _natural(label: str) -> tuple[int, float, str]:
    number = as_number(label)
    return (0, number, "") if number is not None else (1, 0.0, label)
