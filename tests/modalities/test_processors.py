"""Processors: fit on train cells, load (validate + decode) one cell, collate a batch, save/restore."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from mumo.cells import CellError
from mumo.config import AudioOptions, ImageOptions, TextOptions
from mumo.modalities.audio import (
    AudioProcessor,
    hz_to_mel,
    log_mel,
    mel_filterbank,
    read_audio,
    resample,
)
from mumo.modalities.image import ImageProcessor, augment_images
from mumo.modalities.tabular import UNKNOWN, CategoricalProcessor, NumericProcessor
from mumo.modalities.text import TextProcessor


# ---------------------------------------------------------------------------------------- numeric
def test_numeric_fits_mean_and_std_on_train_only(tmp_path: Path) -> None:
    processor = NumericProcessor("price")
    processor.fit(["1", "2", "3", "4", "oops"], tmp_path)  # bad cells are ignored by fit
    assert processor.mean == pytest.approx(2.5)
    assert processor.std == pytest.approx(math.sqrt(1.25))
    assert processor.load("4", tmp_path) == pytest.approx(1.5 / math.sqrt(1.25))
    assert processor.load(100, tmp_path) == pytest.approx(97.5 / math.sqrt(1.25))
    assert processor.mean == pytest.approx(2.5)  # loading never refits


def test_numeric_constant_column_has_unit_std(tmp_path: Path) -> None:
    processor = NumericProcessor("x")
    processor.fit(["7", "7"], tmp_path)
    assert (processor.mean, processor.std) == (7.0, 1.0)
    assert processor.load("8", tmp_path) == 1.0


def test_numeric_bad_cell(tmp_path: Path) -> None:
    processor = NumericProcessor("price")
    processor.fit(["1", "2"], tmp_path)
    with pytest.raises(CellError) as info:
        processor.load("abc", tmp_path)
    assert str(info.value) == "'abc' is not a number"


def test_numeric_collate_and_state_round_trip(tmp_path: Path) -> None:
    processor = NumericProcessor("price")
    processor.fit([10, 20, 30], tmp_path)
    folder = tmp_path / "preprocess" / "price"
    processor.save(folder)
    saved = json.loads((folder / "processor.json").read_text())
    assert saved["kind"] == "numeric"
    restored = NumericProcessor("price")
    restored.restore(folder)
    assert (restored.mean, restored.std) == (processor.mean, processor.std)
    assert restored.load("25", tmp_path) == processor.load("25", tmp_path)
    batch = restored.collate([restored.load("30", tmp_path), None], train=False)
    assert batch["value"].shape == (2, 1)
    assert batch["value"].dtype == torch.float32
    assert batch["value"][0, 0].item() == pytest.approx(10 / math.sqrt(200 / 3))


# ------------------------------------------------------------------------------------ categorical
def test_categorical_unseen_is_index_zero(tmp_path: Path) -> None:
    processor = CategoricalProcessor("brand")
    processor.fit(["b", "a", "b", None], tmp_path)
    assert processor.categories == [UNKNOWN, "a", "b"]
    assert processor.load("a", tmp_path) == 1
    assert processor.load("b", tmp_path) == 2
    assert processor.load("zzz", tmp_path) == 0
    assert processor.collate([1, None, 2], train=True)["index"].tolist() == [1, 0, 2]


def test_categorical_three_and_three_point_zero_are_one_category(tmp_path: Path) -> None:
    processor = CategoricalProcessor("n")
    processor.fit([3, 3.0, 4.5, "x"], tmp_path)
    assert len(processor.categories) == 4  # unknown, 3, 4.5, x
    assert processor.load(3, tmp_path) == processor.load(3.0, tmp_path) == processor.load("3", tmp_path)
    assert processor.load(3, tmp_path) != 0
    assert processor.load(4.5, tmp_path) != processor.load(3, tmp_path)


def test_categorical_state_round_trip(tmp_path: Path) -> None:
    processor = CategoricalProcessor("brand")
    processor.fit(["x", "y"], tmp_path)
    processor.save(tmp_path / "p")
    restored = CategoricalProcessor("brand")
    restored.restore(tmp_path / "p")
    assert restored.categories == processor.categories
    assert restored.load("y", tmp_path) == 2


# ------------------------------------------------------------------------------------------- text
SENTENCES = [
    "a red circle on a white background",
    "two blue squares in the top left corner",
    "a large green triangle",
    "the small yellow star is in the middle",
]


def test_text_save_restore_gives_identical_ids(tmp_path: Path) -> None:
    processor = TextProcessor("caption", TextOptions(max_length=16))
    processor.fit(SENTENCES, tmp_path)
    assert processor.vocab_size > 2
    folder = tmp_path / "preprocess" / "caption"
    processor.save(folder)
    assert (folder / "tokenizer.json").is_file()
    assert (folder / "processor.json").is_file()
    restored = TextProcessor("caption")
    restored.restore(folder)
    assert restored.options.max_length == 16
    for text in [*SENTENCES, "an unseen purple hexagon", "RED Circle"]:
        assert restored.load(text, tmp_path) == processor.load(text, tmp_path)
    assert processor.load("RED Circle", tmp_path) == processor.load("red circle", tmp_path)  # lowercase


def test_text_truncates_to_max_length(tmp_path: Path) -> None:
    processor = TextProcessor("caption", TextOptions(max_length=5))
    processor.fit(SENTENCES, tmp_path)
    long = processor.load(SENTENCES[1], tmp_path)
    assert len(long) == 5
    full = TextProcessor("caption", TextOptions(max_length=64))
    full.tokenizer = processor.tokenizer
    assert full.load(SENTENCES[1], tmp_path)[:5] == long
    assert len(full.load(SENTENCES[1], tmp_path)) > 5


def test_text_collate_pads_with_zero(tmp_path: Path) -> None:
    processor = TextProcessor("caption")
    processor.fit(SENTENCES, tmp_path)
    items = [processor.load(SENTENCES[0], tmp_path), processor.load("a", tmp_path), None]
    batch = processor.collate(items, train=False)
    ids, mask = batch["ids"], batch["mask"]
    longest = max(len(items[0]), len(items[1]))
    assert ids.shape == (3, longest)
    assert ids.dtype == torch.long
    assert torch.equal(mask, ids != 0)
    assert ids[0, : len(items[0])].tolist() == items[0]
    assert ids[1, : len(items[1])].tolist() == items[1]
    assert (ids[1, len(items[1]) :] == 0).all()
    assert mask.sum(1).tolist() == [len(items[0]), len(items[1]), 1]
    assert 0 not in items[0]  # [PAD] is never a real token


# ------------------------------------------------------------------------------------------ image
def _noise_png(path: Path, width: int, height: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)


def test_image_size_fitted_from_headers(tmp_path: Path) -> None:
    for i, (w, h) in enumerate([(30, 60), (50, 45), (45, 90)]):  # shorter sides 30, 45, 45 → median 45
        Image.new("RGB", (w, h)).save(tmp_path / f"{i}.png")
    processor = ImageProcessor("image")
    processor.fit(["0.png", "1.png", "2.png", "missing.png"], tmp_path)
    assert processor.size == 48  # 45 rounded to a multiple of 8


@pytest.mark.parametrize(("side", "expected"), [(6, 16), (300, 128)])
def test_image_size_is_clamped(tmp_path: Path, side: int, expected: int) -> None:
    Image.new("RGB", (side, side + 10)).save(tmp_path / "a.png")
    processor = ImageProcessor("image")
    processor.fit(["a.png"], tmp_path)
    assert processor.size == expected


def test_image_size_from_options_wins(tmp_path: Path) -> None:
    Image.new("RGB", (100, 100)).save(tmp_path / "a.png")
    processor = ImageProcessor("image", ImageOptions(size=24))
    processor.fit(["a.png"], tmp_path)
    assert processor.size == 24


def test_image_wide_and_tall_are_resized_and_centre_cropped(tmp_path: Path) -> None:
    wide = np.zeros((32, 96, 3), np.uint8)  # thirds: red | green | blue
    wide[:, :32, 0] = wide[:, 32:64, 1] = wide[:, 64:, 2] = 255
    Image.fromarray(wide).save(tmp_path / "wide.png")
    Image.fromarray(wide.transpose(1, 0, 2).copy()).save(tmp_path / "tall.png")
    processor = ImageProcessor("image", ImageOptions(size=16))
    processor.fit(["wide.png"], tmp_path)
    for name in ("wide.png", "tall.png"):
        out = processor.load(name, tmp_path)
        assert out.shape == (16, 16, 3)
        assert out.dtype == np.uint8
        # the centre third (green) fills the crop
        assert (out[:, 3:13] if name == "wide.png" else out[3:13]).reshape(-1, 3).tolist() == [
            [0, 255, 0]
        ] * 160


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "LA", "I;16"])
def test_image_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"{mode.replace(';', '')}.png"
    Image.new("RGB", (20, 20), (40, 120, 200)).convert(mode).save(path)
    processor = ImageProcessor("image", ImageOptions(size=16))
    out = processor.load(path.name, tmp_path)
    assert out.shape == (16, 16, 3)
    assert out.dtype == np.uint8


def test_image_rgba_keeps_colour(tmp_path: Path) -> None:
    Image.new("RGBA", (20, 20), (255, 0, 0, 128)).save(tmp_path / "a.png")
    out = ImageProcessor("image", ImageOptions(size=16)).load("a.png", tmp_path)
    assert out[8, 8].tolist() == [255, 0, 0]


def test_image_missing_file(tmp_path: Path) -> None:
    processor = ImageProcessor("image", ImageOptions(size=16))
    with pytest.raises(CellError) as info:
        processor.load("img/none.png", tmp_path)
    assert str(info.value) == "file not found: img/none.png"


def test_image_undecodable_files(tmp_path: Path) -> None:
    _noise_png(tmp_path / "full.png", 64, 64)
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("this is not an image\n")
    processor = ImageProcessor("image", ImageOptions(size=16))
    assert processor.load("full.png", tmp_path).shape == (16, 16, 3)
    for name in ("cut.png", "text.png"):
        with pytest.raises(CellError) as info:
            processor.load(name, tmp_path)
        message = str(info.value)
        assert message.startswith(f"cannot decode image {name} ("), message
        assert "\n" not in message


def _solid_images(tmp_path: Path) -> ImageProcessor:
    Image.new("RGB", (16, 16), (255, 0, 0)).save(tmp_path / "red.png")
    Image.new("RGB", (16, 16), (0, 0, 255)).save(tmp_path / "blue.png")
    processor = ImageProcessor("image", ImageOptions(size=16))
    processor.fit(["red.png", "blue.png"], tmp_path)
    return processor


def test_image_finish_fits_channel_statistics(tmp_path: Path) -> None:
    processor = _solid_images(tmp_path)
    items = [processor.load("red.png", tmp_path), processor.load("blue.png", tmp_path)]
    processor.finish(items)
    assert processor.mean == pytest.approx([0.5, 0.0, 0.5])
    assert processor.std == pytest.approx([0.5, 1e-3, 0.5])  # a constant channel's std is floored


def test_image_collate_normalizes(tmp_path: Path) -> None:
    processor = _solid_images(tmp_path)
    items = [processor.load("red.png", tmp_path), processor.load("blue.png", tmp_path)]
    processor.finish(items)
    pixels = processor.collate([items[0], None, items[1]], train=False)["pixels"]
    assert pixels.shape == (3, 3, 16, 16)
    assert pixels.dtype == torch.float32
    assert pixels[0, :, 5, 5].tolist() == pytest.approx([1.0, 0.0, -1.0])
    assert pixels[2, :, 5, 5].tolist() == pytest.approx([-1.0, 0.0, 1.0])


def test_image_augments_only_when_training(tmp_path: Path) -> None:
    for i in range(4):
        _noise_png(tmp_path / f"{i}.png", 24, 24, seed=i)
    cells = [f"{i}.png" for i in range(4)]
    processor = ImageProcessor("image", ImageOptions(size=24))
    processor.fit(cells, tmp_path)
    items = [processor.load(c, tmp_path) for c in cells]
    processor.finish(items)
    torch.manual_seed(0)
    plain = processor.collate(items, train=False)["pixels"]
    assert torch.equal(plain, processor.collate(items, train=False)["pixels"])
    expected = (
        torch.from_numpy(np.stack(items)).permute(0, 3, 1, 2).float() / 255
        - torch.tensor(processor.mean).view(1, 3, 1, 1)
    ) / torch.tensor(processor.std).view(1, 3, 1, 1)
    assert torch.allclose(plain, expected, atol=1e-5)
    augmented = processor.collate(items, train=True)["pixels"]
    assert augmented.shape == plain.shape
    assert not torch.equal(augmented, plain)
    off = ImageProcessor("image", ImageOptions(size=24, augment=False))
    off.set_state(processor.state() | {"options": ImageOptions(size=24, augment=False).model_dump()})
    assert torch.equal(off.collate(items, train=True)["pixels"], plain)


def test_augment_without_jitter_is_a_whole_pixel_shift() -> None:
    torch.manual_seed(0)
    batch, height, width = 8, 20, 20
    pixels = torch.rand(batch, 3, height, width)
    out = augment_images(pixels, shift=0.1, jitter=0.0)
    assert out.shape == pixels.shape
    pad = 2  # round(0.1 * 20)
    shifts = []
    for i in range(batch):
        padded = np.pad(pixels[i].numpy(), ((0, 0), (pad, pad), (pad, pad)), mode="edge")  # replicate
        matches = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if np.allclose(out[i].numpy(), padded[:, dy : dy + height, dx : dx + width], atol=1e-6)
        ]
        assert len(matches) == 1, f"sample {i} is not a whole-pixel shift of its input"
        shifts.append(matches[0])
    assert any(s != (pad, pad) for s in shifts)  # some sample actually moved


# ------------------------------------------------------------------------------------------ audio
def _sine(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.sin(2 * np.pi * freq * t).astype(np.float32)


def _peak_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize(("orig", "new"), [(16000, 8000), (8000, 16000), (16000, 11025)])
def test_resample_keeps_the_tone(orig: int, new: int) -> None:
    wave = torch.from_numpy(_sine(440, orig))
    out = resample(wave, orig, new)
    assert out.shape == (new,)  # one second stays one second
    assert out.dtype == torch.float32
    assert abs(_peak_hz(out.numpy(), new) - 440) <= 5
    assert float(out.abs().max()) == pytest.approx(1.0, abs=0.05)  # amplitude kept


def test_resample_same_rate_is_identity() -> None:
    wave = torch.from_numpy(_sine(440, 8000))
    assert torch.equal(resample(wave, 8000, 8000), wave)


def test_resample_down_removes_tones_above_nyquist() -> None:
    wave = torch.from_numpy(_sine(6000, 16000))
    out = resample(wave, 16000, 8000)
    assert float((out.double() ** 2).sum()) < 1e-3 * float((wave.double() ** 2).sum())


def _reference_fbanks(n_freqs: int, n_mels: int, sample_rate: int) -> np.ndarray:
    """torchaudio.functional.melscale_fbanks(n_freqs, 0, sr/2, n_mels, sr, norm=None, mel_scale='htk')."""

    def to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def to_hz(mel: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    all_freqs = np.linspace(0, sample_rate // 2, n_freqs)
    f_pts = to_hz(np.linspace(to_mel(np.float64(0.0)), to_mel(np.float64(sample_rate / 2)), n_mels + 2))
    fb = np.zeros((n_freqs, n_mels))
    for m in range(n_mels):
        left, centre, right = f_pts[m], f_pts[m + 1], f_pts[m + 2]
        rising = (all_freqs - left) / (centre - left)
        falling = (right - all_freqs) / (right - centre)
        fb[:, m] = np.maximum(0.0, np.minimum(rising, falling))
    return fb


@pytest.mark.parametrize(("n_fft", "n_mels", "rate"), [(512, 64, 16000), (256, 40, 8000), (1024, 80, 22050)])
def test_mel_filterbank_matches_torchaudio_formula(n_fft: int, n_mels: int, rate: int) -> None:
    fb = mel_filterbank(n_fft, n_mels, rate)
    assert fb.shape == (n_fft // 2 + 1, n_mels)
    reference = _reference_fbanks(n_fft // 2 + 1, n_mels, rate)
    assert np.abs(fb.numpy() - reference).max() < 1e-5
    assert (fb.max(0).values > 0).all()  # no empty band


@pytest.mark.parametrize("tone", [300.0, 1000.0, 2500.0, 5000.0])
def test_log_mel_peak_band_is_nearest_the_tone(tone: float) -> None:
    rate, options = 16000, AudioOptions()
    mel = log_mel(torch.from_numpy(_sine(tone, rate)), rate, options)
    assert mel.shape == (options.n_mels, 101)  # 1 s, 10 ms hop, centred frames
    edges = np.linspace(hz_to_mel(0.0), hz_to_mel(rate / 2), options.n_mels + 2)
    centres = 700.0 * (10 ** (edges[1:-1] / 2595.0) - 1.0)
    assert int(mel.mean(1).argmax()) == int(np.abs(centres - tone).argmin())


def _write(path: Path, data: np.ndarray, rate: int, **kwargs: str) -> Path:
    sf.write(str(path), data, rate, **kwargs)
    return path


def test_audio_fits_rate_and_length_from_headers(tmp_path: Path) -> None:
    _write(tmp_path / "a.wav", _sine(440, 22050, 0.5), 22050)
    _write(tmp_path / "b.wav", _sine(440, 22050, 0.5), 22050)
    _write(tmp_path / "c.wav", _sine(440, 8000, 0.5), 8000)
    processor = AudioProcessor("sound")
    processor.fit(["a.wav", "b.wav", "c.wav", "missing.wav"], tmp_path)
    assert processor.sample_rate == 16000  # most common (22050) clamped to 16000
    assert processor.max_seconds == pytest.approx(0.5)

    _write(tmp_path / "d.wav", _sine(440, 11025, 0.75), 11025)
    _write(tmp_path / "e.wav", _sine(440, 11025, 0.75), 11025)
    _write(tmp_path / "f.wav", _sine(440, 16000, 0.75), 16000)
    processor = AudioProcessor("sound")
    processor.fit(["d.wav", "e.wav", "f.wav"], tmp_path)
    assert processor.sample_rate == 11025
    assert processor.max_seconds == pytest.approx(0.75, abs=1e-3)

    _write(tmp_path / "low.wav", _sine(440, 4000, 12.0), 4000)
    processor = AudioProcessor("sound")
    processor.fit(["low.wav", "a.wav"], tmp_path)
    assert processor.sample_rate in (8000, 16000)  # 4000 clamped up
    assert processor.max_seconds == pytest.approx(12.0)  # the longest clip, not a typical one
    _write(tmp_path / "long.wav", _sine(440, 4000, 40.0), 4000)
    processor = AudioProcessor("sound")
    processor.fit(["long.wav"], tmp_path)
    assert processor.sample_rate == 8000  # clamped up
    assert processor.max_seconds == 30.0  # clamped down


def test_audio_options_win_over_fit(tmp_path: Path) -> None:
    _write(tmp_path / "a.wav", _sine(440, 16000, 0.5), 16000)
    processor = AudioProcessor("sound", AudioOptions(sample_rate=8000, max_seconds=2.0))
    processor.fit(["a.wav"], tmp_path)
    assert (processor.sample_rate, processor.max_seconds) == (8000, 2.0)


def test_audio_stereo_becomes_mono(tmp_path: Path) -> None:
    tone = _sine(440, 8000, 0.5)
    stereo = np.stack([tone, np.zeros_like(tone)], axis=1)
    _write(tmp_path / "stereo.wav", stereo, 8000, subtype="FLOAT")
    _write(tmp_path / "mono.wav", tone / 2, 8000, subtype="FLOAT")
    samples, rate = read_audio(tmp_path / "stereo.wav")
    assert samples.shape == (4000,) and rate == 8000
    assert np.allclose(samples, tone / 2, atol=1e-6)
    processor = AudioProcessor("sound", AudioOptions(sample_rate=8000, max_seconds=1.0))
    assert np.allclose(
        processor.load("stereo.wav", tmp_path), processor.load("mono.wav", tmp_path), atol=1e-4
    )


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", "MP3"])
def test_audio_formats_load(tmp_path: Path, fmt: str) -> None:
    rate = 16000
    path = _write(tmp_path / f"a.{fmt.lower()}", 0.5 * _sine(1000, rate, 0.5), rate, format=fmt)
    processor = AudioProcessor("sound", AudioOptions(sample_rate=rate, max_seconds=1.0))
    mel = processor.load(path.name, tmp_path)
    assert mel.ndim == 2 and mel.shape[0] == 64
    assert 48 <= mel.shape[1] <= 56  # ~0.5 s at a 10 ms hop (lossy codecs may pad a little)
    assert np.isfinite(mel).all()
    edges = np.linspace(hz_to_mel(0.0), hz_to_mel(rate / 2), 66)
    centres = 700.0 * (10 ** (edges[1:-1] / 2595.0) - 1.0)
    assert int(mel.mean(1).argmax()) == int(np.abs(centres - 1000).argmin())


def test_audio_length_is_cut_to_max_seconds(tmp_path: Path) -> None:
    _write(tmp_path / "long.wav", _sine(440, 8000, 2.0), 8000)
    processor = AudioProcessor("sound", AudioOptions(sample_rate=8000, max_seconds=0.5))
    assert processor.load("long.wav", tmp_path).shape == (64, 51)  # 4000 samples / 80 hop + 1


def test_audio_resamples_to_the_fitted_rate(tmp_path: Path) -> None:
    _write(tmp_path / "hi.wav", _sine(440, 16000, 0.5), 16000)
    processor = AudioProcessor("sound", AudioOptions(sample_rate=8000, max_seconds=1.0))
    assert processor.load("hi.wav", tmp_path).shape == (64, 51)


def test_audio_bad_files(tmp_path: Path) -> None:
    (tmp_path / "text.wav").write_text("RIFF? no, just text\n")
    _write(tmp_path / "empty.wav", np.zeros((0, 1), np.float32), 8000)
    processor = AudioProcessor("sound", AudioOptions(sample_rate=8000, max_seconds=1.0))
    with pytest.raises(CellError) as info:
        processor.load("text.wav", tmp_path)
    assert str(info.value).startswith("cannot decode audio text.wav (")
    assert "\n" not in str(info.value)
    with pytest.raises(CellError) as info:
        processor.load("empty.wav", tmp_path)
    assert "empty.wav" in str(info.value)
    with pytest.raises(CellError) as info:
        processor.load("none.wav", tmp_path)
    assert str(info.value) == "file not found: none.wav"


def test_audio_collate_pads_with_zeros(tmp_path: Path) -> None:
    cells = []
    for i, seconds in enumerate([0.3, 0.6, 0.45]):
        _write(tmp_path / f"{i}.wav", _sine(300 + 200 * i, 8000, seconds), 8000)
        cells.append(f"{i}.wav")
    processor = AudioProcessor("sound", AudioOptions(n_mels=32))
    processor.fit(cells, tmp_path)
    items = [processor.load(c, tmp_path) for c in cells]
    processor.finish(items)
    assert processor.std > 1e-3
    batch = processor.collate([items[0], items[1], None, items[2]], train=False)
    mel, frames = batch["mel"], batch["frames"]
    lengths = [item.shape[1] for item in items]
    assert processor.sample_rate == 8000
    assert lengths == [31, 61, 46]  # 1 + samples / 80-sample hop
    assert mel.shape == (4, 1, 32, 61)
    assert frames.shape == (4,)
    assert frames.tolist() == [31, 61, 31, 46]  # the absent slot holds a placeholder
    for row, item in zip([0, 1, 3], items, strict=True):
        n = item.shape[1]
        expected = (torch.from_numpy(item) - processor.mean) / processor.std
        assert torch.allclose(mel[row, 0, :, :n], expected, atol=1e-5)
        assert (mel[row, 0, :, n:] == 0).all()
