"""SIGKILL at a random moment: `mumo train`, `mumo train --overwrite`, `mumo predict --out` and `mumo data
make`. Afterwards every file the user had is byte-identical, or the new output is complete; an
interrupted training finishes with --resume. One trial of each in the fast suite, ten in test-all."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO
from mumo.cli import main

KINDS = ("train", "overwrite", "predict", "make")


def tree(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def train_args(table_dir: Path, out: Path, seed: int = 0) -> list[str]:
    return ["train", "--train", str(table_dir / "train.csv"), "--val", str(table_dir / "val.csv"), "--target", "label",
            "--set", "data.ignore=[y,z,m1,m2]", "--set", "train.epochs=12", "--set", "train.patience=12",
            "--set", "model.dim=8", "--set", "train.batch_size=8", "--set", f"train.seed={seed}",
            "--set", "train.progress=false", "--out", str(out)]  # fmt: skip


def killed(
    args: list[str], rng: random.Random, longest: float, results: Counter[str], after: Path | None = None
) -> None:
    """Run `mumo ARGS` in a fresh process and SIGKILL it after a random delay (if it still runs); with
    `after`, the delay starts once that file exists."""
    proc = subprocess.Popen([sys.executable, "-m", "mumo.cli", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 60
    while after is not None and not after.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(rng.uniform(0.3, longest))
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        results["killed"] += 1
    proc.wait(timeout=60)


@pytest.fixture(scope="module")
def finished(table_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("crash") / "done"
    assert main(train_args(table_dir, out)) == 0
    return out


def trial(
    kind: str, rng: random.Random, table_dir: Path, finished: Path, work: Path, results: Counter[str]
) -> None:
    work.mkdir()
    (work / "mine.txt").write_text("a file of the user's, beside everything")
    if kind == "train":
        out = work / "run"
        # Every other trial is killed while it trains (after its first checkpoint), so --resume is tried.
        checkpoint = work / ".run.partial" / "checkpoints" / "last.ckpt" if rng.random() < 0.5 else None
        killed(train_args(table_dir, out), rng, 3.0 if checkpoint else 10.0, results, after=checkpoint)
        if not out.exists() and (work / ".run.partial" / "checkpoints" / "last.ckpt").is_file():
            assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0  # --resume finishes
            results["resumed"] += 1
        if out.exists():
            assert main(["check", str(out)]) == 0
        else:  # killed before its first checkpoint: a new training starts cleanly
            assert main([*train_args(table_dir, out), "--quiet"]) == 0
    elif kind == "overwrite":
        out = work / "run"
        shutil.copytree(finished, out)
        before = tree(out)
        killed([*train_args(table_dir, out, seed=7), "--overwrite"], rng, 10.0, results)
        after = tree(out)
        assert after == before or (
            main(["check", str(out)]) == 0 and "seed: 7" in (out / "config.yaml").read_text()
        )
        results["overwrite kept" if after == before else "overwrite replaced"] += 1
    elif kind == "predict":
        out = work / "p.csv"
        out.write_text("the previous predictions\n")
        killed(
            ["predict", str(finished), "--data", str(table_dir / "test.csv"), "--out", str(out)],
            rng,
            2.8,
            results,
        )
        text = out.read_text()
        assert text == "the previous predictions\n" or len(pd.read_csv(out)) == 30
    else:
        out = work / "data"
        killed(["data", "make", "shapes", "--out", str(out), "--n", "300"], rng, 1.0, results)
        if out.exists():  # complete: every manifest, and every file they name
            for split in ("train", "val", "test"):
                frame = pd.read_csv(out / f"{split}.csv")
                assert all((out / path).is_file() for path in [*frame["image"], *frame["sound"]])
    assert (work / "mine.txt").read_text() == "a file of the user's, beside everything"
    results[kind] += 1


def crash_loop(trials: int, table_dir: Path, finished: Path, tmp_path: Path) -> None:
    rng, results = random.Random(trials), Counter[str]()
    for number in range(trials):
        for kind in KINDS:
            trial(kind, rng, table_dir, finished, tmp_path / f"{kind}-{number}", results)
    print(f"crash loop: {dict(results)}")
    assert all(results[kind] == trials for kind in KINDS)


def test_crash_loop_fast(table_dir: Path, finished: Path, tmp_path: Path) -> None:
    crash_loop(1, table_dir, finished, tmp_path)


@pytest.mark.slow
def test_crash_loop_ten_trials(table_dir: Path, finished: Path, tmp_path: Path) -> None:
    crash_loop(10, table_dir, finished, tmp_path)
