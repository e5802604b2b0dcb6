"""The `mumo` command: one table of subcommands onto the same functions as the Python API.

Exit codes: 0 success, 2 bad input (config, data, arguments) with one line naming what is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mumo import cli_generate, cli_index, cli_predict
from mumo.errors import MumoError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except MumoError as err:
        print(f"mumo: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("mumo: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mumo", description="Multimodal models from a table.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, (setup, handler, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        setup(command)
        command.set_defaults(handler=handler)
    data = sub.add_parser("data", help="check a dataset, or write a built-in one to disk")
    data_sub = data.add_subparsers(title="data commands", metavar="ACTION")
    for name, (setup, handler, help_text) in DATA_COMMANDS.items():
        command = data_sub.add_parser(name, help=help_text, description=help_text)
        setup(command)
        command.set_defaults(handler=handler)
    return parser


# ------------------------------------------------------------------------------------ shared flags
def _data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="YAML config (optional when --train and --target are given)")
    p.add_argument("--train", help="train manifest (.csv/.jsonl/.parquet) or builtin:<name>")
    p.add_argument("--val", help="validation manifest")
    p.add_argument("--test", help="test manifest")
    p.add_argument("--target", help="column to predict")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.epochs=5 (repeatable)",
    )
    p.add_argument(
        "--on-error",
        choices=["fail", "skip", "absent"],
        help="bad cells: fail (exit 2), skip the row, or treat as absent",
    )
    p.add_argument(
        "--preset",
        choices=["fast", "balanced", "best"],
        help="a bundle of defaults tied to a budget: fast (minutes), balanced (the defaults), best (an hour)",
    )


def _config_from(args: argparse.Namespace) -> Any:
    from mumo.config import build_config, load_raw, parse_overrides

    raw = load_raw(args.config) if args.config else {}
    overrides = parse_overrides(args.overrides)
    for flag, key in (
        ("train", "data.train"),
        ("val", "data.val"),
        ("test", "data.test"),
        ("target", "data.target"),
        ("on_error", "data.on_error"),
        ("preset", "preset"),
    ):
        if getattr(args, flag, None):
            overrides.setdefault(key, getattr(args, flag))
    if not args.config and "data.train" not in overrides:
        raise MumoError("give a CONFIG file or --train F (with --target COLUMN)")
    return build_config(raw, overrides, source=args.config or "command line")


def _output_folder(value: str, flag: str = "--out") -> Path:
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise MumoError(f"{flag} {path}: is a file; give a folder (it is created)")
    return path


# ------------------------------------------------------------------------------------ train
def _train_setup(p: argparse.ArgumentParser) -> None:
    _data_flags(p)
    p.add_argument("--out", help="run directory (default: runs/<name>)")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from checkpoints/last.ckpt"
    )
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--quiet", action="store_true", help="print only errors")


def _train(args: argparse.Namespace) -> int:
    from mumo.pipeline import train

    if args.resume and not args.out:
        raise MumoError("--resume needs --out RUN_DIR")
    if args.resume:
        train(None, out=args.out, resume=True, quiet=args.quiet)
    else:
        train(_config_from(args), out=args.out, overwrite=args.overwrite, quiet=args.quiet)
    return 0


# ------------------------------------------------------------------------------------ eval
def _eval_setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a finished run directory")
    p.add_argument("--data", help="manifest to evaluate on (default: the run's val and test data)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--on-error", choices=["fail", "skip", "absent"], default="fail")


def _eval(args: argparse.Namespace) -> int:
    import mumo
    from mumo.data.table import read_table
    from mumo.evaluation import held_out_tables

    model = mumo.load(args.run_dir)
    tables = {Path(args.data).stem: read_table(args.data)} if args.data else held_out_tables(model)
    if not tables:
        raise MumoError(f"{args.run_dir}: the run has no val/test data; pass --data F")
    metrics = {name: model.evaluate(table, args.on_error) for name, table in tables.items()}
    if args.json:
        from mumo.io import json_safe

        print(json.dumps(json_safe(metrics), indent=2))
    else:
        from mumo.evaluation import print_metrics

        print_metrics(metrics)
    return 0


# ------------------------------------------------------------------------------------ check
def _check_run_setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a finished run directory")


def _check_run(args: argparse.Namespace) -> int:
    """Every file of a run against its manifest (size and sha256), without loading the model."""
    from mumo.rundir import MANIFEST, foreign_entries, read_manifest, verify

    run = Path(args.run_dir)
    if not run.is_dir():
        raise MumoError(f"{run}: {'is a file, not' if run.exists() else 'no such'} run folder")
    manifest = read_manifest(run)
    if manifest is None:
        raise MumoError(
            f"{run}: no {MANIFEST} (not a run folder, or one written by mumo 0.1, which listed no files)"
        )
    problems = verify(run, only=None)
    print(f"{run}: {len(manifest['files'])} files written by mumo {manifest.get('mumo', '?')}")
    for problem in problems:
        print(problem)
    for name in foreign_entries(run, manifest):
        print(f"{run / name}: not written by mumo (left as it is)")
    if problems:
        print(f"{len(problems)} problems found")
        return 2
    print("every file is as mumo wrote it")
    return 0


# ------------------------------------------------------------------------------------ pretrain / serve
def _pretrain_setup(p: argparse.ArgumentParser) -> None:
    _train_setup(p)
    p.add_argument(
        "--pair", action="append", default=[], metavar="A,B", help="columns to align, e.g. caption,image"
    )


def _pretrain(args: argparse.Namespace) -> int:
    """`mumo train` with task: contrastive."""
    args.overrides = [*args.overrides, "task.type=contrastive"]
    if args.pair:
        pairs = [[c.strip() for c in pair.split(",")] for pair in args.pair]
        if any(len(pair) != 2 for pair in pairs):
            raise MumoError("--pair: expected two columns, e.g. --pair caption,image")
        args.overrides.append(f"task.pairs={json.dumps(pairs)}")
    return _train(args)


def _serve_setup(p: argparse.ArgumentParser) -> None:
    from mumo.serve.cli import setup

    setup(p)


def _serve(args: argparse.Namespace) -> int:
    from mumo.serve.cli import run

    return run(args)


# ------------------------------------------------------------------------------------ data
def _check_setup(p: argparse.ArgumentParser) -> None:
    _data_flags(p)


def _check(args: argparse.Namespace) -> int:
    from mumo.data.check import check

    return check(_config_from(args))


def _make_setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="builtin dataset, e.g. shapes")
    p.add_argument("--out", required=True, help="folder to write files and manifests into")
    p.add_argument("--n", type=int, default=3000, help="rows to generate")
    p.add_argument("--seed", type=int, default=0)


def _make(args: argparse.Namespace) -> int:
    from mumo.data.builtin import materialize

    if args.n < 20:
        raise MumoError("--n: generate at least 20 rows")
    out = _output_folder(args.out)
    if (out / "train.csv").exists():
        raise MumoError(f"{out}: already holds a dataset (train.csv); choose another --out")
    paths = materialize(args.name, args.n, args.seed, out_dir=out)
    print(f"wrote {args.n} rows of builtin:{args.name} → {', '.join(str(p) for p in paths.values())}")
    return 0


# ------------------------------------------------------------------------------------ compare
def _compare_setup(p: argparse.ArgumentParser) -> None:
    _data_flags(p)
    p.add_argument("--fusions", help="comma-separated fusions to compare (default: every registered fusion)")
    p.add_argument("--unimodal", action="store_true", help="also train one model per single input column")
    p.add_argument("--repeats", type=int, default=1, help="trainings per variant (seeds seed, seed+1, ...)")
    p.add_argument("--out", help="folder for the comparison (default: runs/compare-<name>)")
    p.add_argument("--overwrite", action="store_true", help="replace a comparison already in --out")


def _compare(args: argparse.Namespace) -> int:
    from mumo.compare import compare
    from mumo.fusion import FUSIONS

    config = _config_from(args)
    fusions = [f.strip() for f in args.fusions.split(",") if f.strip()] if args.fusions else FUSIONS.names()
    for name in fusions:
        FUSIONS.get(name, key="--fusions")
    out = _output_folder(args.out or f"runs/compare-{config.name}")
    if (out / "compare.json").exists() and not args.overwrite:
        raise MumoError(f"{out}: already holds a comparison; use --overwrite or another --out")
    compare(config, out, fusions, unimodal=args.unimodal, repeats=args.repeats)
    return 0


# ------------------------------------------------------------------------------------ tune
def _tune_setup(p: argparse.ArgumentParser) -> None:
    _data_flags(p)
    p.add_argument("--time-limit", help="the whole search's time budget, e.g. 15m or 2h (default: no limit)")
    p.add_argument(
        "--trials", type=int, default=20, help="trials to run (counting those of an interrupted search)"
    )
    p.add_argument(
        "--out", help="folder for the study, the trials' runs and the leaderboard (default: runs/tune-<name>)"
    )
    p.add_argument("--ensemble", action="store_true", help="also try a greedy ensemble of the best trials")
    p.add_argument("--quiet", action="store_true", help="print only the leaderboard")
    p.add_argument(
        "--engine", choices=["optuna", "ray"], default="optuna", help="optuna here, or Ray Tune (mumo[ray])"
    )
    cli_index.ray_flags(p, "trials at the same time, one CPU each")


def _tune(args: argparse.Namespace) -> int:
    from mumo.config import parse_overrides, seconds
    from mumo.tuning import tune

    config = _config_from(args)
    if args.time_limit:
        try:
            seconds(args.time_limit)
        except ValueError as err:
            raise MumoError(str(err).replace("train.time_limit", "--time-limit")) from None
    out = _output_folder(args.out or f"runs/tune-{config.name}")
    fixed = set(parse_overrides(args.overrides))  # what the user set is not searched
    results = tune(
        config,
        out,
        trials=args.trials,
        time_limit=args.time_limit,
        ensemble=args.ensemble,
        quiet=args.quiet,
        fixed=fixed,
        engine=args.engine,
        address=args.address,
        workers=args.workers,
    )
    best = results[0]
    print(f"best: trial {best.number}, val {best.metric} {best.val:.4f} → {out / 'best'}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------ demo
def _demo_setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="folder for the demo's data, runs and comparison")
    p.add_argument("--n", type=int, default=3000, help="rows of builtin:shapes to generate")
    p.add_argument("--epochs", type=int, default=4, help="epochs per model")


def _demo(args: argparse.Namespace) -> int:
    from mumo.demo import run_demo

    run_demo(Path(args.out), n=args.n, epochs=args.epochs)
    return 0


# ------------------------------------------------------------------------------------ bench
def _bench_setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="smaller data and fewer epochs (a few minutes)")
    p.add_argument("--json", default="runs/bench.json", help="where to write the results (JSON)")
    p.add_argument(
        "--markdown",
        help="also write the table as Markdown: into this file between its '<!-- bench -->' and "
        "'<!-- /bench -->' lines (BENCHMARKS.md), or as a new file",
    )


def _bench(args: argparse.Namespace) -> int:
    from mumo.bench import run_bench

    for flag, value in (("--json", args.json), ("--markdown", args.markdown)):
        if value and Path(value).is_dir():  # fail now, not after ten minutes of measuring
            raise MumoError(f"{flag}: {value} is a folder; give a file path")
    run_bench(
        quick=args.quick,
        json_path=Path(args.json),
        markdown_path=Path(args.markdown) if args.markdown else None,
    )
    return 0


Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]
COMMANDS: dict[str, Command] = {
    "train": (_train_setup, _train, "train, evaluate and save a model (a run directory)"),
    "pretrain": (_pretrain_setup, _pretrain, "train with task: contrastive (columns aligned in one space)"),
    "eval": (_eval_setup, _eval, "evaluate a run on its own or another manifest"),
    "check": (
        _check_run_setup,
        _check_run,
        "check every file of a run against its manifest, without loading it",
    ),
    "predict": (
        cli_predict.predict_setup,
        cli_predict.predict_run,
        "predict with a run, on a manifest or one item",
    ),
    "embed": (
        cli_predict.embed_setup,
        cli_predict.embed_run,
        "write a contrastive run's embeddings of one column",
    ),
    "generate": (cli_generate.setup, cli_generate.run, "draw images with an image_generation run"),
    "index": (
        cli_index.index_setup,
        cli_index.index_run,
        "build, append to or delete from a search index of one column",
    ),
    "search": (
        cli_index.search_setup,
        cli_index.search_run,
        "query a search index by text, image, audio or row",
    ),
    "serve": (_serve_setup, _serve, "serve a run (and an index) over HTTP: a REST API and a web page"),
    "compare": (_compare_setup, _compare, "train one model per fusion (and per input) on the same splits"),
    "tune": (_tune_setup, _tune, "search hyperparameters (Optuna; resumable), every trial a normal run"),
    "bench": (
        _bench_setup,
        _bench,
        "measure mumo against plain PyTorch, Pillow/soundfile and sentence-transformers here",
    ),
    "demo": (_demo_setup, _demo, "the built-in demo: fused vs single-modality models on builtin:shapes"),
}
DATA_COMMANDS: dict[str, Command] = {
    "check": (_check_setup, _check, "validate every row of a dataset and list each problem"),
    "make": (_make_setup, _make, "write a built-in dataset (files + CSV manifests) to a folder"),
}

if __name__ == "__main__":
    sys.exit(main())
