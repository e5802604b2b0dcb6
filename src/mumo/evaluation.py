"""Evaluation of a trained run: each split scored by its task, metrics.json, and report.html assembled
from the task's own sections (and, where the task compares its inputs, each input's contribution)."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.console import Console
from rich.table import Table as RichTable

from mumo.config import dump_config
from mumo.data.prepare import Split
from mumo.data.table import Table
from mumo.io import write_json
from mumo.report import write_report
from mumo.tasks.base import Evaluated

if TYPE_CHECKING:
    from mumo.predictor import Predictor

console = Console(stderr=True, highlight=False, soft_wrap=True)


def write_evaluation(
    predictor: Predictor,
    run_dir: Path,
    splits: dict[str, Split],
    tables: dict[str, Table] | None = None,
    quiet: bool = False,
    train: Split | None = None,
) -> dict[str, dict[str, float]]:
    """metrics.json ({"val": ..., "test": ..., "contribution": ...}) and report.html; the report's task
    sections are drawn from the last split (test when there is one). With the train split, the task's
    linear baseline is fitted too and scored as baseline/<metric>."""
    task = predictor.task
    evaluated: dict[str, Evaluated] = {
        name: task.evaluate(predictor, split) for name, split in splits.items()
    }
    metrics = {name: dict(result.metrics) for name, result in evaluated.items()}
    sections: list[tuple[str, str]] = []
    if train is not None:
        from mumo.baseline import fit_and_score

        baseline = fit_and_score(task, predictor.processors, train, splits)
        for name, scores in baseline.items():
            metrics[name].update({f"baseline/{key}": value for key, value in scores.items()})
        if baseline:
            direction = task.directions()[task.main_metric]
            comparison, warning = compare_with_baseline(metrics, task.main_metric, direction)
            sections.append(("Baseline", comparison))
            if warning and not quiet:
                console.print(f"[yellow]warning: {warning}[/yellow]")
    payload: dict[str, Any] = dict(metrics)
    if evaluated:
        name = list(evaluated)[-1]
        sections += task.report_sections(predictor, splits[name], (tables or {}).get(name), evaluated[name])
        if task.compares_inputs and len(predictor.processors) > 1:
            payload["contribution"] = contribution(predictor, splits[name], evaluated[name])
            sections.append(("Modality contribution", contribution_html(payload["contribution"])))
    write_json(run_dir / "metrics.json", payload)
    history_file = run_dir / "logs" / "csv" / "metrics.csv"
    write_report(
        run_dir / "report.html",
        title=f"mumo run: {predictor.config.name}",
        task=task.name,
        metrics=metrics,
        history=pd.read_csv(history_file) if history_file.is_file() else None,
        sections=sections,
        config_yaml=dump_config(predictor.config),
    )
    if not quiet:
        print_metrics(metrics)
    return metrics


def compare_with_baseline(metrics: dict[str, dict[str, float]], name: str, direction: str) -> tuple[str, str]:
    """The report's baseline section, and a warning when the model does not beat the baseline on the
    main metric of the last split."""
    rows, warning = [], ""
    for split, values in metrics.items():
        model, baseline = values.get(name, float("nan")), values.get(f"baseline/{name}", float("nan"))
        rows.append(f"<tr><td>{escape(split)}</td><td>{model:.4f}</td><td>{baseline:.4f}</td></tr>")
        better = model > baseline if direction == "max" else model < baseline
        warning = (
            ""
            if better
            else f"the linear baseline on raw features ({split} {name} {baseline:.4f}) is as good as the model "
            f"({model:.4f}): the deep model does not earn its keep on this data yet (train longer, or try "
            "--preset best or mumo tune)"
        )
    table = (
        "<p>A linear model (logistic regression or ridge) on cheap raw features of the same inputs — pooled "
        "pixels, log-mel statistics, TF-IDF of word pieces, the numbers — fitted on the train split.</p>"
        f"<table><tr><th>split</th><th>model {escape(name)}</th><th>baseline {escape(name)}</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    if warning:
        table += f"<p><b>Warning:</b> {escape(warning)}.</p>"
    return table, warning


def held_out_tables(predictor: Predictor) -> dict[str, Table]:
    """The run's own val and test data: its val manifest, or the train rows it held out (split.json)."""
    from mumo.data.builtin import resolve_builtin
    from mumo.data.prepare import split_off
    from mumo.data.table import read_table
    from mumo.rundir import load_split_rows

    data = resolve_builtin(predictor.config.data)
    tables = {}
    if data.val:
        tables["val"] = read_table(data.val)
    elif predictor.path is not None and (rows := load_split_rows(predictor.path)) is not None:
        tables["val"] = split_off(read_table(data.train), rows)[1]
    if data.test:
        tables["test"] = read_table(data.test)
    return tables


def contribution(predictor: Predictor, split: Split, full: Evaluated) -> dict[str, Any]:
    """The main metric with all inputs, with each input absent, and with only that input present."""
    task = predictor.task
    name = task.main_metric
    columns = list(predictor.processors)

    def score(absent: list[str]) -> float:
        return task.evaluate(predictor, split, absent=tuple(absent)).metrics[name]

    return {
        "split": split.name,
        "metric": name,
        "higher_is_better": task.directions()[name] == "max",
        "all": full.metrics[name],
        "without": {c: score([c]) for c in columns},
        "only": {c: score([o for o in columns if o != c]) for c in columns},
    }


def contribution_html(contribution: dict[str, Any]) -> str:
    """A table: each input's effect on the main metric (removed at test time, or alone)."""
    metric, split, full = contribution["metric"], contribution["split"], contribution["all"]
    rows = "".join(
        f"<tr><td>{escape(column)}</td><td>{contribution['without'][column]:.4f}</td>"
        f"<td>{contribution['without'][column] - full:+.4f}</td><td>{contribution['only'][column]:.4f}</td></tr>"
        for column in contribution["without"]
    )
    return (
        f"<p>{escape(metric)} on the {escape(split)} split with every input: <b>{full:.4f}</b>. "
        "Each row: the same model with that input absent in every row, and with only that input present.</p>"
        f"<table><tr><th>input</th><th>{escape(metric)} without it</th><th>change</th>"
        f"<th>{escape(metric)} with only it</th></tr>{rows}</table>"
    )


def print_metrics(metrics: dict[str, dict[str, float]]) -> None:
    table = RichTable(title="metrics")
    table.add_column("metric")
    for split in metrics:
        table.add_column(split, justify="right")
    for key in next(iter(metrics.values()), {}):
        table.add_row(key, *(f"{metrics[s].get(key, float('nan')):.4f}" for s in metrics))
    console.print(table)
