"""Datasets built on scikit-learn's real handwritten digits: paired with espeak-ng speech (same digit, a
sum mod 10, a two-digit number) and as a noisy, gappy numeric table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.quality.digit_images import render_digit, sklearn_digits, split_pools
from benchmarks.quality.speech import Speaker, write_wav
from benchmarks.quality.splits import SPLITS, row_rng, split_counts, write_manifests

SPEECH_STREAM, SUM_STREAM, REGRESSION_STREAM, TABLE_STREAM = 11, 12, 13, 14  # per-row random streams
# Row columns from (image digit, spoken digit): the label or value of each paired dataset.
Pairing = Callable[[int, int], dict[str, object]]


@dataclass(frozen=True)
class Pair:
    scan: int  # row of sklearn's digits shown in the image
    image_digit: int
    spoken_digit: int


def pair_records(n: int, seed: int, stream: int, same_digit: bool) -> dict[str, list[Pair]]:
    """What each row shows: the spoken digit equals the image's when same_digit, else it is uniform and
    independent of it. Each split draws scans only from its own pool, cycling when it has more rows."""
    _, digits = sklearn_digits()
    pools = split_pools(seed)
    records = {}
    for split, count in split_counts(n).items():
        order = np.random.default_rng([seed, stream, SPLITS.index(split)]).permutation(len(pools[split]))
        spoken = np.random.default_rng([seed, stream + 50, SPLITS.index(split)]).integers(10, size=count)
        scans = [int(pools[split][order[i % len(order)]]) for i in range(count)]
        records[split] = [
            Pair(scan, int(digits[scan]), int(digits[scan]) if same_digit else int(b))
            for scan, b in zip(scans, spoken, strict=True)
        ]
    return records


def _paired(out: Path, n: int, seed: int, stream: int, pairing: Pairing, same_digit: bool) -> None:
    """Render pair_records: a noisy scan and a noisy spoken digit per row, then the manifests."""
    images, _ = sklearn_digits()
    speaker = Speaker()
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "sounds").mkdir(parents=True, exist_ok=True)
    tables = {}
    for split, pairs in pair_records(n, seed, stream, same_digit).items():
        rows = []
        for i, pair in enumerate(pairs):
            rng = row_rng(seed, stream, split, i)
            stem = f"{split}-{i:05d}"
            render_digit(images[pair.scan], rng).save(out / "images" / f"{stem}.png")
            write_wav(str(out / "sounds" / f"{stem}.wav"), speaker.noisy_digit(pair.spoken_digit, rng))
            cells = pairing(pair.image_digit, pair.spoken_digit)
            rows.append({"image": f"images/{stem}.png", "sound": f"sounds/{stem}.wav", **cells})
        tables[split] = pd.DataFrame(rows)
    write_manifests(out, tables)


def make_digits_speech(out: Path, n: int, seed: int) -> None:
    """image and sound show the same digit: label d0..d9 (either input alone can reach it)."""
    _paired(out, min(n, len(sklearn_digits()[1])), seed, SPEECH_STREAM, lambda a, b: {"label": f"d{a}"}, True)


def make_digits_sum(out: Path, n: int, seed: int) -> None:
    """label = (image digit + spoken digit) mod 10: each input alone is at chance."""
    _paired(out, n, seed, SUM_STREAM, lambda a, b: {"label": f"d{(a + b) % 10}"}, False)


def make_digits_regression(out: Path, n: int, seed: int) -> None:
    """value = 10 * image digit + spoken digit, 0..99."""
    _paired(out, n, seed, REGRESSION_STREAM, lambda a, b: {"value": 10 * a + b}, False)


TABLE_NOISE_STD = 4.0  # on the 0..16 pixel-count scale
TABLE_MISSING = 0.2


def make_digits_table(out: Path, n: int, seed: int) -> None:
    """The 64 pixel counts as numeric columns p0..p63, N(0, 4²) noise, 20% of cells empty; label d0..d9."""
    images, digits = sklearn_digits()
    pools = split_pools(seed)
    tables = {}
    for split, count in split_counts(min(n, len(digits))).items():
        scans = pools[split][:count]
        rng = np.random.default_rng([seed, TABLE_STREAM, SPLITS.index(split)])
        values = images[scans].reshape(len(scans), 64) + rng.normal(0, TABLE_NOISE_STD, (len(scans), 64))
        values = np.round(values, 2)
        values[rng.random(values.shape) < TABLE_MISSING] = np.nan  # written as empty cells
        table = pd.DataFrame(values, columns=[f"p{j}" for j in range(64)])
        table["label"] = [f"d{d}" for d in digits[scans]]
        tables[split] = table
    write_manifests(out, tables)
