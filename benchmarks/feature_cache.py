"""Frozen-feature cache: seconds per training epoch with and without it.

builtin:shapes caption + image: the caption through frozen all-MiniLM-L6-v2 (type hf, freeze: true), the
image through mumo's from-scratch CNN. Without the cache MiniLM runs forward on every caption in every
epoch; with it, once (then only the CNN, the projection, fusion and head train). Prints a table, writes
JSON. Goal: the cached epoch is at least 5x faster.

Usage: python -m benchmarks.feature_cache [--n 3000] [--epochs 3] [--json F]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import mumo
from benchmarks.common import save
from mumo.bench import epoch_seconds
from mumo.data.builtin import materialize

GOAL = 5.0


def config(n: int, epochs: int, cache: bool) -> dict[str, Any]:
    return {
        "name": f"feature-cache-{'on' if cache else 'off'}",
        "data": {
            "train": "builtin:shapes",
            "builtin": {"n": n},
            "ignore": ["sound", "weight"],
            "feature_cache": cache,
        },
        "model": {
            "encoders": {
                "caption": {
                    "type": "hf",
                    "pretrained": "sentence-transformers/all-MiniLM-L6-v2",
                    "freeze": True,
                }
            }
        },
        "train": {"epochs": epochs, "patience": epochs, "progress": False},
    }


def run(n: int, epochs: int, work: Path) -> dict[str, Any]:
    os.environ["MUMO_CACHE"] = str(work / "cache")  # an empty feature cache: its build time is measured
    materialize("shapes", n, 0)  # generate the data outside the timed runs
    rows: dict[str, Any] = {}
    for cache in (False, True):
        started = time.perf_counter()
        result = mumo.train(config(n, epochs, cache), out=work / f"cache-{cache}", quiet=True)
        seconds = epoch_seconds(work / f"cache-{cache}")
        rows["cache" if cache else "no cache"] = {
            "epoch_seconds": seconds,
            "median_epoch_seconds": statistics.median(seconds),
            "run_seconds": time.perf_counter() - started,
            "test_accuracy": result.metrics["test"]["accuracy"],
        }
    ratio = rows["no cache"]["median_epoch_seconds"] / rows["cache"]["median_epoch_seconds"]
    return {
        "dataset": f"builtin:shapes n={n} (caption: frozen all-MiniLM-L6-v2, image: cnn)",
        "epochs": epochs,
        "variants": rows,
        "train_epoch_speedup_ratio": ratio,
        "goal": GOAL,
        "met": ratio >= GOAL,
    }


def show(result: dict[str, Any]) -> None:
    print(f"\n{result['dataset']}, {result['epochs']} epochs")
    print(f"{'':<10}{'s/epoch (median)':>18}{'whole run s':>13}{'test acc':>10}")
    for name, row in result["variants"].items():
        print(
            f"{name:<10}{row['median_epoch_seconds']:>18.2f}{row['run_seconds']:>13.1f}{row['test_accuracy']:>10.3f}"
        )
    verdict = "met" if result["met"] else "NOT met"
    print(f"epoch speed-up {result['train_epoch_speedup_ratio']:.1f}x (goal >= {GOAL:.0f}x: {verdict})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--json", default="benchmarks/results/feature_cache.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mumo-feature-cache-") as tmp:
        result = run(args.n, args.epochs, Path(tmp))
    show(result)
    return save(result, args.json, result["met"])


if __name__ == "__main__":
    raise SystemExit(main())
