"""Training on a table larger than what mumo keeps in memory: one epoch over a generated Parquet
manifest of `--rows` rows (8 numbers and a sentence per row, a binary label) with data.stream, in a
fresh `mumo train` process whose peak memory (PSS, summed with its DataLoader workers') is measured.
Goal: 1M rows under 2 GiB. With --in-memory, the same run without data.stream, for comparison.

Usage: python -m benchmarks.streaming [--rows 1000000] [--workers 1] [--in-memory] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import save

GOAL_BYTES = 2 << 30
WORDS = "red green blue small large round square bright dark fast slow heavy light soft loud".split()


def write_table(path: Path, rows: int, seed: int, group: int = 65_536) -> None:
    """rows of x0..x7, a four-word note and a label (x0 + x1 > 0, or the note says 'bright'), written
    one row group at a time (the generator itself stays small)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, rows, group):
        n = min(group, rows - start)
        numbers = rng.normal(size=(n, 8)).astype(np.float32)
        words = rng.integers(len(WORDS), size=(n, 4))
        notes = [" ".join(WORDS[w] for w in row) for row in words]
        bright = (words == WORDS.index("bright")).any(axis=1)
        frame = pd.DataFrame({f"x{i}": numbers[:, i] for i in range(8)})
        frame["note"] = notes
        frame["label"] = np.where((numbers[:, 0] + numbers[:, 1] > 0) | bright, "yes", "no")
        table = pa.Table.from_pandas(frame, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=group)
    assert writer is not None
    writer.close()


def run(rows: int, workers: int, stream: bool, work: Path) -> dict[str, Any]:
    train, val = work / "train.parquet", work / "val.parquet"
    if not train.exists():
        started = time.time()
        write_table(train, rows, 0)
        write_table(val, 5_000, 1)
        print(f"wrote {rows:,} rows in {time.time() - started:.0f} s ({train.stat().st_size / 1e6:.0f} MB)")
    out = work / ("streamed" if stream else "in-memory")
    command = [
        sys.executable, "-m", "mumo.cli", "train", "--train", str(train), "--val", str(val),
        "--target", "label", "--out", str(out), "--overwrite", "--quiet",
        "--set", "train.epochs=1", "--set", "train.batch_size=256", "--set", "model.dim=32",
        "--set", "train.baseline=false", "--set", "train.progress=false",
        "--set", f"data.num_workers={workers}", "--set", f"data.stream={str(stream).lower()}",
    ]  # fmt: skip
    started = time.time()
    peak = _run_measured(command)
    seconds = time.time() - started
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "rows": rows,
        "stream": stream,
        "workers": workers,
        "seconds": round(seconds, 1),
        "rows_per_second": round(rows / seconds),
        "peak_bytes": peak,
        "val_accuracy": metrics["val"]["accuracy"],
    }


def _pss(process: Any) -> int:
    """Proportional set size: resident memory with each shared page split between its sharers (a
    forked worker shares torch's pages with its parent; summing RSS would count them twice)."""
    return int(process.memory_full_info().pss)


def _run_measured(command: list[str]) -> int:
    """Run the command; the peak, sampled every 50 ms, of the memory (PSS) of it and its children
    (the DataLoader workers) together."""
    import psutil

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watched = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            peak = max(peak, sum(_pss(p) for p in tree if p.is_running()))
        except psutil.Error:
            pass  # a worker ended between the listing and the reading
        time.sleep(0.05)
    error = process.stderr.read() if process.stderr else ""
    if process.returncode != 0:
        raise SystemExit(f"mumo train failed:\n{error[-3000:]}")
    return peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--in-memory", action="store_true", help="also train without data.stream")
    parser.add_argument("--json", default="benchmarks/results/streaming.json")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(run(args.rows, args.workers, True, Path(tmp)))
        if args.in_memory:
            results.append(run(args.rows, args.workers, False, Path(tmp)))
    print(
        "| rows | data.stream | workers | seconds (one epoch, all included) | rows/s | peak memory (PSS) | val accuracy |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['rows']:,} | {r['stream']} | {r['workers']} | {r['seconds']:.0f} | {r['rows_per_second']:,} "
            f"| {r['peak_bytes'] / 2**30:.2f} GiB | {r['val_accuracy']:.3f} |"
        )
    met = results[0]["peak_bytes"] < GOAL_BYTES
    print(f"goal: peak memory of the streamed run under 2 GiB: {'met' if met else 'missed'}")
    return save({"runs": results, "goal_bytes": GOAL_BYTES, "met": met}, args.json, met)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    raise SystemExit(main())
