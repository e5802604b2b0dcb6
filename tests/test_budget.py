"""How long training runs: epochs from the data size, patience from the epochs, a time budget that the
epochs and the schedule are fitted to; presets fill in what a config leaves unset."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

import mumo
from mumo.config import TrainConfig, build_config, dump_config, seconds
from mumo.errors import ConfigError
from mumo.presets import PRESETS
from mumo.training.budget import MAX_EPOCHS, MIN_EPOCHS, plan, step_budget


@pytest.mark.parametrize(
    ("steps_per_epoch", "epochs", "patience"),
    [(1, MAX_EPOCHS, 150), (19, 158, 79), (63, 48, 24), (1000, MIN_EPOCHS, 5)],
)
def test_auto_epochs_aim_at_the_step_budget(steps_per_epoch: int, epochs: int, patience: int) -> None:
    budget = plan(TrainConfig(steps=3000), steps_per_epoch)
    assert (budget.epochs, budget.patience, budget.time_limit) == (epochs, patience, None)


@pytest.mark.parametrize(
    ("steps_per_epoch", "batch_size", "steps", "epochs"),
    [(20, 64, 1500, 75), (44, 64, 2816, 64), (100, 64, 3000, 30), (44, 32, 1500, 35)],
)
def test_auto_steps_are_one_per_training_row_within_bounds(
    steps_per_epoch: int, batch_size: int, steps: int, epochs: int
) -> None:
    """1,260 rows: 1,500 steps (the floor); 2,816 rows: 2,816 steps; 6,400 rows: 3,000 (the cap)."""
    train = TrainConfig(batch_size=batch_size)
    assert train.steps == "auto"
    assert step_budget(train, steps_per_epoch) == steps
    assert plan(train, steps_per_epoch).epochs == epochs


def test_given_epochs_and_patience_are_kept() -> None:
    budget = plan(TrainConfig(epochs=7, patience=2, time_limit="1.5m"), 50)
    assert (budget.epochs, budget.patience, budget.time_limit) == (7, 2, 90.0)


def test_durations() -> None:
    assert [seconds(d) for d in ("90s", "10m", "1.5h", "2", 3)] == [90.0, 600.0, 5400.0, 120.0, 180.0]


def test_time_budget_fits_epochs_and_schedule_after_the_first_epoch() -> None:
    """An epoch took 0.1 s of a 1 s budget: at most 9 epochs, and the schedule ends with them."""
    import time
    from types import SimpleNamespace

    from mumo.training.budget import TimeBudget
    from mumo.training.optim import WarmupCosine

    budget = TimeBudget(limit=1.0, steps_per_epoch=10)
    trainer = SimpleNamespace(
        sanity_checking=False, current_epoch=0, fit_loop=SimpleNamespace(max_epochs=1000)
    )
    module = SimpleNamespace(schedule=WarmupCosine(0.05, 10_000))
    budget.on_train_start(trainer, module)  # type: ignore[arg-type]
    time.sleep(0.1)
    budget.on_validation_epoch_end(trainer, module)  # type: ignore[arg-type]
    epochs = trainer.fit_loop.max_epochs
    assert 1 <= epochs <= 9
    assert module.schedule.total == 10 * epochs
    rates = [module.schedule(step) for step in range(10 * epochs)]
    assert (
        max(rates) == pytest.approx(1.0, abs=0.1) and rates[-1] < 0.05
    )  # warms up and decays within the budget


def test_time_limit_stops_training(table_dir: Path, tmp_path: Path) -> None:
    config = {
        "data": {"train": str(table_dir / "train.csv"), "val": str(table_dir / "val.csv"), "target": "label",
                 "ignore": ["y", "z", "m1", "m2"]},
        "model": {"dim": 8},
        "train": {"epochs": 1000, "patience": 1000, "time_limit": "8s", "batch_size": 16, "progress": False},
    }  # fmt: skip
    run = mumo.train(config, out=tmp_path / "run", quiet=True)
    history = pd.read_csv(run.path / "logs" / "csv" / "metrics.csv")
    assert 1 <= int(history["epoch"].max()) + 1 < 1000
    assert "accuracy" in run.metrics["val"]  # stopped by the budget, then evaluated and saved as usual


def test_presets_fill_unset_keys_and_yield_to_set_ones() -> None:
    config = build_config({"data": {"train": "a.csv"}, "preset": "fast", "train": {"steps": 50}})
    assert config.model.dim == PRESETS["fast"]["model"]["dim"]
    assert config.train.time_limit == PRESETS["fast"]["train"]["time_limit"]
    assert config.train.steps == 50  # set in the config: the preset does not touch it
    again = build_config(yaml.safe_load(dump_config(config)))
    assert again == config and again.preset == "fast"
    with pytest.raises(
        ConfigError, match=r"^preset: 'fastest' is not a preset; choose one of fast, balanced, best$"
    ):
        build_config({"data": {"train": "a.csv"}, "preset": "fastest"})


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_trains(preset: str, table_dir: Path, tmp_path: Path) -> None:
    config = {
        "preset": preset,
        "data": {"train": str(table_dir / "train.csv"), "val": str(table_dir / "val.csv"), "target": "label",
                 "ignore": ["y", "z", "m1", "m2"]},
        "train": {"epochs": 1, "progress": False},
    }  # fmt: skip
    run = mumo.train(config, out=tmp_path / "run", quiet=True)
    assert run.model is not None and run.model.config.preset == preset
    assert "accuracy" in run.metrics["val"]
