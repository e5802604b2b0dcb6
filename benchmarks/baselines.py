"""Defaults vs a simple baseline on small, noisy datasets that mumo did not generate.

For each dataset: mumo with no config at all (`mumo train --train --val --test --target`) against
logistic regression (or ridge, for regression) on the raw features, standardized, fitted on train+val.
Prints a table and writes JSON.  Usage: python -m benchmarks.baselines [--json F] [--only NAME]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from mumo.io import write_json

Dataset = tuple[pd.DataFrame, np.ndarray, str]  # table (inputs + target), raw feature matrix, task


def digits_numeric(folder: Path, seed: int = 0) -> Dataset:
    """sklearn digits (1797 × 64 pixel counts 0..16) with N(0, 4²) noise on every input: a numeric table."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    noisy = np.round(x + rng.normal(0, 4.0, x.shape), 2)
    frame = pd.DataFrame(noisy, columns=[f"p{i}" for i in range(64)])
    frame["label"] = [f"digit{d}" for d in y]
    return frame, noisy, "classification"


def digits_image(folder: Path, seed: int = 0) -> Dataset:
    """The same digits as 8×8 grey PNG files with pixel noise: an image column only."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed + 1)
    noisy = np.clip(x * 16 + rng.normal(0, 48.0, x.shape), 0, 255)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    paths = []
    for i, row in enumerate(noisy):
        path = folder / "img" / f"{i:04d}.png"
        Image.fromarray(row.reshape(8, 8).astype(np.uint8), mode="L").save(path)
        paths.append(f"img/{i:04d}.png")
    frame = pd.DataFrame({"image": paths, "label": [f"digit{d}" for d in y]})
    return frame, noisy, "classification"


def wine_quality_like(folder: Path, seed: int = 0) -> Dataset:
    """sklearn diabetes regression (442 rows × 10) with noise on the inputs: ridge vs mumo, rmse."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    rng = np.random.default_rng(seed + 2)
    noisy = x + rng.normal(0, 0.3 * x.std(0), x.shape)
    frame = pd.DataFrame(np.round(noisy, 5), columns=[f"f{i}" for i in range(x.shape[1])])
    frame["target"] = y
    return frame, noisy, "regression"


DATASETS: dict[str, Callable[[Path, int], Dataset]] = {
    "digits-numeric-noisy": digits_numeric,
    "digits-image-noisy": digits_image,
    "diabetes-noisy": wine_quality_like,
}


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = n // 6, n // 6
    return order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test]


def baseline(
    features: np.ndarray, target: np.ndarray, task: str, fit_rows: np.ndarray, test_rows: np.ndarray
) -> float:
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=5000) if task == "classification" else Ridge()
    )
    model.fit(features[fit_rows], target[fit_rows])
    predicted = model.predict(features[test_rows])
    if task == "classification":
        return float(np.mean(predicted == target[test_rows]))
    return float(np.sqrt(np.mean((predicted - target[test_rows].astype(float)) ** 2)))


def run(name: str, seed: int = 0) -> dict[str, float | str]:
    import mumo

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frame, features, task = DATASETS[name](folder, seed)
        target_column = frame.columns[-1]
        train_rows, val_rows, test_rows = split(len(frame), seed)
        for part, rows in (("train", train_rows), ("val", val_rows), ("test", test_rows)):
            frame.iloc[rows].to_csv(folder / f"{part}.csv", index=False)
        started = time.time()
        result = mumo.train(
            {"data": {"train": str(folder / "train.csv"), "val": str(folder / "val.csv"),
                      "test": str(folder / "test.csv"), "target": target_column}},
            out=folder / "run",
            quiet=True,
        )  # fmt: skip
        seconds = time.time() - started
        metric = "accuracy" if task == "classification" else "rmse"
        ours = result.metrics["test"][metric]
        theirs = baseline(
            features, frame[target_column].to_numpy(), task, np.concatenate([train_rows, val_rows]), test_rows
        )
    better = ours > theirs if task == "classification" else ours < theirs
    return {"dataset": name, "rows": len(frame), "metric": metric, "mumo": ours, "baseline": theirs,
            "mumo_beats_baseline": better, "mumo_seconds": seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", default="benchmarks/results/baselines.json")
    parser.add_argument("--only", choices=list(DATASETS))
    args = parser.parse_args()
    results = [run(name) for name in DATASETS if args.only in (None, name)]
    print(f"{'dataset':24} {'rows':>5} {'metric':>8} {'mumo':>8} {'baseline':>9} {'beats':>6} {'mumo s':>7}")
    for r in results:
        print(f"{r['dataset']:24} {r['rows']:>5} {r['metric']:>8} {r['mumo']:>8.4f} {r['baseline']:>9.4f} "
              f"{'yes' if r['mumo_beats_baseline'] else 'NO':>6} {r['mumo_seconds']:>7.0f}")  # fmt: skip
    write_json(Path(args.json), results)  # atomic: a temp file, then rename


if __name__ == "__main__":
    main()
