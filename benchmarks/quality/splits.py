"""What every quality dataset shares: split sizes, per-row random streams, manifest writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


def split_counts(n: int) -> dict[str, int]:
    """About 70/15/15; the test split is never used for tuning."""
    n_val = n_test = round(n * 0.15)
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


def row_rng(seed: int, stream: int, split: str, index: int) -> np.random.Generator:
    """A generator per row, so a row does not depend on how many rows came before it."""
    return np.random.default_rng([seed, stream, SPLITS.index(split), index])


def write_manifests(out: Path, tables: dict[str, pd.DataFrame]) -> None:
    """train.csv, val.csv, test.csv (paths inside are relative to `out`); empty cells are missing."""
    for split in SPLITS:
        tables[split].to_csv(out / f"{split}.csv", index=False, lineterminator="\n")
