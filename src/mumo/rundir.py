"""The run folder on disk: preprocess/ (schema, target, one folder per input's processor), config.yaml and
model.safetensors; written by the pipeline, read back by the predictor and by model.init_from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from mumo.config import Config, build_config, dump_config, load_raw
from mumo.data.prepare import Schema
from mumo.data.targets import TargetProcessor
from mumo.errors import MumoError
from mumo.io import atomic_path, write_json, write_text
from mumo.modalities import PROCESSORS, Processor

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"

# Keys every task section held in runs written before tasks had their own options (mumo 0.1.0), with
# the values those runs wrote when the key meant nothing for their task.
_LEGACY_TASK_DEFAULTS: dict[str, Any] = {
    "label_smoothing": 0.0,
    "pairs": None,
    "loss": "infonce",
    "temperature": 0.07,
    "projection": None,
}


def column_folder(column: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in column) or "_"


def save_preprocess(
    folder: Path, schema: Schema, processors: dict[str, Processor], target: TargetProcessor | None
) -> None:
    """preprocess/: schema.json, target.json, and <column>/processor.json (+ tokenizer.json) per input."""
    folders = {column: column_folder(column) for column in processors}
    meta = {
        "inputs": [[column, kind] for column, kind in schema.inputs.items()],  # a list: order is the model's
        "targets": schema.targets,
        "task": schema.task,
        "folders": folders,
    }
    write_json(folder / "schema.json", meta)
    if target is not None:
        write_json(folder / "target.json", target.state())
    for column, processor in processors.items():
        processor.save(folder / folders[column])


def load_preprocess(folder: Path) -> tuple[Schema, dict[str, Processor], TargetProcessor | None]:
    """The schema, fitted processors and target processor a run was trained with."""
    from mumo.tasks import TASKS

    meta = json.loads((folder / "schema.json").read_text())
    inputs = {column: kind for column, kind in meta["inputs"]}
    schema = Schema(inputs=inputs, targets=meta["targets"], task=meta["task"])
    processors: dict[str, Processor] = {}
    for column, kind in schema.inputs.items():
        saved = json.loads((folder / meta["folders"][column] / "processor.json").read_text())
        processor = PROCESSORS.get(saved.get("processor", kind))(column)
        processor.restore(folder / meta["folders"][column])
        processors[column] = processor
    target_file = folder / "target.json"
    target = TASKS.get(schema.task).make_target(schema.targets) if target_file.is_file() else None
    if target is not None:
        target.set_state(json.loads(target_file.read_text()))
    return schema, processors, target


def save_config(run_dir: Path, config: Config) -> None:
    write_text(run_dir / CONFIG, dump_config(config))


def load_run_config(run_dir: Path) -> Config:
    """A run's config.yaml; a run written before each task had its own options has its task section
    trimmed to the keys of its task (the others hold the values such runs always wrote)."""
    raw = load_raw(run_dir / CONFIG)
    task = raw.get("task")
    if isinstance(task, dict) and task.get("type"):
        from mumo.tasks import TASKS

        name = str(task["type"])
        if name in TASKS:
            known = TASKS.get(name).Options.model_fields
            raw["task"] = {
                key: value
                for key, value in task.items()
                if key in known or _LEGACY_TASK_DEFAULTS.get(key, object()) != value
            }
    return build_config(raw, source=str(run_dir / CONFIG))


def save_weights(network: nn.Module, path: Path) -> None:
    """Atomic safetensors export of the network's weights."""
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}, str(tmp))


def inherit_processors(processors: dict[str, Processor], schema: Schema, run_dir: Path) -> list[str]:
    """model.init_from: the columns this model shares with the run (same name and kind) take its fitted
    processors, so their encoders see inputs exactly as they were pretrained. Returns those columns."""
    if not (run_dir / WEIGHTS).is_file():
        raise MumoError(f"model.init_from: {run_dir} is not a finished mumo run ({WEIGHTS} is missing)")
    source, source_processors, _ = load_preprocess(run_dir / "preprocess")
    shared = [c for c, kind in schema.inputs.items() if source.inputs.get(c) == kind]
    if not shared:
        raise MumoError(
            f"model.init_from: {run_dir} shares no input column with this data "
            f"(its inputs: {', '.join(source.inputs)}; these: {', '.join(schema.inputs)})"
        )
    for column in shared:
        processors[column] = source_processors[column]
    return shared


def init_from_run(network: nn.Module, run_dir: str | Path) -> str:
    """Copy the run's encoder weights into the network's encoders of the same columns."""
    weights = load_file(str(Path(run_dir) / WEIGHTS))
    loaded = []
    for key, encoder in network.encoders.items():  # type: ignore[union-attr,operator]
        prefix = f"encoders.{key}."
        state = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        if state:
            encoder.load_state_dict(state)
            loaded.append(key)
    return f"model.init_from: encoders of {', '.join(loaded) or 'no column'} loaded from {run_dir}"
