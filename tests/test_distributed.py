"""Training on several processes (Lightning DDP on CPU with gloo): contrastive negatives gathered from
every rank give the loss and gradients of one big batch; a 2-process run trains like a 1-process run of
the same global batch, writes its run folder once, and resumes."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, run_cli

WORKER = Path(__file__).parent / "distributed" / "contrastive_worker.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(world: int, out: Path, loss: str) -> dict:
    """The worker on `world` processes, as torchrun would start them."""
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(out), loss],
            cwd=REPO,
            env={
                **os.environ,
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "WORLD_SIZE": str(world),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "OMP_NUM_THREADS": "1",
            },
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(world)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("loss", ["infonce", "sigmoid", "matching"])
def test_contrastive_gather_gives_the_big_batch_loss_and_gradients(loss: str, tmp_path: Path) -> None:
    one = _launch(1, tmp_path / "one.json", loss)
    two = _launch(2, tmp_path / "two.json", loss)
    assert two["loss"] == pytest.approx(one["loss"], abs=1e-5)
    assert set(two["grads"]) == set(one["grads"]) and len(one["grads"]) >= 5
    for name, grad in one["grads"].items():
        assert two["grads"][name] == pytest.approx(grad, abs=1e-5), name
    # Without the gather each rank would see 7 or 6 pairs of the 13: a visibly different loss.
    assert one["loss"] > 1.0


def _ddp_args(data: Path, out: Path, *more: str) -> list[str]:
    return [
        "train", "--train", str(data / "train.csv"), "--val", str(data / "val.csv"), "--target", "label",
        "--out", str(out), "--set", "data.ignore=[image,sound]", "--set", "model.dim=16",
        "--set", "train.devices=2", "--set", "train.strategy=ddp", "--set", "train.accelerator=cpu",
        "--set", "train.batch_size=8", "--set", "train.patience=100", "--set", "train.baseline=false", *more,
    ]  # fmt: skip


def _validation_epochs(log: Path) -> list[int]:
    try:
        with open(log) as handle:
            return [int(row["epoch"]) for row in csv.DictReader(handle) if row.get("val/accuracy")]
    except FileNotFoundError:
        return []


def test_ddp_run_is_written_once_by_rank_zero_and_resumes(shapes_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mumo.cli", *_ddp_args(shapes_dir, out, "--set", "train.epochs=4")],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group: the kill below reaches the rank Lightning started
    )  # fmt: skip
    staging = tmp_path / ".run.partial"
    log = staging / "logs" / "csv" / "metrics.csv"
    deadline = time.time() + 240
    last = staging / "checkpoints" / "last.ckpt"
    while not (last.is_file() and _validation_epochs(log)) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"the DDP run ended before it could be killed: {proc.stderr.read()[-2000:]}"  # type: ignore[union-attr]
    os.killpg(proc.pid, signal.SIGKILL)  # both ranks, as a lost allocation would
    proc.wait(timeout=30)
    assert not out.exists() and last.is_file()

    resumed = subprocess.run(
        [sys.executable, "-m", "mumo.cli", "train", "--resume", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stderr.count("done in ") == 1  # the second rank prints nothing
    # One run folder, written by rank zero: nothing else beside it (no runs/ of a second rank, no staging).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"model.safetensors", "metrics.json", "report.html"} <= set(manifest["files"])
    assert _validation_epochs(out / "logs" / "csv" / "metrics.csv") == [0, 1, 2, 3]  # each epoch once
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["val"]["accuracy"] <= 1


def test_validation_rows_are_scored_once_across_ranks(tmp_path: Path) -> None:
    """21 rows on 2 ranks: EveryRowOnce gives 11 and 10 (torch's sampler would give 11 and 11, row 0
    twice), and gather_rows puts them back in order."""
    assert _launch(2, tmp_path / "rows.json", "rows") == {"ranks": [11, 10], "gathered": list(range(21))}


@pytest.mark.slow
def test_ddp_on_two_processes_reaches_the_one_process_accuracy(tmp_path: Path) -> None:
    """builtin:shapes (1000 rows; caption, sound and weight → shape-pitch, 10 classes), a global batch
    of 32: one process with batch 32 against two with 16 each. Measured: both 1.000 on val and test."""
    from mumo.data.shapes import make_shapes

    data = tmp_path / "shapes"
    make_shapes(data, n=1000, seed=0)
    accuracy = {}
    for devices, batch in ((1, 32), (2, 16)):
        out = tmp_path / f"run{devices}"
        args = [
            "train", "--train", str(data / "train.csv"), "--val", str(data / "val.csv"),
            "--test", str(data / "test.csv"), "--target", "label", "--out", str(out), "--quiet",
            "--set", "data.ignore=[image]", "--set", "model.dim=32", "--set", "train.epochs=12",
            "--set", "train.lr=3e-3", "--set", f"train.batch_size={batch}", "--set", f"train.devices={devices}",
            "--set", "train.accelerator=cpu", "--set", "train.baseline=false",
        ]  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "mumo.cli", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        metrics = json.loads((out / "metrics.json").read_text())
        accuracy[devices] = (metrics["val"]["accuracy"], metrics["test"]["accuracy"])
    assert min(accuracy[1]) > 0.9, accuracy
    for one, two in zip(accuracy[1], accuracy[2], strict=True):
        assert abs(one - two) <= 0.02, accuracy


def test_the_multinode_example_is_a_valid_config() -> None:
    from mumo.config import build_config, load_raw

    config = build_config(load_raw(REPO / "examples" / "distributed" / "multinode.yaml"))
    assert (config.train.devices, config.train.num_nodes, config.train.strategy) == (4, 2, "ddp")
    assert config.task.type == "contrastive"


def test_a_strategy_lightning_refuses_is_one_line_and_no_run(tmp_path: Path) -> None:
    """FSDP needs a GPU in Lightning: on CPU the user gets Lightning's reason in one line, exit 2, and
    no run folder (not a traceback)."""
    data = tmp_path / "t.csv"
    data.write_text("x,label\n" + "".join(f"{i / 40},{int(i >= 20)}\n" for i in range(40)))
    out = tmp_path / "run"
    args = ["train", "--train", str(data), "--target", "label", "--out", str(out), "--set", "train.epochs=1"]
    args += ["--set", "train.strategy=fsdp", "--set", "train.devices=2", "--set", "train.accelerator=cpu"]
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("mumo: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert errors[0].startswith(
        "mumo: error: train: Lightning refuses accelerator=cpu, devices=2, strategy=fsdp"
    )
    assert "requires a GPU accelerator" in errors[0]
    assert not out.exists()
