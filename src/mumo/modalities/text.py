"""Text columns: a WordPiece tokenizer trained on the train split, and three encoders (transformer, BiGRU,
bag of words)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mumo.cells import CellError
from mumo.config import TextOptions
from mumo.config_model import BagOfWordsOptions, GRUOptions, TransformerOptions
from mumo.io import write_text
from mumo.modalities.base import ENCODERS, PROCESSORS, Processor, encoder_key
from mumo.outputs import EncoderOutput, masked_mean

PAD, UNK = "[PAD]", "[UNK]"


@PROCESSORS.register("text")
class TextProcessor(Processor):
    """Tokenizes with a WordPiece vocabulary learned from train text (saved as tokenizer.json)."""

    kind = "text"

    def __init__(self, column: str, options: TextOptions | None = None) -> None:
        super().__init__(column)
        self.options = options or TextOptions()
        self.tokenizer: Tokenizer | None = None

    @property
    def vocab_size(self) -> int:
        assert self.tokenizer is not None, "fit or restore the processor first"
        return int(self.tokenizer.get_vocab_size())

    def fit(self, cells: list[Any], base_dir: Path) -> None:
        tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=self.options.lowercase)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(
            vocab_size=self.options.vocab_size,
            min_frequency=self.options.min_frequency,
            special_tokens=[PAD, UNK],
            show_progress=False,
        )
        tokenizer.train_from_iterator((str(c) for c in cells if c is not None), trainer=trainer)
        self.tokenizer = tokenizer

    def load(self, cell: Any, base_dir: Path) -> list[int]:
        if isinstance(cell, dict | list):
            raise CellError(f"{str(cell)[:40]!r} is not text")
        assert self.tokenizer is not None
        ids = self.tokenizer.encode(str(cell)).ids[: self.options.max_length]
        return ids or [1]  # [UNK]

    def collate(self, items: list[Any | None], train: bool) -> dict[str, Tensor]:
        rows = [item if item is not None else [1] for item in items]
        longest = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), longest, dtype=torch.long)  # (B, L), 0 = [PAD]
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return {"ids": ids, "mask": ids != 0}

    def baseline_features(self, items: list[Any | None]) -> Any:
        return token_counts(items, self.vocab_size)

    def state(self) -> dict[str, Any]:
        return {"options": self.options.model_dump()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.options = TextOptions(**state["options"])

    def save(self, folder: Path) -> None:
        super().save(folder)
        assert self.tokenizer is not None
        write_text(folder / "tokenizer.json", self.tokenizer.to_str())

    def restore(self, folder: Path) -> None:
        super().restore(folder)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))


def token_counts(items: list[Any | None], vocab: int) -> Any:
    """A sparse (N, vocab) bag of word pieces (the baseline weighs it as TF-IDF); empty where absent."""
    from scipy.sparse import csr_matrix

    rows, cols = [], []
    for i, item in enumerate(items):
        for token in item or []:
            rows.append(i)
            cols.append(token)
    values = np.ones(len(rows), np.float32)
    return csr_matrix((values, (rows, cols)), shape=(len(items), vocab))


@ENCODERS.register(encoder_key("text", "transformer"))
class TextTransformer(nn.Module):
    """A small pre-norm transformer over word pieces with learned positions."""

    def __init__(self, options: TransformerOptions, dim: int, processor: Processor) -> None:
        super().__init__()
        assert isinstance(processor, TextProcessor)
        if dim % options.heads:
            raise ValueError(f"model.dim ({dim}) must be divisible by the encoder's heads ({options.heads})")
        self.embed = nn.Embedding(processor.vocab_size, dim, padding_idx=0)
        self.position = nn.Embedding(processor.options.max_length, dim)
        layer = nn.TransformerEncoderLayer(
            dim,
            options.heads,
            dim * options.ff_mult,
            options.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, options.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(options.dropout)

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        ids, mask = inputs["ids"], inputs["mask"]  # (B, L), (B, L)
        positions = torch.arange(ids.shape[1], device=ids.device)
        hidden = self.dropout(self.embed(ids) + self.position(positions))  # (B, L, D)
        hidden = self.norm(self.blocks(hidden, src_key_padding_mask=~mask))  # (B, L, D)
        return EncoderOutput(masked_mean(hidden, mask), hidden, mask)


@ENCODERS.register(encoder_key("text", "gru"))
class TextGRU(nn.Module):
    """A bidirectional GRU over word pieces; each direction has dim/2 units."""

    def __init__(self, options: GRUOptions, dim: int, processor: Processor) -> None:
        super().__init__()
        assert isinstance(processor, TextProcessor)
        self.embed = nn.Embedding(processor.vocab_size, dim, padding_idx=0)
        self.gru = nn.GRU(
            dim,
            dim // 2,
            num_layers=options.layers,
            batch_first=True,
            bidirectional=True,
            dropout=options.dropout if options.layers > 1 else 0.0,
        )
        self.project = nn.Linear(2 * (dim // 2), dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(options.dropout)

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        ids, mask = inputs["ids"], inputs["mask"]  # (B, L)
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = pack_padded_sequence(
            self.dropout(self.embed(ids)), lengths, batch_first=True, enforce_sorted=False
        )
        hidden, _ = pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=ids.shape[1])
        hidden = self.norm(self.project(hidden))  # (B, L, D)
        return EncoderOutput(masked_mean(hidden, mask), hidden, mask)


@ENCODERS.register(encoder_key("text", "bow"))
class TextBagOfWords(nn.Module):
    """The mean of the word pieces' embeddings through a two-layer MLP (fastText's encoder, Joulin et al.
    2017), some words hidden while training. Blind to word order, it composes: a request whose words were
    each seen, but never together, reads as their sum (builtin:shapes-draw, text → image)."""

    def __init__(self, options: BagOfWordsOptions, dim: int, processor: Processor) -> None:
        super().__init__()
        assert isinstance(processor, TextProcessor)
        self.options = options
        self.embed = nn.Embedding(processor.vocab_size, dim, padding_idx=0)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        ids, mask = inputs["ids"], inputs["mask"]  # (B, L)
        if self.training and self.options.dropout > 0:  # (a row keeps its words if all would go)
            kept = mask & (torch.rand(mask.shape, device=mask.device) >= self.options.dropout)
            mask = torch.where(kept.any(1, keepdim=True), kept, mask)
        tokens = self.embed(ids)  # (B, L, D)
        return EncoderOutput(self.mlp(masked_mean(tokens, mask)), tokens, mask)
