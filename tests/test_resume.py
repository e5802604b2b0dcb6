"""Training killed with SIGKILL mid-epoch continues with --resume and finishes."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, run_cli

EPOCHS = 5


def _train_args(data: Path, out: Path) -> list[str]:
    return [
        "train", "--train", str(data / "train.csv"), "--val", str(data / "val.csv"), "--target", "label",
        "--out", str(out), "--set", f"train.epochs={EPOCHS}", "--set", "train.patience=100",
        "--set", "model.dim=16", "--set", "train.batch_size=8", "--set", "data.ignore=[sound]",
    ]  # fmt: skip


def _validation_rows(log: Path) -> list[dict[str, str]]:
    """The rows of metrics.csv with a validation accuracy ([] while it does not exist yet)."""
    try:
        with open(log) as handle:
            return [row for row in csv.DictReader(handle) if row.get("val/accuracy")]
    except FileNotFoundError:
        return []


def test_sigkill_mid_epoch_then_resume_finishes(shapes_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mumo.cli", *_train_args(shapes_dir, out)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    staging = tmp_path / ".run.partial"  # a run is trained beside --out and moved there when done
    last = staging / "checkpoints" / "last.ckpt"
    log = staging / "logs" / "csv" / "metrics.csv"
    deadline = time.time() + 120
    # The checkpoint and the CSV row of the first validation are written at slightly different moments;
    # wait for both (on a loaded machine the gap is long enough to kill in between).
    while not (last.exists() and _validation_rows(log)) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert last.exists(), "training never wrote checkpoints/last.ckpt"
    # Killed as soon as the first epoch's checkpoint and log row exist: four epochs are still to come,
    # so the process is alive (no sleep that assumes how fast this machine is).
    assert proc.poll() is None, "training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()  # --out gets a run only when it is complete
    before = _validation_rows(log)
    assert before, "the first epoch's validation row was logged before the kill"

    # A killed run is not a finished run: it cannot be loaded, and a fresh train refuses to clobber it.
    refused = run_cli(*_train_args(shapes_dir, out))
    assert refused.returncode == 2
    assert "--resume" in refused.stderr
    assert run_cli("predict", str(out), "--input", "caption=x").returncode == 2

    resumed = run_cli("train", "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Traceback" not in resumed.stderr
    epochs_seen = [int(m) for m in re.findall(r"^epoch (\d+)/", resumed.stderr, flags=re.M)]
    assert epochs_seen, resumed.stderr
    assert epochs_seen[0] > 1, "resume started again from the first epoch"
    assert epochs_seen[-1] == EPOCHS
    assert (out / "model.safetensors").is_file()
    assert (out / "metrics.json").is_file()
    with open(out / "logs" / "csv" / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("val/accuracy")]
    assert [int(row["epoch"]) for row in rows] == list(range(EPOCHS))  # the rows before the kill are kept
    assert rows[0]["val/accuracy"] == before[0]["val/accuracy"]
    assert not staging.exists() and not (tmp_path / ".run.lock").exists()


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("train", "--out", str(tmp_path / "nothing"), "--resume")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"mumo: error: {tmp_path / 'nothing'}: nothing to resume (no interrupted run with checkpoints/last.ckpt)"
    ]


def test_last_checkpoint_is_the_last_epoch_and_monitor_last_keeps_it(
    shapes_dir: Path, tmp_path: Path
) -> None:
    """checkpoints/last.ckpt holds the last epoch (what --resume continues from), whichever epoch was
    best; train.monitor: last keeps that model (no best.ckpt, no early stopping), and a metric the task
    lacks is refused with the choices."""
    import torch

    import mumo
    from mumo.errors import ConfigError
    from mumo.training.trainer import load_weights

    config = {
        "data": {
            "train": str(shapes_dir / "train.csv"),
            "val": str(shapes_dir / "val.csv"),
            "target": "label",
            "ignore": ["sound"],
        },
        "model": {"dim": 16},
        "train": {"epochs": 4, "patience": 100, "batch_size": 8, "lr": 0.03, "progress": False},
    }
    run = mumo.train(config, out=tmp_path / "best", quiet=True)
    epochs = {
        name: torch.load(run.path / "checkpoints" / f"{name}.ckpt", weights_only=True)["epoch"]
        for name in ("best", "last")
    }
    assert epochs["last"] == 3, epochs
    rows = _validation_rows(run.path / "logs" / "csv" / "metrics.csv")
    losses = [float(row["val/loss"]) for row in rows]
    assert len(losses) == 4

    kept = mumo.train(config, overrides={"train.monitor": "last"}, out=tmp_path / "last", quiet=True)
    assert not (kept.path / "checkpoints" / "best.ckpt").exists()
    weights = load_weights(kept.path / "checkpoints" / "last.ckpt")
    assert torch.load(kept.path / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 3
    state = kept.model.network.state_dict()
    assert all(torch.equal(state[k], v) for k, v in weights.items())

    try:
        mumo.train(config, overrides={"train.monitor": "nonsense"}, out=tmp_path / "bad", quiet=True)
    except ConfigError as error:
        assert str(error).startswith("train.monitor: 'nonsense' is not a metric of task classification")
        assert str(error).endswith(", or last")
    else:
        raise AssertionError("train.monitor: nonsense was accepted")
