"""Data pipeline, one core: files/s of mumo's image and audio processors (decode, then resize and crop
or resample and log-mel, then stack into a normalized batch) against a bare decode of the same files
with Pillow / soundfile. The files are generated: photo-like 512x384 JPEGs, and tones in noise as
16 kHz (speech-like, 3 s) and 44.1 kHz (ESC-50-like, 5 s) mono WAV."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from PIL import Image

from mumo.bench.common import GOALS, fastest, row
from mumo.config import AudioOptions, ImageOptions
from mumo.modalities.audio import AudioProcessor, log_mel, read_audio, resample
from mumo.modalities.base import Processor
from mumo.modalities.image import ImageProcessor


def data_pipeline(folder: Path, count: int) -> dict[str, Any]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per core
    try:
        images = _jpegs(folder / "jpeg", count)
        results = {"data/image_jpeg": _image(images)}
        for name, rate, seconds in (("wav16k", 16000, 3.0), ("wav44k", 44100, 5.0)):
            clips = _clips(folder / name, count // 2, rate, seconds)
            results[f"data/audio_{name}"] = _audio(clips, rate, seconds)
    finally:
        torch.set_num_threads(threads)
    return results


def _through(processor: Processor, paths: list[Path]) -> Callable[[], Any]:
    """mumo's path for a set of files: load (decode + preprocess) each, stack batches of 64."""

    def run() -> None:
        items = [processor.load(str(path), path.parent) for path in paths]
        for start in range(0, len(items), 64):
            processor.collate(items[start : start + 64], train=False)

    return run


def _image(paths: list[Path]) -> dict[str, Any]:
    processor = ImageProcessor("image", ImageOptions())
    processor.fit([str(p) for p in paths], Path("."))
    items = [processor.load(str(p), Path(".")) for p in paths]
    processor.finish(items)

    def bare() -> None:
        for path in paths:
            with Image.open(path) as image:
                np.asarray(image.convert("RGB"))

    mumo_seconds, _ = fastest(_through(processor, paths))
    bare_seconds, _ = fastest(bare)
    return row(
        f"image files, 512x384 JPEG to {processor.size}x{processor.size}",
        "a bare Pillow decode",
        len(paths) / mumo_seconds,
        len(paths) / bare_seconds,
        "images/s",
        GOALS["data"],
    )


def _audio(paths: list[Path], rate: int, seconds: float) -> dict[str, Any]:
    processor = AudioProcessor("sound", AudioOptions())
    processor.fit([str(p) for p in paths], Path("."))
    processor.finish([processor.load(str(p), Path(".")) for p in paths])

    def bare() -> None:
        for path in paths:
            sf.read(str(path), dtype="float32")

    mumo_seconds, _ = fastest(_through(processor, paths))
    bare_seconds, _ = fastest(bare)
    # Where mumo's time goes, per clip: decode, resample, log-mel.
    waves = [read_audio(path) for path in paths]
    decode = _per_item_ms(lambda: [read_audio(path) for path in paths], len(paths))
    tensors = [torch.from_numpy(w) for w, _ in waves]
    resampling = _per_item_ms(lambda: [resample(t, rate, processor.sample_rate) for t in tensors], len(paths))
    resampled = [resample(t, rate, processor.sample_rate) for t in tensors]
    mel = _per_item_ms(
        lambda: [log_mel(t, processor.sample_rate, processor.options) for t in resampled], len(paths)
    )
    split = {"decode_ms": decode, "resample_ms": resampling, "log_mel_ms": mel}
    return row(
        f"audio files, {seconds:g} s {rate / 1000:g} kHz WAV to a {processor.sample_rate / 1000:g} kHz log-mel",
        "a bare soundfile decode",
        len(paths) / mumo_seconds,
        len(paths) / bare_seconds,
        "clips/s",
        GOALS["data"],
        per_clip=split,
        notes=[
            "per clip: "
            + ", ".join(f"{k.removesuffix('_ms').replace('_', '-')} {v:.2f} ms" for k, v in split.items())
        ],
    )


def _per_item_ms(fn: Callable[[], Any], count: int) -> float:
    seconds, _ = fastest(fn, repeats=2)
    return 1000 * seconds / count


def _jpegs(folder: Path, count: int) -> list[Path]:
    """Photo-like 512x384 JPEGs (smooth colour fields with sensor-like noise), quality 90."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:384, 0:512]
    paths = []
    for i in range(count):
        fx, fy = 10 + rng.uniform(0, 30, 3), 10 + rng.uniform(0, 30, 3)
        field = np.stack([np.sin(x / fx[c] + i) * np.cos(y / fy[c]) for c in range(3)], -1)
        pixels = (field * 90 + 128 + rng.normal(0, 12, field.shape)).clip(0, 255).astype(np.uint8)
        path = folder / f"{i}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def _clips(folder: Path, count: int, rate: int, seconds: float) -> list[Path]:
    """Mono WAV clips: a few tones with noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    t = np.arange(int(rate * seconds)) / rate
    paths = []
    for i in range(count):
        tones = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(100, 3000, 3))
        wave = (0.2 * tones + 0.05 * rng.normal(size=t.shape)).astype(np.float32)
        path = folder / f"{i}.wav"
        sf.write(path, wave, rate)
        paths.append(path)
    return paths


__all__ = ["data_pipeline"]
