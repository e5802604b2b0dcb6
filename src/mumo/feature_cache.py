"""Frozen-feature cache: a frozen pretrained backbone's outputs, computed once per cell and kept on disk.

Layout: MUMO_CACHE/features/<model hash>/<shard>.safetensors. The folder is keyed by a hash of the
backbone's weights and of the column's processor (tokenizer, image processor, options); each entry by a
hash of the decoded cell (which is a function of the file's contents). Shards are written to a temp file
and renamed, so an interrupted run leaves only whole shards and the next run computes only what is
missing. Tokens are stored in float16 and trimmed to their real length.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mumo.data.builtin import cache_root
from mumo.data.prepare import Split
from mumo.io import atomic_path
from mumo.modalities.hf import Features, HFProcessor
from mumo.modalities.hf_encoder import HFBackbone

SHARD_ROWS = 512

Progress = Callable[[str, int], Iterator[None]]  # (label, total) → one step per item, as in load_split


def model_hash(encoder: HFBackbone, processor: HFProcessor) -> str:
    digest = hashlib.sha256(processor.fingerprint().encode())
    for name, tensor in sorted(encoder.backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]


def item_hash(item: Any) -> str:
    if isinstance(item, np.ndarray):
        payload = repr((item.dtype.str, item.shape)).encode() + item.tobytes()
    else:
        payload = repr(item).encode()
    return hashlib.sha256(payload).hexdigest()[:32]


def cache_columns(
    network: torch.nn.Module,
    processors: dict[str, Any],
    splits: dict[str, Split],
    batch_size: int,
    progress: Progress | None = None,
    root: Path | None = None,
) -> dict[str, int]:
    """Replace the items of every cacheable column by cached Features; returns rows computed per column."""
    computed = {}
    encoders: dict[str, torch.nn.Module] = dict(network.encoders.items())  # type: ignore[union-attr,operator]
    for column, encoder in encoders.items():
        if not (isinstance(encoder, HFBackbone) and encoder.cacheable):
            continue
        if any(column in split.lazy for split in splits.values()):  # data.cache: false, decoded per batch
            continue
        processor = processors[column]
        folder = (root or cache_root() / "features") / model_hash(encoder, processor)
        items = [item for split in splits.values() for item in split.items[column] if item is not None]
        features = load_or_compute(encoder, processor, items, folder, batch_size, column, progress)
        for split in splits.values():
            split.items[column] = [
                None if item is None else features[item_hash(item)] for item in split.items[column]
            ]
        computed[column] = features.computed
    return computed


class _Table(dict[str, Features]):
    computed = 0


def load_or_compute(
    encoder: HFBackbone,
    processor: HFProcessor,
    items: list[Any],
    folder: Path,
    batch_size: int,
    column: str,
    progress: Progress | None,
) -> _Table:
    table = _Table()
    wanted = {item_hash(item): item for item in items}
    for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        tensors = load_file(str(path))
        for name, pooled in tensors.items():
            if name.endswith(".pooled") and name[:-7] in wanted:
                table[name[:-7]] = Features(pooled.float(), tensors[f"{name[:-7]}.tokens"])
    missing = [h for h in wanted if h not in table]
    if not missing:
        return table
    folder.mkdir(parents=True, exist_ok=True)
    ticks = (
        progress(f"{column} features (frozen {type(encoder.backbone).__name__})", len(missing))
        if progress
        else None
    )
    was_training = encoder.training
    encoder.eval()
    try:
        for start in range(0, len(missing), SHARD_ROWS):
            chunk = missing[start : start + SHARD_ROWS]
            shard: dict[str, torch.Tensor] = {}
            for b in range(0, len(chunk), batch_size):
                hashes = chunk[b : b + batch_size]
                inputs = processor.collate([wanted[h] for h in hashes], train=False)
                with torch.no_grad():
                    pooled, hidden, mask = encoder.backbone_features(inputs)
                for i, h in enumerate(hashes):
                    tokens = hidden[i, mask[i]].to(torch.float16).contiguous()
                    shard[f"{h}.pooled"] = pooled[i].float().contiguous()
                    shard[f"{h}.tokens"] = tokens
                    table[h] = Features(shard[f"{h}.pooled"], tokens)
                table.computed += len(hashes)
                if ticks is not None:
                    for _ in hashes:
                        next(ticks, None)
            _save_atomic(shard, folder)
    finally:
        encoder.train(was_training)
        if ticks is not None:
            ticks.close()  # type: ignore[attr-defined]
    return table


def _save_atomic(tensors: dict[str, torch.Tensor], folder: Path) -> None:
    name = hashlib.sha256("".join(sorted(tensors)).encode()).hexdigest()[:16]
    with atomic_path(folder / f"{name}.safetensors") as tmp:
        save_file(tensors, str(tmp))
