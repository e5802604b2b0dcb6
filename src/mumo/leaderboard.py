"""The leaderboard of a tuning search: a terminal table, leaderboard.json and leaderboard.html (with a
plot of every trial's validation score and the best so far)."""

from __future__ import annotations

import math
from dataclasses import asdict
from html import escape
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from mumo.io import write_json, write_text
from mumo.report import figure, image_html, table_html
from mumo.tuning import TrialResult

console = Console(highlight=False, soft_wrap=True)


def write_leaderboard(
    out: Path, results: list[TrialResult], ensemble: dict[str, Any] | None = None, quiet: bool = False
) -> None:
    metric = next((r.metric for r in results if r.metric), "score")
    write_json(
        out / "leaderboard.json",
        {"metric": metric, "trials": [asdict(r) for r in results], "ensemble": ensemble},
    )
    keys = sorted({key for r in results for key in r.params})
    rows = [
        [f"trial {r.number}", r.state, r.val, r.test if r.test is not None else float("nan"), r.seconds,
         *(_short(r.params.get(k)) for k in keys)]
        for r in results
    ]  # fmt: skip
    header = ["trial", "state", f"val {metric}", f"test {metric}", "seconds", *keys]
    extra = ""
    if ensemble is not None:
        members = ", ".join(f"trial {n} × {w}" for n, w in ensemble["members"].items())
        extra = (
            f"<h2>Ensemble</h2><p>Greedy ensemble selection (Caruana et al. 2004) over the top trials' "
            f"validation predictions: {escape(members)}. val {escape(metric)} {ensemble['val']:.4f}, test "
            f"{ensemble['test']:.4f} (best single trial: val {ensemble['best_single_val']:.4f}).</p>"
        )
    page = (
        "<!doctype html><meta charset='utf-8'><title>mumo tune</title><style>body{font-family:sans-serif;"
        "max-width:70em;margin:2em auto}td,th{padding:.2em .6em;border:1px solid #ddd}</style>"
        f"<h1>mumo tune: {len(results)} trials</h1>{_plot(results, metric)}"
        f"{table_html(header, rows)}{extra}"
    )
    write_text(out / "leaderboard.html", page)
    if not quiet:
        table = RichTable(title=f"leaderboard ({out / 'leaderboard.html'})")
        for name in header:
            table.add_column(name, justify="left" if name in ("trial", "state") else "right")
        for row in rows[:20]:
            table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
        console.print(table)


def _plot(results: list[TrialResult], metric: str) -> str:
    done = sorted((r.number, r.val) for r in results if r.state != "failed" and math.isfinite(r.val))
    if not done:
        return ""
    higher = next((r.higher for r in results if r.metric), True)
    fig = figure(7, 3)
    axes = fig.add_subplot()
    axes.scatter([n for n, _ in done], [v for _, v in done], s=14, label="trial")
    best, line = None, []
    for _, value in done:
        best = value if best is None else (max(best, value) if higher else min(best, value))
        line.append(best)
    axes.step([n for n, _ in done], line, where="post", color="#c33", label="best so far")
    axes.set(xlabel="trial", ylabel=f"val {metric}")
    axes.legend()
    axes.grid(alpha=0.3)
    return image_html(fig, "validation score per trial")


def _short(value: Any) -> Any:
    return float(f"{value:.3g}") if isinstance(value, float) else value
