"""Typed configuration: one pydantic model per section, YAML load, and `--set key=value` overrides.

Every field has a one-line doc. Validation errors become one line that names the key and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from mumo.config_errors import Section, format_validation_error
from mumo.config_model import ModelConfig
from mumo.errors import ConfigError

ColumnKind = Literal["text", "image", "audio", "numeric", "categorical"]
KINDS: tuple[str, ...] = ("text", "image", "audio", "numeric", "categorical")


# ----------------------------------------------------------------------------------------- data
class TextOptions(Section):
    max_length: int = Field(64, ge=4, description="Tokens kept per text cell (longer text is truncated).")
    vocab_size: int = Field(8000, ge=64, description="Largest vocabulary the tokenizer may learn.")
    min_frequency: int = Field(1, ge=1, description="A word piece must occur this often in train to be kept.")
    lowercase: bool = Field(True, description="Lowercase and strip accents before tokenizing.")


DEFAULT_MAX_PIXELS = 50_000_000  # about 7000 x 7000: 150 MB decoded as RGB


class ImageOptions(Section):
    size: int | None = Field(
        None, ge=8, description="Square side images are resized to; null = fit from train."
    )
    augment: bool = Field(True, description="Random shifts and colour jitter on train images.")
    mean: list[float] | None = Field(None, description="Per-channel mean for normalization; null = fit.")
    std: list[float] | None = Field(None, description="Per-channel std for normalization; null = fit.")
    max_pixels: int = Field(
        DEFAULT_MAX_PIXELS, ge=1, description="Larger images (width x height, from the header) are bad input."
    )


class AudioOptions(Section):
    sample_rate: int | None = Field(None, ge=1000, description="Rate clips are resampled to; null = fit.")
    max_seconds: float | None = Field(
        None, gt=0, description="Clips are cut to this; null = the longest train clip (at most 30 s)."
    )
    n_mels: int = Field(64, ge=8, description="Mel bands of the log-mel spectrogram.")
    window_ms: float = Field(25.0, gt=0, description="STFT window length in milliseconds.")
    hop_ms: float = Field(10.0, gt=0, description="STFT hop in milliseconds.")
    augment: bool = Field(True, description="SpecAugment-style time and frequency masks on train clips.")


class BuiltinOptions(Section):
    n: int = Field(3000, ge=20, description="Rows generated for a builtin:<name> dataset.")
    seed: int = Field(0, description="Seed the builtin dataset is generated from.")


class DataConfig(Section):
    train: str = Field(description="Train manifest (.csv, .jsonl, .parquet) or builtin:<name>.")
    val: str | None = Field(None, description="Validation manifest; null = a stratified split of train.")
    test: str | None = Field(None, description="Test manifest; null = no test metrics.")
    target: str | list[str] | None = Field(None, description="Column to predict (a list for multilabel).")
    columns: dict[str, ColumnKind] = Field(
        default_factory=dict, description="Column kinds; columns not listed are inferred from their values."
    )
    ignore: list[str] = Field(
        default_factory=list, description="Columns that are not model inputs (ids, notes)."
    )
    val_fraction: float = Field(0.15, gt=0, lt=1, description="Share of train held out when val is null.")
    on_error: Literal["fail", "skip", "absent"] = Field(
        "fail", description="Bad cell: fail (exit 2), skip the row, or treat the cell as absent."
    )
    cache: bool = Field(True, description="Decode each file once and keep it in memory while training.")
    feature_cache: bool = Field(
        True, description="Compute frozen pretrained encoders' outputs once, on disk, and train on them."
    )
    num_workers: int = Field(
        0, ge=0, description="DataLoader worker processes (0 = load in the main process)."
    )
    stream: bool = Field(
        False,
        description="Read the train table (Parquet) one row group at a time while training, for tables "
        "larger than memory; needs data.val.",
    )
    stream_sample: int = Field(
        10_000, ge=100, description="With data.stream: rows read to infer the schema and fit the processors."
    )
    text: TextOptions = Field(default_factory=TextOptions, description="Text processing.")
    image: ImageOptions = Field(default_factory=ImageOptions, description="Image processing.")
    audio: AudioOptions = Field(default_factory=AudioOptions, description="Audio processing.")
    builtin: BuiltinOptions = Field(default_factory=BuiltinOptions, description="builtin:<name> generation.")

    @property
    def targets(self) -> list[str]:
        if self.target is None:
            return []
        return [self.target] if isinstance(self.target, str) else list(self.target)


# ----------------------------------------------------------------------------------------- task
class TaskOptions(Section):
    """Base of every task's options. Each task file (mumo/tasks/<name>.py) defines its own subclass with
    `type: Literal["<name>"]`, so a key exists only for the tasks where it means something."""

    type: str = Field(description="The task; see mumo.tasks.TASKS for the names.")


class AutoTaskOptions(TaskOptions):
    """`task: auto` (the default): the type is inferred from the target column; any other keys are
    checked against that task's options once it is known."""

    model_config = ConfigDict(extra="allow", validate_default=True, validate_assignment=True)
    type: Literal["auto"] = Field("auto", description="Inferred from the target column's values.")


# ---------------------------------------------------------------------------------------- train
class TrainConfig(Section):
    epochs: int | Literal["auto"] = Field(
        "auto",
        description="Passes over the train data; auto = about train.steps optimizer steps (10 to 300).",
    )
    steps: int | Literal["auto"] = Field(
        "auto",
        description="With epochs: auto, the optimizer steps to aim for (the data size sets the epochs); auto = "
        "one step per training row, at least 1500 and at most 3000.",
    )
    time_limit: str | None = Field(
        None,
        description="Training time budget, e.g. 90s, 10m, 1.5h (a bare number is minutes): the epochs and the "
        "learning-rate schedule are fitted to it after the first epoch, and training stops at it.",
    )
    batch_size: int = Field(64, ge=1, description="Rows per optimizer step (per device).")
    lr: float = Field(1e-3, gt=0, description="Peak AdamW learning rate.")
    weight_decay: float = Field(
        0.01, ge=0, description="AdamW weight decay (not applied to biases and norms)."
    )
    warmup: float = Field(
        0.05, ge=0, lt=1, description="Share of all steps with linear warmup before cosine decay."
    )
    grad_clip: float = Field(1.0, ge=0, description="Clip the gradient norm to this (0 = off).")
    patience: int | Literal["auto"] = Field(
        "auto",
        description="Stop after this many epochs without a better val metric; auto = half the epochs (at least 5).",
    )
    monitor: str | None = Field(
        None,
        description="Val metric that selects the checkpoint kept and stops early; null = the task's main "
        "metric (or the last epoch, where the task says its metric does not track quality: latent_cvae); "
        "last = keep the last epoch's model, no early stopping.",
    )
    seed: int = Field(0, description="Seed for weights, shuffling and augmentation.")
    precision: Literal["32-true", "16-mixed", "bf16-mixed", "bf16-true", "64-true"] = Field(
        "32-true", description="Numeric precision (Lightning's names)."
    )
    accelerator: str = Field("auto", description="cpu, gpu, mps or auto.")
    devices: int | str = Field("auto", description="Number of devices, a list string, or auto.")
    strategy: str = Field("auto", description="Lightning strategy: auto, ddp, fsdp, ...")
    num_nodes: int = Field(1, ge=1, description="Machines in a multi-node run.")
    accumulate: int = Field(1, ge=1, description="Batches whose gradients are accumulated per step.")
    progress: bool = Field(True, description="Show a progress bar.")
    baseline: bool = Field(
        True, description="Also fit a linear model on cheap raw features and report it (baseline/<metric>)."
    )

    @field_validator("epochs", "patience", "steps", mode="before")
    @classmethod
    def _count_or_auto(cls, value: Any, info: Any) -> Any:
        if value == "auto":
            return value
        number = value if isinstance(value, int) and not isinstance(value, bool) else None
        if isinstance(value, str) and value.strip().isdigit():
            number = int(value)
        if number is None or number < 1:
            raise ValueError(
                f"train.{info.field_name}: {value!r} is not valid; give a whole number from 1, or auto"
            )
        return number

    @field_validator("time_limit")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            seconds(value)  # raises with the fix
        return value


def seconds(duration: str | float) -> float:
    """'90s', '10m', '1.5h' or a bare number of minutes → seconds."""
    text = str(duration).strip().lower()
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    scale = units.get(text[-1:], 60.0)
    try:
        value = float(text[:-1] if text[-1:] in units else text)
    except ValueError:
        raise ValueError(
            f"train.time_limit: {duration!r} is not a duration; write e.g. 90s, 10m or 1.5h"
        ) from None
    if value <= 0:
        raise ValueError(f"train.time_limit: {duration!r} must be more than zero")
    return value * scale


class TuneConfig(Section):
    space: dict[str, list[Any]] | None = Field(
        None,
        description="mumo tune's search space: dotted key → [log|float|int, low, high] or [choice, [values]]; "
        "null = the preset's (mumo.presets.SPACES).",
    )


class Config(Section):
    name: str = Field("mumo", description="Run name, used for the default run folder.")
    preset: Literal["fast", "balanced", "best"] | None = Field(
        None, description="A bundle of defaults tied to a budget (mumo.presets); keys set here win."
    )
    data: DataConfig = Field(description="Where the data is and how it is read.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Encoders, fusion and head.")
    task: SerializeAsAny[TaskOptions] = Field(
        default_factory=AutoTaskOptions, description="What is predicted, and the task's own options."
    )
    train: TrainConfig = Field(default_factory=TrainConfig, description="Optimization and the training loop.")
    tune: TuneConfig = Field(default_factory=TuneConfig, description="What mumo tune searches.")

    @field_validator("task", mode="before")
    @classmethod
    def _task_options(cls, value: Any) -> Any:
        """`task: regression` is short for `task: {type: regression}`; the task's own options class
        (found through the task registry) validates the rest."""
        if isinstance(value, TaskOptions):
            return value
        if isinstance(value, str):
            value = {"type": value}
        if not isinstance(value, dict):
            raise ConfigError("task: give a task name or a mapping with a 'type' key, e.g. task: regression")
        from mumo.tasks import task_options  # late: the tasks import this module

        return task_options(value)

    @model_validator(mode="after")
    def _columns_not_target(self) -> Config:
        for target in self.data.targets:
            if target in self.model.encoders:
                raise ValueError(f"model.encoders.{target}: {target!r} is the target, not an input")
        return self


# ------------------------------------------------------------------------------------ load/save
def parse_value(text: str) -> Any:
    """`--set` values are YAML scalars or lists: 3 → int, 1e-3 → float, true → bool, [a, b] → list."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and _looks_like_float(value):
        return float(value)
    return text if value is None and text.strip() not in ("null", "~", "") else value


def _looks_like_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


SHORTHAND = ("task",)  # sections that may be written as a bare string: `task: regression`


def apply_override(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key (`train.epochs`) in a nested dict; a string section (task: x) becomes {type: x}."""
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if isinstance(child, str) and part in SHORTHAND:
            child = {"type": child}
        elif child is None:
            child = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parts[: i + 1])}: is a value, not a section; cannot set {key}")
        node[part] = child
        node = child
    node[parts[-1]] = value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """['train.epochs=3', ...] → {'train.epochs': 3}."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.epochs=3")
        out[key.strip()] = parse_value(text)
    return out


def load_raw(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config is a mapping with data/model/task/train sections")
    return raw


def build_config(
    raw: dict[str, Any], overrides: dict[str, Any] | None = None, source: str = "config"
) -> Config:
    """Validate a raw dict (+ dotted overrides) into a Config, or raise a one-line ConfigError."""
    raw = _deep_copy(raw)
    for key, value in (overrides or {}).items():
        apply_override(raw, key, value)
    from mumo.presets import with_preset

    raw = with_preset(raw)
    if "data" not in raw or not raw.get("data"):
        raise ConfigError(f"{source}: data.train is required (a manifest path or builtin:<name>)")
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, Config)) from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    raw = load_raw(path) if path is not None else {}
    return build_config(raw, overrides, source=str(path) if path else "config")


def dump_config(config: Config) -> str:
    """The fully resolved config as YAML (every default written out)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, default_flow_style=None)


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
