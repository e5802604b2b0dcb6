"""`mumo compare`: the same data, splits and seeds, trained once per fusion (and per single input).

Writes RUN/compare.json, RUN/compare.png (bar plot, mean ± std over repeats) and RUN/report.html.
"""

from __future__ import annotations

import base64
import html
import io
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mumo.config import Config, build_config
from mumo.data.builtin import resolve_builtin
from mumo.data.prepare import resolve_schema
from mumo.data.table import read_table
from mumo.errors import MumoError
from mumo.io import write_bytes, write_json, write_text
from mumo.network import count_parameters

console = Console(highlight=False, soft_wrap=True)


@dataclass
class Variant:
    """One row of the comparison: a fusion over all inputs, or a single input."""

    name: str
    overrides: dict[str, Any]
    scores: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    parameters: int = 0
    runs: list[str] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores) if self.scores else float("nan")

    @property
    def std(self) -> float:
        return statistics.stdev(self.scores) if len(self.scores) > 1 else 0.0


def variants_for(config: Config, fusions: list[str], unimodal: bool) -> list[Variant]:
    """A variant per fusion; with unimodal, one per input column (the others ignored)."""
    out = [Variant(f"fusion: {name}", {"model.fusion": {"type": name}}) for name in fusions]
    if unimodal:
        data = resolve_builtin(config.data)
        schema = resolve_schema(data, read_table(data.train), config.task.type)
        for column, kind in schema.inputs.items():
            others = [c for c in schema.inputs if c != column]
            out.append(Variant(f"only {column} ({kind})", {"data.ignore": [*config.data.ignore, *others]}))
    return out


def compare(
    config: Config,
    out: Path,
    fusions: list[str],
    unimodal: bool = False,
    repeats: int = 1,
    quiet: bool = True,
) -> list[Variant]:
    """Train every variant `repeats` times (seeds seed, seed+1, ...) and write the comparison."""
    from mumo.pipeline import train

    if repeats < 1:
        raise MumoError("--repeats: must be at least 1")
    variants = variants_for(config, fusions, unimodal)
    raw = config.model_dump(mode="json")
    split = "test" if config.data.test or config.data.train.startswith("builtin:") else "val"
    metric = ""
    total = len(variants) * repeats
    for i, variant in enumerate(variants):
        for repeat in range(repeats):
            step = i * repeats + repeat + 1
            folder = out / "runs" / f"{_slug(variant.name)}-r{repeat}"
            console.print(f"[{step}/{total}] {variant.name}, repeat {repeat + 1}/{repeats} → {folder}")
            overrides = {**variant.overrides, "train.seed": config.train.seed + repeat}
            started = time.time()
            run = train(build_config(raw, overrides), out=folder, overwrite=True, quiet=quiet)
            assert run.model is not None
            metric = run.model.task.main_metric
            variant.scores.append(run.metrics[split][metric])
            variant.seconds.append(time.time() - started)
            variant.parameters = count_parameters(run.model.network)[0]
            variant.runs.append(str(folder))
    _write(out, variants, metric, split, repeats)
    return variants


def print_table(variants: list[Variant], metric: str, split: str) -> None:
    table = Table(title=f"{split} {metric}, mean ± std over repeats")
    for column in ("variant", metric, "parameters", "train s"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for v in variants:
        table.add_row(
            v.name, f"{v.mean:.4f} ± {v.std:.4f}", f"{v.parameters:,}", f"{statistics.fmean(v.seconds):.0f}"
        )
    console.print(table)


def _write(out: Path, variants: list[Variant], metric: str, split: str, repeats: int) -> None:
    rows = [{**asdict(v), "mean": v.mean, "std": v.std} for v in variants]
    write_json(out / "compare.json", {"metric": metric, "split": split, "repeats": repeats, "variants": rows})
    png = _bar_plot(variants, metric, split)
    write_bytes(out / "compare.png", png)
    print_table(variants, metric, split)
    body = "".join(
        f"<tr><td>{html.escape(v.name)}</td><td>{v.mean:.4f} ± {v.std:.4f}</td><td>{v.parameters:,}</td>"
        f"<td>{statistics.fmean(v.seconds):.1f}</td></tr>"
        for v in variants
    )
    image = base64.b64encode(png).decode()
    page = (
        "<!doctype html><meta charset='utf-8'><title>mumo compare</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td,th{padding:.2em .8em;"
        "text-align:right}td:first-child{text-align:left}</style>"
        f"<h1>mumo compare</h1><p>{html.escape(split)} {html.escape(metric)}, mean ± std over {repeats} "
        "repeat(s) with the same splits; repeat k uses seed + k.</p>"
        f"<table><tr><th>variant</th><th>{html.escape(metric)}</th><th>parameters</th><th>train s</th></tr>"
        f"{body}</table><img alt='bar plot' src='data:image/png;base64,{image}'>"
    )
    write_text(out / "report.html", page)
    console.print(f"comparison: {out / 'compare.json'}, {out / 'compare.png'}, {out / 'report.html'}")


def _bar_plot(variants: list[Variant], metric: str, split: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(5.0, 0.9 * len(variants)), 3.6))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    names = [v.name for v in variants]
    colours = ["#3b6ea8" if n.startswith("fusion") else "#b0b7c3" for n in names]
    axes.bar(
        range(len(variants)),
        [v.mean for v in variants],
        yerr=[v.std for v in variants],
        color=colours,
        capsize=3,
    )
    axes.set_xticks(range(len(variants)), names, rotation=35, ha="right", fontsize=8)
    axes.set_ylabel(f"{split} {metric}")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name).strip("-").replace("--", "-")
