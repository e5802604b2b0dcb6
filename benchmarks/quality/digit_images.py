"""scikit-learn's bundled handwritten digits (1797 real 8x8 scans) drawn as noisy 32x32 RGB images."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from benchmarks.quality.splits import SPLITS, split_counts

SIDE = 32
NOISE_STD = (20.0, 50.0)  # per-pixel gaussian noise on the 0..255 scale, drawn per image


@lru_cache(maxsize=1)
def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 8, 8) pixel counts 0..16 and (1797,) digits 0..9."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


def render_digit(pixels: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """An 8x8 scan upsampled to 20-28 px, shifted by up to 3 px, in random ink and paper colours
    (random brightness and contrast, light ink on darker paper), with heavy gaussian noise."""
    glyph_side = int(rng.integers(20, 29))
    glyph = Image.fromarray(np.uint8(pixels * (255 / 16))).resize((glyph_side, glyph_side), Image.BILINEAR)
    ink = np.zeros((SIDE, SIDE), np.float32)
    corner = (SIDE - glyph_side) // 2 + rng.integers(-3, 4, size=2)
    y, x = (int(np.clip(c, 0, SIDE - glyph_side)) for c in corner)
    ink[y : y + glyph_side, x : x + glyph_side] = np.asarray(glyph, np.float32) / 255  # (32, 32) in [0, 1]
    paper = rng.uniform(0, 110) * rng.uniform(0.6, 1.0, size=3)
    contrast = rng.uniform(90, 210) * rng.uniform(0.7, 1.0, size=3)
    rgb = paper + ink[..., None] * contrast  # (32, 32, 3)
    rgb = rgb + rng.normal(0, rng.uniform(*NOISE_STD), size=rgb.shape)
    return Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))


def split_pools(seed: int) -> dict[str, np.ndarray]:
    """The 1797 scans shuffled and cut 70/15/15 into train/val/test pools, so that no scan is seen in
    two splits (datasets with more rows than scans reuse scans only within a split)."""
    counts = split_counts(len(sklearn_digits()[1]))
    order = np.random.default_rng([seed, 7]).permutation(sum(counts.values()))
    ends = np.cumsum([counts[split] for split in SPLITS])
    return {split: order[end - counts[split] : end] for split, end in zip(SPLITS, ends, strict=True)}
