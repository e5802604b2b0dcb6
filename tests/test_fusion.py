"""Every registered fusion on tiny fake encoder outputs: shapes, gradients, absent inputs, options, config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import Tensor, nn

from mumo.config import TextOptions, build_config, dump_config
from mumo.config_model import AttentionOptions, FiLMOptions
from mumo.data.dataset import make_batch
from mumo.errors import ConfigError
from mumo.fusion import FUSIONS, Fusion, build_fusion
from mumo.modalities import Processor
from mumo.modalities.tabular import CategoricalProcessor, NumericProcessor
from mumo.modalities.text import TextProcessor
from mumo.network import build_network, resolve_encoders
from mumo.outputs import EncoderOutput

DIM, BATCH, OUT_DIM = 16, 5, 3
KINDS = {"caption": "text", "image": "image", "sound": "audio", "price": "numeric"}
LENGTHS = {"caption": 7, "image": 4, "sound": 3, "price": 1}  # tokens per column differ
# The fusions that may feed a column's absent embedding into the output (the others mask it out).
USES_ABSENT_EMBEDDING = {"concat", "film", "bilinear", "cross"}


def _kinds(n: int) -> dict[str, str]:
    return dict(list(KINDS.items())[:n])


def _fusion(name: str, kinds: dict[str, str], **options: Any) -> Fusion:
    torch.manual_seed(0)
    config = build_config({"data": {"train": "-"}, "model": {"fusion": {"type": name, **options}}})
    return build_fusion(config.model.fusion, kinds, DIM, OUT_DIM)


def _outputs(kinds: dict[str, str], seed: int = 1) -> dict[str, EncoderOutput]:
    """Leaf tensors (so their grads can be checked); masks keep 1..T tokens, some False at the end."""
    generator = torch.Generator().manual_seed(seed)
    outputs = {}
    for column in kinds:
        length = LENGTHS[column]
        kept = torch.arange(BATCH) % length + 1  # (B,) real tokens per row
        mask = torch.arange(length).unsqueeze(0) < kept.unsqueeze(1)  # (B, T)
        pooled = torch.randn(BATCH, DIM, generator=generator).requires_grad_()
        tokens = torch.randn(BATCH, length, DIM, generator=generator).requires_grad_()
        outputs[column] = EncoderOutput(pooled, tokens, mask)
    return outputs


def _absent(outputs: dict[str, EncoderOutput], column: str, rows: Tensor, fill: float) -> None:
    """Make `column` absent in `rows` the way the model does: pooled = the absent vector, one token."""
    out = outputs[column]
    vector = torch.full((DIM,), fill)
    pooled = torch.where(rows.unsqueeze(1), vector, out.pooled.detach())
    tokens = out.tokens.detach().clone()
    tokens[rows] = fill * 2  # whatever sits behind the mask
    tokens[rows, 0] = vector
    mask = out.mask.clone()
    mask[rows] = False
    mask[rows, 0] = True
    outputs[column] = EncoderOutput(pooled.requires_grad_(), tokens.requires_grad_(), mask)


def _presence(kinds: dict[str, str]) -> dict[str, Tensor]:
    return {c: torch.ones(BATCH, dtype=torch.bool) for c in kinds}


def _check(fusion: Fusion, outputs: dict[str, EncoderOutput], presence: dict[str, Tensor]) -> Tensor:
    """Forward + backward: right shapes, finite pooled vector and tokens, finite grads on parameters and
    inputs. Returns the pooled vector."""
    fused, tokens, mask = fusion(outputs, presence)
    assert fused.shape == (BATCH, fusion.out_dim)
    assert tokens.shape[0] == BATCH and tokens.shape[2] == DIM and tokens.shape[1] >= 1
    assert mask.shape == tokens.shape[:2] and mask.dtype == torch.bool
    if fusion.produces_logits:
        assert fusion.out_dim == OUT_DIM
    assert torch.isfinite(fused).all() and torch.isfinite(tokens).all()
    (fused.pow(2).sum() + tokens[mask].pow(2).sum()).backward()
    for name, parameter in fusion.named_parameters():
        assert parameter.grad is None or torch.isfinite(parameter.grad).all(), name
    for out in outputs.values():
        for tensor in (out.pooled, out.tokens):
            assert tensor.grad is None or torch.isfinite(tensor.grad).all()
    return fused


# ----------------------------------------------------------------------------------- every fusion
@pytest.mark.parametrize("n", [2, 4])
@pytest.mark.parametrize("name", FUSIONS.names())
def test_forward_backward(name: str, n: int) -> None:
    kinds = _kinds(n)
    fusion = _fusion(name, kinds).train()
    _check(fusion, _outputs(kinds), _presence(kinds))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in fusion.parameters())


@pytest.mark.parametrize("name", FUSIONS.names())
def test_single_column(name: str) -> None:
    kinds = _kinds(1)
    _check(_fusion(name, kinds), _outputs(kinds), _presence(kinds))


@pytest.mark.parametrize("column", list(KINDS))
@pytest.mark.parametrize("name", FUSIONS.names())
def test_column_absent_for_the_whole_batch(name: str, column: str) -> None:
    fusion = _fusion(name, KINDS)
    presence = _presence(KINDS)
    presence[column][:] = False
    everyone = torch.ones(BATCH, dtype=torch.bool)
    fused, seen = {}, {}
    for fill in (0.5, -3.0):
        outputs = _outputs(KINDS)
        _absent(outputs, column, everyone, fill)
        _check(fusion.train(), outputs, presence)
        with torch.no_grad():
            fused[fill], tokens, mask = fusion.eval()(outputs, presence)
            seen[fill] = tokens[mask]  # what a decoder attends to
    if name not in USES_ABSENT_EMBEDDING:  # the absent column is masked out: its values do not matter
        assert torch.allclose(fused[0.5], fused[-3.0], atol=1e-6)
    if name != "cross":  # cross's words attend to the absent embedding; the others hide the column's tokens
        assert torch.allclose(seen[0.5], seen[-3.0], atol=1e-6)


@pytest.mark.parametrize("name", FUSIONS.names())
def test_all_columns_but_one_absent_for_some_rows(name: str) -> None:
    fusion = _fusion(name, KINDS)
    outputs, presence = _outputs(KINDS), _presence(KINDS)
    alone = {0: "caption", 1: "caption", 2: "price", 3: "image"}  # row → its only input; row 4 has none
    for column in KINDS:
        rows = torch.tensor([alone.get(row) != column for row in range(BATCH)])
        rows[4] = True
        presence[column] = ~rows
        _absent(outputs, column, rows, 1.0)
    for training in (True, False):
        fusion.train(training).zero_grad()
        _check(fusion, outputs, presence)


# ------------------------------------------------------------------------------------ per fusion
def test_late_produces_logits() -> None:
    fusion = _fusion("late", KINDS)
    assert fusion.produces_logits and fusion.out_dim == OUT_DIM
    assert not any(FUSIONS.get(name).produces_logits for name in FUSIONS.names() if name != "late")


def test_attention_over_tokens_masks_absent_columns_and_caps_tokens() -> None:
    options = AttentionOptions(tokens=True, max_tokens=2)
    torch.manual_seed(0)
    fusion = build_fusion(options, KINDS, DIM, OUT_DIM).eval()
    presence = _presence(KINDS)
    presence["sound"][:] = False
    fused = []
    for fill in (0.5, -3.0):
        outputs = _outputs(KINDS)
        _absent(outputs, "sound", torch.ones(BATCH, dtype=torch.bool), fill)
        with torch.no_grad():
            outputs["caption"].tokens[:, 2:] = fill  # beyond max_tokens: never seen
        fused.append(_check(fusion, outputs, presence).detach())
    assert torch.allclose(fused[0], fused[1], atol=1e-6)


def test_attention_heads_must_divide_dim() -> None:
    with pytest.raises(ConfigError, match=r"^model.fusion.heads: 3 does not divide model.dim 16$"):
        build_fusion(AttentionOptions(heads=3), KINDS, DIM, OUT_DIM)


def test_lrtf_product_neither_vanishes_nor_explodes() -> None:
    fusion = _fusion("lrtf", KINDS).eval()
    seen: list[Tensor] = []
    fusion.norm.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    outputs = _outputs(KINDS)
    fused = fusion(outputs, _presence(KINDS)).pooled
    (fused * torch.randn(fused.shape, generator=torch.Generator().manual_seed(2))).sum().backward()
    spread = seen[0].std(dim=-1)  # (B,) how much the pre-norm features vary
    assert ((spread > 0.05) & (spread < 20)).all(), spread
    for out in outputs.values():
        assert out.pooled.grad is not None
        assert 1e-3 < float(out.pooled.grad.norm()) < 1e3


def test_film_defaults_to_text_condition_and_image_target() -> None:
    fusion = build_fusion(FiLMOptions(), {"image": "image", "caption": "text"}, DIM, OUT_DIM)
    assert (fusion.condition, fusion.target) == ("caption", "image")
    fusion = build_fusion(FiLMOptions(), {"price": "numeric", "brand": "categorical"}, DIM, OUT_DIM)
    assert (fusion.condition, fusion.target) == ("price", "brand")
    fusion = build_fusion(FiLMOptions(target="caption"), KINDS, DIM, OUT_DIM)
    assert (fusion.condition, fusion.target) == ("image", "caption")


@pytest.mark.parametrize("key", ["condition", "target"])
def test_film_unknown_column(key: str) -> None:
    message = f"model.fusion.{key}: no input column 'title'; inputs are caption, image, sound, price"
    with pytest.raises(ConfigError) as info:
        build_fusion(FiLMOptions(**{key: "title"}), KINDS, DIM, OUT_DIM)
    assert str(info.value) == message


def test_film_absent_condition_is_the_identity() -> None:
    fusion = _fusion("film", _kinds(2)).eval()
    with torch.no_grad():
        nn.init.normal_(fusion.film.weight)  # a real modulation
    outputs, presence = _outputs(_kinds(2)), _presence(_kinds(2))
    modulated = fusion(outputs, presence).pooled
    presence["caption"][:] = False
    plain = fusion(outputs, presence).pooled
    with torch.no_grad():
        fusion.film.weight.zero_()
    assert torch.allclose(plain, fusion(outputs, presence).pooled, atol=1e-6)
    assert not torch.allclose(plain, modulated, atol=1e-3)


def test_bilinear_pair() -> None:
    raw = {"data": {"train": "-"}, "model": {"fusion": {"type": "bilinear", "pair": ["price", "image"]}}}
    fusion = build_fusion(build_config(raw).model.fusion, KINDS, DIM, OUT_DIM)
    assert fusion.pair == ["price", "image"] and fusion.others == ["caption", "sound"]
    raw["model"]["fusion"]["pair"] = ["price", "title"]
    with pytest.raises(ConfigError, match="^model.fusion.pair: no input column 'title'; inputs are"):
        build_fusion(build_config(raw).model.fusion, KINDS, DIM, OUT_DIM)


def test_cross_queries_are_kept_in_order_and_absent_from_older_weights() -> None:
    plain = _fusion("cross", KINDS, queries=0)
    assert "slots" not in plain.state_dict()  # runs saved before model.fusion.queries load unchanged
    fusion = _fusion("cross", KINDS, queries=3)
    assert fusion.slots.shape == (1, 3, DIM)  # one set per text column
    outputs, presence = _outputs(KINDS), _presence(KINDS)
    fused = _check(fusion, outputs, presence)
    assert fusion.slots.grad is not None and fusion.slots.grad.abs().sum() > 0
    with torch.no_grad():  # each query's output has its own place: swapping two queries changes the result
        fusion.slots[:, [0, 1]] = fusion.slots[:, [1, 0]].clone()
    assert not torch.allclose(fused, fusion(outputs, presence).pooled, atol=1e-4)


# ----------------------------------------------------------------------------------- config path
CAPTIONS = ["a red circle", "two blue squares", "a big green triangle", "one small star", "a dot"]
PRICES = ["1.5", "2", "10", "-3", "0.5"]
BRANDS = ["acme", "globex", "acme", "initech", "globex"]
INPUTS = {"caption": "text", "price": "numeric", "brand": "categorical"}


@pytest.fixture
def processors(tmp_path: Path) -> dict[str, Processor]:
    text = TextProcessor("caption", TextOptions(max_length=16))
    text.fit(CAPTIONS, tmp_path)
    price, brand = NumericProcessor("price"), CategoricalProcessor("brand")
    price.fit(PRICES, tmp_path)
    brand.fit(BRANDS, tmp_path)
    return {"caption": text, "price": price, "brand": brand}


@pytest.mark.parametrize("name", FUSIONS.names())
def test_build_model_from_config(name: str, processors: dict[str, Processor]) -> None:
    raw = {"data": {"train": "-"}, "model": {"dim": DIM, "fusion": {"type": name}}}
    config = build_config(raw)
    assert build_config(yaml.safe_load(dump_config(config))) == config  # every default round-trips
    torch.manual_seed(0)
    model = build_network(resolve_encoders(config.model, INPUTS), INPUTS, processors, OUT_DIM).train()
    assert isinstance(model.head, nn.Identity) == model.fusion.produces_logits
    cells = {"caption": CAPTIONS, "price": PRICES, "brand": BRANDS}
    gone = {"caption": {1, 3}, "price": {1}, "brand": set(range(5))}
    items = {
        c: [None if i in gone[c] else processors[c].load(v, Path(".")) for i, v in enumerate(values)]
        for c, values in cells.items()
    }
    logits = model(make_batch(items, processors, None, None, train=True))
    assert logits.shape == (BATCH, OUT_DIM)
    assert torch.isfinite(logits).all()
    logits.sum().backward()


@pytest.mark.parametrize("name", FUSIONS.names())
def test_unknown_fusion_key_is_one_line(name: str) -> None:
    raw = {"data": {"train": "-"}, "model": {"fusion": {"type": name, "nonsense": 1}}}
    with pytest.raises(ConfigError) as info:
        build_config(raw)
    message = str(info.value)
    assert message.startswith("model.fusion.nonsense: unknown key; valid keys: type")
    assert "\n" not in message


def test_key_of_another_fusion_is_named() -> None:
    raw = {"data": {"train": "-"}, "model": {"fusion": {"type": "attention", "rank": 4}}}
    with pytest.raises(ConfigError) as info:
        build_config(raw)
    assert str(info.value) == (
        "model.fusion.rank: unknown key; valid keys: type, layers, heads, dropout, tokens, max_tokens"
    )
