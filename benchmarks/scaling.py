"""Scaling by measurement here and projection beyond this machine (two CPU cores, no GPU).

1. Measured: mumo trains one model on generated data (8 numbers and a sentence per row) with one
   process and with two (train.devices=2, DDP over gloo), the same batch per process (weak scaling:
   each rank's work stays fixed). Per-step time = the median epoch's train seconds / its steps
   (the first epoch left out).
2. Measured: the gradient all-reduce alone, two gloo processes all-reducing a float32 tensor the size
   of the model's parameters; and a 4-byte one (latency) and a 64 MB one (bandwidth), 20 times each.
3. Projected to N ranks: step(N) = compute + overhead + allreduce(N), with compute = the one-process
   step, overhead = what the 2-process step costs beyond compute and its all-reduce (DDP's hooks, two
   processes sharing caches; assumed the same at every N > 1), and a ring all-reduce moving 2(N-1)/N
   of the gradient bytes through each rank:
   allreduce(N) = 2(N-1)/N x bytes / bandwidth + 2(N-1) x latency. No overlap of communication with
   the backward pass is assumed (DDP overlaps bucket by bucket, so real scaling is at least this
   good), compute per rank is assumed not to change with N, and the input pipeline keeps up.
   Interconnects: gloo over loopback as measured here, and two assumed ones: NVLink with NCCL
   (150 GB/s bus bandwidth, 5 us per step of the ring) and 100 Gb/s InfiniBand (10 GB/s, 10 us).
   Each is projected for the measured model and for a model 100x its size (compute and overhead
   scaled alike).

Usage: python -m benchmarks.scaling [--rows 16000] [--epochs 4] [--json F]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import save
from benchmarks.streaming import write_table

INTERCONNECTS = {"nvlink (assumed)": (150e9, 5e-6), "infiniband 100 Gb/s (assumed)": (10e9, 10e-6)}
RANKS = (1, 2, 4, 8, 16, 64, 256)
BATCH = 128


def step_seconds(run: Path, steps: int) -> float:
    """Median per-step train time of the epochs after the first."""
    with open(run / "logs" / "csv" / "metrics.csv") as handle:
        seconds = [
            float(r["train/epoch_seconds"]) for r in csv.DictReader(handle) if r.get("train/epoch_seconds")
        ]
    return float(np.median(seconds[1:] if len(seconds) > 1 else seconds)) / steps


def train(work: Path, rows: int, devices: int, epochs: int) -> tuple[float, int]:
    out = work / f"run{devices}"
    command = [
        sys.executable, "-m", "mumo.cli", "train", "--train", str(work / "train.parquet"),
        "--val", str(work / "val.parquet"), "--target", "label", "--out", str(out), "--quiet",
        "--set", f"train.epochs={epochs}", "--set", f"train.batch_size={BATCH}", "--set", "model.dim=64",
        "--set", "train.baseline=false", "--set", "train.progress=false", "--set", "train.patience=100",
        "--set", f"train.devices={devices}", "--set", "train.accelerator=cpu",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise SystemExit(f"mumo train failed:\n{done.stderr[-3000:]}")
    import mumo
    from mumo.network import count_parameters

    parameters, _ = count_parameters(mumo.load(out).network)
    return step_seconds(out, rows // devices // BATCH), parameters


ALLREDUCE = """
import os, sys, time, json, torch, torch.distributed as dist
dist.init_process_group("gloo")
out = {}
for name, count in (("latency", 1), ("bandwidth", 16 * 2**20), ("model", int(sys.argv[2]))):
    tensor = torch.ones(count)
    for _ in range(3):
        dist.all_reduce(tensor)
    times = []
    for _ in range(20):
        dist.barrier()
        started = time.perf_counter()
        dist.all_reduce(tensor)
        times.append(time.perf_counter() - started)
    times.sort()
    out[name] = times[len(times) // 2]
if dist.get_rank() == 0:
    open(sys.argv[1], "w").write(json.dumps(out))
dist.destroy_process_group()
"""


def allreduce(work: Path, parameters: int) -> dict[str, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script, out = work / "allreduce.py", work / "allreduce.json"
    script.write_text(ALLREDUCE)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(out), str(parameters)],
            env={
                **os.environ,
                "RANK": str(r),
                "WORLD_SIZE": "2",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "OMP_NUM_THREADS": "1",
            },
        )  # fmt: skip
        for r in range(2)
    ]
    for p in procs:
        if p.wait(timeout=300) != 0:
            raise SystemExit("the all-reduce measurement failed")
    measured: dict[str, float] = json.loads(out.read_text())
    # Two ranks: a ring all-reduce moves 2(N-1)/N = 1x the bytes through each rank.
    measured["bandwidth_bytes_per_s"] = (
        16 * 2**20 * 4 / max(measured["bandwidth"] - measured["latency"], 1e-9)
    )
    return measured


def project(
    compute: float, overhead: float, grad_bytes: float, bandwidth: float, latency: float
) -> list[dict[str, float]]:
    rows = []
    for n in RANKS:
        comm = 0.0 if n == 1 else 2 * (n - 1) / n * grad_bytes / bandwidth + 2 * (n - 1) * latency
        step = compute + comm + (overhead if n > 1 else 0.0)
        rows.append({"ranks": n, "step_s": step, "comm_share": comm / step, "efficiency": compute / step})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--json", default="benchmarks/results/scaling.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_table(work / "train.parquet", args.rows, 0)
        write_table(work / "val.parquet", 2_000, 1)
        started = time.time()
        one, parameters = train(work, args.rows, 1, args.epochs)
        two, _ = train(work, args.rows, 2, args.epochs)
        comm = allreduce(work, parameters)
        seconds = time.time() - started
    grad_bytes = 4.0 * parameters
    # What the second process costs besides the all-reduce: DDP's hooks and unused-parameter search,
    # two processes sharing this machine's caches and memory bandwidth. Kept in every projection.
    overhead = max(0.0, two - one - comm["model"])
    here = (comm["bandwidth_bytes_per_s"], comm["latency"])
    measured = {
        "parameters": parameters,
        "step_1_process_s": one,
        "step_2_processes_s": two,
        "weak_scaling_efficiency_2": one / two,
        "allreduce_model_s": comm["model"],
        "allreduce_share_2": comm["model"] / two,
        "other_ddp_overhead_s": overhead,
        "gloo_bandwidth_bytes_per_s": here[0],
        "gloo_latency_s": comm["latency"],
        "seconds": round(seconds, 1),
    }
    print(
        f"measured here: {parameters:,} parameters; step {one * 1000:.1f} ms on 1 process, {two * 1000:.1f} ms "
        f"on 2 (efficiency {one / two:.2f}); the gradient all-reduce alone {comm['model'] * 1000:.2f} ms "
        f"({comm['model'] / two:.0%} of the 2-process step), {overhead * 1000:.1f} ms of other DDP overhead; gloo loopback {here[0] / 1e9:.2f} GB/s, "
        f"{comm['latency'] * 1e6:.0f} us"
    )
    projections: dict[str, Any] = {}
    print("| interconnect | model | " + " | ".join(f"N={n}" for n in RANKS) + " |")
    print("|---|---|" + "---:|" * len(RANKS))
    for name, (bandwidth, latency) in {"gloo here (measured)": here, **INTERCONNECTS}.items():
        for label, scale in (("measured", 1), ("100x", 100)):
            rows = project(one * scale, overhead * scale, grad_bytes * scale, bandwidth, latency)
            projections[f"{name} / {label}"] = rows
            print(f"| {name} | {label} | " + " | ".join(f"{r['efficiency']:.2f}" for r in rows) + " |")
    print("cells: projected weak-scaling efficiency (1-process step / N-process step)")
    return save({"measured": measured, "projections": projections}, args.json, True)


if __name__ == "__main__":
    raise SystemExit(main())
