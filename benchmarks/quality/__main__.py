"""python -m benchmarks.quality: the quality suite (see benchmarks/quality/__init__.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from benchmarks.common import save
from benchmarks.quality.datasets import DATASETS
from benchmarks.quality.report import show, write_markdown
from benchmarks.quality.runner import run_dataset
from benchmarks.quality.speech import espeak_available
from mumo.bench.common import console
from mumo.config import parse_overrides
from mumo.io import write_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__)
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated; default: all")
    parser.add_argument(
        "--seed", type=int, default=0, help="dataset seed (the baselines and mumo keep theirs)"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--skip-mumo", action="store_true")
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument("--json", default="benchmarks/results/quality.json")
    parser.add_argument("--markdown", type=Path, help="write the table between <!-- quality --> markers")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset {', '.join(unknown)}; choose from {', '.join(DATASETS)}")
    if any(DATASETS[n].speech for n in names) and not espeak_available():
        parser.error(
            "espeak-ng is needed for the spoken digits; install it with: apt-get install -y espeak-ng"
        )
    overrides = parse_overrides(args.overrides)
    results = {
        "seed": args.seed,
        "overrides": overrides,
        "machine": {"torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "datasets": {},
    }
    for name in names:
        results["datasets"][name] = run_dataset(
            name, args.seed, overrides, not args.skip_baselines, not args.skip_mumo
        )
        # after each dataset, so an interrupted suite keeps what it measured
        write_json(Path(args.json), results)
    show(results)
    save(results, args.json, met=True)
    if args.markdown is not None:
        write_markdown(args.markdown, results)
        console.print(f"wrote the table into {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
