"""mumo: multimodal models from a table — train, evaluate, predict.

import mumo
run = mumo.train("config.yaml", overrides={"train.epochs": 3})   # → Run(path, metrics, model)
model = mumo.load(run.path)                                        # → Predictor
model.predict([{"caption": "a red circle", "image": "img/1.png"}])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"
__all__ = ["Predictor", "Run", "load", "train", "tune"]

if TYPE_CHECKING:
    from mumo.pipeline import Run
    from mumo.predictor import Predictor


def train(config: Any, overrides: dict[str, Any] | None = None, **kwargs: Any) -> Run:
    """Train, evaluate and save a run: see mumo.pipeline.train."""
    from mumo.pipeline import train as _train

    return _train(config, overrides, **kwargs)


def tune(config: Any, out: Any, overrides: dict[str, Any] | None = None, **kwargs: Any) -> list[Any]:
    """Search hyperparameters; every trial is a normal run: see mumo.tuning.tune."""
    from pathlib import Path

    from mumo.pipeline import _as_config
    from mumo.tuning import tune as _tune

    return _tune(_as_config(config, overrides), Path(out), **kwargs)


def load(run_dir: Any) -> Predictor:
    """Reload a finished run for prediction: see mumo.predictor.load."""
    from mumo.predictor import load as _load

    return _load(run_dir)


def __getattr__(name: str) -> Any:
    if name == "Predictor":
        from mumo.predictor import Predictor

        return Predictor
    if name == "Run":
        from mumo.pipeline import Run

        return Run
    if name in ("tasks", "TASKS"):  # mumo.tasks: every task is registered when it is first used
        import mumo.tasks

        return mumo.tasks if name == "tasks" else mumo.tasks.TASKS
    raise AttributeError(name)
