"""MultimodalNetwork built from config: forward shapes, absent inputs, resolve_encoders, and registries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from mumo.config import TextOptions
from mumo.config_model import (
    CNNOptions,
    ConcatOptions,
    EmbeddingOptions,
    GRUOptions,
    MLPOptions,
    ModelConfig,
    TransformerOptions,
)
from mumo.data.dataset import Batch, make_batch
from mumo.errors import ConfigError
from mumo.fusion import FUSIONS, build_fusion
from mumo.modalities import ENCODERS, Processor
from mumo.modalities.tabular import CategoricalProcessor, NumericProcessor
from mumo.modalities.text import TextProcessor
from mumo.network import (
    MANY_INPUTS,
    MultimodalNetwork,
    build_network,
    modality_dropout,
    module_key,
    resolve_encoders,
)
from mumo.tasks import TASKS

INPUTS = {"caption": "text", "price": "numeric", "brand": "categorical"}
CAPTIONS = [
    "a red circle",
    "two blue squares in the corner",
    "a big green triangle",
    "one small star",
    "a dot",
]
PRICES = ["1.5", "2", "10", "-3", "0.5"]
BRANDS = ["acme", "globex", "acme", "initech", "globex"]
OUT_DIM = 3


@pytest.fixture
def processors(tmp_path: Path) -> dict[str, Processor]:
    text = TextProcessor("caption", TextOptions(max_length=16))
    text.fit(CAPTIONS, tmp_path)
    price = NumericProcessor("price")
    price.fit(PRICES, tmp_path)
    brand = CategoricalProcessor("brand")
    brand.fit(BRANDS, tmp_path)
    return {"caption": text, "price": price, "brand": brand}


def _model(processors: dict[str, Processor], **kwargs: Any) -> MultimodalNetwork:
    torch.manual_seed(0)
    config = resolve_encoders(ModelConfig(dim=16, **kwargs), INPUTS)
    return build_network(config, INPUTS, processors, OUT_DIM)


def _items(
    processors: dict[str, Processor], absent: dict[str, set[int]] | None = None
) -> dict[str, list[Any]]:
    cells = {"caption": CAPTIONS, "price": PRICES, "brand": BRANDS}
    items: dict[str, list[Any]] = {}
    for column, values in cells.items():
        gone = (absent or {}).get(column, set())
        items[column] = [
            None if i in gone else processors[column].load(v, Path(".")) for i, v in enumerate(values)
        ]
    return items


def _batch(processors: dict[str, Processor], absent: dict[str, set[int]] | None = None) -> Batch:
    return make_batch(_items(processors, absent), processors, None, None, train=False)


# ------------------------------------------------------------------------------------------ forward
def test_forward_shape(processors: dict[str, Processor]) -> None:
    model = _model(processors)
    batch = _batch(processors)
    assert len(batch) == 5
    logits = model(batch)
    assert logits.shape == (5, OUT_DIM)
    assert torch.isfinite(logits).all()
    presence = model.presence(batch)
    assert model.fusion(model.encode(batch, presence), presence).pooled.shape == (5, 16)
    assert set(model.encoders) == set(INPUTS)
    assert set(model.absent) == set(INPUTS)


def test_forward_with_gru_and_deeper_head(processors: dict[str, Processor]) -> None:
    model = _model(processors, encoders={"caption": {"type": "gru"}}, head={"layers": 2, "hidden": 8})
    assert type(model.encoders["caption"]).__name__ == "TextGRU"
    logits = model(_batch(processors, {"price": {1}}))
    assert logits.shape == (5, OUT_DIM)
    assert torch.isfinite(logits).all()


def test_column_with_a_dot_in_its_name(processors: dict[str, Processor]) -> None:
    torch.manual_seed(0)
    inputs = {"item.price": "numeric"}
    config = resolve_encoders(ModelConfig(dim=8), inputs)
    model = build_network(config, inputs, {"item.price": processors["price"]}, 2)
    batch = make_batch({"item.price": [0.5, None]}, {"item.price": processors["price"]}, None, None, False)
    assert model(batch).shape == (2, 2)
    assert module_key("item.price") in model.absent


# ------------------------------------------------------------------------------------------- absent
def test_partially_absent_column(processors: dict[str, Processor]) -> None:
    model = _model(processors).eval()
    gone = {1, 3}
    batch = _batch(processors, {"caption": gone})
    assert batch.presence["caption"].tolist() == [True, False, True, False, True]
    with torch.no_grad():
        out = model.encode_column("caption", batch.inputs["caption"], batch.presence["caption"])
        every = _items(processors)["caption"]
        rows = [0, 2, 4]
        alone = model.encoders["caption"](processors["caption"].collate([every[r] for r in rows], False))
    absent = model.absent["caption"]
    assert out.pooled.shape == (5, 16)
    for row in gone:
        assert torch.equal(out.pooled[row], absent)
        assert out.mask[row].tolist() == [True] + [False] * (out.mask.shape[1] - 1)
        assert torch.equal(out.tokens[row, 0], absent)
    assert torch.allclose(out.pooled[rows], alone.pooled, atol=1e-6)
    for i, row in enumerate(rows):
        n = int(alone.mask[i].sum())
        assert out.mask[row].sum() == n
        assert torch.allclose(out.tokens[row, :n], alone.tokens[i, :n], atol=1e-6)


def test_column_absent_for_the_whole_batch(processors: dict[str, Processor]) -> None:
    model = _model(processors).eval()
    batch = _batch(processors, {"price": set(range(5))})
    with torch.no_grad():
        out = model.encode_column("price", batch.inputs["price"], batch.presence["price"])
        logits = model(batch)
    absent = model.absent["price"]
    assert out.pooled.shape == (5, 16)
    for row in range(5):
        assert torch.equal(out.pooled[row], absent)
    assert out.mask.all()
    assert torch.isfinite(logits).all()


def test_column_missing_from_the_items_is_absent(processors: dict[str, Processor]) -> None:
    model = _model(processors).eval()
    items = _items(processors)
    del items["brand"]
    batch = make_batch(items, processors, None, None, train=False)
    assert not batch.presence["brand"].any()
    with torch.no_grad():
        out = model.encode_column("brand", batch.inputs["brand"], batch.presence["brand"])
    assert torch.equal(out.pooled, model.absent["brand"].expand(5, -1))


def test_present_rows_do_not_depend_on_absent_rows(processors: dict[str, Processor]) -> None:
    model = _model(processors).eval()
    with torch.no_grad():
        full_batch, partial_batch = _batch(processors), _batch(processors, {"caption": {1, 3}})
        full = model.encode_column("caption", full_batch.inputs["caption"], full_batch.presence["caption"])
        partial = model.encode_column(
            "caption", partial_batch.inputs["caption"], partial_batch.presence["caption"]
        )
    assert torch.allclose(full.pooled[[0, 2, 4]], partial.pooled[[0, 2, 4]], atol=1e-6)


def test_backward_reaches_the_absent_embedding(processors: dict[str, Processor]) -> None:
    model = _model(processors).train()
    batch = _batch(processors, {"caption": {0, 2}, "brand": {4}})
    model(batch).pow(2).sum().backward()
    for column in ("caption", "brand"):
        grad = model.absent[column].grad
        assert grad is not None
        assert torch.isfinite(grad).all()
        assert grad.abs().sum() > 0
    assert model.absent["price"].grad is None or not model.absent["price"].grad.any()  # price never absent


# -------------------------------------------------------------------------------- resolve_encoders
def test_resolve_encoders_fills_kind_defaults() -> None:
    inputs = {"caption": "text", "img": "image", "snd": "audio", "price": "numeric", "brand": "categorical"}
    resolved = resolve_encoders(ModelConfig(encoders={"caption": GRUOptions(layers=2)}), inputs)
    assert list(resolved.encoders) == list(inputs)
    assert resolved.encoders == {
        "caption": GRUOptions(layers=2),
        "img": CNNOptions(),
        "snd": CNNOptions(),
        "price": MLPOptions(),
        "brand": EmbeddingOptions(),
    }
    assert resolve_encoders(ModelConfig(), {"caption": "text"}).encoders == {"caption": TransformerOptions()}


def test_resolve_encoders_unknown_column() -> None:
    config = ModelConfig(encoders={"title": TransformerOptions()})
    with pytest.raises(ConfigError) as info:
        resolve_encoders(config, INPUTS)
    assert (
        str(info.value) == "model.encoders.title: no input column 'title'; inputs are caption, price, brand"
    )


def test_resolve_encoders_wrong_kind() -> None:
    config = ModelConfig(encoders={"caption": CNNOptions()})
    with pytest.raises(ConfigError) as info:
        resolve_encoders(config, INPUTS)
    assert str(info.value) == (
        "model.encoders.caption.type: 'cnn' is not a text encoder; choose one of transformer, gru, bow, hf"
    )
    with pytest.raises(ConfigError) as info:
        resolve_encoders(ModelConfig(encoders={"price": EmbeddingOptions()}), INPUTS)
    assert (
        str(info.value)
        == "model.encoders.price.type: 'embedding' is not a numeric encoder; choose one of mlp"
    )


# ------------------------------------------------------------------------------------- registries
def test_fusion_registry_unknown_name() -> None:
    with pytest.raises(ConfigError) as info:
        FUSIONS.get("atention", key="model.fusion.type")
    names = FUSIONS.names()
    assert "concat" in names
    assert (
        str(info.value) == f"model.fusion.type: 'atention' is not a fusion; choose one of {', '.join(names)}"
    )
    assert build_fusion(ConcatOptions(), {"a": "text", "b": "image"}, 8).out_dim == 8


def test_task_registry_unknown_name() -> None:
    with pytest.raises(ConfigError) as info:
        TASKS.get("ranking", key="task.type")
    names = TASKS.names()
    assert {"classification", "regression", "multilabel"} <= set(names)
    assert str(info.value) == f"task.type: 'ranking' is not a task; choose one of {', '.join(names)}"


def test_encoder_registry_unknown_name() -> None:
    with pytest.raises(ConfigError) as info:
        ENCODERS.get("text/lstm", key="model.encoders.caption.type")
    assert str(info.value) == (
        f"model.encoders.caption.type: 'text/lstm' is not an encoder; choose one of {', '.join(ENCODERS.names())}"
    )
    assert "text/transformer" in str(info.value)


def test_modality_dropout_defaults_to_feature_dropout_on_wide_tables(tmp_path: Path) -> None:
    """null = 0.2 from MANY_INPUTS inputs on (a table of features), 0 for a few inputs; a value wins."""
    few = resolve_encoders(ModelConfig(dim=16), INPUTS)
    assert modality_dropout(few, INPUTS) == 0.0
    table = {f"p{i}": "numeric" for i in range(MANY_INPUTS)}
    processors: dict[str, Processor] = {}
    for column in table:
        processors[column] = NumericProcessor(column)
        processors[column].fit(PRICES, tmp_path)
    model = build_network(resolve_encoders(ModelConfig(dim=16), table), table, processors, OUT_DIM)
    assert model.modality_dropout == 0.2
    set_to = resolve_encoders(ModelConfig(dim=16, modality_dropout=0.05), table)
    assert build_network(set_to, table, processors, OUT_DIM).modality_dropout == 0.05
    narrower = dict(list(table.items())[: MANY_INPUTS - 1])
    assert modality_dropout(resolve_encoders(ModelConfig(dim=16), narrower), narrower) == 0.0
