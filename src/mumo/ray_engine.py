"""mumo on a Ray cluster (the optional extra: pip install mumo[ray]).

- Batch embedding (`mumo embed --ray`, `mumo index --ray`): Ray Data maps the table's batches over a
  pool of actors, each loading the run once; the vectors are written as Parquet shards, then read back
  in row order (the index is built from them on the driver).
- Tuning (`mumo tune --engine ray`): each trial is mumo's own run_trial in a Ray Tune trial, one CPU
  each; Optuna's TPE inside Ray Tune (OptunaSearch) proposes the parameters and ASHA stops weak trials
  early from each epoch's validation metric.

Without --address a local Ray is started with --workers CPUs and stopped afterwards; with one, the
driver joins that cluster (every node must see the run folder and the data at the same paths).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mumo.config import Config, seconds
from mumo.errors import MumoError

ROW = "_mumo_row"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MumoError(
            "--ray needs Ray: pip install 'mumo[ray]' (or pip install 'ray[data,tune]')"
        ) from None
    return ray


@contextmanager
def cluster(address: str | None, workers: int) -> Iterator[Any]:
    """Ray, joined at `address` or started here with `workers` CPUs (and shut down after)."""
    ray = _ray()
    if workers < 1:
        raise MumoError(f"--workers: {workers} must be at least 1")
    if ray.is_initialized():
        yield ray
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        if address:
            ray.init(address=address, log_to_driver=False, include_dashboard=False)
        else:
            ray.init(num_cpus=workers, log_to_driver=False, include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise MumoError(f"--address {address}: cannot join the Ray cluster ({err})") from None
    try:
        yield ray
    finally:
        ray.shutdown()


# ---------------------------------------------------------------------------------------- embedding
class _Embedder:
    """A Ray Data actor: the run loaded once, then batches of cells → their vectors."""

    def __init__(self, run_dir: str, column: str, base_dir: str, on_error: str) -> None:
        import torch

        import mumo

        torch.set_num_threads(1)  # one CPU per actor
        self.model = mumo.load(run_dir)
        self.column, self.base_dir, self.on_error = column, base_dir, on_error

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        cells = [None if isinstance(c, float) and math.isnan(c) else c for c in batch[self.column]]
        vectors = self.model.embed(cells, self.column, self.base_dir, self.on_error)
        return pd.DataFrame({ROW: batch[ROW].to_numpy(), "vector": list(vectors.astype(np.float32))})


def embed(
    run_dir: str | Path,
    cells: list[Any],
    column: str,
    base_dir: Path,
    on_error: str = "fail",
    address: str | None = None,
    workers: int = 2,
    batch_rows: int = 256,
) -> np.ndarray:
    """(N, P) vectors of `cells` (NaN rows where a cell is empty), computed by `workers` Ray actors and
    gathered through Parquet shards; the same numbers as Predictor.embed."""
    text = [None if c is None else str(c) for c in cells]  # paths and texts: one Arrow string column
    frame = pd.DataFrame({ROW: np.arange(len(cells)), column: pd.Series(text, dtype=object)})
    with cluster(address, workers) as ray, tempfile.TemporaryDirectory(prefix="mumo-vectors-") as shards:
        size = min(
            batch_rows, max(1, math.ceil(len(frame) / workers))
        )  # a block per batch, >= a block per actor
        dataset = ray.data.from_pandas([frame.iloc[i : i + size] for i in range(0, len(frame), size)])
        vectors = dataset.map_batches(
            _Embedder,
            fn_constructor_kwargs={
                "run_dir": str(Path(run_dir).resolve()),
                "column": column,
                "base_dir": str(base_dir),
                "on_error": on_error,
            },
            batch_size=batch_rows,
            batch_format="pandas",
            concurrency=workers,
            num_cpus=1,
        )
        vectors.write_parquet(shards)  # vector shards, one file per block
        gathered = pd.read_parquet(shards).sort_values(ROW)
    if len(gathered) != len(cells):
        raise MumoError(f"ray: {len(gathered)} vectors came back for {len(cells)} rows")
    return np.stack(gathered["vector"].to_list()).astype(np.float32)


# ------------------------------------------------------------------------------------------ tuning
def _space(ray: Any, space: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
    tune = ray.tune
    out = {}
    for key, spec in space.items():
        kind = spec[0]
        if kind == "log":
            out[key] = tune.loguniform(spec[1], spec[2])
        elif kind == "float":
            out[key] = tune.uniform(spec[1], spec[2])
        elif kind == "int":
            out[key] = tune.randint(spec[1], spec[2] + 1)
        elif kind == "choice":
            out[key] = tune.choice(list(spec[1]))
        else:
            raise MumoError(f"tune space {key}: {kind!r} is not a kind; use log, float, int or choice")
    return out


def _trial(params: dict[str, Any], *, config: Config, out: str, cwd: str, time_limit: float | None) -> None:
    """One Ray Tune trial: mumo's run_trial, each epoch's metric reported to Ray (ASHA may stop it)."""
    from ray import tune

    from mumo.tuning import run_trial

    os.chdir(cwd)  # the config's relative paths are the driver's
    import torch

    torch.set_num_threads(1)
    number = _number(Path(out))
    folder = Path(out) / "trials" / f"trial-{number:04d}"

    def report(epoch: int, value: float) -> bool:
        tune.report({"score": value, "epoch": epoch, "number": number})
        return False  # ASHA stops a trial by ending it: the report does not return then

    result = run_trial(config, {k: _plain(v) for k, v in params.items()}, folder, number, time_limit, report)
    (folder.parent / f"trial-{number:04d}.json").write_text(json.dumps(asdict(result), default=str))
    tune.report(
        {"score": result.score if math.isfinite(result.score) else -1e30, "done": 1, "number": number}
    )


def _number(out: Path) -> int:
    """The next trial number, claimed by creating its marker file (trials run at the same time)."""
    (out / "trials").mkdir(parents=True, exist_ok=True)
    number = 0
    while True:
        try:
            (out / "trials" / f".claimed-{number:04d}").touch(exist_ok=False)
            return number
        except FileExistsError:
            number += 1


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def tune(
    config: Config,
    out: Path,
    space: dict[str, tuple[Any, ...]],
    trials: int,
    time_limit: str | None,
    address: str | None,
    workers: int,
) -> list[Any]:
    """Run `trials` trials as Ray Tune trials (OptunaSearch, ASHA); returns every trial's TrialResult
    (those ASHA stopped as pruned, with their last reported score), best first."""
    from mumo.tuning import TrialResult

    out = out.resolve()
    limit = seconds(time_limit) if time_limit else None
    with cluster(address, workers) as ray:
        from ray import tune as ray_tune
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search.optuna import OptunaSearch

        trainable = ray_tune.with_parameters(
            _trial, config=config, out=str(out), cwd=os.getcwd(), time_limit=limit
        )
        tuner = ray_tune.Tuner(
            ray_tune.with_resources(trainable, {"cpu": 1}),
            param_space=_space(ray, space),
            tune_config=ray_tune.TuneConfig(
                metric="score",
                mode="max",
                search_alg=OptunaSearch(seed=config.train.seed),
                scheduler=ASHAScheduler(time_attr="epoch", grace_period=3, reduction_factor=2),
                num_samples=trials,
                max_concurrent_trials=workers,
                time_budget_s=limit,
            ),
            run_config=ray_tune.RunConfig(storage_path=str(out / "ray"), name="mumo", verbose=0),
        )
        grid = tuner.fit()
    finished = {}
    for path in sorted((out / "trials").glob("trial-*.json")):
        known = json.loads(path.read_text())
        finished[known["number"]] = TrialResult(**known)
    for at in range(len(grid)):  # trials ASHA ended before their run finished
        result = grid[at]
        metrics = result.metrics or {}
        number = metrics.get("number")
        if number is None or number in finished:
            continue
        finished[number] = TrialResult(
            int(number),
            {k.removeprefix("config/"): v for k, v in (result.config or {}).items()},
            str(out / "trials" / f"trial-{int(number):04d}"),
            score=float(metrics.get("score", -math.inf)),
            state="pruned",
            error="stopped by ASHA",
        )
    order = {"complete": 0, "pruned": 1, "failed": 2}
    return sorted(
        finished.values(),
        key=lambda r: (order.get(r.state, 3), -r.score if math.isfinite(r.score) else math.inf),
    )


__all__ = ["cluster", "embed", "tune"]
