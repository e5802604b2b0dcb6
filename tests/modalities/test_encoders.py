"""Every registered encoder: forward on a tiny batch gives the shared EncoderOutput shapes, and backward
reaches every parameter. New encoders are picked up from the registry automatically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from pydantic import BaseModel
from torch import Tensor

import mumo.config_model
from hf_tiny import MAKERS
from mumo.config import TextOptions
from mumo.config_model import HFOptions, TransformerOptions
from mumo.modalities import ENCODERS, PROCESSORS, Processor
from mumo.modalities.text import TextProcessor, TextTransformer
from mumo.outputs import EncoderOutput

DIM = 16
SENTENCES = [
    "a red circle",
    "two blue squares in the top left corner of the picture",
    "a large green triangle on a white background",
    "small star",
]


def default_options(type_name: str) -> BaseModel:
    """The encoder config class from mumo.config_model whose `type` defaults to this type name."""
    for value in vars(mumo.config_model).values():
        if (
            isinstance(value, type)
            and issubclass(value, BaseModel)
            and "type" in value.model_fields
            and value.model_fields["type"].default == type_name
        ):
            return value()
    raise AssertionError(f"no config class in mumo.config_model has type {type_name!r}")


def make_cells(kind: str, folder: Path) -> list[Any]:
    """Four tiny cells of a kind; files are written into folder."""
    rng = np.random.default_rng(0)
    if kind == "text":
        return list(SENTENCES)
    if kind == "image":
        cells = []
        for i, (w, h) in enumerate([(20, 20), (24, 18), (18, 26), (20, 22)]):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i}.png")
            cells.append(f"{i}.png")
        return cells
    if kind == "audio":
        cells = []
        for i, seconds in enumerate([0.3, 0.5, 0.4, 0.35]):
            t = np.arange(int(8000 * seconds)) / 8000
            wave = 0.5 * np.sin(2 * np.pi * (300 + 150 * i) * t) + 0.05 * rng.standard_normal(len(t))
            sf.write(str(folder / f"{i}.wav"), wave.astype(np.float32), 8000)
            cells.append(f"{i}.wav")
        return cells
    if kind == "numeric":
        return ["1.5", "-2", "10", "3.25"]
    if kind == "categorical":
        return ["red", "green", "blue", "red"]
    raise AssertionError(f"no test cells for kind {kind!r}; add them to make_cells")


def make_processor(kind: str, folder: Path) -> tuple[Processor, list[Any]]:
    cells = make_cells(kind, folder)
    processor = PROCESSORS.get(kind)(kind)
    processor.fit(cells, folder)
    return processor, cells


def test_core_encoders_are_registered() -> None:
    expected = {
        "text/transformer",
        "text/gru",
        "image/cnn",
        "audio/cnn",
        "numeric/mlp",
        "categorical/embedding",
    }
    assert expected <= set(ENCODERS.names())


TINY_BACKBONE = {"text": "bert", "image": "vit", "audio": "wav2vec2"}  # for type hf (tests/hf_tiny.py)


def dummy_batch(processor: Processor, cells: list[Any], base_dir: Path) -> dict[str, Tensor]:
    """Load and collate a few cells to feed an encoder."""
    items = [processor.load(cell, base_dir) for cell in cells]
    processor.finish(items)
    return processor.collate(items, train=True)


@pytest.mark.parametrize("name", ENCODERS.names())
def test_encoder_forward_and_backward(name: str, tmp_path: Path) -> None:
    kind, type_name = name.split("/")
    torch.manual_seed(0)
    if type_name == "hf":  # a pretrained backbone brings its own processor
        options: BaseModel = HFOptions(pretrained=str(MAKERS[TINY_BACKBONE[kind]](tmp_path / "backbone")))
        cells = make_cells(kind, tmp_path)
        processor = PROCESSORS.get(f"{kind}/hf")(kind, options)  # type: ignore[call-arg]
        processor.fit(cells, tmp_path)
    else:
        options = default_options(type_name)
        processor, cells = make_processor(kind, tmp_path)
    inputs = dummy_batch(processor, cells[:3], tmp_path)  # collate(train=True)
    encoder = ENCODERS.get(name)(options, DIM, processor)  # type: ignore[call-arg]
    encoder.train()
    out = encoder(inputs)
    assert isinstance(out, EncoderOutput)
    pooled, tokens, mask = out
    assert pooled.shape == (3, DIM)
    assert tokens.ndim == 3 and tokens.shape[0] == 3 and tokens.shape[2] == DIM
    assert mask.shape == tokens.shape[:2]
    assert mask.dtype == torch.bool
    assert mask.any(dim=1).all(), "every row needs at least one real token"
    assert torch.isfinite(pooled).all() and torch.isfinite(tokens).all()

    (pooled.sum() + tokens.sum()).backward()
    params = [(n, p) for n, p in encoder.named_parameters() if p.requires_grad]
    assert params
    for param_name, param in params:
        assert param.grad is not None, f"{name}: {param_name} gets no gradient"
        assert torch.isfinite(param.grad).all(), f"{name}: {param_name} has a non-finite gradient"
    assert any(bool(param.grad.abs().sum() > 0) for _, param in params)  # type: ignore[union-attr]


def test_text_transformer_ignores_extra_padding(tmp_path: Path) -> None:
    torch.manual_seed(0)
    processor = TextProcessor("caption", TextOptions(max_length=32))
    processor.fit(SENTENCES, tmp_path)
    items = [processor.load(s, tmp_path) for s in SENTENCES]
    batch = processor.collate(items, train=False)
    encoder = TextTransformer(TransformerOptions(layers=2, heads=4), DIM, processor).eval()
    extra = 5
    padded_ids = torch.cat([batch["ids"], torch.zeros(len(items), extra, dtype=torch.long)], dim=1)
    padded = {"ids": padded_ids, "mask": padded_ids != 0}
    with torch.no_grad():
        short = encoder(batch)
        long = encoder(padded)
    length = batch["ids"].shape[1]
    assert long.tokens.shape[1] == length + extra
    for row, item in enumerate(items):
        n = len(item)
        assert torch.allclose(short.tokens[row, :n], long.tokens[row, :n], atol=1e-5)
    assert torch.allclose(short.pooled, long.pooled, atol=1e-5)
    assert torch.equal(long.mask[:, :length], short.mask)
    assert not long.mask[:, length:].any()


def test_image_coordinates_follow_the_cnn_token_order() -> None:
    """Token i of an h x w feature map is row i // w, column i % w; its first two coordinate features
    are that cell's x and y in [-1, 1], and the sines and cosines come after them."""
    from mumo.modalities.image import Coordinates2D

    places = Coordinates2D(DIM, bands=2)
    with torch.no_grad():  # read x and y straight through the projection
        places.project.weight.zero_()
        places.project.bias.zero_()
        places.project.weight[0, 0] = places.project.weight[1, 1] = 1.0
    out = places(3, 4)  # 3 rows, 4 columns
    assert out.shape == (12, DIM)
    expected = [[-1 + 2 * (i % 4) / 3, -1 + 2 * (i // 4) / 2] for i in range(12)]
    assert torch.allclose(out[:, :2], torch.tensor(expected))
    assert places.project.in_features == 2 + 4 * 2


def test_cnn_positions_switch_of_older_runs_still_reads() -> None:
    from mumo.config_model import CNNOptions

    assert CNNOptions().positions == "coords"
    assert (CNNOptions(positions=True).positions, CNNOptions(positions=False).positions) == (
        "learned",
        "none",
    )


def test_bag_of_words_reads_words_not_their_order_and_hides_some_only_in_training(tmp_path: Path) -> None:
    from mumo.config_model import BagOfWordsOptions
    from mumo.modalities.text import TextBagOfWords

    torch.manual_seed(0)
    processor = TextProcessor("caption")
    processor.fit(SENTENCES, tmp_path)
    texts = ["a large green triangle", "triangle green a large", "a large red circle"]
    batch = processor.collate([processor.load(t, tmp_path) for t in texts], train=False)
    encoder = TextBagOfWords(BagOfWordsOptions(dropout=0.5), DIM, processor).eval()
    with torch.no_grad():
        pooled = encoder(batch).pooled
        assert torch.allclose(pooled[0], pooled[1], atol=1e-6)  # the same words in another order
        assert not torch.allclose(pooled[0], pooled[2], atol=1e-3)
        assert torch.equal(encoder(batch).pooled, pooled)  # no dropout outside training
        encoder.train()
        masks = torch.stack([encoder(batch).mask for _ in range(50)])  # (50, 3, L)
    assert 0.3 < float(masks[:, :, :4].float().mean()) < 0.7  # half of the 4 words of each row hidden
    assert masks.any(dim=2).all()  # never all of a row's words
