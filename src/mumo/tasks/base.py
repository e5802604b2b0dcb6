"""The Task protocol: everything that differs between tasks, in one place per task.

A task owns its options (a TaskOptions subclass), what it needs from the data (a target or not, which
inputs, stratification), the network it trains, its loss, metrics with their directions, predictions
as rows and their flat CSV columns, and its evaluation and report sections. The pipeline, trainer,
evaluation, predictor and CLI ask the task object; none of them asks which task it is.

Adding a task is one file: subclass Task (or SupervisedTask), register it with @TASKS.register(name),
and import it in mumo/tasks/__init__.py (or from your own code, before the config is read).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from torch import Tensor, nn

from mumo.config import TaskOptions, TrainConfig
from mumo.config_model import ModelConfig
from mumo.data.dataset import Batch
from mumo.data.prepare import Schema, Split
from mumo.data.table import Table
from mumo.data.targets import TargetProcessor
from mumo.errors import MumoError
from mumo.registry import Registry

if TYPE_CHECKING:
    from mumo.baseline import LinearBaseline, NearestBaseline
    from mumo.predictor import Predictor

Direction = Literal["min", "max"]
ReportSection = tuple[str, str]  # (heading, trusted HTML fragment)


@dataclass
class Evaluated:
    """A task's evaluation of one split: its metrics, and what its report sections draw from."""

    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


class Task:
    """One task: built from its options, the input columns ({column: kind}) and its fitted target
    processor (None for tasks without a target)."""

    name: ClassVar[str]
    Options: ClassVar[type[TaskOptions]]
    target_class: ClassVar[type[TargetProcessor] | None] = None  # None: the data need no target
    gradcache: ClassVar[bool] = False  # may train with GradCache accumulation (mumo.training.gradcache)
    compares_inputs: ClassVar[bool] = True  # metrics.json gets each input's contribution
    one_target: ClassVar[bool] = False  # the task writes exactly one target column (a text, an image)

    def __init__(self, options: TaskOptions, inputs: dict[str, str], target: TargetProcessor | None) -> None:
        self.options, self.inputs, self.target = options, inputs, target

    # ------------------------------------------------------------------- data (before the task exists)
    @classmethod
    def plan(cls, schema: Schema, options: TaskOptions) -> tuple[Schema, TaskOptions]:
        """The schema this task trains on (it may drop inputs or targets) and its options written out."""
        if cls.target_class is not None and not schema.targets:
            raise MumoError(f"task {cls.name}: no target; set data.target (or --target COLUMN)")
        if cls.one_target and len(schema.targets) != 1:
            raise MumoError(
                f"data.target: task {cls.name} writes one column, got {len(schema.targets)} ({', '.join(schema.targets)})"
            )
        return schema, options

    @classmethod
    def resolve_model(cls, model: ModelConfig, inputs: dict[str, str]) -> ModelConfig:
        """The model section with this task's own defaults filled in (before every encoder is written out)."""
        return model

    @classmethod
    def check_data(cls, schema: Schema, train: Table) -> None:
        """Refuse, with one line, train data this task cannot learn from."""

    @classmethod
    def make_target(cls, columns: list[str], model: ModelConfig | None = None) -> TargetProcessor | None:
        """The target processor, unfitted (`model`: the run's model section, for targets it shapes)."""
        return cls.target_class(columns) if cls.target_class is not None and columns else None

    @classmethod
    def stratify(cls, table: Table, schema: Schema) -> list[Any] | None:
        """Labels to stratify an automatic validation split by, or None for a plain random split."""
        return None

    # --------------------------------------------------------------------------- network and training
    def build_network(self, model: ModelConfig, processors: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def training_loss(self, network: nn.Module, batch: Batch) -> Tensor:
        raise NotImplementedError

    def before_fit(
        self,
        network: nn.Module,
        passes: Callable[[], Iterable[Batch]],
        train: TrainConfig,
        say: Callable[[str], None] | None,
    ) -> None:
        """Training before mumo's loop, on a new run only (a resumed one has its result in the
        checkpoint): a first stage with its own optimizer. `passes()` gives one pass over the training
        batches; `say` prints progress (None: quiet). Nothing by default."""

    def eval_step(self, network: nn.Module, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """(loss, outputs, targets) of a validation batch; metrics() gets the gathered outputs and targets."""
        raise NotImplementedError

    def metrics(self, targets: Tensor, outputs: Tensor) -> dict[str, float]:
        raise NotImplementedError

    def directions(self) -> dict[str, Direction]:
        """Every metric this task reports (and 'loss'), with whether lower or higher is better."""
        raise NotImplementedError

    @property
    def main_metric(self) -> str:
        """The metric that selects the best checkpoint and stops training early."""
        raise NotImplementedError

    def keeps_last(self, network: nn.Module) -> bool:
        """Whether a run keeps its last epoch's model (no early stopping) when train.monitor is null,
        rather than the checkpoint with the best main metric: for a network whose validation metric
        does not track what it is for. False by default."""
        return False

    # ------------------------------------------------------------------------------------- prediction
    def predict_outputs(self, network: nn.Module, batch: Batch) -> Tensor:
        """(B, K) numbers per row that rows() turns into predictions."""
        raise NotImplementedError

    def rows(self, outputs: Tensor) -> list[dict[str, Any]]:
        """One typed prediction dict per row of predict_outputs()."""
        raise NotImplementedError

    def skipped_row(self) -> dict[str, Any]:
        """The prediction of a row that on_error=skip left out."""
        return {"prediction": None, "skipped": True}

    def flatten(self, row: dict[str, Any]) -> dict[str, Any]:
        """A prediction as flat CSV/JSONL columns, one per output (see flatten_row)."""
        return flatten_row(row)

    # ------------------------------------------------------------------------------------- evaluation
    def evaluate(self, predictor: Predictor, split: Split, absent: tuple[str, ...] = ()) -> Evaluated:
        """Metrics over a prepared split; the columns in `absent` are hidden in every row."""
        raise NotImplementedError

    def baseline(self) -> LinearBaseline | NearestBaseline | None:
        """The linear model on cheap raw features that every run of this task is compared with (None:
        the task has no such baseline)."""
        return None

    def report_sections(
        self, predictor: Predictor, split: Split, table: Table | None, evaluated: Evaluated
    ) -> list[ReportSection]:
        return []


TASKS: Registry[type[Task]] = Registry("a task")


class SupervisedTask(Task):
    """A task with a target: MultimodalNetwork (encoders → fusion → head) trained on loss(logits, target);
    outputs() maps logits to what the user sees (probabilities, values in the target's units)."""

    def build_network(self, model: ModelConfig, processors: dict[str, Any]) -> nn.Module:
        from mumo.network import build_network

        assert self.target is not None
        return build_network(model, self.inputs, processors, self.target.out_dim)

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def outputs(self, logits: Tensor) -> Tensor:
        raise NotImplementedError

    def training_loss(self, network: nn.Module, batch: Batch) -> Tensor:
        assert batch.target is not None
        return self.loss(network(batch), batch.target)

    def eval_step(self, network: nn.Module, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        assert batch.target is not None
        logits = network(batch)
        return self.loss(logits, batch.target), self.outputs(logits), batch.target

    def predict_outputs(self, network: nn.Module, batch: Batch) -> Tensor:
        return self.outputs(network(batch))

    def evaluate(self, predictor: Predictor, split: Split, absent: tuple[str, ...] = ()) -> Evaluated:
        assert self.target is not None
        outputs = predictor.outputs(split, absent=absent)
        targets = self.target.stack(split.targets)
        return Evaluated(self.metrics(targets, outputs), {"targets": targets, "outputs": outputs})


def flatten_row(row: dict[str, Any]) -> dict[str, Any]:
    """Flat columns of a prediction: `probabilities` become prob_<name> columns, any other nested dict
    <key>_<name> columns, lists are joined with '|'; scalars stay as they are."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            prefix = "prob" if key == "probabilities" else key
            flat.update({f"{prefix}_{name}": item for name, item in value.items()})
        elif isinstance(value, list):
            flat[key] = "|".join(str(item) for item in value)
        else:
            flat[key] = value
    return flat


def with_inputs(schema: Schema, inputs: dict[str, str], note: str | None = None) -> Schema:
    """The schema with only `inputs` (in their order) and no targets; `note` is added to its log."""
    return replace(schema, inputs=inputs, targets=[], notes=[*schema.notes, *([note] if note else [])])


__all__ = [
    "TASKS",
    "Direction",
    "Evaluated",
    "ReportSection",
    "SupervisedTask",
    "Task",
    "flatten_row",
    "with_inputs",
]
