"""Greedy ensemble selection (Caruana et al. 2004, as AutoGluon does): from the best trials of a search,
add with replacement the run whose averaged validation outputs improve the main metric most, while that
helps. Averaging outputs (class probabilities, values) only makes sense for tasks with a target."""

from __future__ import annotations

from collections import Counter
from typing import Any

from torch import Tensor

from mumo.tuning import TrialResult


def greedy_ensemble(results: list[TrialResult], rounds: int = 20) -> dict[str, Any] | None:
    """{"members": {trial: times chosen}, "val", "test", "best_single_val"} when an ensemble beats the best
    single run on validation; None otherwise (or when the task's outputs cannot be averaged)."""
    from mumo.evaluation import held_out_tables
    from mumo.predictor import load
    from mumo.tasks import SupervisedTask

    if len(results) < 2:
        return None
    outputs: dict[int, dict[str, Tensor]] = {}
    targets: dict[str, Tensor] = {}
    task: Any = None
    for result in results:
        predictor = load(result.path)
        if not isinstance(predictor.task, SupervisedTask) or predictor.target is None:
            return None
        task = predictor.task
        outputs[result.number] = {}
        for name, table in held_out_tables(predictor).items():
            split = predictor.prepare(table, predictor.config.data.on_error, with_target=True)
            outputs[result.number][name] = predictor.outputs(split)
            targets[name] = predictor.target.stack(split.targets)
    if "val" not in targets:
        return None
    metric = task.main_metric
    sign = 1.0 if task.directions()[metric] == "max" else -1.0

    def score(chosen: Counter[int], split: str) -> float:
        total = sum(outputs[n][split] * k for n, k in chosen.items())
        mean = total / sum(chosen.values())  # type: ignore[operator]
        return float(task.metrics(targets[split], mean)[metric])

    best_single = results[0].number
    chosen: Counter[int] = Counter({best_single: 1})
    current = sign * score(chosen, "val")
    single = current
    for _ in range(rounds):
        trials = {n: sign * score(chosen + Counter({n: 1}), "val") for n in outputs}
        number, value = max(trials.items(), key=lambda item: item[1])
        if value <= current:
            break
        chosen[number] += 1
        current = value
    if current <= single:
        return None
    test = score(chosen, "test") if "test" in targets else float("nan")
    return {
        "metric": metric,
        "members": {str(n): k for n, k in sorted(chosen.items())},
        "val": sign * current,
        "test": test,
        "best_single_val": sign * single,
    }


__all__ = ["greedy_ensemble"]
