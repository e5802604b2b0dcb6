"""Tests for the generated ``builtin:shapes`` dataset."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

from mumo.data import shapes
from mumo.data.shapes import (
    BACKGROUNDS,
    COLORS,
    COLS,
    PITCHES,
    ROWS,
    SHAPES,
    SIZES,
    ShapeItem,
    caption_for,
    label_for,
    make_shapes,
    render_audio,
    render_image,
    sample_items,
)

N = 400
# Generic reference colours: the rendered colour must be closest to the named one.
REFERENCE_RGB = {
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "purple": (128, 0, 128),
    "orange": (255, 165, 0),
}
SOUND_WORDS = r"\b(sound|audio|pitch|tone|hear|heard|noise|beep|low|high|steady|pulsed?|rhythm|hz)\b"
SIZE_WORDS = r"\b(small|little|tiny|medium|medium-sized|mid-sized|large|big|huge)\b"
POSITION_WORDS = r"\b(top|upper|bottom|lower|left|right|center|centered|middle)\b"
BACKGROUND_WORDS = r"\b(background|backdrop)\b"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    out = tmp_path_factory.mktemp("shapes")
    return out, make_shapes(out, n=N, seed=7)


@pytest.fixture(scope="module")
def frames(dataset: tuple[Path, dict[str, Path]]) -> dict[str, pd.DataFrame]:
    _, paths = dataset
    return {name: pd.read_csv(path) for name, path in paths.items()}


def _pixels(root: Path, rel: str) -> np.ndarray:
    return np.asarray(Image.open(root / rel).convert("RGB"), dtype=np.float64)


def _foreground(pixels: np.ndarray) -> np.ndarray:
    """Mask of pixels that differ clearly from the background (estimated on the image border)."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return np.abs(pixels - np.median(border, axis=0)).max(axis=2) > 40


def _crop(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _dominant_hz(audio: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * sample_rate / len(audio))


def _shape_templates() -> dict[tuple[str, str], np.ndarray]:
    templates = {}
    for shape in SHAPES:
        for size in SIZES:
            item = ShapeItem(shape, "red", size, "middle", "center", "dark", "low", "steady", 1.0)
            templates[shape, size] = _crop(
                _foreground(np.asarray(render_image(item, np.random.default_rng(0))))
            )
    return templates


def _classify_mask(mask: np.ndarray, templates: dict[tuple[str, str], np.ndarray]) -> tuple[str, str]:
    crop = _crop(mask)
    scores = {
        key: np.mean(crop != tpl) if tpl.shape == crop.shape else 1.0 + abs(tpl.sum() - crop.sum())
        for key, tpl in templates.items()
    }
    return min(scores, key=scores.__getitem__)


def test_public_api() -> None:
    assert set(shapes.__all__) >= {"SHAPES", "ShapeItem", "sample_items", "make_shapes", "label_for"}
    assert len(ROWS) == len(COLS) == 3 and len(BACKGROUNDS) == len(PITCHES) == 2
    item = ShapeItem("cross", "red", "small", "top", "left", "dark", "high", "pulsed", 1.0)
    assert label_for(item) == "cross-high"


def test_sample_items_deterministic_and_uniform() -> None:
    items = sample_items(3000, seed=3)
    assert items == sample_items(3000, seed=3)
    assert items != sample_items(3000, seed=4)
    assert sample_items(50, seed=3) == items[:50]  # the first rows do not depend on n
    for field, values in [("shape", SHAPES), ("color", COLORS), ("size", SIZES), ("pitch", PITCHES)]:
        counts = Counter(getattr(it, field) for it in items)
        assert set(counts) == set(values)
        assert min(counts.values()) > 0.75 * len(items) / len(values)
    for size, mean in zip(SIZES, (1.0, 2.0, 3.0), strict=True):
        weights = np.array([it.weight for it in items if it.size == size])
        assert abs(weights.mean() - mean) < 0.06 and 0.3 < weights.std() < 0.5
        assert np.allclose(weights, np.round(weights, 3))


def test_manifests_columns_and_splits(dataset: tuple[Path, dict[str, Path]], frames: dict) -> None:
    root, paths = dataset
    assert set(paths) == {"train", "val", "test", "attributes"}
    assert [len(frames[s]) for s in ("train", "val", "test")] == [320, 40, 40]
    for split in ("train", "val", "test"):
        frame = frames[split]
        assert list(frame.columns) == ["image", "sound", "caption", "weight", "label"]
        assert frame["image"].str.fullmatch(r"images/\d{5}\.png").all()
        assert frame["sound"].str.fullmatch(r"audio/\d{5}\.wav").all()
        assert all((root / rel).is_file() for rel in frame["image"]) and all(
            (root / rel).is_file() for rel in frame["sound"]
        )
    attrs = frames["attributes"]
    assert list(attrs.columns) == [
        "id",
        "split",
        "shape",
        "color",
        "size",
        "row",
        "col",
        "background",
        "pitch",
        "rhythm",
    ]
    assert attrs["id"].tolist() == list(range(N))
    assert attrs["split"].tolist() == ["train"] * 320 + ["val"] * 40 + ["test"] * 40
    everything = pd.concat([frames[s] for s in ("train", "val", "test")], ignore_index=True)
    assert everything["image"].tolist() == [f"images/{i:05d}.png" for i in range(N)]
    assert (everything["label"] == attrs["shape"] + "-" + attrs["pitch"]).all()
    assert not [p.name for p in root.iterdir() if p.name.endswith(".tmp")]


def test_labels_use_all_eight_classes(frames: dict) -> None:
    expected = {f"{shape}-{pitch}" for shape in SHAPES for pitch in PITCHES}
    assert set(frames["train"]["label"]) == expected
    assert min(Counter(frames["train"]["label"]).values()) >= 15


def test_make_shapes_is_deterministic(tmp_path: Path) -> None:
    a = make_shapes(tmp_path / "a", n=30, seed=1, fractions=(0.6, 0.2, 0.2))
    b = make_shapes(tmp_path / "b", n=30, seed=1, fractions=(0.6, 0.2, 0.2))
    c = make_shapes(tmp_path / "c", n=30, seed=2, fractions=(0.6, 0.2, 0.2))
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes()
    assert a["train"].read_bytes() != c["train"].read_bytes()
    for rel in ["images/00000.png", "images/00029.png", "audio/00000.wav", "audio/00017.wav"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
        assert (tmp_path / "a" / rel).read_bytes() != (tmp_path / "c" / rel).read_bytes()


def test_bad_fractions_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make_shapes(tmp_path, n=10, fractions=(0.5, 0.1, 0.1))


def test_render_contracts() -> None:
    item = sample_items(1, seed=0)[0]
    image = render_image(item, np.random.default_rng(0), image_size=48)
    assert image.mode == "RGB" and image.size == (48, 48)
    audio = render_audio(item, np.random.default_rng(0), sample_rate=16000, seconds=0.25)
    assert audio.dtype == np.float32 and audio.shape == (4000,)
    assert np.abs(audio).max() <= 1.0 and abs(audio[0]) < 0.05
    again = render_audio(item, np.random.default_rng(0), sample_rate=16000, seconds=0.25)
    assert np.array_equal(audio, again)


def test_audio_pitch_and_rhythm_recoverable(dataset: tuple[Path, dict[str, Path]], frames: dict) -> None:
    root, _ = dataset
    attrs = frames["attributes"]
    for i in range(50):
        audio, sample_rate = sf.read(root / f"audio/{i:05d}.wav", dtype="float32")
        assert sample_rate == 8000 and audio.shape == (4000,)
        hz = _dominant_hz(audio, sample_rate)
        assert (hz < 600) if attrs["pitch"][i] == "low" else (hz > 1000), (i, hz)
        frame_rms = np.sqrt((audio[80:-80].reshape(-1, 80) ** 2).mean(axis=1))
        ratio = np.percentile(frame_rms, 10) / np.percentile(frame_rms, 90)
        assert (ratio > 0.65) if attrs["rhythm"][i] == "steady" else (ratio < 0.6), (i, ratio)


def test_colour_recoverable(dataset: tuple[Path, dict[str, Path]], frames: dict) -> None:
    root, _ = dataset
    attrs = frames["attributes"]
    names = list(REFERENCE_RGB)
    refs = np.array([REFERENCE_RGB[name] for name in names], dtype=np.float64)
    for i in range(80):
        pixels = _pixels(root, f"images/{i:05d}.png")
        mean = pixels[_foreground(pixels)].mean(axis=0)
        assert names[int(np.argmin(((refs - mean) ** 2).sum(axis=1)))] == attrs["color"][i], i
        background = pixels[~_foreground(pixels)].mean()
        assert (background < 80) if attrs["background"][i] == "dark" else (background > 170)


def test_shape_size_and_position_recoverable(dataset: tuple[Path, dict[str, Path]], frames: dict) -> None:
    root, _ = dataset
    attrs = frames["attributes"]
    templates = _shape_templates()
    for i in range(120):
        mask = _foreground(_pixels(root, f"images/{i:05d}.png"))
        assert _classify_mask(mask, templates) == (attrs["shape"][i], attrs["size"][i]), i
        ys, xs = np.nonzero(mask)
        assert ROWS[int(ys.mean() // (32 / 3))] == attrs["row"][i]
        assert COLS[int(xs.mean() // (32 / 3))] == attrs["col"][i]


def test_captions_describe_the_image_only() -> None:
    items = sample_items(300, seed=5)
    captions = [caption_for(item, np.random.default_rng(k)) for k, item in enumerate(items)]
    assert captions == [caption_for(item, np.random.default_rng(k)) for k, item in enumerate(items)]
    for item, caption in zip(items, captions, strict=True):
        lowered = caption.lower()
        assert re.search(rf"\b{item.color} {item.shape}\b", lowered), caption
        assert not re.search(SOUND_WORDS, lowered), caption
    for pattern in (SIZE_WORDS, POSITION_WORDS, BACKGROUND_WORDS):
        share = np.mean([bool(re.search(pattern, c.lower())) for c in captions])
        assert 0.65 < share < 0.97, (pattern, share)
    assert len({" ".join(c.lower().split()[:2]) for c in captions}) >= 6  # varied openings
    assert len(set(captions)) > 250


def _majority_accuracy(attrs: pd.DataFrame, keys: list[str]) -> float:
    """In-sample accuracy of the best predictor of the label that only sees ``keys``."""
    labels = attrs["shape"] + "-" + attrs["pitch"]
    return float(
        labels.groupby([attrs[k] for k in keys]).agg(lambda s: s.value_counts().iloc[0]).sum() / len(attrs)
    )


def test_target_needs_more_than_one_modality() -> None:
    attrs = pd.DataFrame([vars(item) for item in sample_items(3000, seed=11)])
    for keys in (["shape"], ["shape", "color"], ["shape", "size", "background"], ["pitch", "rhythm"]):
        assert _majority_accuracy(attrs, keys) < 0.6, keys
    assert _majority_accuracy(attrs, ["shape", "pitch"]) == 1.0


def test_fusing_image_and_audio_beats_each_alone(dataset: tuple[Path, dict[str, Path]], frames: dict) -> None:
    root, _ = dataset
    train, test = frames["train"], frames["test"]
    # Image alone: nearest-centroid on raw pixels.
    x_train = np.stack([_pixels(root, rel).ravel() for rel in train["image"]])
    x_test = np.stack([_pixels(root, rel).ravel() for rel in test["image"]])
    classes = sorted(set(train["label"]))
    centroids = np.stack([x_train[(train["label"] == c).to_numpy()].mean(axis=0) for c in classes])
    nearest = ((x_test[:, None, :] - centroids[None]) ** 2).sum(axis=2).argmin(axis=1)
    image_accuracy = np.mean(np.array(classes)[nearest] == test["label"].to_numpy())
    assert image_accuracy <= 0.6
    # Image shape (template match) + audio pitch (dominant frequency) recover every label.
    templates = _shape_templates()
    fused = []
    for image_rel, sound_rel in zip(test["image"], test["sound"], strict=True):
        shape, _ = _classify_mask(_foreground(_pixels(root, image_rel)), templates)
        audio, sample_rate = sf.read(root / sound_rel, dtype="float32")
        fused.append(f"{shape}-{'low' if _dominant_hz(audio, sample_rate) < 800 else 'high'}")
    assert fused == test["label"].tolist()


def test_queries_are_worded_apart_from_every_caption() -> None:
    items = shapes.sample_items(400, 0)
    captions = {
        shapes.caption_for(item, np.random.default_rng([0, i, seed])).lower().rstrip(".")
        for i, item in enumerate(items)
        for seed in range(5)
    }
    queries = [shapes.query_for(item, np.random.default_rng([0, i, 9])) for i, item in enumerate(items)]
    assert not captions & {q.lower() for q in queries}
    for item, query in zip(items, queries, strict=True):
        assert item.color in query  # every attribute is said, some in other words
        assert any(word in query for word in shapes._Q_SHAPE[item.shape])
        assert any(word in query for word in shapes._Q_SIZE[item.size])
        assert any(word in query for word in shapes._Q_BG[item.background])
    assert queries == [
        shapes.query_for(item, np.random.default_rng([0, i, 9])) for i, item in enumerate(items)
    ]
    # Interaction labels: shape XOR pitch, balanced.
    labels = Counter(shapes.interaction_label_for(item) for item in items)
    assert set(labels) == {"same", "different"} and min(labels.values()) > 150
