"""mumo: multimodal models from a table — train, evaluate, predict.

import mumo
run = mumo.train("config.yaml", overrides={"train.epochs": 3})
model = mumo.load(run.path)
model.predict([{"caption": "a red circle", "image": "img/1.png"}])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Model", "Run", "load", "train"]

if TYPE_CHECKING:
    from mumo.run import Model, Run


def train(config: Any, overrides: dict[str, Any] | None = None, **kwargs: Any) -> Run:
    """Train, evaluate and save a run: see mumo.runner.train."""
    from mumo.runner import train as _train

    return _train(config, overrides, **kwargs)


def load(run_dir: Any) -> Model:
    """Reload a finished run for prediction: see mumo.run.load."""
    from mumo.run import load as _load

    return _load(run_dir)


def __getattr__(name: str) -> Any:
    if name in ("Model", "Run"):
        from mumo import run

        return getattr(run, name)
    raise AttributeError(name)
