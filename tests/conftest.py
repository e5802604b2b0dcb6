"""Shared fixtures: a tiny generated multimodal dataset, and ways to run the CLI in and out of process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """builtin datasets are generated into a per-session cache, never the user's home."""
    old = os.environ.get("MUMO_CACHE")
    os.environ["MUMO_CACHE"] = str(tmp_path_factory.mktemp("mumo-cache"))
    yield
    if old is None:
        os.environ.pop("MUMO_CACHE", None)
    else:
        os.environ["MUMO_CACHE"] = old


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """builtin:shapes with 200 rows (160/20/20): image, sound, caption, weight → label. Do not modify it."""
    from mumo.data.shapes import make_shapes

    out = tmp_path_factory.mktemp("shapes")
    make_shapes(out, n=200, seed=0)
    return out


@pytest.fixture
def shapes_copy(shapes_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny shapes dataset that a test may damage."""
    import shutil

    target = tmp_path / "shapes"
    shutil.copytree(shapes_dir, target)
    return target


@pytest.fixture(scope="session")
def table_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small table with every column kind and a target for every task: caption (text), image (16-pixel
    PNG squares), x (numeric), color (categorical), label (the colour), y and z (numbers), m1 and m2
    (0/1 labels); train.csv (90 rows), val.csv and test.csv (30 each). Do not modify it."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    out = tmp_path_factory.mktemp("table")
    (out / "img").mkdir()
    rng = np.random.default_rng(0)
    colours = {"red": (220, 40, 40), "green": (40, 190, 40), "blue": (40, 40, 220)}
    rows = []
    for i in range(150):
        colour = list(colours)[i % 3]
        pixels = np.full((16, 16, 3), 250, np.uint8)
        top = int(rng.integers(0, 8))
        pixels[top : top + 8, top : top + 8] = colours[colour]
        Image.fromarray(pixels).save(out / "img" / f"{i:03d}.png")
        x = float(rng.normal())
        rows.append(
            {
                "caption": f"a {colour} square {'high' if top > 3 else 'low'}",
                "image": f"img/{i:03d}.png",
                "x": round(x, 4),
                "color": colour,
                "label": colour,
                "y": round(2 * x + list(colours).index(colour), 4),
                "z": round(x - 1, 4),
                "m1": int(x > 0),
                "m2": int(colour == "red"),
            }
        )
    frame = pd.DataFrame(rows)
    for name, part in (("train", frame[:90]), ("val", frame[90:120]), ("test", frame[120:])):
        part.to_csv(out / f"{name}.csv", index=False)
    return out


def train_contrastive(shapes_dir: Path, out: Path, seed: int = 0) -> Path:
    """A small caption-image contrastive run on the tiny shapes data (what index and server tests embed with)."""
    import mumo

    config = {
        "data": {"train": str(shapes_dir / "train.csv"), "val": str(shapes_dir / "val.csv")},
        "task": {"type": "contrastive", "pairs": [["caption", "image"]]},
        "model": {"dim": 32},
        "train": {
            "epochs": 3,
            "batch_size": 32,
            "lr": 3e-3,
            "progress": False,
            "seed": seed,
            "baseline": False,
        },
    }
    return Path(mumo.train(config, out=out, quiet=True).path)


def tiny_overrides() -> list[str]:
    """--set flags for a fast run: small model, one epoch."""
    return [
        "--set",
        "train.epochs=1",
        "--set",
        "model.dim=32",
        "--set",
        "train.batch_size=32",
        "--set",
        "train.progress=false",
    ]


def run_cli(
    *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real `mumo` command in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "mumo.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )
