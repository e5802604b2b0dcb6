"""The typed outputs components hand each other, and pooling over them. Encoders, fusions and tasks all
import this module and nothing of each other's."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class EncoderOutput(NamedTuple):
    """The one output type of every encoder, so any fusion works with any encoder."""

    pooled: Tensor  # (B, D) one vector per row
    tokens: Tensor  # (B, T, D) per-token / per-patch / per-frame vectors
    mask: Tensor  # (B, T) bool, True where a token is real


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """(B, T, D), (B, T) → (B, D), averaging only the real tokens."""
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)


__all__ = ["EncoderOutput", "masked_mean"]
