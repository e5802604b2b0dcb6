"""Fusion modules: encoder outputs of any number of inputs (+ presence masks) → one fused vector.

Absent inputs arrive already replaced by their learned 'absent' embedding (see model.py) and with a
presence mask, so each fusion can also mask them out itself.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mumo.config import ConcatFusion
from mumo.modalities.base import EncoderOutput
from mumo.registry import Registry

FUSIONS: Registry[type[nn.Module]] = Registry("a fusion")


@FUSIONS.register("concat")
class Concat(nn.Module):
    """Early fusion: concatenate the pooled vectors and project back to dim."""

    def __init__(self, options: ConcatFusion, columns: list[str], dim: int) -> None:
        super().__init__()
        self.columns = columns
        self.project = nn.Sequential(
            nn.Dropout(options.dropout), nn.Linear(len(columns) * dim, dim), nn.LayerNorm(dim), nn.GELU()
        )
        self.out_dim = dim

    def forward(self, outputs: dict[str, EncoderOutput], presence: dict[str, Tensor]) -> Tensor:
        pooled = torch.cat([outputs[c].pooled for c in self.columns], dim=-1)  # (B, F*D)
        return self.project(pooled)  # (B, D)


def build_fusion(options: Any, columns: list[str], dim: int) -> nn.Module:
    cls = FUSIONS.get(options.type, key="model.fusion.type")
    return cls(options, columns, dim)
