"""`mumo bench`: mumo against the bare libraries it is built on, on this machine. Prints a table, writes JSON.

Every measurement is a row `{"mumo": rate, "reference": rate, "unit", "against", "ratio", "goal", ...}`
under a key naming what is measured (`train/small`, `data/image_jpeg`, `infer/medium`, ...); ratio is
mumo / reference, so above 1 means mumo is faster. What each reference is:

- train/*: a minimal hand-written PyTorch loop (mumo.bench.training);
- data/*: bare Pillow / soundfile decode of the same files, one core (mumo.bench.data);
- infer/*: the raw network forward on batches already stacked into tensors (mumo.bench.inference);
- embed/minilm: sentence-transformers' encode (mumo.bench.embedding).

- serve/*: the same server with micro-batching off (mumo.bench.serving);
- search/*: FAISS's own search on the same index (mumo.bench.serving).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table as RichTable

from mumo.bench.common import console, epoch_seconds
from mumo.io import write_json, write_marked_block

__all__ = ["console", "epoch_seconds", "run_bench", "show"]


def run_bench(
    quick: bool = False, json_path: Path | None = None, markdown_path: Path | None = None
) -> dict[str, Any]:
    """Every measurement in turn (about a minute with quick=True, about 8 without, on 2 cores)."""
    from mumo.bench.data import data_pipeline
    from mumo.bench.embedding import embed_minilm
    from mumo.bench.inference import inference
    from mumo.bench.serving import search, serving
    from mumo.bench.training import digits_config, shapes_config, train_overhead

    results: dict[str, Any] = {
        "machine": {"torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "quick": quick,
    }
    epochs, rounds = (3, 2) if quick else (5, 4)
    with tempfile.TemporaryDirectory(prefix="mumo-bench-") as tmp:
        work = Path(tmp)
        models = {}
        for name, raw in (
            ("small", digits_config(work)),
            ("medium", shapes_config(work, 600 if quick else 2000)),
        ):
            console.print(f"training overhead: {name} model")
            results[f"train/{name}"], models[name] = train_overhead(name, raw, work, epochs, rounds)
        for name, model in models.items():
            console.print(f"inference: {name} model")
            results[f"infer/{name}"] = inference(model, repeats=2 if quick else 4)
        console.print("data pipeline: decode + preprocess, one core")
        results.update(data_pipeline(work / "files", 60 if quick else 200))
        console.print("serving: micro-batching against none")
        results["serve/predict_32_clients"] = serving(
            Path(str(models["medium"].path)), _request_row(), 3.0 if quick else 8.0
        )
    console.print("text embedding: all-MiniLM-L6-v2")
    results["embed/minilm"] = embed_minilm(512 if quick else 2000)
    results.update(search((10_000, 100_000) if quick else (10_000, 100_000, 1_000_000)))
    show(results)
    if json_path is not None:
        write_json(json_path, results)
        console.print(f"wrote {json_path}")
    if markdown_path is not None:
        write_markdown(markdown_path, results)
        console.print(f"wrote the table into {markdown_path}")
    return results


def _request_row() -> dict[str, Any]:
    """One builtin:shapes row as a client sends it: the image as a data: URI, the caption, the weight."""
    import base64
    import io

    import numpy as np

    from mumo.data.shapes import caption_for, render_image, sample_items

    item = sample_items(1, 7)[0]
    buffer = io.BytesIO()
    render_image(item, np.random.default_rng(7)).save(buffer, format="PNG")
    image = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return {
        "image": image,
        "caption": caption_for(item, np.random.default_rng(7)),
        "weight": float(item.weight),
    }


START, END = "<!-- bench -->", "<!-- /bench -->"
SECTIONS = ("train", "data", "infer", "embed", "search", "serve")


def measurements(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The measurement rows in section order (training first), whatever order the JSON kept."""
    rows = [(k, v) for k, v in results.items() if isinstance(v, dict) and "ratio" in v]
    order = {name: i for i, name in enumerate(SECTIONS)}
    return sorted(rows, key=lambda kv: (order.get(kv[0].split("/")[0], len(order)), kv[0]))


def cells(row: dict[str, Any]) -> tuple[str, str, str, str, str, bool | None]:
    """One measurement as table cells: what vs reference, the two rates, the ratio, the goal, met."""
    goal = row.get("goal")
    return (
        f"{row['what']} vs {row['against']}",
        f"{row['mumo']:,.0f} {row['unit']}",
        f"{row['reference']:,.0f} {row['unit']}",
        f"{row['ratio']:.2f}",
        f">= {goal:.2f}" if goal else "",
        row["ratio"] >= goal if goal else None,
    )


def show(results: dict[str, Any], out: Console = console) -> None:
    """The table: one line per measurement with its ratio and goal, then the notes (latency splits)."""
    table = RichTable(title="mumo bench (this machine)")
    for column in ("measure", "mumo", "reference", "ratio", "goal", "met"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    notes = []
    for key, row in measurements(results):
        what, mumo, reference, ratio, goal, met = cells(row)
        table.add_row(
            f"{key}: {what}", mumo, reference, ratio, goal, "" if met is None else "yes" if met else "no"
        )
        notes += [f"{key}: {note}" for note in row.get("notes", [])]
    out.print(table)
    for note in notes:
        out.print(f"  {note}")


def markdown(results: dict[str, Any]) -> str:
    """The table and notes as Markdown, with how they were made."""
    lines = [
        f"`mumo bench{' --quick' if results.get('quick') else ''}`, torch {results['machine']['torch']}, "
        f"{results['machine']['torch_threads']} threads. Ratio = mumo / reference (above 1: mumo is faster).",
        "",
        "| measure | mumo | reference | ratio | goal | met |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    notes = []
    for key, row in measurements(results):
        what, mumo, reference, ratio, goal, met = cells(row)
        shown = "" if met is None else "yes" if met else "**no**"
        lines.append(f"| `{key}` {what} | {mumo} | {reference} | {ratio} | {goal} | {shown} |")
        notes += [f"- `{key}`: {note}" for note in row.get("notes", [])]
    return "\n".join([*lines, "", *notes])


def write_markdown(path: Path, results: dict[str, Any]) -> None:
    """Replace the block between the markers in BENCHMARKS.md (added at its end when it has none)."""
    write_marked_block(path, START, END, markdown(results))
