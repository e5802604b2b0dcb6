"""Image columns: Pillow decode → RGB → resize + centre crop → normalize; batched augmentation; a small CNN."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor, nn

from mumo.cells import CellError
from mumo.config import DEFAULT_MAX_PIXELS, ImageOptions
from mumo.config_model import CNNOptions
from mumo.modalities.base import ENCODERS, PROCESSORS, Processor, encoder_key, placeholder_rows
from mumo.outputs import EncoderOutput

# The image formats mumo reads; Pillow's other decoders are never tried on a user's file.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")
# mumo checks every image's size against data.image.max_pixels from its header, before decoding (see
# open_image), so Pillow's own decompression-bomb check (a warning, then an error at twice its limit)
# is left out rather than printed raw.
Image.MAX_IMAGE_PIXELS = None


def resolve(cell: Any, base_dir: Path) -> Path:
    """A file cell as a path; relative paths are relative to the manifest's folder."""
    if not isinstance(cell, str):
        raise CellError(f"{cell!r} is not a file path")
    path = Path(cell).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise CellError(f"file not found: {cell}")
    return path


@contextmanager
def open_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[Image.Image]:
    """The image's first frame, opened (header read, pixels not yet decoded) if it is one of
    IMAGE_FORMATS and at most `max_pixels` large; anything else, or a failure to decode it inside the
    block, is a CellError naming the file."""
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise CellError(
                    f"image {path.name} is {width}x{height} ({width * height / 1e6:.0f} megapixels), more than "
                    f"data.image.max_pixels ({max_pixels / 1e6:.0f} megapixels)"
                )
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)  # an animation: its first frame
            yield image
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise CellError(f"cannot decode image {path.name} ({_reason(err)})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB: 16-bit and 32-bit grey scaled from their own range (not clipped at 255), float images
    from 0..1."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        grey = np.asarray(image, dtype=np.float64) * (255.0 / 65535.0)
        image = Image.fromarray(np.clip(grey + 0.5, 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        grey = np.asarray(image, dtype=np.float64)
        scale = 255.0 if float(np.nanmax(grey, initial=0.0)) <= 1.0 else 255.0 / 65535.0
        image = Image.fromarray(np.clip(np.nan_to_num(grey) * scale + 0.5, 0, 255).astype(np.uint8), "L")
    return image if image.mode == "RGB" else image.convert("RGB")  # alpha is dropped: colours stay


def decode_image(path: Path, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode to RGB, resize the centre square to `size`: (size, size, 3) uint8."""
    with open_image(path, max_pixels) as source:
        # JPEG can decode straight at 1/2, 1/4 or 1/8 scale (in the DCT), still at least `size` on
        # each side: much less work than decoding every pixel and then shrinking.
        source.draft("RGB", (size, size))
        source.load()
        image = to_rgb(source)
        width, height = image.size
        if (width, height) != (size, size):  # only the centre square is resampled
            side = min(width, height)
            left, top = (width - side) / 2, (height - side) / 2
            box = (left, top, left + side, top + side)
            image = image.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=3.0)
        return np.asarray(image, dtype=np.uint8)


def _reason(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:120]


@PROCESSORS.register("image")
class ImageProcessor(Processor):
    """Square RGB images of a fitted size, normalized with train channel statistics."""

    kind = "image"

    def __init__(self, column: str, options: ImageOptions | None = None) -> None:
        super().__init__(column)
        self.options = options or ImageOptions()
        self.size = self.options.size or 0
        self.mean = self.options.mean or []
        self.std = self.options.std or []

    def fit(self, cells: list[Any], base_dir: Path) -> None:
        if self.options.size:
            self.size = self.options.size
            return
        sides = []
        for cell in cells[:: max(1, len(cells) // 256)]:
            try:
                with open_image(resolve(cell, base_dir), self.options.max_pixels) as image:
                    sides.append(min(image.size))
            except (CellError, OSError, UnidentifiedImageError, ValueError):
                continue  # load() reports bad files with their row
        side = statistics.median(sides) if sides else 64
        self.size = int(min(128, max(16, 8 * round(side / 8))))

    def load(self, cell: Any, base_dir: Path) -> np.ndarray:
        return decode_image(resolve(cell, base_dir), self.size, self.options.max_pixels)

    def finish(self, items: list[Any]) -> None:
        if self.mean and self.std:
            return
        sample = [item for item in items[:: max(1, len(items) // 2000)] if item is not None]
        if not sample:
            self.mean, self.std = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
            return
        pixels = np.stack(sample).reshape(-1, 3).astype(np.float64) / 255.0
        self.mean = [float(v) for v in pixels.mean(0)]
        self.std = [float(max(v, 1e-3)) for v in pixels.std(0)]

    def collate(self, items: list[Any | None], train: bool) -> dict[str, Tensor]:
        example = next(
            (item for item in items if item is not None), np.zeros((self.size, self.size, 3), np.uint8)
        )
        stacked = np.stack(placeholder_rows(items, example))  # (B, H, W, 3) uint8
        pixels = torch.from_numpy(stacked).permute(0, 3, 1, 2).float()  # (B, 3, H, W), 0..255
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        if train and self.options.augment:
            return {"pixels": (augment_images(pixels.div_(255.0)) - mean) / std}
        return {"pixels": pixels.mul_(1.0 / (255.0 * std)).sub_(mean / std)}  # one pass each, in place

    def baseline_features(self, items: list[Any | None]) -> np.ndarray:
        return pooled_pixels(items)

    def state(self) -> dict[str, Any]:
        return {"options": self.options.model_dump(), "size": self.size, "mean": self.mean, "std": self.std}

    def set_state(self, state: dict[str, Any]) -> None:
        self.options = ImageOptions(**state["options"])
        self.size, self.mean, self.std = state["size"], state["mean"], state["std"]


def pooled_pixels(items: list[Any | None], side: int = 8) -> np.ndarray:
    """(N, side*side*3): each (S, S, 3) uint8 image averaged down to side x side, in 0..1; zeros where absent."""
    out = np.zeros((len(items), side * side * 3), np.float32)
    for i, item in enumerate(items):
        if item is not None:
            small = Image.fromarray(np.asarray(item, np.uint8)).resize((side, side), Image.Resampling.BOX)
            out[i] = np.asarray(small, np.float32).reshape(-1) / 255.0
    return out


def augment_images(pixels: Tensor, shift: float = 0.1, jitter: float = 0.15) -> Tensor:
    """Per-image random whole-pixel shift (up to `shift` of the side; no blur) and brightness/contrast
    jitter, batched."""
    batch, _, height, width = pixels.shape
    pad = max(1, round(shift * min(height, width)))
    padded = F.pad(pixels, (pad, pad, pad, pad), mode="replicate")  # (B, 3, H+2p, W+2p)
    dy = torch.randint(0, 2 * pad + 1, (batch, 1))
    dx = torch.randint(0, 2 * pad + 1, (batch, 1))
    rows = (torch.arange(height)[None, :] + dy)[:, :, None]  # (B, H, 1)
    cols = (torch.arange(width)[None, :] + dx)[:, None, :]  # (B, 1, W)
    moved = padded.permute(0, 2, 3, 1)[torch.arange(batch)[:, None, None], rows, cols]  # (B, H, W, 3)
    moved = moved.permute(0, 3, 1, 2)  # (B, 3, H, W)
    brightness = 1 + (torch.rand(batch, 1, 1, 1) * 2 - 1) * jitter
    contrast = 1 + (torch.rand(batch, 1, 1, 1) * 2 - 1) * jitter
    mean = moved.mean(dim=(1, 2, 3), keepdim=True)
    return ((moved - mean) * contrast + mean * brightness).clamp_(0, 1)


class ConvNet(nn.Module):
    """Stages of conv3x3 → BatchNorm → GELU → maxpool(2), then a 1x1 projection to `dim`."""

    def __init__(self, in_channels: int, channels: list[int], dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for out_channels in channels:
            layers += [
                nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.GELU(),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            in_channels = out_channels
        self.stages = nn.Sequential(*layers)
        self.project = nn.Conv2d(in_channels, dim, 1)
        self.downsample = 2 ** len(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.project(self.stages(x))  # (B, C, H, W) → (B, D, H/2^s, W/2^s)


@ENCODERS.register(encoder_key("image", "cnn"))
class ImageCNN(nn.Module):
    """A small CNN; its tokens are the cells of the last feature map (spatial tokens). The pooled vector
    is a max over cells, so a small object is not averaged away by the background."""

    def __init__(self, options: CNNOptions, dim: int, processor: Processor) -> None:
        super().__init__()
        self.net = ConvNet(3, options.channels, dim)
        self.token_norm = nn.LayerNorm(dim)
        self.pool_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(options.dropout)
        # Where each cell is: what "left of" and "above" are made of.
        places = {"coords": Coordinates2D, "learned": Positions2D}
        self.positions = places[options.positions](dim) if options.positions in places else None

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        grid = self.net(inputs["pixels"])  # (B, D, h, w)
        features = grid.flatten(2).transpose(1, 2)  # (B, h*w, D)
        placed = features if self.positions is None else features + self.positions(*grid.shape[2:])
        tokens = self.token_norm(placed)
        pooled = self.pool_norm(features.max(1).values)  # (B, D)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return EncoderOutput(self.dropout(pooled), tokens, mask)


class Positions2D(nn.Module):
    """Learned row and column embeddings for an h x w grid of tokens, flattened row by row: (h*w, D)."""

    def __init__(self, dim: int, longest: int = 64) -> None:
        super().__init__()
        self.rows = nn.Parameter(torch.randn(longest, dim) * 0.02)
        self.cols = nn.Parameter(torch.randn(longest, dim) * 0.02)

    def forward(self, height: int, width: int) -> Tensor:
        height, width = min(height, len(self.rows)), min(width, len(self.cols))
        return (self.rows[:height, None] + self.cols[None, :width]).reshape(height * width, -1)


class Coordinates2D(nn.Module):
    """Each cell of an h x w grid as numbers: x and y in [-1, 1] and their sines and cosines at `bands`
    octaves (Fourier features, as NeRF and Perceiver use), through a learned linear map: (h*w, D). Unlike
    learned embeddings, the geometry is there from the first step, at any grid size."""

    def __init__(self, dim: int, bands: int = 8) -> None:
        super().__init__()
        self.frequencies: Tensor
        self.register_buffer("frequencies", 2.0 ** torch.arange(bands) * math.pi / 2, persistent=False)
        self.project = nn.Linear(2 + 4 * bands, dim)

    def forward(self, height: int, width: int) -> Tensor:
        weight = self.project.weight
        ys = torch.linspace(-1, 1, height, device=weight.device, dtype=weight.dtype)
        xs = torch.linspace(-1, 1, width, device=weight.device, dtype=weight.dtype)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2)  # (h*w, 2): x, y
        angles = (grid.unsqueeze(-1) * self.frequencies.to(weight.dtype)).flatten(1)  # (h*w, 2*bands)
        return self.project(torch.cat([grid, angles.sin(), angles.cos()], dim=1))  # (h*w, D)


def output_side(side: int, stages: int) -> int:
    """Side of the last feature map after `stages` ceil-mode halvings."""
    for _ in range(stages):
        side = math.ceil(side / 2)
    return side
