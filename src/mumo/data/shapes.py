"""The built-in dataset ``builtin:shapes``: generated images, captions, audio and numbers.

Every row shows one coloured shape on a plain background, comes with a caption describing the
picture, a short tone whose pitch and rhythm vary, and a numeric ``weight`` that tracks the shape's
size. The target ``label`` is ``f"{shape}-{pitch}"``: the shape is only visible in the image (and
named in the caption) and the pitch is only audible in the sound, so any single modality tops out
near 50% accuracy while a model fusing image or caption with audio can reach ~100%.

Everything is generated from a seed, without downloads, and is bit-for-bit reproducible.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image, ImageDraw

from mumo.io import atomic_path

__all__ = [
    "BACKGROUNDS",
    "COLORS",
    "COLS",
    "PITCHES",
    "RHYTHMS",
    "ROWS",
    "SHAPES",
    "SIZES",
    "ShapeItem",
    "LABELS",
    "caption_for",
    "interaction_label_for",
    "label_for",
    "make_shapes",
    "query_for",
    "render_audio",
    "render_image",
    "sample_items",
]

SHAPES = ("circle", "square", "triangle", "cross")
COLORS = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES = ("small", "medium", "large")
ROWS = ("top", "middle", "bottom")
COLS = ("left", "center", "right")
BACKGROUNDS = ("dark", "light")
PITCHES = ("low", "high")
RHYTHMS = ("steady", "pulsed")

MANIFEST_COLUMNS = ("image", "sound", "caption", "weight", "label")
VARIANTS = {
    "label": MANIFEST_COLUMNS,
    "captions": ("image", "caption"),
    "qa": ("image", "question", "answer"),
    "speech": ("speech", "transcript"),
    "draw": ("caption", "image"),
}
ATTRIBUTE_COLUMNS = ("id", "split", "shape", "color", "size", "row", "col", "background", "pitch", "rhythm")

# Nominal RGB value of each colour (jittered per image).
COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 240, 35),
    "purple": (145, 55, 185),
    "orange": (245, 130, 25),
}
# Shape extent (bounding-box side) as a fraction of the image side.
_SIZE_FRACTION = {"small": 0.22, "medium": 0.31, "large": 0.40}
_WEIGHT_MEAN = {"small": 1.0, "medium": 2.0, "large": 3.0}
_GRAY_RANGE = {"dark": (30, 60), "light": (190, 230)}
_PITCH_RANGE_HZ = {"low": (250.0, 450.0), "high": (1100.0, 1800.0)}

# Stream numbers separating the per-row random generators of each modality.
_IMAGE_STREAM, _AUDIO_STREAM, _CAPTION_STREAM, _QUESTION_STREAM, _SPEECH_STREAM = 1, 2, 3, 4, 5
_SAMPLE_RATE = 8000


@dataclass(frozen=True)
class ShapeItem:
    """The latent attributes of one row of the dataset."""

    shape: str
    color: str
    size: str
    row: str
    col: str
    background: str
    pitch: str
    rhythm: str
    weight: float


_CHOICES = (SHAPES, COLORS, SIZES, ROWS, COLS, BACKGROUNDS, PITCHES, RHYTHMS)


def sample_items(n: int, seed: int) -> list[ShapeItem]:
    """Draw ``n`` items with independent, uniform attributes (the first k items do not depend on n)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    counts = np.array([len(c) for c in _CHOICES])
    items = []
    for _ in range(n):
        codes = rng.integers(0, counts)
        shape, color, size, row, col, background, pitch, rhythm = (
            choices[code] for choices, code in zip(_CHOICES, codes, strict=True)
        )
        weight = round(float(_WEIGHT_MEAN[size] + rng.normal(0.0, 0.4)), 3)
        items.append(ShapeItem(shape, color, size, row, col, background, pitch, rhythm, weight))
    return items


def render_image(item: ShapeItem, rng: np.random.Generator, image_size: int = 32) -> Image.Image:
    """Draw the item's shape on its background as an ``image_size`` x ``image_size`` RGB image."""
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    lo, hi = _GRAY_RANGE[item.background]
    gray = int(rng.integers(lo, hi + 1))
    fill = tuple(int(np.clip(v + rng.integers(-12, 13), 0, 255)) for v in COLOR_RGB[item.color])

    extent = max(5, round(_SIZE_FRACTION[item.size] * image_size))
    cell = image_size / 3
    centre = np.array([(COLS.index(item.col) + 0.5) * cell, (ROWS.index(item.row) + 0.5) * cell])
    centre = centre + rng.integers(-2, 3, size=2)
    # Integer top-left corner, clamped so the whole shape stays inside the image with a 1 px margin.
    x0, y0 = (int(np.clip(round(c - extent / 2), 1, image_size - 1 - extent)) for c in centre)
    x1, y1 = x0 + extent - 1, y0 + extent - 1

    img = Image.new("RGB", (image_size, image_size), (gray, gray, gray))
    draw = ImageDraw.Draw(img)
    if item.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif item.shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    elif item.shape == "triangle":
        draw.polygon([(x0 + (extent - 1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    elif item.shape == "cross":
        thick = max(2, round(extent * 0.34))
        if (extent - thick) % 2:
            thick += 1
        off = (extent - thick) // 2
        draw.rectangle((x0, y0 + off, x1, y0 + off + thick - 1), fill=fill)
        draw.rectangle((x0 + off, y0, x0 + off + thick - 1, y1), fill=fill)
    else:
        raise ValueError(f"unknown shape {item.shape!r}")

    pixels = np.asarray(img, dtype=np.float32) + rng.normal(0.0, 5.0, size=(image_size, image_size, 3))
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def render_audio(
    item: ShapeItem, rng: np.random.Generator, sample_rate: int = 8000, seconds: float = 0.5
) -> np.ndarray:
    """Synthesize the item's tone: pitch sets the frequency, rhythm the envelope. Float32 mono in [-1, 1]."""
    n = int(round(sample_rate * seconds))
    if n <= 0:
        raise ValueError("sample_rate * seconds must give at least one sample")
    t = np.arange(n) / sample_rate
    lo, hi = _PITCH_RANGE_HZ[item.pitch]
    f0 = rng.uniform(lo, hi)
    phase, phase2 = rng.uniform(0.0, 2 * np.pi, size=2)
    tone = np.sin(2 * np.pi * f0 * t + phase)
    if 2 * f0 < sample_rate / 2:  # weaker 2nd harmonic, only when it would not alias
        tone += 0.3 * np.sin(2 * np.pi * 2 * f0 * t + phase2)
    tone /= np.max(np.abs(tone)) or 1.0

    if item.rhythm == "pulsed":
        rate = rng.uniform(6.0, 10.0)
        envelope = (np.sin(2 * np.pi * rate * t + rng.uniform(0.0, 2 * np.pi)) > 0).astype(np.float64)
        edge = max(1, int(0.004 * sample_rate))  # soften the on/off edges (4 ms)
        envelope = np.convolve(envelope, np.ones(edge) / edge, mode="same")
    elif item.rhythm == "steady":
        envelope = np.ones(n)
    else:
        raise ValueError(f"unknown rhythm {item.rhythm!r}")

    amplitude = rng.uniform(0.3, 0.8)
    noise_std = rng.uniform(0.05, 0.1)
    signal = amplitude * envelope * tone + rng.normal(0.0, noise_std, size=n)
    fade = min(n // 2, int(0.01 * sample_rate))  # 10 ms fade in/out
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
        signal[:fade] *= ramp
        signal[n - fade :] *= ramp[::-1]
    return np.clip(signal, -1.0, 1.0).astype(np.float32)


_SIZE_WORDS = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium", "medium-sized", "mid-sized"),
    "large": ("large", "big", "huge"),
}
_ROW_WORDS = {"top": ("top", "upper"), "middle": ("middle",), "bottom": ("bottom", "lower")}
_COL_WORDS = {"left": ("left",), "center": ("center",), "right": ("right",)}
_BG_WORDS = {"dark": ("dark", "black", "dim"), "light": ("light", "white", "bright")}
_BG_TEMPLATES = (
    " on a {bg} background",
    " against a {bg} backdrop",
    ", {bg} background",
    " with a {bg} background",
)
_TEMPLATES = (
    "{a} {desc}{pos}{bg}",
    "there is {a} {desc}{pos}{bg}",
    "picture of {a} {desc}{pos}{bg}",
    "an image showing {a} {desc}{pos}{bg}",
    "you can see {a} {desc}{pos}{bg}",
    "this photo contains {a} {desc}{pos}{bg}",
    "{desc}{pos}{bg}",
)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _position_phrase(item: ShapeItem, rng: np.random.Generator) -> str:
    if item.row == "middle" and item.col == "center":
        return _pick(rng, (" in the center", " in the middle", ", centered", " in the middle of the picture"))
    row, col = _pick(rng, _ROW_WORDS[item.row]), _pick(rng, _COL_WORDS[item.col])
    if item.row == "middle":
        return _pick(
            rng, (f" on the {col}", f" at the {col} side", f", middle {col}", f" in the middle {col}")
        )
    if item.col == "center":
        return _pick(
            rng, (f" at the {row}", f" at the {row} center", f", {row} middle", f" near the {row} edge")
        )
    return _pick(
        rng, (f" in the {row} {col} corner", f" at the {row} {col}", f", {row} {col}", f" {row} {col}")
    )


def caption_for(item: ShapeItem, rng: np.random.Generator) -> str:
    """An English description of the image (shape and colour always; size, position, background usually)."""
    words = [item.color, item.shape]
    if rng.random() < 0.85:
        words.insert(0, _pick(rng, _SIZE_WORDS[item.size]))
    desc = " ".join(words)
    pos = _position_phrase(item, rng) if rng.random() < 0.85 else ""
    bg = ""
    if rng.random() < 0.8:
        bg = _pick(rng, _BG_TEMPLATES).format(bg=_pick(rng, _BG_WORDS[item.background]))
    article = "an" if desc[0] in "aeiou" else "a"
    caption = _pick(rng, _TEMPLATES).format(a=article, desc=desc, pos=pos, bg=bg)
    if rng.random() < 0.5:
        caption = caption[0].upper() + caption[1:] + "."
    return caption


# Search queries worded apart from the captions above: other sentence shapes, other words for the shape,
# size, position and background (colour names are kept: they have no everyday synonyms), and always
# every attribute. For testing retrieval with text the model never saw in training.
_Q_SHAPE = {
    "circle": ("circle", "round disc"),
    "square": ("square", "box"),
    "triangle": ("triangle", "triangular shape"),
    "cross": ("cross", "plus sign"),
}
_Q_SIZE = {"small": ("smallish", "little"), "medium": ("average-sized", "medium"), "large": ("large", "huge")}
_Q_ROW = {"top": "upper", "middle": "central", "bottom": "lower"}
_Q_COL = {"left": "left", "center": "middle", "right": "right"}
_Q_BG = {"dark": ("dark", "black"), "light": ("light", "white")}
_Q_TEMPLATES = (
    "looking for a {size} {color} {shape}, {pos}, on a {bg} backdrop",
    "{color} {shape} ({size}) placed in the {pos} area over {bg}",
    "find the {size} {color} {shape} located {pos}, {bg} behind it",
)


def query_for(item: ShapeItem, rng: np.random.Generator) -> str:
    """A search query for the item's image, worded apart from :func:`caption_for` (every attribute)."""
    centre = item.row == "middle" and item.col == "center"
    return _pick(rng, _Q_TEMPLATES).format(
        size=_pick(rng, _Q_SIZE[item.size]),
        color=item.color,
        shape=_pick(rng, _Q_SHAPE[item.shape]),
        pos="dead center" if centre else f"{_Q_ROW[item.row]} {_Q_COL[item.col]}",
        bg=_pick(rng, _Q_BG[item.background]),
    )


def label_for(item: ShapeItem) -> str:
    """The target: shape (seen) and pitch (heard), e.g. ``"circle-high"``."""
    return f"{item.shape}-{item.pitch}"


def interaction_label_for(item: ShapeItem) -> str:
    """An XOR of a seen and a heard attribute: ``"same"`` when a round-ish shape (circle, cross) sounds low
    or an angular one (square, triangle) sounds high, else ``"different"``.

    Shape and pitch are independent and uniform, so each alone predicts the label at chance (50%).
    """
    round_shape = item.shape in ("circle", "cross")
    return "same" if round_shape == (item.pitch == "low") else "different"


LABELS = {"shape-pitch": label_for, "interaction": interaction_label_for}


def _item_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """Independent generator for one modality of one row, stable whatever n or the other modalities."""
    return np.random.default_rng([seed, index, stream])


def _split_sizes(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    n_train = int(round(fractions[0] * n))
    n_val = min(n - n_train, int(round(fractions[1] * n)))
    return n_train, n_val, n - n_train - n_val


def _write_wav(path: Path, audio: np.ndarray) -> None:
    # Encoding in memory is several times faster than letting libsndfile write the file itself.
    buffer = io.BytesIO()
    sf.write(buffer, audio, _SAMPLE_RATE, subtype="PCM_16", format="WAV")
    path.write_bytes(buffer.getvalue())


def _write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")


def make_shapes(
    out_dir: str | Path,
    n: int = 3000,
    seed: int = 0,
    image_size: int = 32,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    label: str = "shape-pitch",
    variant: str = "label",
) -> dict[str, Path]:
    """Generate the dataset under ``out_dir``: PNGs, WAVs, split manifests and ``attributes.csv``.

    ``label`` picks the target: ``shape-pitch`` (:func:`label_for`) or ``interaction``
    (:func:`interaction_label_for`). ``variant`` picks the manifests' columns: ``label`` (image, sound,
    caption, weight, label), ``captions`` (image, caption: to generate captions) or ``qa`` (image,
    question, answer: :func:`question_for`), ``draw`` (caption, image: train and val without the
    HELD_OUT_COMBOS) or ``speech`` (speech, transcript: :func:`transcript_for`
    spoken by espeak-ng, see :func:`spoken`); captions and qa write no audio, speech no images. Returns the paths of the
    ``train``, ``val``, ``test`` manifests and of ``attributes``.
    """
    if label not in LABELS:
        raise ValueError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    labeller = LABELS[label]
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    from mumo.data.shapes_tasks import HELD_OUT_COMBOS, question_for, spoken, transcript_for

    speaker = None
    if variant == "speech":
        from mumo.data.speech import Speaker
        from mumo.data.speech import write_wav as write_speech

        speaker = Speaker()
    (out / "audio").mkdir(parents=True, exist_ok=True)
    split_sizes = _split_sizes(n, fractions)
    split_names = [
        name for name, k in zip(("train", "val", "test"), split_sizes, strict=True) for _ in range(k)
    ]
    width = max(5, len(str(max(n - 1, 0))))

    rows: list[tuple[Any, ...]] = []
    attrs = []
    for i, item in enumerate(sample_items(n, seed)):
        image_rel, sound_rel = f"images/{i:0{width}d}.png", f"audio/{i:0{width}d}.wav"
        if variant == "speech":
            rng = _item_rng(seed, i, _SPEECH_STREAM)
            transcript = transcript_for(item, rng)
            held_out = split_names[i] == "test" and rng.random() < 0.5
            wave, voice = spoken(transcript, rng, speaker, held_out)
            write_speech(str(out / sound_rel), wave)
            rows.append((sound_rel, transcript))
            attributes = {c: getattr(item, c) for c in ATTRIBUTE_COLUMNS[2:]}
            attrs.append({"id": i, "split": split_names[i], **attributes, "voice": voice})
            continue
        render_image(item, _item_rng(seed, i, _IMAGE_STREAM), image_size).save(out / image_rel)
        caption = caption_for(item, _item_rng(seed, i, _CAPTION_STREAM))
        if variant == "label":
            _write_wav(out / sound_rel, render_audio(item, _item_rng(seed, i, _AUDIO_STREAM), _SAMPLE_RATE))
            rows.append((image_rel, sound_rel, caption, item.weight, labeller(item)))
        elif variant == "captions":
            rows.append((image_rel, caption))
        elif variant == "draw":
            rows.append((caption, image_rel))
        else:
            rows.append((image_rel, *question_for(item, _item_rng(seed, i, _QUESTION_STREAM))))
        attrs.append(
            {"id": i, "split": split_names[i], **{c: getattr(item, c) for c in ATTRIBUTE_COLUMNS[2:]}}
        )

    manifest = pd.DataFrame(rows, columns=list(VARIANTS[variant]))
    kept = pd.Series(True, index=manifest.index)
    if variant == "draw":
        held = pd.Series([(a["color"], a["shape"]) in HELD_OUT_COMBOS for a in attrs], index=manifest.index)
        kept = ~held | (pd.Series(split_names, index=manifest.index) == "test")
    attributes = pd.DataFrame(
        attrs, columns=[*ATTRIBUTE_COLUMNS, *(["voice"] if variant == "speech" else [])]
    )
    paths: dict[str, Path] = {}
    start = 0
    for name, size in zip(("train", "val", "test"), split_sizes, strict=True):
        paths[name] = out / f"{name}.csv"
        part = manifest.iloc[start : start + size]
        _write_csv_atomic(part[kept.iloc[start : start + size]], paths[name])
        start += size
    paths["attributes"] = out / "attributes.csv"
    _write_csv_atomic(attributes, paths["attributes"])
    return paths
