"""The speed-ups measured by `mumo bench` change no result: batches taken from a split stacked once,
chunked predict, the fused optimizer, JPEG draft decoding, rows to a frame without a second pass,
numeric columns loaded inline; and the bench's Markdown table lands between its markers."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import mumo
from mumo.bench import END, START, write_markdown
from mumo.bench.common import logged, row
from mumo.config import TrainConfig
from mumo.data.dataset import Collate, make_batch
from mumo.data.table import frame_from_rows, read_table
from mumo.modalities.image import decode_image
from mumo.training import build_optimizer


@pytest.fixture(scope="module")
def shapes_run(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> mumo.Predictor:
    """A tiny shapes model with one more input: a categorical column with absent cells."""
    folder = tmp_path_factory.mktemp("fast")
    shutil.copytree(shapes_dir, folder / "shapes")
    train = pd.read_csv(folder / "shapes" / "train.csv")
    weight = train["weight"].astype(float)
    train["size_class"] = np.where(weight > weight.median(), "big", "small")
    train.loc[::7, "size_class"] = None
    train.to_csv(folder / "shapes" / "train.csv", index=False)
    config = {
        "data": {
            "train": str(folder / "shapes" / "train.csv"),
            "val": str(folder / "shapes" / "val.csv"),
            "target": "label",
        },
        "model": {"dim": 16},
        "train": {"epochs": 2, "batch_size": 32, "progress": False},
    }
    run = mumo.train(config, out=folder / "run", quiet=True)
    assert run.model is not None
    return run.model


def test_collate_of_fixed_rows_equals_stacking_each_batch(shapes_run: mumo.Predictor) -> None:
    model = shapes_run
    split = model.prepare(read_table(model.config.data.train), with_target=True)
    assert any(p.fixed_rows for p in model.processors.values())  # weight, size_class
    collate = Collate(split, model.processors, model.target, train=False)
    indices = [5, 0, 17, 3, 99, 42, 7]
    fast = collate(indices)
    items = {c: [values[i] for i in indices] for c, values in split.items.items()}
    slow = make_batch(items, model.processors, [split.targets[i] for i in indices], model.target, train=False)
    assert fast.target is not None and slow.target is not None
    assert torch.equal(fast.target, slow.target)
    assert fast.presence.keys() == slow.presence.keys()
    for column in slow.inputs:
        assert torch.equal(fast.presence[column], slow.presence[column]), column
        for key, tensor in slow.inputs[column].items():
            assert torch.equal(fast.inputs[column][key], tensor), (column, key)


def test_predict_in_chunks_matches_one_pass_and_skips_across_chunks(
    shapes_run: mumo.Predictor, shapes_dir: Path
) -> None:
    model = shapes_run
    test = pd.read_csv(shapes_dir / "test.csv").drop(columns=["label"])
    rows = pd.concat([test] * 30, ignore_index=True)  # 600 rows: three chunks of 256
    timing: dict[str, float] = {}
    predicted = model.predict(rows, base_dir=shapes_dir, timing=timing)
    whole = model.outputs(model.prepare(model.table(rows, shapes_dir)))
    assert len(predicted) == len(rows) == len(whole)
    classes = list(predicted[0]["probabilities"])
    for got, expected in zip(predicted, whole, strict=True):
        assert [got["probabilities"][c] for c in classes] == pytest.approx(expected.tolist(), abs=1e-6)
    assert set(timing) == {"preprocess", "forward", "postprocess"}
    assert all(seconds >= 0 for seconds in timing.values())

    rows.loc[300, "image"] = "missing.png"  # in the second chunk
    skipped = model.predict(rows, base_dir=shapes_dir, on_error="skip")
    assert skipped[300] == {"prediction": None, "skipped": True}
    assert [r["prediction"] for i, r in enumerate(skipped) if i != 300] == [
        r["prediction"] for i, r in enumerate(predicted) if i != 300
    ]


def test_training_logs_the_share_spent_waiting_for_data(shapes_run: mumo.Predictor) -> None:
    assert shapes_run.path is not None
    shares = logged(shapes_run.path, "train/data_wait_share")
    assert len(shares) == 2 and all(0.0 < share < 1.0 for share in shares)


def test_optimizer_is_fused_except_under_mixed_precision() -> None:
    network = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    optimizer = build_optimizer(network, TrainConfig(weight_decay=0.1))
    assert all(group["fused"] for group in optimizer.param_groups)
    decays = sorted(group["weight_decay"] for group in optimizer.param_groups)
    assert decays == [0.0, 0.1]  # biases and the norm are not decayed
    mixed = build_optimizer(network, TrainConfig(precision="bf16-mixed"))
    assert not any(group["fused"] for group in mixed.param_groups)


def test_jpeg_draft_decode_matches_a_full_decode(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    smooth = np.stack([np.sin(x / 37.0), np.cos(y / 23.0), np.sin((x + y) / 51.0)], -1) * 100 + 128
    pixels = (smooth + rng.normal(0, 4, smooth.shape)).clip(0, 255).astype(np.uint8)
    path = tmp_path / "photo.jpg"
    Image.fromarray(pixels).save(path, quality=95)
    fast = decode_image(path, 96).astype(np.float64)
    with Image.open(path) as image:  # every pixel decoded, then the centre square resized
        full = image.convert("RGB").resize((96, 96), Image.Resampling.BILINEAR, box=(80, 0, 560, 480))
    assert fast.shape == (96, 96, 3)
    assert np.abs(fast - np.asarray(full, dtype=np.float64)).mean() < 3.0


def test_rows_become_a_frame_of_plain_cells() -> None:
    frame = frame_from_rows([{"a": 1, "b": "  x "}, {"b": "", "c": np.float32(2.5)}, {"a": float("nan")}])
    assert list(frame.columns) == ["a", "b", "c"]
    assert frame["a"].tolist() == [1, None, None]
    assert frame["b"].tolist() == ["x", None, None]
    assert frame["c"].tolist() == [None, 2.5, None]
    assert type(frame["c"][1]) is float


def test_markdown_table_replaces_only_its_block(tmp_path: Path) -> None:
    results = {
        "machine": {"torch": "2.13.0", "torch_threads": 2},
        "quick": True,
        "train/small": row("training, small", "a plain loop", 95.0, 100.0, "samples/s", 0.95),
        "data/x": row("decoding", "Pillow", 50.0, 100.0, "images/s", 0.9, notes=["a note"]),
    }
    page = tmp_path / "BENCHMARKS.md"
    page.write_text(f"# Benchmarks\n\nintro\n\n{START}\nold table\n{END}\n\n## Notes\nkept\n")
    write_markdown(page, results)
    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nintro\n\n" + START)
    assert text.endswith(END + "\n\n## Notes\nkept\n")
    assert "old table" not in text
    assert (
        "| `train/small` training, small vs a plain loop | 95 samples/s | 100 samples/s | 0.95 | >= 0.95 | yes |"
        in text
    )
    assert "| 0.50 | >= 0.90 | **no** |" in text
    assert "- `data/x`: a note" in text
    fresh = tmp_path / "new.md"
    write_markdown(fresh, results)
    assert fresh.read_text().startswith(START) and fresh.read_text().endswith(END + "\n")


def test_audio_decodes_only_the_seconds_it_keeps(tmp_path: Path) -> None:
    import soundfile as sf

    from mumo.modalities.audio import read_audio

    rng = np.random.default_rng(0)
    stereo = rng.normal(0, 0.1, (22050 * 3, 2)).astype(np.float32)
    sf.write(tmp_path / "clip.wav", stereo, 22050)
    whole, rate = read_audio(tmp_path / "clip.wav")
    start, same_rate = read_audio(tmp_path / "clip.wav", max_seconds=1.5)
    assert rate == same_rate == 22050
    assert len(whole) == 3 * 22050 and len(start) == int(1.5 * 22050)
    np.testing.assert_allclose(start, whole[: len(start)], atol=1e-6)
    np.testing.assert_allclose(whole, stereo.mean(axis=1), atol=1e-4)  # 16-bit WAV: mono is the mean


def test_numeric_column_loads_like_cell_by_cell() -> None:
    from mumo.modalities.tabular import NumericProcessor

    cells = [1.5, -2, True, "3", " 4.5 ", "abc", "nan", "inf", "1e400", None, float("nan"), np.float64(2.0)]
    cells += [np.float32(0.5), [1], ""]
    processor = NumericProcessor("x")
    processor.fit(cells, Path("."))
    assert processor.load_many(cells, Path(".")) == [processor.load_cell(c, Path(".")) for c in cells]
    assert processor.load_many(["abc"], Path(".")) == [(None, "'abc' is not a number")]


@pytest.mark.parametrize("rate", [44100, 22050, 48000, 8000, 11025])
def test_polyphase_resampling_matches_the_spectral_method(rate: int) -> None:
    from mumo.modalities.audio import _resample_fft, resample

    t = torch.arange(rate * 2, dtype=torch.float64) / rate
    tone = torch.sin(2 * math.pi * 1000 * t).float()
    fast = resample(tone, rate, 16000)
    exact = _resample_fft(tone, round(len(tone) * 16000 / rate))  # cuts the spectrum: no aliasing at all
    assert fast.shape == exact.shape
    assert (fast[400:-400] - exact[400:-400]).abs().max() < 2e-3
    if rate > 16000:  # a tone above the new Nyquist frequency is filtered out, not folded back
        high = torch.sin(2 * math.pi * 12000 * t).float()
        assert resample(high, rate, 16000)[400:-400].abs().max() < 0.05


def test_awkward_rate_ratio_falls_back_to_the_spectral_method() -> None:
    from mumo.modalities.audio import _resample_fft, resample

    wave = torch.randn(44056)
    assert torch.equal(resample(wave, 44056, 16000), _resample_fft(wave, 16000))
