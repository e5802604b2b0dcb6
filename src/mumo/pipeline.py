"""mumo.train: config → data → task → fitted processors → Lightning fit → model.safetensors, metrics.json,
report.html in the run folder."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mumo.config import Config, DataConfig, TaskOptions, build_config, load_raw
from mumo.data.builtin import resolve_builtin
from mumo.data.dataset import make_loader
from mumo.data.prepare import (
    Schema,
    Split,
    finish_processors,
    fit_processors,
    load_split,
    make_processors,
    resolve_schema,
    split_off,
    split_rows,
    summarize_issues,
)
from mumo.data.table import read_table
from mumo.distributed import WORK_ENV, first_process, launched_by
from mumo.errors import MumoError
from mumo.network import count_parameters, resolve_encoders
from mumo.predictor import Predictor
from mumo.rundir import (
    CONFIG,
    WEIGHTS,
    inherit_processors,
    init_from_run,
    load_preprocess,
    load_run_config,
    load_split_rows,
    reading,
    save_config,
    save_preprocess,
    save_split_rows,
    save_weights,
)
from mumo.runwriter import RunWriter, staging
from mumo.tasks import TASKS, Task, resolve_task

if TYPE_CHECKING:
    from mumo.data.stream import ParquetSource

console = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class Run:
    """What mumo.train returns: where the run is, its metrics, and the trained model."""

    path: Path
    metrics: dict[str, dict[str, float]]
    model: Predictor | None = None
    issues: list[Any] = field(default_factory=list)


def train(
    config: Config | str | Path | dict[str, Any] | None,
    overrides: dict[str, Any] | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    callbacks: list[Any] | None = None,
) -> Run:
    """Train, evaluate and save a run. `config` is a Config, a YAML path, or a raw dict; with resume,
    None (the interrupted run's own config is used)."""
    from mumo.evaluation import write_evaluation
    from mumo.training import fit, load_weights, uses_gradcache

    started = time.time()
    # In a distributed run (train.devices > 1, torchrun, srun) every process runs this function; the
    # first one alone writes the run folder, the others train beside it and write nothing.
    leader = first_process()
    quiet = quiet or not leader
    say = (lambda *_: None) if quiet else console.print
    if not leader and out is None and WORK_ENV not in os.environ:
        raise MumoError(f"{launched_by()}: give --out RUN_DIR, so that every process names the same run")
    # The processes Lightning starts after the first reuse what it fitted (its schema and processors).
    reuse = resume or (not leader and WORK_ENV in os.environ)
    writer: RunWriter | Follower
    if resume and out is None:
        raise MumoError("--resume needs --out RUN_DIR")
    if reuse:
        writer = RunWriter(Path(out), resume=True) if leader else Follower(Path(out or "."))  # type: ignore[arg-type]
        with reading(writer.work / CONFIG):
            config = load_run_config(writer.work)
    else:
        if config is None:
            raise MumoError("give a config (a YAML path, a dict or a Config)")
        config = _as_config(config, overrides)
        destination = _destination(config, out)
        # RunWriter refuses now, before any work, what the run may not do to --out.
        writer = RunWriter(destination, overwrite=overwrite) if leader else Follower(destination)
    data = resolve_builtin(config.data)
    source = _stream_source(data) if data.stream else None  # train rows read while training
    tables = {
        name: source.sample(data.stream_sample) if source and name == "train" else read_table(path)
        for name, path in (("train", data.train), ("val", data.val), ("test", data.test))
        if path
    }

    # Schema, task and processors: fitted on train now, or reloaded as they were when resuming.
    if reuse:
        schema, processors, target = load_preprocess(writer.work / "preprocess")
        task_class = TASKS.get(schema.task)
    else:
        schema = resolve_schema(data, tables["train"], config.task.type)
        task_class, options = resolve_task(config.task, schema, tables["train"])
        schema, options = task_class.plan(schema, options)
        task_class.check_data(schema, tables["train"])
        schema.task = task_class.name
        config = _resolved(
            config, schema, options, task_class
        )  # checks encoders against kinds before decoding
        processors = make_processors(schema, data, config.model.encoders)
        target = task_class.make_target(schema.targets, config.model)
    inherited: list[str] = []  # columns whose processor (and encoder) come from model.init_from
    if config.model.init_from and not resume:
        inherited = inherit_processors(processors, schema, Path(config.model.init_from))
    held_out: list[int] | None = None
    if "val" not in tables:
        held_out = load_split_rows(writer.work) if reuse else None
        if held_out is None:
            labels = task_class.stratify(tables["train"], schema)
            held_out = split_rows(tables["train"], data.val_fraction, config.train.seed, labels, schema.notes)
        tables["train"], tables["val"] = split_off(tables["train"], held_out)
    if not reuse:
        fit_processors(processors, target, tables["train"], keep=inherited)

    progress = None if quiet or not config.train.progress or not console.is_terminal else _progress
    splits: dict[str, Split] = {}
    for name, table in tables.items():
        splits[name] = load_split(name, table, processors, target, data.on_error, progress, data.cache)
        if splits[name].issues:
            say(f"[yellow]{name}: {summarize_issues(splits[name].issues)}[/yellow]")
        if not len(splits[name]):
            raise MumoError(f"{table.name}: no usable rows")
    for note in schema.notes:
        say(f"[dim]{note}[/dim]")
    if not reuse:
        finish_processors(processors, splits["train"], keep=inherited)

    task: Task = task_class(config.task, schema.inputs, target)
    torch.manual_seed(config.train.seed)  # the same config and seed give the same initial weights
    network = task.build_network(config.model, processors)
    if config.model.init_from and not resume:
        say(f"[dim]{init_from_run(network, config.model.init_from)}[/dim]")
    with writer:
        work = writer.work
        if resume:  # the trained weights now, so that frozen-feature caching below uses them
            network.load_state_dict(load_weights(work / "checkpoints" / "last.ckpt"))
        elif leader:
            save_preprocess(work / "preprocess", schema, processors, target)
            save_config(work, config)
            if held_out is not None:
                save_split_rows(work, held_out)
        total, trainable = count_parameters(network)
        say(_summary(writer.out, schema, splits, total, trainable))
        if not data.cache:
            say("[dim]data.cache: false: image and audio files are decoded each time a batch is built[/dim]")
        if data.feature_cache:
            from mumo.feature_cache import cache_columns

            for column, rows in cache_columns(
                network, processors, splits, config.train.batch_size, progress
            ).items():
                say(
                    f"[dim]{column}: frozen backbone features cached ({rows} computed now, the rest reused)[/dim]"
                )

        # GradCache: the loss sees batch_size * accumulate rows; autograd holds batch_size at a time.
        rows_per_batch = config.train.batch_size * (
            config.train.accumulate if uses_gradcache(task, config.train) else 1
        )
        loaders = {
            name: make_loader(
                split,
                processors,
                target,
                batch_size=rows_per_batch,
                train=name == "train",
                num_workers=data.num_workers,
                seed=config.train.seed,
            )
            for name, split in splits.items()
            if not (source and name == "train")
        }
        if source is not None:
            from mumo.data.stream import StreamingDataset, stream_loader

            streamed = StreamingDataset(
                source, processors, target, rows_per_batch, data.on_error, config.train.seed
            )
            loaders["train"] = stream_loader(streamed, data.num_workers)
            say(
                f"[dim]data.stream: {source.rows:,} train rows in {len(source.groups)} row groups, decoded "
                f"while training; the processors were fitted on a sample of {len(splits['train']):,}[/dim]"
            )
        with _shown_to_followers(work if leader else None):
            fit(config, work, network, task, loaders, resume, quiet, callbacks)
        if source is not None and (skipped := streamed.skipped_rows()):  # every rank takes part
            shown = ", ".join(map(str, skipped[:5])) + (", ..." if len(skipped) > 5 else "")
            say(
                f"[yellow]train: {len(skipped)} rows skipped while streaming (rows {shown}; why: above)[/yellow]"
            )
        if not leader:
            return Run(path=writer.out, metrics={})
        save_weights(network, work / WEIGHTS)
        predictor = Predictor(config, schema, processors, target, network, task, work)
        evaluated = {k: v for k, v in splits.items() if k != "train"}
        train_split = splits["train"] if config.train.baseline else None
        metrics = write_evaluation(predictor, work, evaluated, tables, quiet, train_split)
        assert isinstance(writer, RunWriter)  # the first process's
        predictor.path = writer.commit()
    say(
        f"[green]done[/green] in {time.time() - started:.0f}s → {writer.out}  (report: {writer.out / 'report.html'})"
    )
    return Run(
        path=writer.out,
        metrics=metrics,
        model=predictor,
        issues=[i for s in splits.values() for i in s.issues],
    )


def _as_config(config: Config | str | Path | dict[str, Any], overrides: dict[str, Any] | None) -> Config:
    if isinstance(config, Config):
        raw: dict[str, Any] = config.model_dump(mode="json")
        return build_config(raw, overrides) if overrides else config
    if isinstance(config, dict):
        return build_config(config, overrides)
    return build_config(load_raw(config), overrides, source=str(config))


def _resolved(config: Config, schema: Schema, options: TaskOptions, task: type[Task]) -> Config:
    """The config as trained: target, task and its options, and every encoder written out."""
    data = config.data.model_copy(
        update={
            "target": schema.targets[0] if len(schema.targets) == 1 else schema.targets or None,
            "columns": dict(schema.inputs),
        }
    )
    model = resolve_encoders(task.resolve_model(config.model, schema.inputs), schema.inputs)
    return config.model_copy(update={"data": data, "task": options, "model": model})


def _stream_source(data: DataConfig) -> ParquetSource:
    from mumo.data.stream import ParquetSource

    if not data.val:
        raise MumoError("data.stream: give data.val too (a streamed train table is not split for validation)")
    return ParquetSource.open(data.train)


class Follower:
    """A process after the first of a distributed run: it trains in the first one's work folder (named
    by it in MUMO_RUN_WORK, or beside --out as RunWriter names it) and writes nothing there."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.work = Path(os.environ[WORK_ENV]) if WORK_ENV in os.environ else staging(out)

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *_: object) -> None:
        pass


@contextmanager
def _shown_to_followers(work: Path | None) -> Iterator[None]:
    """While the first process trains, the processes Lightning starts from it inherit its work folder."""
    if work is None:
        yield
        return
    before = os.environ.get(WORK_ENV)
    os.environ[WORK_ENV] = str(work)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(WORK_ENV, None)
        else:
            os.environ[WORK_ENV] = before


def _destination(config: Config, out: str | Path | None) -> Path:
    """--out, or runs/<name> (runs/<name>-2, -3, ... when that is taken)."""
    if out is not None:
        return Path(out)
    base = Path("runs") / config.name
    run_dir, n = base, 1
    while run_dir.exists() or (run_dir.parent / f".{run_dir.name}.partial").exists():
        n += 1
        run_dir = base.with_name(f"{base.name}-{n}")
    return run_dir


def _summary(run_dir: Path, schema: Schema, splits: dict[str, Split], total: int, trainable: int) -> str:
    inputs = ", ".join(f"{c} ({k})" for c, k in schema.inputs.items())
    sizes = ", ".join(f"{n} {len(s)}" for n, s in splits.items())
    what = f"of {', '.join(schema.targets)} from {inputs}" if schema.targets else f"over {inputs}"
    return (
        f"[bold]mumo[/bold] {schema.task} {what}\n"
        f"rows: {sizes}   model: {total:,} parameters ({trainable:,} trainable)   run: {run_dir}"
    )


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


__all__ = ["Run", "train"]
