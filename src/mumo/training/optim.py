"""The optimizer and learning-rate schedule every task trains with."""

from __future__ import annotations

import math

import torch
from torch import nn

from mumo.config import TrainConfig


def build_optimizer(network: nn.Module, options: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with no weight decay on biases, norms, embeddings and absent-input vectors, and a
    learning-rate multiple per parameter where a pretrained encoder asks for one (lr_scale, layer-wise
    decay). Fused (one kernel for all parameters) where torch has it: on a CPU model with many small
    tensors the per-tensor loop is a large share of each step."""
    scales: dict[str, float] = {}
    for prefix, module in network.named_modules():  # pretrained encoders, a pretrained decoder
        if hasattr(module, "lr_scales"):
            scales.update({f"{prefix}.{k}": v for k, v in module.lr_scales().items()})
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, param in network.named_parameters():
        if not param.requires_grad:
            continue
        plain = param.ndim < 2 or name.startswith("absent") or "norm" in name or "embed" in name
        groups.setdefault((plain, scales.get(name, 1.0)), []).append(param)
    params = [p for group in groups.values() for p in group]
    # Not with mixed precision: Lightning's AMP plugin refuses to clip a fused optimizer's gradients.
    fused = "mixed" not in options.precision and all(
        type(p.data) is torch.Tensor and p.device.type in ("cpu", "cuda") for p in params
    )
    return torch.optim.AdamW(
        [
            {
                "params": group,
                "weight_decay": 0.0 if plain else options.weight_decay,
                "lr": options.lr * scale,
            }
            for (plain, scale), group in sorted(groups.items(), key=lambda kv: kv[0])
        ],
        lr=options.lr,
        fused=fused or None,
    )


class WarmupCosine:
    """Linear warmup (a share of all steps) to the peak rate, then cosine decay to 0. A class, so the
    scheduler state pickles cleanly, and `total` may change once a time budget knows the epochs."""

    def __init__(self, share: float, total: int) -> None:
        self.share, self.total = share, max(total, 1)

    def __call__(self, step: int) -> float:
        warmup = int(self.share * self.total)
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, self.total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
