"""Inference: rows/s of `model.predict` on a table of raw rows (reading and decoding the cells, stacking
batches of 256, the network, one result dict per row) against the raw network forward on the same rows
already decoded and stacked into tensors; and the latency of a single-row predict, split into
preprocess / forward / postprocess (the `timing` dict predict() fills)."""

from __future__ import annotations

import statistics
from typing import Any

import torch

from mumo.bench.common import GOALS, fastest, row
from mumo.data.dataset import make_batch
from mumo.data.table import read_table
from mumo.predictor import Predictor


def inference(model: Predictor, repeats: int, batch_size: int = 256) -> dict[str, Any]:
    table = read_table(model.config.data.train)
    rows = table.frame.drop(columns=model.config.data.targets).to_dict("records")
    base_dir = table.base_dir
    split = model.prepare(model.table(rows, base_dir))
    batches = [
        make_batch(
            {c: values[start : start + batch_size] for c, values in split.items.items()},
            model.processors,
            None,
            None,
            train=False,
        )
        for start in range(0, len(split), batch_size)
    ]

    @torch.no_grad()
    def forward() -> None:
        for batch in batches:
            model.task.predict_outputs(model.network, batch)

    def predict() -> None:
        model.predict(rows, base_dir)

    predict_seconds, _ = fastest(predict, repeats)
    timing: dict[str, float] = {}
    model.predict(rows, base_dir, timing=timing)
    forward_seconds, _ = fastest(forward, repeats)
    single: list[dict[str, float]] = []
    for one in rows[:50]:
        single.append({})
        model.predict([one], base_dir, timing=single[-1])
    latency = {phase: 1000 * statistics.median(t[phase] for t in single) for phase in single[0]}
    total = sum(latency.values())
    kinds = sorted(set(model.schema.inputs.values()))
    return row(
        f"predict, {len(rows)} rows of {', '.join(kinds)} in batches of {batch_size}",
        "the raw forward on stacked tensors",
        len(rows) / predict_seconds,
        len(rows) / forward_seconds,
        "rows/s",
        GOALS["infer"],
        batch_split_s=timing,
        single_row_ms=latency,
        notes=[
            f"batch predict: {_shares(timing)}",
            f"one row: {total:.2f} ms = " + " + ".join(f"{k} {v:.2f}" for k, v in latency.items()),
        ],
    )


def _shares(timing: dict[str, float]) -> str:
    total = sum(timing.values())
    return ", ".join(f"{phase} {100 * seconds / total:.0f}%" for phase, seconds in timing.items())


__all__ = ["inference"]
