"""Tasks: one file per task behind the Task protocol (base.py). Importing this package registers every
task in TASKS; `task_options` validates a config's task section with the task's own options class, and
`resolve_task` turns `task: auto` into a task from the target column's values."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from mumo.cells import as_number
from mumo.config import AutoTaskOptions, TaskOptions
from mumo.config_errors import format_validation_error
from mumo.data.prepare import Schema
from mumo.data.table import IMAGE_EXTENSIONS, Table
from mumo.errors import ConfigError, DataError
from mumo.tasks import (  # noqa: F401  (registration)
    classification,
    contrastive,
    generation,
    image_generation,
    matching,
    multilabel,
    regression,
)
from mumo.tasks.base import TASKS, Evaluated, SupervisedTask, Task

AUTO = "auto"


def task_options(raw: dict[str, Any]) -> TaskOptions:
    """A config's task section as the named task's options; for `auto`, the keys are kept and checked
    once the task is known, but a key that no task has is an error now."""
    name = raw.get("type", AUTO)
    if name == AUTO:
        known = {key for entry in TASKS for key in TASKS.get(entry).Options.model_fields}
        for key in raw:
            if key not in known:
                raise ConfigError(
                    f"task.{key}: unknown key; the tasks' keys are {', '.join(sorted(known))} "
                    "(set task.type to check them against one task)"
                )
        return AutoTaskOptions.model_validate(raw)
    options = TASKS.get(str(name), key="task.type").Options
    try:
        return options.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, root=options, prefix="task")) from None


def resolve_task(options: TaskOptions, schema: Schema, train: Table) -> tuple[type[Task], TaskOptions]:
    """The task class and its options; `auto` is multilabel for several targets, regression for a
    real-valued (or many-valued integer) target, generation for free text, else classification."""
    name = options.type
    if name == AUTO:
        if not schema.targets:
            raise DataError("no target: set data.target (or --target COLUMN)", file=train.name)
        name = "multilabel" if len(schema.targets) > 1 else infer_target_task(train.values(schema.targets[0]))
        schema.notes.append(f"task inferred from column {schema.targets[0]!r}: {name}")
        extra = dict(options.model_extra or {})
        options = task_options({**extra, "type": name})
    return TASKS.get(name, key="task.type"), options


def infer_target_task(values: list[Any]) -> str:
    """classification for labels, regression for real-valued targets, image_generation for image files,
    generation for free text (sentences: more than 3 words on average, or over 100 values that are mostly
    distinct)."""
    present = [v for v in values if v is not None]
    numbers = [as_number(v) for v in present]
    if present and all(n is not None for n in numbers):
        distinct = set(numbers)
        integral = all(float(n).is_integer() for n in distinct if n is not None)
        if not integral or len(distinct) > 20:
            return "regression"
        return "classification"
    if present:
        strings = [str(v).lower() for v in present]
        if sum(s.endswith(IMAGE_EXTENSIONS) for s in strings) >= 0.9 * len(strings):
            return "image_generation"
        words = sum(len(str(v).split()) for v in present) / len(present)
        distinct_texts = len({str(v) for v in present})
        if words > 3 or (distinct_texts > 100 and distinct_texts > len(present) / 2):
            return "generation"
    return "classification"


__all__ = [
    "TASKS",
    "Evaluated",
    "SupervisedTask",
    "Task",
    "infer_target_task",
    "resolve_task",
    "task_options",
]
