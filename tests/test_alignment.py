"""model.align: the auxiliary contrastive loss on the encoders' pooled vectors — when it is on, what it
computes, which rows it leaves out, and that training adds it (and only training)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mumo.config import TextOptions
from mumo.config_model import ModelConfig
from mumo.data.dataset import make_batch
from mumo.modalities.text import TextProcessor
from mumo.network import Alignment, build_alignment, build_network, resolve_encoders
from mumo.outputs import EncoderOutput


def encoded(**pooled: torch.Tensor) -> dict[str, EncoderOutput]:
    return {
        c: EncoderOutput(v, v.unsqueeze(1), torch.ones(len(v), 1, dtype=torch.bool))
        for c, v in pooled.items()
    }


def identity_alignment(
    columns: list[str], dim: int, weight: float = 1.0, kinds: dict[str, str] | None = None
) -> Alignment:
    align = Alignment(columns, kinds or dict.fromkeys(columns, "image"), dim, weight)
    for layer in align.project.values():
        torch.nn.init.eye_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    return align


@pytest.mark.parametrize(
    ("inputs", "align", "expected"),
    [
        ({"caption": "text", "photo": "image"}, None, 1.0),
        ({"sound": "audio", "photo": "image", "price": "numeric"}, None, 1.0),
        ({"caption": "text", "price": "numeric"}, None, None),  # one aligned kind: nothing to align
        ({"title": "text", "body": "text"}, None, None),  # auto needs two kinds
        ({"title": "text", "body": "text"}, 0.5, 0.5),  # asked for: any two columns
        ({"caption": "text", "photo": "image"}, 0.0, None),
    ],
)
def test_when_alignment_is_on(inputs: dict[str, str], align: float | None, expected: float | None) -> None:
    built = build_alignment(ModelConfig(align=align), inputs)
    assert (built.weight if built is not None else None) == expected
    if built is not None:
        assert built.columns == [c for c, k in inputs.items() if k in ("text", "image", "audio")]


def test_the_loss_is_clip_infonce_with_the_weight() -> None:
    torch.manual_seed(0)
    text, image = torch.randn(6, 8), torch.randn(6, 8)
    present = {"t": torch.ones(6, dtype=torch.bool), "i": torch.ones(6, dtype=torch.bool)}
    loss = identity_alignment(["t", "i"], 8, weight=0.5)(encoded(t=text, i=image), present)
    logits = (1 / 0.07) * F.normalize(text, dim=-1) @ F.normalize(image, dim=-1).T
    labels = torch.arange(6)
    expected = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_matched_rows_score_lower_than_shuffled() -> None:
    torch.manual_seed(0)
    base = torch.randn(16, 8)
    present = {"t": torch.ones(16, dtype=torch.bool), "i": torch.ones(16, dtype=torch.bool)}
    align = identity_alignment(["t", "i"], 8)
    matched = align(encoded(t=base, i=base + 0.05 * torch.randn(16, 8)), present)
    shuffled = align(encoded(t=base, i=base[torch.randperm(16)]), present)
    assert matched.item() < 0.01 < 2.0 < shuffled.item()


def test_rows_lacking_an_input_are_left_out() -> None:
    torch.manual_seed(0)
    text, image = torch.randn(8, 8), torch.randn(8, 8)
    present = {"t": torch.ones(8, dtype=torch.bool), "i": torch.tensor([True] * 5 + [False] * 3)}
    align = identity_alignment(["t", "i"], 8)
    loss = align(encoded(t=text, i=image), present)
    changed = image.clone()
    changed[5:] = 100.0  # what absent rows hold does not matter
    assert align(encoded(t=text, i=changed), present).item() == pytest.approx(loss.item())
    only = {"t": present["t"][:5], "i": present["i"][:5]}
    assert align(encoded(t=text[:5], i=image[:5]), only).item() == pytest.approx(loss.item())
    nobody = {"t": present["t"], "i": torch.zeros(8, dtype=torch.bool)}
    assert align(encoded(t=text, i=image), nobody).item() == 0.0


def test_a_network_adds_it_while_training_only(tmp_path: Path) -> None:
    inputs = {"title": "text", "body": "text"}
    processors = {}
    for column, cells in (("title", ["a red one", "blue", "green thing"]), ("body", ["x y", "z", "y x z"])):
        processors[column] = TextProcessor(column, TextOptions(max_length=8))
        processors[column].fit(cells, tmp_path)
    config = resolve_encoders(ModelConfig(dim=16, align=0.5), inputs)
    network = build_network(config, inputs, processors, 2)
    cells = {"title": ["a red one", "blue", "green thing"], "body": ["x y", "z", "y x z"]}
    items = {c: [processors[c].load(v, tmp_path) for v in values] for c, values in cells.items()}
    batch = make_batch(items, processors, None, None, train=False)
    network.train()
    network(batch)
    loss = network.auxiliary_loss()
    assert loss is not None and loss.item() > 0 and loss.requires_grad
    assert network.auxiliary_loss() is None  # taken once
    network.eval()
    network(batch)
    assert network.auxiliary_loss() is None


def test_start_temperature_is_clips() -> None:
    align = Alignment(["a", "b"], {"a": "text", "b": "image"}, 4, 1.0)
    assert align.log_scale.exp().item() == pytest.approx(1 / 0.07)
    assert math.isfinite(align.log_scale.item())


def test_words_each_find_their_best_region() -> None:
    """With text, a row's score is the mean over its real words of the best cosine to any real region of
    the other row: a caption whose every word is one of an image's regions scores 1, padding words and
    padded regions play no part."""
    torch.manual_seed(0)
    basis = torch.eye(8)
    words = torch.stack([basis[[0, 1, 2]], basis[[3, 4, 4]]])  # (2 rows, 3 words, 8)
    word_mask = torch.tensor([[True, True, False], [True, True, True]])
    regions = torch.stack([basis[[1, 0, 5, 7]], basis[[4, 3, 6, 2]]])  # (2 rows, 4 regions, 8)
    region_mask = torch.tensor([[True, True, True, True], [True, True, True, False]])
    align = identity_alignment(["caption", "photo"], 8, kinds={"caption": "text", "photo": "image"})
    a = EncoderOutput(words.mean(1), words, word_mask)
    b = EncoderOutput(regions.mean(1), regions, region_mask)
    similarity = align.similarity(a, b, "caption", "photo", torch.ones(2, dtype=torch.bool))
    # row 0's words {0, 1} are both regions of image 0; of image 1 ({4, 3, 6}; 2 is padding) neither is
    # row 1's words {3, 4, 4}: none in image 0, all in image 1
    assert similarity.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    # and the loss puts the text side first whatever the column order
    swapped = identity_alignment(["photo", "caption"], 8, kinds={"caption": "text", "photo": "image"})
    present = {"caption": torch.ones(2, dtype=torch.bool), "photo": torch.ones(2, dtype=torch.bool)}
    assert swapped({"caption": a, "photo": b}, present).item() == pytest.approx(
        align({"caption": a, "photo": b}, present).item()
    )


def test_too_many_word_region_pairs_fall_back_to_pooled_vectors(monkeypatch: pytest.MonkeyPatch) -> None:
    import mumo.network

    torch.manual_seed(0)
    words, regions = torch.randn(4, 5, 8), torch.randn(4, 6, 8)
    a = EncoderOutput(words.mean(1), words, torch.ones(4, 5, dtype=torch.bool))
    b = EncoderOutput(regions.mean(1), regions, torch.ones(4, 6, dtype=torch.bool))
    align = identity_alignment(["caption", "photo"], 8, kinds={"caption": "text", "photo": "image"})
    rows = torch.ones(4, dtype=torch.bool)
    fine = align.similarity(a, b, "caption", "photo", rows)
    monkeypatch.setattr(mumo.network, "TOKEN_PAIRS", 4 * 4 * 5 * 6 - 1)
    pooled = align.similarity(a, b, "caption", "photo", rows)
    expected = F.normalize(words.mean(1), dim=-1) @ F.normalize(regions.mean(1), dim=-1).T
    assert torch.allclose(pooled, expected, atol=1e-6) and not torch.allclose(fine, expected, atol=1e-3)
