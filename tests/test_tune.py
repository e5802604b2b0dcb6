"""mumo tune: trials are normal runs, the leaderboard and best/ are written, an interrupted search
resumes from its SQLite study."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import mumo
from conftest import REPO, run_cli
from mumo.tuning import run_trial


def tune_config(table_dir: Path) -> dict[str, Any]:
    return {
        "name": "tiny",
        "data": {"train": str(table_dir / "train.csv"), "val": str(table_dir / "val.csv"),
                 "test": str(table_dir / "test.csv"), "target": "label", "ignore": ["y", "z", "m1", "m2"]},
        "model": {"dim": 8},
        "train": {"epochs": 3, "batch_size": 16, "progress": False},
        "tune": {"space": {"train.lr": ["log", 1e-3, 3e-2], "model.head.dropout": ["float", 0.0, 0.3]}},
    }  # fmt: skip


def test_trial_function_knows_no_search_engine(table_dir: Path, tmp_path: Path) -> None:
    from mumo.config import build_config

    seen: list[tuple[int, float]] = []
    result = run_trial(build_config(tune_config(table_dir)), {"train.lr": 0.01}, tmp_path / "t", 0,
                       report=lambda epoch, value: seen.append((epoch, value)) or False)  # fmt: skip
    assert result.state == "complete" and result.metric == "accuracy"
    assert [epoch for epoch, _ in seen] == [0, 1, 2]
    assert result.val == pytest.approx(max(v for _, v in seen), abs=1e-6)  # the best checkpoint's
    assert mumo.load(tmp_path / "t").config.train.lr == 0.01


def test_tune_writes_trials_leaderboard_and_best(table_dir: Path, tmp_path: Path) -> None:
    results = mumo.tune(tune_config(table_dir), tmp_path / "tune", trials=3, ensemble=True, quiet=True)
    assert len(results) == 3 and {r.number for r in results} == {0, 1, 2}
    scores = [r.score for r in results if r.state == "complete"]
    assert scores == sorted(scores, reverse=True)
    board = json.loads((tmp_path / "tune" / "leaderboard.json").read_text())
    assert board["metric"] == "accuracy" and len(board["trials"]) == 3
    assert "<img" in (tmp_path / "tune" / "leaderboard.html").read_text()
    best = tmp_path / "tune" / "best"
    assert best.is_symlink() and best.resolve() == Path(results[0].path).resolve()
    assert mumo.load(best).config.train.lr == results[0].params["train.lr"]


def test_interrupted_tune_resumes(table_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump(tune_config(table_dir)))
    out = tmp_path / "tune"
    args = ["tune", str(config), "--trials", "3", "--out", str(out), "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "mumo.cli", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    board = out / "leaderboard.json"
    deadline = time.time() + 300
    while not board.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert board.exists() and proc.poll() is None, "the first trial did not finish before the search did"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    first = json.loads(board.read_text())["trials"]
    manifest = (Path(first[0]["path"]) / "manifest.json").read_text()

    resumed = run_cli(*args, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    trials = json.loads(board.read_text())["trials"]
    assert len(trials) == 3  # those done before the kill count; the one cut short is run again
    assert {t["number"] for t in first} <= {t["number"] for t in trials}
    assert (Path(first[0]["path"]) / "manifest.json").read_text() == manifest  # kept, not retrained
    assert (out / "best").resolve().is_dir()
