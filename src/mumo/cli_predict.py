"""`mumo predict` and `mumo embed`: what a run gives for new rows, printed or written to a file.

mumo predict RUN --data F | --input COL=VALUE ... [--out F.csv|.jsonl|.parquet] [--set task.KEY=VALUE]
mumo predict RUN --zero-shot --labels 'a,b,...' [--prompt '... {} ...'] (a contrastive run)
mumo embed RUN --data F --column C --out F.parquet|.jsonl|.npy [--ray]

Output files are checked before any work (a known suffix, not a folder) and written atomically.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from mumo import cli_index
from mumo.errors import MumoError


def predict_setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a finished run directory")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--data", help="manifest of rows to predict")
    group.add_argument(
        "--input",
        nargs="+",
        metavar="COL=VALUE",
        help="one item, e.g. --input image=a.png caption='a red circle'",
    )
    p.add_argument(
        "--out", help="write predictions here (.csv, .jsonl or .parquet); default: print JSON lines"
    )
    p.add_argument("--on-error", choices=["fail", "skip", "absent"], default="fail")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="task.KEY=VALUE",
        help="change a task option for this prediction, e.g. --set task.num_beams=4 (generation)",
    )
    zero = p.add_argument_group("zero-shot (a contrastive run with a text column)")
    zero.add_argument("--zero-shot", action="store_true", help="score each item against --labels")
    zero.add_argument("--labels", help="comma-separated class names, e.g. 'red circle,blue square'")
    zero.add_argument("--prompt", default="{}", help="text around each label, e.g. 'a picture of a {}'")
    zero.add_argument("--column", help="the column to classify (default: the text column's partner)")


def predict_run(args: argparse.Namespace) -> int:
    import mumo
    from mumo.data.table import read_table

    out = _output_file(args.out, TABLE_SUFFIXES) if args.out else None  # checked before any work
    model = mumo.load(args.run_dir)
    if args.set:
        from mumo.config import parse_overrides

        model = model.with_task_options(parse_overrides(args.set))
    if args.zero_shot or args.labels:
        return _zero_shot(model, args)
    if args.input:
        print(json.dumps(model.predict([input_row(args.input, model.inputs)], on_error=args.on_error)[0]))
        return 0
    table = read_table(args.data)
    results = model.predict(table.frame, base_dir=table.base_dir, on_error=args.on_error)
    if not args.out:
        for result in results:
            print(json.dumps(result))
        return 0
    assert out is not None
    _write_table(out, model.flatten(results))
    print(f"{len(results)} predictions → {out}", file=sys.stderr)
    return 0


def input_row(items: list[str], inputs: dict[str, str]) -> dict[str, Any]:
    """One row from `--input COL=VALUE ...` (predict, generate): one line naming a malformed item or a
    column that is not an input."""
    row: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise MumoError(f"--input {item!r}: expected COLUMN=VALUE")
        if key not in inputs:
            raise MumoError(f"--input {key!r}: not an input of this model; inputs: {', '.join(inputs)}")
        row[key] = value
    return row


def _zero_shot(model: Any, args: argparse.Namespace) -> int:
    from mumo.data.table import read_table

    if not args.zero_shot or not args.labels:
        raise MumoError("zero-shot needs both --zero-shot and --labels 'a,b,...'")
    labels = [label.strip() for label in args.labels.split(",") if label.strip()]
    if args.input:
        row = dict(item.partition("=")[::2] for item in args.input)
        results = model.zero_shot([row], labels, args.prompt, args.column, on_error=args.on_error)
    else:
        table = read_table(args.data)
        results = model.zero_shot(
            table.frame, labels, args.prompt, args.column, table.base_dir, args.on_error
        )
    if args.out:
        import pandas as pd

        from mumo.tasks.base import flatten_row

        frame = pd.DataFrame([{"row": i + 1, **flatten_row(result)} for i, result in enumerate(results)])
        _write_table(Path(args.out), frame)
        print(f"{len(results)} zero-shot predictions → {args.out}", file=sys.stderr)
    else:
        for result in results:
            print(json.dumps(result))
    return 0


TABLE_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")


def _output_file(value: str, suffixes: tuple[str, ...], flag: str = "--out") -> Path:
    """An output file path, checked before any work: a known suffix, not a folder. Missing parent
    folders are created when it is written."""
    path = Path(value)
    if path.is_dir():
        raise MumoError(f"{flag} {path}: is a folder; give a file path, e.g. {path / ('out' + suffixes[0])}")
    if path.suffix.lower() not in suffixes:
        raise MumoError(f"{flag} {path}: use a {', '.join(suffixes[:-1])} or {suffixes[-1]} file")
    return path


def _write_table(path: Path, frame: Any) -> None:
    """A table written atomically as CSV, JSON lines or Parquet (chosen by the suffix)."""
    from mumo.io import atomic_path

    suffix = _output_file(str(path), TABLE_SUFFIXES).suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        elif suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_json(tmp, orient="records", lines=True)


def embed_setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a finished contrastive run")
    p.add_argument("--data", required=True, help="manifest of rows to embed")
    p.add_argument("--column", required=True, help="the column to embed")
    p.add_argument("--out", required=True, help="output file: .parquet (row, column, vector), .jsonl or .npy")
    p.add_argument("--on-error", choices=["fail", "skip", "absent"], default="fail")
    p.add_argument("--ray", action="store_true", help="embed on Ray actors (pip install 'mumo[ray]')")
    cli_index.ray_flags(p, "actors, each with the run loaded")


def embed_run(args: argparse.Namespace) -> int:
    import mumo
    from mumo.data.table import read_table

    _output_file(args.out, VECTOR_SUFFIXES)
    model = mumo.load(args.run_dir)
    table = read_table(args.data)
    if args.column not in table.columns:
        raise MumoError(
            f"--column: {args.column!r} is not in {args.data}; columns: {', '.join(table.columns)}"
        )
    if args.ray:
        from mumo import ray_engine
        from mumo.embedding import embedder

        embedder(model, args.column)  # a run that cannot embed the column says so before Ray starts
        cells = table.values(args.column)
        vectors = ray_engine.embed(
            args.run_dir, cells, args.column, table.base_dir, args.on_error, args.address, args.workers
        )
    else:
        vectors = model.embed(table.frame, args.column, table.base_dir, args.on_error)
    kept = [i for i in range(len(vectors)) if not math.isnan(float(vectors[i, 0]))]
    _write_vectors(Path(args.out), args.column, [table.row_number(i) for i in kept], vectors[kept])
    absent = len(vectors) - len(kept)
    note = f" ({absent} rows without {args.column!r} left out)" if absent else ""
    print(f"{len(kept)} vectors of {vectors.shape[1]} dims → {args.out}{note}", file=sys.stderr)
    return 0


VECTOR_SUFFIXES = (".parquet", ".jsonl", ".npy")


def _write_vectors(path: Path, column: str, rows: list[int], vectors: Any) -> None:
    import numpy as np
    import pandas as pd

    from mumo.io import atomic_path

    suffix = _output_file(str(path), VECTOR_SUFFIXES).suffix.lower()
    if suffix == ".npy":
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, np.asarray(vectors, dtype=np.float32))
        return
    frame = pd.DataFrame({"row": rows, "column": column, "vector": [list(map(float, v)) for v in vectors]})
    _write_table(path, frame)
