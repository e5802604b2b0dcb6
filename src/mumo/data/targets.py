"""Targets: label maps for classification, standardization for regression, 0/1 columns for multilabel,
and a tokenizer for text to generate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mumo.cells import CellError, as_number
from mumo.errors import MumoError

TRUE = {"1", "1.0", "true", "yes", "y", "t"}
FALSE = {"0", "0.0", "false", "no", "n", "f"}


class TargetProcessor:
    """Encodes target cells (one list of values per target column) into a tensor per row."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns

    def fit(self, values: list[list[Any]]) -> None: ...

    def encode(self, values: list[Any]) -> Any:
        raise NotImplementedError

    def encode_cells(self, values: list[Any], base_dir: Path) -> Any:
        """encode() for cells of a manifest whose file paths are relative to base_dir."""
        return self.encode(values)

    def stack(self, encoded: list[Any]) -> Tensor:
        raise NotImplementedError

    @property
    def out_dim(self) -> int:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        return {"columns": self.columns}

    def set_state(self, state: dict[str, Any]) -> None:
        self.columns = list(state["columns"])


class ClassTarget(TargetProcessor):
    def __init__(self, columns: list[str]) -> None:
        super().__init__(columns)
        self.classes: list[str] = []
        self._index: dict[str, int] = {}

    def fit(self, values: list[list[Any]]) -> None:
        labels = {_label(v[0]) for v in values if v[0] is not None}
        self.set_state({"columns": self.columns, "classes": sorted(labels, key=_natural)})

    def encode(self, values: list[Any]) -> int:
        label = _label(values[0])
        if label not in self._index:
            raise CellError(f"label {label!r} does not occur in the train data")
        return self._index[label]

    def stack(self, encoded: list[Any]) -> Tensor:
        return torch.tensor(encoded, dtype=torch.long)

    @property
    def out_dim(self) -> int:
        return len(self.classes)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "classes": self.classes}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.classes = list(state["classes"])
        self._index = {c: i for i, c in enumerate(self.classes)}


class RegressionTarget(TargetProcessor):
    def __init__(self, columns: list[str]) -> None:
        super().__init__(columns)
        self.mean, self.std = [0.0], [1.0]

    def fit(self, values: list[list[Any]]) -> None:
        numbers = torch.tensor(
            [[as_number(v) for v in row] for row in values if all(as_number(v) is not None for v in row)],
            dtype=torch.float64,
        ).reshape(-1, len(self.columns))
        if len(numbers):
            self.mean = numbers.mean(0).tolist()
            spread = numbers.std(0, unbiased=False).tolist()
            # A (numerically) constant target is not scaled up by its rounding noise.
            self.std = [
                s if s > 1e-9 * max(1.0, abs(m)) else 1.0 for s, m in zip(spread, self.mean, strict=True)
            ]

    def encode(self, values: list[Any]) -> list[float]:
        out = []
        for value, mean, std in zip(values, self.mean, self.std, strict=True):
            number = as_number(value)
            if number is None:
                raise CellError(f"target {value!r} is not a number")
            out.append((number - mean) / std)
        return out

    def decode(self, outputs: Tensor) -> Tensor:
        return outputs * torch.tensor(self.std) + torch.tensor(self.mean)

    def stack(self, encoded: list[Any]) -> Tensor:
        return torch.tensor(encoded, dtype=torch.float32)

    @property
    def out_dim(self) -> int:
        return len(self.columns)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "mean": self.mean, "std": self.std}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.mean, self.std = list(state["mean"]), list(state["std"])


class MultilabelTarget(TargetProcessor):
    """One 0/1 (true/false, yes/no) column per label."""

    def encode(self, values: list[Any]) -> list[float]:
        out = []
        for value, column in zip(values, self.columns, strict=True):
            text = str(value).strip().lower()
            if text not in TRUE | FALSE:
                raise CellError(f"multilabel target {column!r} must be 0/1, got {value!r}")
            out.append(1.0 if text in TRUE else 0.0)
        return out

    def stack(self, encoded: list[Any]) -> Tensor:
        return torch.tensor(encoded, dtype=torch.float32)

    @property
    def out_dim(self) -> int:
        return len(self.columns)


class TextTarget(TargetProcessor):
    """A text column to generate, as word pieces and an end-of-text token (at most `max_length` pieces).

    The tokenizer is fitted on the train targets (BPE with SentencePiece-style word boundaries, so that
    decoding gives back the spaces and case of the text), or, for a pretrained language model
    (`source`: its folder), it is that model's own tokenizer; either way it is saved in the run with the
    model's config, so the run reloads without the folder. Stacked targets are padded with FILL (-1) to
    a fixed width, so validation outputs of every batch line up."""

    FILL = -1
    SPECIAL = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")

    def __init__(
        self,
        columns: list[str],
        vocab_size: int = 4000,
        max_length: int = 128,
        source: Any = None,
        ngram_order: int = 0,
        ngram_texts: list[str] | None = None,
    ) -> None:
        super().__init__(columns)
        self.ngram_order = ngram_order  # > 0: a unit n-gram language model of the train targets (ctc)
        self.ngram_texts = ngram_texts or []  # more text it learns from, while fitting (not saved)
        self.ngram: Any = None
        self.vocab_size, self.max_length = vocab_size, max_length
        self.source = source  # a pretrained LM's folder, while fitting (not saved)
        self.tokenizer: Any = None
        self.pad, self.unk, self.bos, self.eos = 0, 1, 2, 3
        self.lm_config: dict[str, Any] | None = None  # the pretrained LM's config, as JSON
        self.longest = 0  # pieces in the longest train target
        self.median_words = 0.0  # words in the median train target

    def fit(self, values: list[list[Any]]) -> None:
        texts = [str(v[0]) for v in values if v[0] is not None and str(v[0]).strip()]
        if self.source is not None:
            self._pretrained()
        else:
            self._train(texts)
        encoded = [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]
        lengths = [len(ids) for ids in encoded]
        if self.ngram_order > 0:
            from mumo.ngram import UnitNgram

            extra = self.tokenizer.encode_batch(self.ngram_texts, add_special_tokens=False)
            self.ngram = UnitNgram(self.ngram_order, self.out_dim)
            self.ngram.fit([ids[: self.max_length] for ids in encoded + [e.ids for e in extra]])
        self.longest = min(max(lengths, default=1), self.max_length)
        self.median_words = float(np.median([len(t.split()) for t in texts])) if texts else 0.0

    def _train(self, texts: list[str]) -> None:
        import string

        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.NFKC()
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(
            vocab_size=self.vocab_size,
            min_frequency=2,
            special_tokens=list(self.SPECIAL),
            initial_alphabet=[c for c in string.printable if not c.isspace()],  # unseen ASCII still spells
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        self.tokenizer = tokenizer

    def _pretrained(self) -> None:
        """The pretrained LM's tokenizer and special pieces (pad falls back to the end-of-text piece)."""
        from tokenizers import Tokenizer
        from transformers import AutoConfig

        file = self.source / "tokenizer.json"
        if not file.is_file():
            raise MumoError(
                f"model.decoder.pretrained: {self.source} has no tokenizer.json (save the model's fast "
                "tokenizer there with save_pretrained)"
            )
        self.tokenizer = Tokenizer.from_file(str(file))
        config = AutoConfig.from_pretrained(self.source)
        special = self._special_tokens()
        bos = special.get("bos_token", config.bos_token_id)
        eos = special.get("eos_token", config.eos_token_id)
        if isinstance(eos, list):
            eos = eos[0]
        if eos is None:
            raise MumoError(
                f"model.decoder.pretrained: {self.source} names no end-of-text token (eos_token_id)"
            )
        bos = eos if bos is None else bos
        pad = special.get("pad_token", config.pad_token_id)
        self.pad, self.bos, self.eos = int(eos if pad is None else pad), int(bos), int(eos)
        self.unk = int(special.get("unk_token", self.pad))
        self.lm_config = json.loads(config.to_json_string())

    def _special_tokens(self) -> dict[str, int]:
        """Ids of the special tokens tokenizer_config.json names (bos_token, eos_token, pad_token, ...)."""
        file = self.source / "tokenizer_config.json"
        names = json.loads(file.read_text()) if file.is_file() else {}
        out = {}
        for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
            token = names.get(key)
            token = token.get("content") if isinstance(token, dict) else token
            index = self.tokenizer.token_to_id(token) if isinstance(token, str) else None
            if index is not None:
                out[key] = int(index)
        return out

    def encode(self, values: list[Any]) -> list[int]:
        text = "" if values[0] is None else str(values[0])
        if not text.strip():
            raise CellError("empty target")
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids[: self.max_length]) + [self.eos]

    def stack(self, encoded: list[Any]) -> Tensor:
        out = torch.full((len(encoded), self.max_length + 1), self.FILL, dtype=torch.long)
        for i, ids in enumerate(encoded):
            out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out  # (N, max_length + 1)

    def decode(self, ids: list[int]) -> str:
        """Text of a piece sequence, cut at its first end-of-text token."""
        if self.eos in ids:
            ids = ids[: ids.index(self.eos)]
        return str(self.tokenizer.decode([i for i in ids if i >= 0], skip_special_tokens=True))

    def decode_batch(self, ids: Tensor) -> list[str]:
        return [self.decode(row) for row in ids.tolist()]

    @property
    def out_dim(self) -> int:
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def state(self) -> dict[str, Any]:
        return {
            **super().state(),
            "vocab_size": self.vocab_size,
            "max_length": self.max_length,
            "special": {"pad": self.pad, "unk": self.unk, "bos": self.bos, "eos": self.eos},
            "longest": self.longest,
            "median_words": self.median_words,
            "lm_config": self.lm_config,
            "tokenizer": self.tokenizer.to_str() if self.tokenizer is not None else None,
            "ngram": self.ngram.state() if self.ngram is not None else None,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        super().set_state(state)
        self.vocab_size, self.max_length = int(state["vocab_size"]), int(state["max_length"])
        special = state["special"]
        self.pad, self.unk, self.bos, self.eos = (int(special[k]) for k in ("pad", "unk", "bos", "eos"))
        self.longest, self.median_words = int(state["longest"]), float(state["median_words"])
        self.lm_config = state.get("lm_config")
        self.tokenizer = Tokenizer.from_str(state["tokenizer"]) if state.get("tokenizer") else None
        if state.get("ngram"):
            from mumo.ngram import UnitNgram

            self.ngram = UnitNgram.from_state(state["ngram"])
            self.ngram_order = self.ngram.order


class ImageTarget(TargetProcessor):
    """An image column to generate: each image decoded to RGB, its centre square resized to `size`,
    kept as (size, size, 3) uint8 and stacked as (N, 3, size, size) floats in [0, 1]."""

    def __init__(self, columns: list[str], size: int = 32, metrics: tuple[str, ...] = ("loss",)) -> None:
        super().__init__(columns)
        self.size = size
        self.metrics = tuple(metrics)  # the generator's metrics, the main one first: the task's

    def encode(self, values: list[Any]) -> Any:
        raise CellError("an image target needs the manifest's folder (encode_cells)")

    def encode_cells(self, values: list[Any], base_dir: Path) -> Any:
        from mumo.modalities.image import decode_image, resolve

        return decode_image(resolve(values[0], base_dir), self.size)

    def stack(self, encoded: list[Any]) -> Tensor:
        if not encoded:
            return torch.zeros(0, 3, self.size, self.size)
        return torch.from_numpy(np.stack(encoded)).permute(0, 3, 1, 2).float() / 255.0

    @property
    def out_dim(self) -> int:
        return 3 * self.size * self.size

    def state(self) -> dict[str, Any]:
        return {**super().state(), "size": self.size, "metrics": list(self.metrics)}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.size, self.metrics = int(state["size"]), tuple(state["metrics"])


def _label(value: Any) -> str:
    number = as_number(value) if not isinstance(value, str) else None
    if number is not None and number.is_integer():
        return str(int(number))
    return str(value)


def _natural(label: str) -> tuple[int, float, str]:
    number = as_number(label)
    return (0, number, "") if number is not None else (1, 0.0, label)
