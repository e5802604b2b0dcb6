"""mumo.train: config → data → fitted processors → Lightning fit → model.safetensors, metrics.json, report.html."""

from __future__ import annotations

import logging
import math
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mumo.config import Config, build_config, dump_config, load_config, load_raw
from mumo.data.builtin import resolve_builtin
from mumo.data.dataset import make_loader
from mumo.data.prepare import (
    Schema,
    Split,
    finish_processors,
    fit_processors,
    load_split,
    make_processors,
    make_target_processor,
    resolve_schema,
    split_off,
    summarize_issues,
)
from mumo.data.table import Table, read_table
from mumo.errors import MumoError
from mumo.modalities.base import count_parameters, write_json, write_text
from mumo.model import resolve_encoders
from mumo.run import (
    PAIR_TASKS,
    WEIGHTS,
    Model,
    Run,
    build_network,
    inherit_processors,
    init_from_run,
    load_preprocess,
    save_preprocess,
    save_weights,
)
from mumo.tasks import uses_gradcache

console = Console(stderr=True, highlight=False, soft_wrap=True)


def train(
    config: Config | str | Path | dict[str, Any],
    overrides: dict[str, Any] | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
) -> Run:
    """Train, evaluate and save a run. `config` is a Config, a YAML path, or a raw dict."""
    config = _as_config(config, overrides)
    run_dir = _run_dir(config, out, resume, overwrite)
    started = time.time()
    say = (lambda *_: None) if quiet else console.print
    data = resolve_builtin(config.data)
    tables = {
        name: read_table(path)
        for name, path in (("train", data.train), ("val", data.val), ("test", data.test))
        if path
    }

    # Schema and processors: fitted on train now, or reloaded as they were when resuming.
    if resume:
        schema, processors, target = load_preprocess(run_dir / "preprocess")
        config = load_config(run_dir / "config.yaml")
    else:
        schema = resolve_schema(data, tables["train"], config.task.type)
        if schema.task in PAIR_TASKS:
            from mumo.contrastive import contrastive_schema

            schema = contrastive_schema(schema, config)
        config = _resolved(config, schema)  # checks encoders against column kinds before any decoding
        processors = make_processors(schema, data, config.model.encoders)
        target = make_target_processor(schema)
    inherited: list[str] = []  # columns whose processor (and encoder) come from model.init_from
    if config.model.init_from and not resume:
        inherited = inherit_processors(processors, schema, Path(config.model.init_from))
    if "val" not in tables:
        labels = tables["train"].values(schema.targets[0]) if schema.task == "classification" else None
        tables["train"], tables["val"] = split_off(
            tables["train"], data.val_fraction, config.train.seed, labels
        )
    if target is None and schema.task not in PAIR_TASKS:
        raise MumoError("no target: set data.target (or --target COLUMN)")
    if not resume:
        fit_processors(processors, target, tables["train"], keep=inherited)

    progress = None if quiet or not config.train.progress or not console.is_terminal else _progress
    splits: dict[str, Split] = {}
    for name, table in tables.items():
        splits[name] = load_split(name, table, processors, target, data.on_error, progress)
        if splits[name].issues:
            say(f"[yellow]{name}: {summarize_issues(splits[name].issues)}[/yellow]")
        if not len(splits[name]):
            raise MumoError(f"{table.name}: no usable rows")
    for note in schema.notes:
        say(f"[dim]{note}[/dim]")
    if not resume:
        finish_processors(processors, splits["train"], keep=inherited)
        save_preprocess(run_dir / "preprocess", schema, processors, target)
        write_text(run_dir / "config.yaml", dump_config(config))

    torch.manual_seed(config.train.seed)  # the same config and seed give the same initial weights
    network, task = build_network(config, schema, processors, target)
    if config.model.init_from and not resume:
        say(f"[dim]{init_from_run(network, config.model.init_from)}[/dim]")
    if resume:  # the trained weights now, so that frozen-feature caching below uses them, not a fresh init
        from mumo.training import load_weights

        network.load_state_dict(load_weights(run_dir / "checkpoints" / "last.ckpt"))
    total, trainable = count_parameters(network)
    say(_summary(run_dir, schema, splits, total, trainable))
    if data.feature_cache:
        from mumo.feature_cache import cache_columns

        for column, rows in cache_columns(
            network, processors, splits, config.train.batch_size, progress
        ).items():
            say(
                f"[dim]{column}: frozen backbone features cached ({rows} computed now, the rest reused)[/dim]"
            )

    loaders = {
        name: make_loader(
            split,
            processors,
            target,
            # GradCache: the loss sees batch_size * accumulate rows; autograd holds batch_size at a time.
            batch_size=config.train.batch_size
            * (config.train.accumulate if uses_gradcache(task.name, config.train) else 1),
            train=name == "train",
            num_workers=data.num_workers,
            seed=config.train.seed,
        )
        for name, split in splits.items()
    }
    _fit(config, run_dir, network, task, loaders, resume, quiet)

    model = Model(config, schema, processors, target, network, task, run_dir)
    metrics = write_evaluation(
        model, run_dir, {k: v for k, v in splits.items() if k != "train"}, quiet, tables
    )
    say(
        f"[green]done[/green] in {time.time() - started:.0f}s → {run_dir}  (report: {run_dir / 'report.html'})"
    )
    return Run(
        path=run_dir, metrics=metrics, model=model, issues=[i for s in splits.values() for i in s.issues]
    )


def _fit(
    config: Config,
    run_dir: Path,
    network: torch.nn.Module,
    task: Any,
    loaders: dict[str, Any],
    resume: bool,
    quiet: bool,
) -> None:
    """Lightning fit; the best checkpoint's weights end up in `network` and in model.safetensors."""
    import lightning as L

    from mumo.training import LitModel, build_trainer, load_weights

    L.seed_everything(config.train.seed, workers=True, verbose=False)
    manual = uses_gradcache(task.name, config.train)  # one optimizer step per (big) batch
    steps_per_epoch = (
        len(loaders["train"]) if manual else math.ceil(len(loaders["train"]) / config.train.accumulate)
    )
    lit = LitModel(network, task, config.train, total_steps=steps_per_epoch * config.train.epochs)  # type: ignore[arg-type]
    monitor, mode = "val/selection", task.main_metric[1]
    if config.train.monitor:
        monitor = (
            config.train.monitor if config.train.monitor.startswith("val/") else f"val/{config.train.monitor}"
        )
        mode = "min" if monitor.endswith(("loss", "rmse", "mae", "median_rank")) else "max"
    last = run_dir / "checkpoints" / "last.ckpt"
    with _quiet_lightning():
        options = config.train.model_copy(update={"progress": False}) if quiet else config.train
        trainer, checkpoint = build_trainer(run_dir, options, monitor, mode, len(loaders["train"]), task.name)
        trainer.fit(lit, loaders["train"], loaders["val"], ckpt_path=str(last) if resume else None)
    best = Path(checkpoint.best_model_path) if checkpoint.best_model_path else last
    if trainer.global_rank == 0:
        network.load_state_dict(load_weights(best))
        save_weights(network, run_dir / WEIGHTS)
    network.eval()


def write_evaluation(
    model: Model,
    run_dir: Path,
    splits: dict[str, Split],
    quiet: bool = False,
    tables: dict[str, Table] | None = None,
) -> dict[str, dict[str, float]]:
    """metrics.json ({"val": ..., "test": ...}) and report.html from the final model."""
    from mumo.report import write_report

    if model.task.name in PAIR_TASKS:
        return write_retrieval_evaluation(model, run_dir, splits, tables or {}, quiet)
    assert model.target is not None
    metrics: dict[str, dict[str, float]] = {}
    shown: tuple[str, Split, torch.Tensor] | None = None
    for name, split in splits.items():
        outputs = model.outputs(split)
        metrics[name] = model.task.metrics(model.target.stack(split.targets), outputs)
        shown = (name, split, outputs)
    sections: list[tuple[str, str]] = []
    payload: dict[str, Any] = _json_safe(metrics)
    if shown is not None and len(model.processors) > 1:
        contribution = model.contribution(shown[1])
        payload["contribution"] = contribution
        sections.append(("Modality contribution", contribution_html(contribution)))
    write_json(run_dir / "metrics.json", payload)
    history_file = run_dir / "logs" / "csv" / "metrics.csv"
    history = pd.read_csv(history_file) if history_file.is_file() else None
    report: dict[str, Any] = {}
    if shown is not None:
        _, split, outputs = shown
        y_true = model.target.stack(split.targets).numpy()
        if model.task.name == "classification":
            report = {"y_true": y_true, "probs": outputs.numpy(), "class_names": list(model.target.classes)}  # type: ignore[attr-defined]
        elif model.task.name == "regression":
            true = model.target.decode(torch.as_tensor(y_true)).numpy()  # type: ignore[attr-defined]
            report = {
                "y_true": true.squeeze(-1) if true.shape[-1] == 1 else true,
                "y_pred": outputs.numpy().squeeze(-1) if outputs.shape[-1] == 1 else outputs.numpy(),
            }
        else:
            report = {"y_true": y_true, "probs": outputs.numpy(), "class_names": list(model.target.columns)}
    write_report(
        run_dir / "report.html",
        title=f"mumo run: {model.config.name}",
        task=model.task.name,
        metrics=metrics,
        history=history,
        config_yaml=dump_config(model.config),
        extra_sections=sections,
        **report,
    )
    if not quiet:
        _print_metrics(metrics)
    return metrics


def write_retrieval_evaluation(
    model: Model, run_dir: Path, splits: dict[str, Split], tables: dict[str, Table], quiet: bool
) -> dict[str, dict[str, float]]:
    """A contrastive run: retrieval metrics per split, and example queries with their top results."""
    from mumo.report import write_report

    metrics = {name: model.retrieval(split) for name, split in splits.items()}
    write_json(run_dir / "metrics.json", _json_safe(metrics))
    sections = []
    if splits:
        name, split = list(splits.items())[-1]
        table = tables.get(name)
        if table is not None:
            sections.append(("Example queries", retrieval_examples_html(model, split, table)))
    history_file = run_dir / "logs" / "csv" / "metrics.csv"
    write_report(
        run_dir / "report.html",
        title=f"mumo run: {model.config.name}",
        task=model.task.name,
        metrics=metrics,
        history=pd.read_csv(history_file) if history_file.is_file() else None,
        config_yaml=dump_config(model.config),
        extra_sections=sections,
    )
    if not quiet:
        _print_metrics(metrics)
    return metrics


def retrieval_examples_html(model: Model, split: Split, table: Table, queries: int = 5, top: int = 5) -> str:
    """For the first pair: a few queries from the left column and the top right-column results (the
    correct one outlined); images are shown as thumbnails, text as text, audio as its file name."""
    import numpy as np

    left, right = model.task.pairs[0]  # type: ignore[attr-defined]
    a, b = model.embed_split(split, left), model.embed_split(split, right)
    keep = ~np.isnan(a).any(1) & ~np.isnan(b).any(1)
    index = np.flatnonzero(keep)
    if not len(index):
        return "<p>No rows with both columns.</p>"
    similarity = a[index] @ b[index].T
    numbers = {table.row_number(i): i for i in range(len(table))}
    cells = {c: table.values(c) for c in (left, right)}

    def cell(column: str, position: int) -> str:
        value = cells[column][numbers[split.rows[position]]]
        return _cell_html(value, model.schema.inputs[column], table.base_dir)

    rows = []
    for q in range(min(queries, len(index))):
        best = np.argsort(-similarity[q])[:top]
        results = "".join(
            f"<td style='{'outline:3px solid #2a7' if j == q else ''}'>{cell(right, int(index[j]))}"
            f"<br><small>{similarity[q, j]:.3f}</small></td>"
            for j in best
        )
        rows.append(f"<tr><td><b>{cell(left, int(index[q]))}</b></td>{results}</tr>")
    return (
        f"<p>Queries from <b>{escape(left)}</b>, top {top} of {len(index)} <b>{escape(right)}</b> cells by "
        "cosine similarity; the correct one is outlined.</p><table>" + "".join(rows) + "</table>"
    )


def _cell_html(value: Any, kind: str, base_dir: Path) -> str:
    import base64
    import io

    from PIL import Image

    if value is None:
        return "<i>absent</i>"
    if kind == "image":
        try:
            path = Path(str(value))
            with Image.open(path if path.is_absolute() else base_dir / path) as source:
                image = source.convert("RGB")
            image.thumbnail((64, 64))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            data = base64.b64encode(buffer.getvalue()).decode()
            return f"<img alt='{escape(str(value))}' src='data:image/png;base64,{data}'>"
        except OSError:
            return escape(str(value))
    return escape(str(value))


def contribution_html(contribution: dict[str, Any]) -> str:
    """A table: each input's effect on the main metric (removed at test time, or alone)."""
    from html import escape

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


def _print_metrics(metrics: dict[str, dict[str, float]]) -> None:
    from rich.table import Table as RichTable

    table = RichTable(title="metrics")
    table.add_column("metric")
    for split in metrics:
        table.add_column(split, justify="right")
    for key in next(iter(metrics.values()), {}):
        table.add_row(key, *(f"{metrics[s].get(key, float('nan')):.4f}" for s in metrics))
    console.print(table)


def _json_safe(metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, float | None]]:
    return {s: {k: (v if math.isfinite(v) else None) for k, v in m.items()} for s, m in metrics.items()}


def _as_config(config: Config | str | Path | dict[str, Any], overrides: dict[str, Any] | None) -> Config:
    if isinstance(config, Config):
        raw: dict[str, Any] = config.model_dump(mode="json")
        return build_config(raw, overrides) if overrides else config
    if isinstance(config, dict):
        return build_config(config, overrides)
    return build_config(load_raw(config), overrides, source=str(config))


def _resolved(config: Config, schema: Schema) -> Config:
    """The config as trained: target, task type and every encoder written out."""
    data = config.data.model_copy(
        update={
            "target": schema.targets[0] if len(schema.targets) == 1 else schema.targets,
            "columns": dict(schema.inputs),
        }
    )
    task = config.task.model_copy(update={"type": schema.task})
    if schema.task in PAIR_TASKS:
        from mumo.contrastive import resolve_pairs

        task = task.model_copy(update={"pairs": [list(p) for p in resolve_pairs(task, list(schema.inputs))]})
    model = resolve_encoders(config.model, schema.inputs)
    return config.model_copy(update={"data": data, "task": task, "model": model})


def _run_dir(config: Config, out: str | Path | None, resume: bool, overwrite: bool) -> Path:
    """Where the run goes; an existing run is never silently replaced."""
    if out is None:
        base = Path("runs") / config.name
        run_dir, n = base, 1
        while run_dir.exists() and not resume:
            n += 1
            run_dir = base.with_name(f"{base.name}-{n}")
    else:
        run_dir = Path(out)
    if resume:
        if not (run_dir / "checkpoints" / "last.ckpt").is_file():
            raise MumoError(f"{run_dir}: nothing to resume (no checkpoints/last.ckpt)")
        return run_dir
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise MumoError(
                f"{run_dir}: already holds files; use --resume to continue it, --overwrite to replace it, or another --out"
            )
        for child in (
            "config.yaml",
            WEIGHTS,
            "preprocess",
            "metrics.json",
            "report.html",
            "checkpoints",
            "logs",
        ):
            path = run_dir / child
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _summary(run_dir: Path, schema: Schema, splits: dict[str, Split], total: int, trainable: int) -> str:
    inputs = ", ".join(f"{c} ({k})" for c, k in schema.inputs.items())
    sizes = ", ".join(f"{n} {len(s)}" for n, s in splits.items())
    what = f"of {', '.join(schema.targets)} from {inputs}" if schema.targets else f"over {inputs}"
    return (
        f"[bold]mumo[/bold] {schema.task} {what}\n"
        f"rows: {sizes}   model: {total:,} parameters ({trainable:,} trainable)   run: {run_dir}"
    )


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning's start-up chatter (GPU available: False, ...) is noise for our users."""
    names = ["lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning"]
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # frozen backbones
        try:
            yield
        finally:
            for n, level in levels.items():
                logging.getLogger(n).setLevel(level)


def _progress(label: str, total: int) -> Iterator[None]:
    """A rich progress bar for decoding files, advanced once per item."""
    if total < 200:
        for _ in range(total):
            yield
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(f"decoding {label}", total=total)
        for _ in range(total):
            yield
            bar.advance(task)


__all__ = ["train", "write_evaluation"]
