"""Audio columns: soundfile decode → mono → resample → fixed length → log-mel (torch); a CNN over the mel."""

from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch import Tensor, nn

from mumo.cells import CellError
from mumo.config import AudioOptions
from mumo.config_model import CNNOptions, Conv1dOptions
from mumo.modalities.base import ENCODERS, PROCESSORS, Processor, encoder_key, placeholder_rows
from mumo.modalities.image import ConvNet, output_side, resolve
from mumo.outputs import EncoderOutput, masked_mean


def read_audio(path: Path, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode WAV/FLAC/OGG/MP3 to mono float32 samples and their rate; with max_seconds, only the
    beginning of a longer file is decoded."""
    try:
        with sf.SoundFile(str(path)) as source:
            rate = int(source.samplerate)
            frames = -1 if max_seconds is None else int(math.ceil(max_seconds * rate))
            samples = source.read(frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise CellError(f"cannot decode audio {path.name} ({reason})") from None
    if samples.shape[0] == 0:
        raise CellError(f"audio file {path.name} has no samples")
    return (samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1)), rate


def resample(wave: Tensor, orig_rate: int, new_rate: int) -> Tensor:
    """Band-limited resampling of (S,) samples: a windowed-sinc polyphase filter (torchaudio's
    sinc_interp_hann: 6 zero crossings, roll-off 0.99) where the rates reduce to a small ratio
    (44.1 → 16 kHz: 160/441), else by cutting or zero-padding the spectrum."""
    if orig_rate == new_rate:
        return wave
    length = max(1, round(wave.shape[-1] * new_rate / orig_rate))
    kernel = _sinc_kernel(orig_rate, new_rate)
    if kernel is None:  # an awkward ratio: the polyphase filter bank would be huge
        return _resample_fft(wave.float(), length)
    weights, width, stride = kernel
    padded = torch.nn.functional.pad(wave.float()[None, None], (width, width + stride))
    phases = torch.nn.functional.conv1d(padded, weights, stride=stride)  # (1, new, frames)
    return phases[0].T.reshape(-1)[:length]


@lru_cache(maxsize=16)
def _sinc_kernel(
    orig_rate: int, new_rate: int, zero_crossings: int = 6, rolloff: float = 0.99
) -> tuple[Tensor, int, int] | None:
    """(new, 1, taps) filters, one per output phase, the padding and the stride (as torchaudio)."""
    step = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // step, new_rate // step
    cutoff = min(orig, new) * rolloff
    width = math.ceil(zero_crossings * orig / cutoff)
    if new * (2 * width + orig) > 1_000_000:
        return None
    offsets = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig
    t = (torch.arange(0, -new, -1, dtype=torch.float64)[:, None, None] / new + offsets) * cutoff
    t = t.clamp(-zero_crossings, zero_crossings)
    window = torch.cos(t * math.pi / zero_crossings / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    return (sinc * window * (cutoff / orig)).float(), width, orig


def _resample_fft(wave: Tensor, length: int) -> Tensor:
    spectrum = torch.fft.rfft(wave)
    bins = length // 2 + 1
    if bins <= spectrum.shape[-1]:
        spectrum = spectrum[..., :bins]
    else:
        spectrum = torch.cat([spectrum, spectrum.new_zeros(bins - spectrum.shape[-1])])
    return torch.fft.irfft(spectrum, n=length) * (length / wave.shape[-1])


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


@lru_cache(maxsize=8)
def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int) -> Tensor:
    """(n_fft//2+1, n_mels) triangular HTK mel filters, as torchaudio.functional.melscale_fbanks(norm=None)."""
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_points = np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2)
    hz_points = 700.0 * (10 ** (mel_points / 2595.0) - 1.0)
    slopes = hz_points[None, :] - freqs[:, None]  # (F, n_mels + 2)
    widths = np.diff(hz_points)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    return torch.from_numpy(np.maximum(0.0, np.minimum(down, up))).float()


def log_mel(wave: Tensor, sample_rate: int, options: AudioOptions) -> Tensor:
    """(S,) samples → (n_mels, T) natural-log mel power."""
    win = max(16, round(options.window_ms * sample_rate / 1000))
    hop = max(1, round(options.hop_ms * sample_rate / 1000))
    n_fft = 2 ** math.ceil(math.log2(win))
    if wave.shape[-1] < n_fft:
        wave = torch.nn.functional.pad(wave, (0, n_fft - wave.shape[-1]))
    spec = torch.stft(wave, n_fft, hop, win, _hann(win), center=True, return_complex=True)
    power = torch.view_as_real(spec).square().sum(-1)  # (F, T) |X|^2, without a square root
    return torch.log(_mel_rows(n_fft, options.n_mels, sample_rate) @ power + 1e-6)  # (n_mels, T)


@lru_cache(maxsize=8)
def _hann(length: int) -> Tensor:
    return torch.hann_window(length)


@lru_cache(maxsize=8)
def _mel_rows(n_fft: int, n_mels: int, sample_rate: int) -> Tensor:
    return mel_filterbank(n_fft, n_mels, sample_rate).T.contiguous()  # (n_mels, F)


MAX_SECONDS = 30.0  # the longest a fitted clip length gets (data.audio.max_seconds sets any other)


@PROCESSORS.register("audio")
class AudioProcessor(Processor):
    """Mono clips at a fitted rate, cut to a fitted length, as normalized log-mel spectrograms."""

    kind = "audio"

    def __init__(self, column: str, options: AudioOptions | None = None) -> None:
        super().__init__(column)
        self.options = options or AudioOptions()
        self.sample_rate = self.options.sample_rate or 16000
        self.max_seconds = self.options.max_seconds or 5.0
        self.mean, self.std = 0.0, 1.0

    def fit(self, cells: list[Any], base_dir: Path) -> None:
        rates, seconds = [], []
        for cell in cells[:: max(1, len(cells) // 2000)]:
            try:
                info = sf.info(str(resolve(cell, base_dir)))
            except (CellError, sf.LibsndfileError, RuntimeError, TypeError):
                continue  # load() reports bad files with their row
            rates.append(int(info.samplerate))
            seconds.append(info.frames / max(1, info.samplerate))
        if self.options.sample_rate is None and rates:
            self.sample_rate = min(16000, max(8000, Counter(rates).most_common(1)[0][0]))
        if self.options.max_seconds is None and seconds:  # the longest clip: a transcript needs all of it
            self.max_seconds = float(min(MAX_SECONDS, max(0.25, max(seconds))))

    def load(self, cell: Any, base_dir: Path) -> np.ndarray:
        samples, rate = read_audio(resolve(cell, base_dir), self.max_seconds)
        wave = torch.from_numpy(samples)
        wave = resample(wave, rate, self.sample_rate)
        return log_mel(wave, self.sample_rate, self.options).numpy()  # (n_mels, T)

    def finish(self, items: list[Any]) -> None:
        sample = [item for item in items[:: max(1, len(items) // 2000)] if item is not None]
        if sample:
            values = np.concatenate([item.reshape(-1) for item in sample]).astype(np.float64)
            self.mean, self.std = float(values.mean()), float(max(values.std(), 1e-3))

    def collate(self, items: list[Any | None], train: bool) -> dict[str, Tensor]:
        example = next(
            (item for item in items if item is not None), np.zeros((self.options.n_mels, 1), np.float32)
        )
        rows = placeholder_rows(items, example)
        frames = torch.tensor([row.shape[1] for row in rows])
        mel = torch.zeros(len(rows), 1, self.options.n_mels, int(frames.max()))  # (B, 1, M, T)
        for i, row in enumerate(rows):
            mel[i, 0, :, : row.shape[1]] = (torch.from_numpy(row) - self.mean) / self.std
        if train and self.options.augment:
            mel = spec_augment(mel, frames)
        return {"mel": mel, "frames": frames}

    def baseline_features(self, items: list[Any | None]) -> np.ndarray:
        return pooled_mel(items, self.options.n_mels)

    def state(self) -> dict[str, Any]:
        return {
            "options": self.options.model_dump(),
            "sample_rate": self.sample_rate,
            "max_seconds": self.max_seconds,
            "mean": self.mean,
            "std": self.std,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.options = AudioOptions(**state["options"])
        self.sample_rate, self.max_seconds = state["sample_rate"], state["max_seconds"]
        self.mean, self.std = state["mean"], state["std"]


def pooled_mel(items: list[Any | None], bands: int) -> np.ndarray:
    """(N, 4 * bands): per mel band, the mean and std over time and the means of the first and second
    half of the clip (log-mel statistics); zeros where absent."""
    out = np.zeros((len(items), 4 * bands), np.float32)
    for i, item in enumerate(items):
        if item is not None:
            mel = np.asarray(item, np.float32)  # (bands, T)
            half = max(1, mel.shape[1] // 2)
            out[i] = np.concatenate(
                [
                    mel.mean(1),
                    mel.std(1),
                    mel[:, :half].mean(1),
                    mel[:, half:].mean(1) if mel.shape[1] > 1 else mel.mean(1),
                ]
            )
    return out


def spec_augment(mel: Tensor, frames: Tensor, freq_share: float = 0.15, time_share: float = 0.1) -> Tensor:
    """One frequency band and one time span masked per clip (SpecAugment), batched."""
    batch, _, bands, steps = mel.shape
    f_width = (torch.rand(batch) * freq_share * bands).long()
    f_start = (torch.rand(batch) * (bands - f_width)).long()
    t_width = (torch.rand(batch) * time_share * frames).long()
    t_start = (torch.rand(batch) * (frames - t_width).clamp_min(0)).long()
    f = torch.arange(bands).view(1, -1)
    t = torch.arange(steps).view(1, -1)
    f_mask = (f >= f_start[:, None]) & (f < (f_start + f_width)[:, None])  # (B, M)
    t_mask = (t >= t_start[:, None]) & (t < (t_start + t_width)[:, None])  # (B, T)
    drop = f_mask[:, :, None] | t_mask[:, None, :]  # (B, M, T)
    return mel.masked_fill(drop.unsqueeze(1), 0.0)


@ENCODERS.register(encoder_key("audio", "cnn"))
class AudioCNN(nn.Module):
    """A small CNN over the log-mel; frequency is pooled away, leaving one token per time step."""

    def __init__(self, options: CNNOptions, dim: int, processor: Processor) -> None:
        super().__init__()
        self.net = ConvNet(1, options.channels, dim)
        self.stages = len(options.channels)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(options.dropout)
        self.positions = (
            nn.Parameter(torch.randn(512, dim) * 0.02) if options.positions != "none" else None
        )  # time

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        features = self.net(inputs["mel"]).mean(2).transpose(1, 2)  # (B, D, m, t) → (B, t, D)
        if self.positions is not None:
            steps = min(features.shape[1], len(self.positions))
            features = torch.cat([features[:, :steps] + self.positions[:steps], features[:, steps:]], dim=1)
        tokens = self.norm(features)  # (B, t, D)
        valid = torch.tensor(
            [output_side(int(n), self.stages) for n in inputs["frames"]], device=tokens.device
        ).clamp(1, tokens.shape[1])
        mask = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < valid[:, None]  # (B, t)
        return EncoderOutput(self.dropout(masked_mean(tokens, mask)), tokens, mask)


@ENCODERS.register(encoder_key("audio", "conv1d"))
class AudioConv1d(nn.Module):
    """1-D convolutions over time with the mel bands as channels (as Wav2Letter / QuartzNet do): every
    frame keeps its place and the full spectrum, which speech recognition needs; residual from the second
    convolution on. One token per (downsampled) frame; several times cheaper than the 2-D CNN."""

    def __init__(self, options: Conv1dOptions, dim: int, processor: Processor) -> None:
        super().__init__()
        assert isinstance(processor, AudioProcessor)
        self.stride = options.stride
        channels = [processor.options.n_mels, *options.channels]
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(
                    a,
                    b,
                    options.kernel,
                    stride=options.stride if i == 0 else 1,
                    padding=options.kernel // 2,
                    bias=False,
                ),
                nn.BatchNorm1d(b),
                nn.GELU(),
                nn.Dropout(options.dropout),
            )
            for i, (a, b) in enumerate(zip(channels[:-1], channels[1:], strict=True))
        )
        self.project = nn.Linear(channels[-1], dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        hidden = inputs["mel"][:, 0]  # (B, M, T)
        for i, layer in enumerate(self.layers):
            out = layer(hidden)
            hidden = out + hidden if i > 0 and out.shape == hidden.shape else out
        tokens = self.norm(self.project(hidden.transpose(1, 2)))  # (B, t, D)
        valid = ((inputs["frames"].to(tokens.device) + self.stride - 1) // self.stride).clamp(
            1, tokens.shape[1]
        )
        mask = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < valid[:, None]  # (B, t)
        return EncoderOutput(masked_mean(tokens, mask), tokens, mask)
