"""`mumo data check`: validate every row of every split and list each problem with file, row and column."""

from __future__ import annotations

from rich.console import Console

from mumo.config import Config
from mumo.data.builtin import resolve_builtin
from mumo.data.prepare import fit_processors, load_split, make_processors, resolve_schema
from mumo.data.table import read_table

console = Console(highlight=False, soft_wrap=True)


def check(config: Config, limit: int = 50) -> int:
    """0 when every row is usable, 2 when there are problems (each listed, up to `limit` per split)."""
    data = resolve_builtin(config.data)
    tables = {
        name: read_table(path)
        for name, path in (("train", data.train), ("val", data.val), ("test", data.test))
        if path
    }
    from mumo.tasks import resolve_task

    schema = resolve_schema(data, tables["train"], config.task.type)
    task, options = resolve_task(config.task, schema, tables["train"])
    schema, _ = task.plan(schema, options)
    task.check_data(schema, tables["train"])
    schema.task = task.name
    processors = make_processors(schema, data)
    target = task.make_target(schema.targets, config.model)
    fit_processors(processors, target, tables["train"])
    console.print(f"task: {schema.task}   target: {', '.join(schema.targets) or '-'}")
    console.print("inputs: " + ", ".join(f"{column} ({kind})" for column, kind in schema.inputs.items()))
    for note in schema.notes:
        console.print(f"note: {note}")
    problems = 0
    for name, table in tables.items():
        split = load_split(name, table, processors, target, on_error="absent")
        empty = ", ".join(f"{c} {n}" for c, n in split.absent.items() if n)
        console.print(
            f"{table.name}: {len(table)} rows" + (f"; empty (absent) cells: {empty}" if empty else "")
        )
        for issue in split.issues[:limit]:
            console.print(f"  {issue.file}, row {issue.row}, column {issue.column!r}: {issue.reason}")
        if len(split.issues) > limit:
            console.print(f"  ... and {len(split.issues) - limit} more")
        problems += len(split.issues)
    if problems:
        console.print(f"{problems} problems found")
        return 2
    console.print("no problems found")
    return 0
