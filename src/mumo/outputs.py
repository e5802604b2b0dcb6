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


class FusionOutput(NamedTuple):
    """What every fusion returns: the fused vector a head reads, and the fused token sequence a decoder
    attends to (every image region, audio frame and word that the fusion kept, after fusing)."""

    pooled: Tensor  # (B, D)
    tokens: Tensor  # (B, T, D)
    mask: Tensor  # (B, T) bool, True where a token is real and its input present


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """(B, T, D), (B, T) → (B, D), averaging only the real tokens."""
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)


__all__ = ["EncoderOutput", "FusionOutput", "masked_mean"]
