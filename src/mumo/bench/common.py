"""What the bench measurements share: the console, timing, the row format and the run log reader."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

console = Console(highlight=False, soft_wrap=True, width=130)
# The goals (mumo / reference) from issue 6: near-zero framework overhead, at least the speed of the
# library users would otherwise call.
GOALS = {"train": 0.95, "data": 0.9, "infer": 0.9, "embed": 1.0}


def epoch_seconds(run_dir: Path) -> list[float]:
    """The run's train/epoch_seconds, one per epoch (from its CSV log)."""
    return logged(run_dir, "train/epoch_seconds")


def logged(run_dir: Path, key: str) -> list[float]:
    """One logged value per epoch from a run's CSV log."""
    history = pd.read_csv(run_dir / "logs" / "csv" / "metrics.csv")
    return [float(v) for v in history[key].dropna()] if key in history else []


def fastest(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    """The fastest of a few runs after a warm-up, and its result: on a shared machine other work only
    ever slows a run down."""
    result = fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def row(
    what: str, against: str, mumo: float, reference: float, unit: str, goal: float | None, **extra: Any
) -> dict[str, Any]:
    """One measurement: rates (higher is better) of mumo and the reference, and their ratio."""
    return {
        "what": what,
        "against": against,
        "mumo": mumo,
        "reference": reference,
        "unit": unit,
        "ratio": mumo / reference,
        "goal": goal,
        **extra,
    }
