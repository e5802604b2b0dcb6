"""Can a fusion learn an interaction between two modalities?

builtin:shapes-interaction: label = (round shape: circle, cross) XOR (low pitch). The shape is only
visible in the image, the pitch only audible in the sound, so either input alone is at chance (50%).
Each fusion is trained on image + sound; the upper bound is the same default model given the two
attributes directly as categorical columns. Goal: some fusion reaches >= 90% of the upper bound.

Usage: python -m benchmarks.interaction [--n 3000] [--epochs 25] [--fusions concat,attention] [--json F]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.common import save
from mumo.compare import compare
from mumo.config import build_config
from mumo.data.builtin import materialize
from mumo.fusion import FUSIONS

GOAL = 0.90


def categorical_manifests(data_dir: Path, out: Path) -> dict[str, str]:
    """The same rows and splits, with the seen and heard attributes as categorical columns."""
    attributes = pd.read_csv(data_dir / "attributes.csv")
    paths = {}
    for split in ("train", "val", "test"):
        labels = pd.read_csv(data_dir / f"{split}.csv")["label"].to_numpy()
        part = attributes[attributes["split"] == split][["shape", "pitch"]].reset_index(drop=True)
        part["label"] = labels
        paths[split] = str(out / f"{split}.csv")
        part.to_csv(paths[split], index=False)
    return paths


def run(n: int, epochs: int, fusions: list[str], work: Path, seed: int = 0) -> dict[str, Any]:
    data_dir = work / "data"
    materialize("shapes-interaction", n, seed, out_dir=data_dir)
    # Patience = epochs: an interaction sits at chance for ~10 epochs (no input alone gives a gradient
    # signal) before the encoders and the fusion find it; the default early stopping would end it first.
    train = {"epochs": epochs, "patience": epochs, "seed": seed}
    started = time.time()

    raw = {
        "name": "interaction",
        "data": {
            "train": str(data_dir / "train.csv"),
            "val": str(data_dir / "val.csv"),
            "test": str(data_dir / "test.csv"),
            "target": "label",
            "ignore": ["caption", "weight"],  # the caption names the shape; keep one seen, one heard input
        },
        "train": train,
    }
    variants = compare(build_config(raw), work / "compare", fusions, unimodal=True)
    scores = {v.name: v.mean for v in variants}

    categorical = categorical_manifests(data_dir, work)
    upper_raw = {
        "name": "interaction-upper",
        "data": {
            **categorical,
            "target": "label",
            "columns": {"shape": "categorical", "pitch": "categorical"},
        },
        "train": train,
    }
    upper_variants = compare(build_config(upper_raw), work / "upper", ["concat"])
    upper = upper_variants[0].mean

    best_name = max((name for name in scores if name.startswith("fusion")), key=scores.__getitem__)
    best = scores[best_name]
    result = {
        "dataset": f"builtin:shapes-interaction n={n} seed={seed}",
        "epochs": epochs,
        "metric": "test accuracy",
        "variants": scores,
        "upper_bound_categorical": upper,
        "best_fusion": best_name,
        "interaction_ratio": best / upper,
        "goal": GOAL,
        "met": best / upper >= GOAL,
        "seconds": time.time() - started,
    }
    _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    print(f"\n{result['dataset']}, {result['epochs']} epochs, {result['metric']}")
    print(f"{'variant':<34}{'accuracy':>10}")
    for name, score in result["variants"].items():
        print(f"{name:<34}{score:>10.3f}")
    print(f"{'upper bound (shape, pitch given)':<34}{result['upper_bound_categorical']:>10.3f}")
    verdict = "met" if result["met"] else "NOT met"
    print(
        f"best fusion {result['best_fusion']!r}: {result['interaction_ratio']:.3f} of the upper bound "
        f"(goal >= {result['goal']:.2f}: {verdict}); {result['seconds']:.0f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--fusions", default=",".join(FUSIONS.names()))
    parser.add_argument("--json", default="benchmarks/results/interaction.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mumo-interaction-") as tmp:
        result = run(args.n, args.epochs, args.fusions.split(","), Path(tmp))
    return save(result, args.json, result["met"])


if __name__ == "__main__":
    raise SystemExit(main())
