"""`mumo tune` (`mumo.tune`): hyperparameter search over normal runs.

The trial function (`run_trial`) trains one run folder from a config and a dict of parameter values and
knows no search engine. Here Optuna drives it: the TPE sampler, a median pruner fed each epoch's
validation metric through a Lightning callback, and the study stored in SQLite in the output folder, so
an interrupted search resumes where it stopped. Every trial is an ordinary run (trials/trial-NNNN/); the
leaderboard is printed and written as JSON and HTML, and `best` links to the best run.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L

from mumo.config import Config, seconds
from mumo.errors import ConfigError, MumoError
from mumo.io import write_json, write_text
from mumo.presets import space_for

Report = Callable[[int, float], bool]  # (epoch, value to maximize) → stop this trial now?


@dataclass
class TrialResult:
    """One trial: its run folder and scores (higher `score` is better: the main metric, signed)."""

    number: int
    params: dict[str, Any]
    path: str
    metric: str = ""
    val: float = float("nan")
    test: float | None = None
    score: float = float("-inf")
    higher: bool = True  # the metric's direction
    seconds: float = 0.0
    state: str = "complete"  # complete | pruned | failed
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Reporter(L.Callback):
    """Hands each epoch's validation main metric (signed, higher is better) to `report`; stops the
    training when it says so (a pruned trial still finishes as a complete run folder)."""

    def __init__(self, report: Report) -> None:
        self.report, self.stopped = report, False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:  # after the module's own epoch end: this epoch's metrics are logged
            return
        task: Any = pl_module.task  # type: ignore[attr-defined]
        value = trainer.callback_metrics.get(f"val/{task.main_metric}")
        if value is None:
            return
        sign = 1.0 if task.directions()[task.main_metric] == "max" else -1.0
        if self.report(trainer.current_epoch, sign * float(value)):
            self.stopped = trainer.should_stop = True


def run_trial(
    config: Config,
    params: dict[str, Any],
    out: Path,
    number: int,
    time_limit: float | None = None,
    report: Report | None = None,
) -> TrialResult:
    """Train one run with `params` (dotted config keys) over `config`; no search engine involved."""
    from mumo.pipeline import train

    overrides = dict(params)
    if time_limit is not None:
        own = seconds(config.train.time_limit) if config.train.time_limit else math.inf
        overrides["train.time_limit"] = f"{max(1.0, min(own, time_limit)):.0f}s"
    reporter = Reporter(report) if report is not None else None
    started = time.time()
    result = TrialResult(number, params, str(out))
    try:
        run = train(
            config, overrides, out=out, overwrite=True, quiet=True, callbacks=[reporter] if reporter else None
        )
    except MumoError as err:  # a combination the data cannot take (e.g. a fusion for one input)
        result.state, result.error, result.seconds = "failed", str(err), time.time() - started
        return result
    assert run.model is not None
    task = run.model.task
    metric = task.main_metric
    sign = 1.0 if task.directions()[metric] == "max" else -1.0
    result.metric, result.val = metric, run.metrics["val"][metric]
    result.test = run.metrics.get("test", {}).get(metric)
    result.score = sign * result.val if math.isfinite(result.val) else float("-inf")
    result.higher = sign > 0
    result.seconds = time.time() - started
    result.state = "pruned" if reporter is not None and reporter.stopped else "complete"
    return result


def tune(
    config: Config,
    out: Path,
    trials: int = 20,
    time_limit: str | None = None,
    ensemble: bool = False,
    quiet: bool = False,
    fixed: set[str] | None = None,
    engine: str = "optuna",
    address: str | None = None,
    workers: int = 2,
) -> list[TrialResult]:
    """Search with Optuna (resumable from out/study.db), or with Ray Tune (engine "ray": trials run at
    the same time on `workers` CPUs or a cluster at `address`). Returns every trial, best first. Keys in
    `fixed` (those the user set) are not searched."""
    from mumo.leaderboard import write_leaderboard

    if trials < 1:
        raise MumoError("--trials: at least 1")
    space = {key: spec for key, spec in space_for(config).items() if key not in (fixed or set())}
    out.mkdir(parents=True, exist_ok=True)
    if engine == "ray":
        from mumo import ray_engine

        results = ray_engine.tune(config, out, space, trials, time_limit, address, workers)
        return _finish(out, results, ensemble, quiet)
    if engine != "optuna":
        raise MumoError(f"--engine: {engine!r} is not optuna or ray")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=f"sqlite:///{out / 'study.db'}",
        study_name="mumo",
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(
            seed=config.train.seed, n_startup_trials=min(5, max(1, trials // 3))
        ),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=3),
    )
    for stale in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):  # a search killed mid-trial
        state, values = optuna.trial.TrialState.FAIL, None
        if "score" in stale.user_attrs:  # killed after its run was complete: keep it
            done = stale.user_attrs.get("state") == "complete"
            state = optuna.trial.TrialState.COMPLETE if done else optuna.trial.TrialState.PRUNED
            values = [float(stale.user_attrs["score"])] if done else None
        study._storage.set_trial_state_values(stale._trial_id, state, values)
    finished = study.get_trials(states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
    limit = seconds(time_limit) if time_limit else None
    spent = sum(float(t.user_attrs.get("seconds", 0.0)) for t in study.trials)
    deadline = time.time() + (limit - spent) if limit is not None else None

    def objective(trial: optuna.Trial) -> float:
        params = {key: suggest(trial, key, spec) for key, spec in space.items()}
        left = deadline - time.time() if deadline is not None else None
        if left is not None and left < 10:
            raise optuna.TrialPruned("out of time")

        def report(epoch: int, value: float) -> bool:
            trial.report(value, epoch)
            return trial.should_prune()

        folder = out / "trials" / f"trial-{trial.number:04d}"
        result = run_trial(config, params, folder, trial.number, left, report)
        for key, value in asdict(result).items():
            trial.set_user_attr(key, value)
        write_leaderboard(out, results_of(study), quiet=True)
        if not quiet:
            shown = f"{result.metric} {result.val:.4f}" if result.state != "failed" else result.error
            print(f"trial {trial.number}: {result.state}, {shown} ({result.seconds:.0f}s)", flush=True)
        if result.state == "failed":
            raise optuna.TrialPruned(result.error)  # not a score: the search moves on
        if result.state == "pruned":
            raise optuna.TrialPruned()
        return result.score

    remaining = trials - len(finished)
    if remaining > 0 and (deadline is None or deadline - time.time() > 10):
        timeout = max(1.0, deadline - time.time()) if deadline is not None else None
        study.optimize(objective, n_trials=remaining, timeout=timeout)
    return _finish(out, results_of(study), ensemble, quiet)


def _finish(out: Path, results: list[TrialResult], ensemble: bool, quiet: bool) -> list[TrialResult]:
    """The leaderboard, the ensemble when asked for, and `best`, once the trials are done."""
    from mumo.leaderboard import write_leaderboard

    if not any(r.state == "complete" for r in results):
        write_leaderboard(out, results, quiet=True)
        raise MumoError(f"{out}: no trial completed; see {out / 'leaderboard.json'}")
    extra = None
    if ensemble:
        from mumo.ensemble import greedy_ensemble

        extra = greedy_ensemble([r for r in results if r.state == "complete"][:8])
        if extra is not None:
            write_json(out / "ensemble.json", extra)
    write_leaderboard(out, results, ensemble=extra, quiet=quiet)
    link_best(out, Path(results[0].path))
    return results


def results_of(study: Any) -> list[TrialResult]:
    """Every finished trial of the study as a TrialResult, best first."""
    results = []
    for trial in study.trials:
        attrs = dict(trial.user_attrs)
        if "path" not in attrs:
            continue
        known = {k: v for k, v in attrs.items() if k in TrialResult.__dataclass_fields__}
        results.append(TrialResult(**known))
    order = {"complete": 0, "pruned": 1, "failed": 2}
    return sorted(
        results, key=lambda r: (order.get(r.state, 3), -r.score if math.isfinite(r.score) else math.inf)
    )


def suggest(trial: Any, key: str, spec: tuple[Any, ...]) -> Any:
    kind = spec[0]
    if kind == "log":
        return trial.suggest_float(key, spec[1], spec[2], log=True)
    if kind == "float":
        return trial.suggest_float(key, spec[1], spec[2])
    if kind == "int":
        return trial.suggest_int(key, spec[1], spec[2])
    if kind == "choice":
        return trial.suggest_categorical(key, list(spec[1]))
    raise ConfigError(f"tune space {key}: {kind!r} is not a kind; use log, float, int or choice")


def link_best(out: Path, run: Path) -> None:
    """out/best → the best trial's run folder (a relative symlink, replaced atomically)."""
    link, tmp = out / "best", out / f".best.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(run, out), tmp)
    os.replace(tmp, link)
    write_text(out / "best.txt", f"{run}\n")
