"""The run folder on disk: preprocess/ (schema, target, one folder per input's processor), config.yaml,
model.safetensors, and manifest.json, which lists every file mumo wrote with its size and sha256. Written
by the pipeline (through mumo.runwriter), verified and read back by the predictor and model.init_from."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
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
MANIFEST = "manifest.json"
SPLIT = "split.json"  # the train-manifest rows held out as validation data, when they were split off
FORMAT = 3  # run folder format: 1 = mumo 0.1 (no manifest), 2 = with manifest.json, 3 = cross fusion queries
MODEL_FILES = (CONFIG, WEIGHTS, "preprocess/")  # what loading a run reads (a trailing / = a folder)

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
        "format": FORMAT,  # a run of this format must have its manifest
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

    with reading(folder / "schema.json"):
        meta = json.loads((folder / "schema.json").read_text())
        inputs = {str(column): str(kind) for column, kind in meta["inputs"]}
        schema = Schema(inputs=inputs, targets=list(meta["targets"]), task=str(meta["task"]))
        folders = {column: folder / str(meta["folders"][column]) for column in inputs}
        task = TASKS.get(schema.task, key=f"{folder / 'schema.json'}: task")
    processors: dict[str, Processor] = {}
    for column, kind in schema.inputs.items():
        with reading(folders[column] / "processor.json"):
            saved = json.loads((folders[column] / "processor.json").read_text())
            processor = PROCESSORS.get(saved.get("processor", kind), key=f"{folders[column]}/processor.json")(
                column
            )
            processor.restore(folders[column])
        processors[column] = processor
    target_file = folder / "target.json"
    target = task.make_target(schema.targets) if target_file.is_file() else None
    if target is not None:
        with reading(target_file):
            target.set_state(json.loads(target_file.read_text()))
    return schema, processors, target


def save_config(run_dir: Path, config: Config) -> None:
    write_text(run_dir / CONFIG, dump_config(config))


def load_run_config(run_dir: Path) -> Config:
    """A run's config.yaml; a run written before each task had its own options has its task section
    trimmed to the keys of its task (the others hold the values such runs always wrote)."""
    path = run_dir / CONFIG
    raw = load_raw(path)
    written = _format(run_dir)
    model: dict[str, Any] = raw["model"] if isinstance(raw.get("model"), dict) else {}
    if written < 2:  # mumo 0.1: CNN tokens had no position embeddings, no alignment loss
        model.setdefault("align", 0.0)
        for encoder in (model.get("encoders") or {}).values():
            if isinstance(encoder, dict) and encoder.get("type") == "cnn":
                encoder.setdefault("positions", "none")
    fusion = model.get("fusion")
    if written < 3 and isinstance(fusion, dict) and fusion.get("type") == "cross":
        fusion.setdefault("queries", 0)  # cross fusion had no query tokens
    train = raw.get("train")
    if isinstance(train, dict) and "max_minutes" in train:  # 0.1: train.max_minutes, now train.time_limit
        minutes = train.pop("max_minutes")
        if minutes is not None:
            train["time_limit"] = f"{minutes}m"
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
    try:
        return build_config(raw, source=str(path))
    except MumoError as err:
        raise MumoError(f"{path}: {err}") from None


def _format(run_dir: Path) -> int:
    """The run folder format its schema.json records (1 for mumo 0.1, which recorded none)."""
    path = run_dir / "preprocess" / "schema.json"
    try:
        return int(json.loads(path.read_text()).get("format", 1))
    except (OSError, ValueError, AttributeError, TypeError):
        return FORMAT  # unreadable: loading it reports that, naming the file


def save_weights(network: nn.Module, path: Path) -> None:
    """Atomic safetensors export of the network's weights. Tied weights (a language model's input and
    output embeddings) are written once per name: safetensors refuses tensors that share memory."""
    tensors, seen = {}, set()
    for key, value in network.state_dict().items():
        tensor = value.detach().contiguous().cpu()
        storage = tensor.untyped_storage().data_ptr()
        tensors[key] = tensor.clone() if storage in seen else tensor
        seen.add(storage)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))


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


def save_split_rows(run_dir: Path, rows: list[int]) -> None:
    """split.json: the train-manifest rows (1-based) held out as validation data."""
    write_json(run_dir / SPLIT, {"val": {"from": "train", "rows": rows}})


def load_split_rows(run_dir: Path) -> list[int] | None:
    path = run_dir / SPLIT
    if not path.is_file():
        return None
    with reading(path):
        return [int(row) for row in json.loads(path.read_text())["val"]["rows"]]


# ------------------------------------------------------------------------------------- manifest
def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """manifest.json: every regular file of the folder (mumo wrote them all) with size and sha256."""
    from mumo import __version__

    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.name != MANIFEST:
            files[path.relative_to(folder).as_posix()] = {
                "size": path.stat().st_size,
                "sha256": file_digest(path),
            }
    body = {"mumo": __version__, "format": FORMAT, "files": files}
    write_json(folder / MANIFEST, {**body, "sha256": _body_digest(body)})


def _body_digest(body: dict[str, Any]) -> str:
    """The manifest's own checksum, over everything else in it: an edited manifest is noticed too."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest, or None when it has none (not a run, or a run of mumo 0.1)."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
            raise ValueError("no file list")
    except (ValueError, OSError, UnicodeDecodeError) as err:
        raise MumoError(
            f"{path}: not a manifest mumo wrote ({_reason(err)}); the run folder is damaged"
        ) from None
    body = {key: value for key, value in manifest.items() if key != "sha256"}
    if manifest.get("sha256") != _body_digest(body):
        raise MumoError(
            f"{path}: changed since mumo wrote it (its checksum differs); restore it or train again"
        )
    return manifest


def verify(folder: Path, only: tuple[str, ...] | None = MODEL_FILES) -> list[str]:
    """One line per listed file that is missing, of another size, or changed since mumo wrote it;
    `only` limits the check to those paths (None: every file the manifest lists)."""
    manifest = read_manifest(folder)
    if manifest is None:
        return []
    problems = []
    for name, entry in manifest["files"].items():
        if only is not None and not any(name == p or (p.endswith("/") and name.startswith(p)) for p in only):
            continue
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: missing (listed in {MANIFEST}); restore the run folder or train again")
            continue
        size = path.stat().st_size
        if size != entry["size"]:
            hint = " (truncated?)" if size < entry["size"] else " (changed since mumo wrote it)"
            problems.append(f"{path}: {_size(size)}, expected {_size(entry['size'])}{hint}")
        elif file_digest(path) != entry["sha256"]:
            problems.append(
                f"{path}: changed since mumo wrote it (sha256 differs); restore it or train again"
            )
    return problems


def check_loadable(folder: Path) -> None:
    """Raise the first problem of the files loading needs, as one line naming the file. A run of mumo
    0.1 has no manifest; a later one without its manifest is damaged."""
    if not (folder / MANIFEST).is_file():
        schema = folder / "preprocess" / "schema.json"
        with reading(schema):
            written = json.loads(schema.read_text()).get("format", 1)
        if written >= 2:
            raise MumoError(f"{folder / MANIFEST}: missing; restore the run folder or train again")
        return
    problems = verify(folder)
    if problems:
        raise MumoError(problems[0])


def foreign_entries(folder: Path, manifest: dict[str, Any]) -> list[str]:
    """Entries of a run folder that mumo did not write: files not in its manifest, and symlinks."""
    listed = set(manifest["files"]) | {MANIFEST}
    out = []
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if (
            path.is_symlink()
            or (path.is_file() and name not in listed)
            or not (path.is_dir() or path.is_file())
        ):
            out.append(name)
    return out


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Any failure to read or parse a run file becomes one line naming it."""
    try:
        yield
    except MumoError:
        raise
    except FileNotFoundError:
        raise MumoError(f"{path}: missing; restore the run folder or train again") from None
    except (OSError, ValueError, KeyError, TypeError, IndexError, RuntimeError, AttributeError) as err:
        raise MumoError(f"{path}: cannot be read ({_reason(err)}); restore it or train again") from None


def _reason(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"{type(err).__name__}: {text[:160]}" if type(err).__name__ not in text else text[:160]


def _size(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000  # type: ignore[assignment]
    return f"{size} bytes"
