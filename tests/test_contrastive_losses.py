"""Contrastive losses against direct references, and GradCache accumulation against one big batch.

The losses are checked in float64 against explicit loops (value and gradients w.r.t. both embeddings,
the scale and the bias). GradCache is checked on a real two-column ContrastiveNetwork (a text transformer
and a numeric MLP, both with dropout): its loss and every parameter gradient must equal those of the
whole batch in one pass.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from mumo.config import TextOptions
from mumo.config_model import MLPOptions, TransformerOptions
from mumo.data.dataset import Batch, make_batch
from mumo.modalities.tabular import NumericMLP, NumericProcessor
from mumo.modalities.text import TextProcessor, TextTransformer
from mumo.tasks.contrastive import ContrastiveNetwork, infonce_loss, sigmoid_loss
from mumo.training.gradcache import gradcache_loss

DIM, PROJECTION, SIZE, SEED = 16, 8, 12, 1234
TEXT, NUMBER = "caption", "meta.weight"  # a dotted column name exercises module_key
TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}
SENTENCES = [
    "a red circle",
    "two blue squares in the top left corner",
    "a large green triangle on a white background",
    "small star",
    "one yellow hexagon",
    "three tiny purple dots near the bottom edge of the picture",
    "an orange ring",
    "a grey square and a black circle",
    "nothing at all",
    "a big blue star in the middle",
    "pink triangle",
    "five green circles in a row along the top",
]
NUMBERS = ["1.5", "-2", "10", "3.25", "0", "7", "-4.5", "2.75", "12", "-1", "5.5", "8"]


# ------------------------------------------------------------------------------- loss references
def reference_infonce(a: Tensor, b: Tensor, scale: Tensor) -> Tensor:
    """CLIP written out: per row i, -log softmax_j(s a_i.b_j)[i]; per column likewise; the two means
    averaged."""
    n = a.shape[0]
    logits = [[scale * torch.dot(a[i], b[j]) for j in range(n)] for i in range(n)]
    rows = sum(torch.logsumexp(torch.stack(logits[i]), 0) - logits[i][i] for i in range(n)) / n
    cols = sum(
        torch.logsumexp(torch.stack([logits[j][i] for j in range(n)]), 0) - logits[i][i] for i in range(n)
    )
    return (rows + cols / n) / 2


def reference_sigmoid(a: Tensor, b: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    """SigLIP written out: sum over every (i, j) of log(1 + exp(-y z)), y = +1 iff i == j; divided by N."""
    n = a.shape[0]
    total = torch.zeros((), dtype=a.dtype)
    for i in range(n):
        for j in range(n):
            z = scale * torch.dot(a[i], b[j]) + bias
            y = 1.0 if i == j else -1.0
            total = total + torch.log1p(torch.exp(-y * z))
    return total / n


def unit_rows(n: int, p: int, generator: torch.Generator) -> Tensor:
    return F.normalize(torch.randn(n, p, generator=generator, dtype=torch.float64), dim=1).requires_grad_(
        True
    )


def assert_same_value_and_grads(
    got: Tensor, want: Tensor, inputs: list[Tensor], atol: float = 1e-6, rtol: float = 1e-6
) -> None:
    torch.testing.assert_close(got, want, atol=atol, rtol=rtol)
    got_grads = torch.autograd.grad(got, inputs)
    want_grads = torch.autograd.grad(want, inputs)
    for got_grad, want_grad in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(got_grad, want_grad, atol=atol, rtol=rtol)


# ----------------------------------------------------------------------------------------- InfoNCE
@pytest.mark.parametrize("n", [1, 2, 3, 7])
@pytest.mark.parametrize("scale_value", [1 / 0.07, 2.0])
def test_infonce_matches_reference(n: int, scale_value: float) -> None:
    generator = torch.Generator().manual_seed(n)
    a, b = unit_rows(n, 5, generator), unit_rows(n, 5, generator)
    scale = torch.tensor(scale_value, dtype=torch.float64, requires_grad=True)
    loss = infonce_loss(a, b, scale)
    assert loss.dtype == torch.float64 and loss.shape == ()
    assert_same_value_and_grads(loss, reference_infonce(a, b, scale), [a, b, scale])


def test_infonce_single_pair_is_zero() -> None:
    """With one row there are no negatives: log softmax over one logit is 0."""
    a, b = (
        unit_rows(1, 4, torch.Generator().manual_seed(0)),
        unit_rows(1, 4, torch.Generator().manual_seed(1)),
    )
    assert infonce_loss(a, b, torch.tensor(10.0, dtype=torch.float64)).item() == 0.0


def test_infonce_uses_both_directions() -> None:
    """Rows and columns each contribute half: the loss is (CE(logits) + CE(logits.T)) / 2, which differs
    from either direction alone when the logit matrix is not symmetric, and is symmetric in a, b."""
    generator = torch.Generator().manual_seed(5)
    a, b = unit_rows(6, 4, generator).detach(), unit_rows(6, 4, generator).detach()
    scale = torch.tensor(3.0, dtype=torch.float64)
    logits = scale * a @ b.T
    labels = torch.arange(6)
    rows, cols = F.cross_entropy(logits, labels), F.cross_entropy(logits.T, labels)
    assert abs(float(rows - cols)) > 1e-3  # the two directions really differ here
    loss = infonce_loss(a, b, scale)
    torch.testing.assert_close(loss, (rows + cols) / 2, atol=1e-12, rtol=0)
    torch.testing.assert_close(infonce_loss(b, a, scale), loss, atol=1e-12, rtol=0)


@pytest.mark.parametrize("n", [2, 4])
def test_infonce_closed_forms(n: int) -> None:
    """Orthonormal rows: logits are s on the diagonal and 0 elsewhere, so each row (and column) loses
    log(1 + (N-1) e^-s); shifting b by one row moves the s off the diagonal: log(e^s + N - 1)."""
    a = torch.eye(n, 6, dtype=torch.float64)
    for s in [1.0, 5.0]:
        scale = torch.tensor(s, dtype=torch.float64)
        assert infonce_loss(a, a, scale).item() == pytest.approx(
            math.log1p((n - 1) * math.exp(-s)), abs=1e-12
        )
        shifted = a.roll(1, dims=0)
        assert infonce_loss(a, shifted, scale).item() == pytest.approx(
            math.log(math.exp(s) + n - 1), abs=1e-12
        )
    aligned = infonce_loss(a, a, torch.tensor(100.0, dtype=torch.float64)).item()
    assert 0.0 <= aligned < 1e-12  # perfectly aligned, well separated, large scale: loss ~ 0
    assert infonce_loss(a, a.roll(1, dims=0), torch.tensor(100.0, dtype=torch.float64)).item() > 99.0


# ----------------------------------------------------------------------------------------- SigLIP
@pytest.mark.parametrize("n", [1, 2, 3, 6])
@pytest.mark.parametrize(("scale_value", "bias_value"), [(10.0, -10.0), (3.0, 0.5)])
def test_sigmoid_matches_reference(n: int, scale_value: float, bias_value: float) -> None:
    generator = torch.Generator().manual_seed(10 + n)
    a, b = unit_rows(n, 5, generator), unit_rows(n, 5, generator)
    scale = torch.tensor(scale_value, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(bias_value, dtype=torch.float64, requires_grad=True)
    loss = sigmoid_loss(a, b, scale, bias)
    assert loss.dtype == torch.float64 and loss.shape == ()
    assert_same_value_and_grads(loss, reference_sigmoid(a, b, scale, bias), [a, b, scale, bias])


@pytest.mark.parametrize("n", [1, 3])
def test_sigmoid_closed_form(n: int) -> None:
    """Orthonormal rows: the N positives have logit s + b, the N(N-1) negatives logit b; divided by N:
    softplus(-(s + b)) + (N - 1) softplus(b). At SigLIP's init (s=10, b=-10) the positive term is log 2."""
    a = torch.eye(n, 4, dtype=torch.float64)
    for s, bias in [(10.0, -10.0), (2.0, 1.0)]:
        want = math.log1p(math.exp(-(s + bias))) + (n - 1) * math.log1p(math.exp(bias))
        got = sigmoid_loss(
            a, a, torch.tensor(s, dtype=torch.float64), torch.tensor(bias, dtype=torch.float64)
        )
        assert got.item() == pytest.approx(want, abs=1e-12)


# ------------------------------------------------------------------------------- model and batches
@pytest.fixture(scope="module")
def processors() -> dict[str, Any]:
    text = TextProcessor(TEXT, TextOptions(max_length=16))
    text.fit(SENTENCES, Path("."))
    number = NumericProcessor(NUMBER)
    number.fit(NUMBERS, Path("."))
    return {TEXT: text, NUMBER: number}


def build_network(processors: dict[str, Any], loss: str) -> ContrastiveNetwork:
    """Encoders without batch-dependent layers (LayerNorm, not BatchNorm): each row's embedding depends
    on that row alone, so chunking cannot change it. The CNN encoders are left out on purpose: BatchNorm
    statistics of a chunk differ from those of the whole batch, so GradCache is not exact for them."""
    torch.manual_seed(0)
    encoders = {
        TEXT: TextTransformer(TransformerOptions(layers=1, heads=2, dropout=0.2), DIM, processors[TEXT]),
        NUMBER: NumericMLP(MLPOptions(hidden=16, dropout=0.2), DIM, processors[NUMBER]),
    }
    model = ContrastiveNetwork(encoders, [(TEXT, NUMBER)], DIM, PROJECTION, loss=loss)
    with torch.no_grad():  # move the learned scale (and bias) off their inits so their gradients are generic
        model.log_scale.fill_(math.log(5.0))
        if model.bias is not None:
            model.bias.fill_(-1.5)
    return model


def build_batch(
    processors: dict[str, Any], text_absent: Collection[int] = (), number_absent: Collection[int] = ()
) -> Batch:
    """SIZE rows; text_absent / number_absent hold the rows whose cell is missing (None)."""
    items = {
        TEXT: [
            None if i in text_absent else processors[TEXT].load(s, Path(".")) for i, s in enumerate(SENTENCES)
        ],
        NUMBER: [
            None if i in number_absent else processors[NUMBER].load(v, Path("."))
            for i, v in enumerate(NUMBERS)
        ],
    }
    batch = make_batch(items, processors, None, None, True)
    assert len(batch) == SIZE
    return batch


def rows_of(batch: Batch, start: int, stop: int) -> Batch:
    return Batch(
        inputs={c: {k: v[start:stop] for k, v in d.items()} for c, d in batch.inputs.items()},
        presence={c: p[start:stop] for c, p in batch.presence.items()},
    )


def gradients(model: ContrastiveNetwork) -> dict[str, Tensor]:
    """Every parameter's gradient; a parameter autograd never reached counts as a zero gradient."""
    return {
        name: torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
        for name, p in model.named_parameters()
    }


def big_batch(model: ContrastiveNetwork, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(SEED)
    loss = model(batch)
    loss.backward()
    return loss.detach(), gradients(model)


def chunked_rng_batch(
    model: ContrastiveNetwork, batch: Batch, chunk: int
) -> tuple[Tensor, dict[str, Tensor]]:
    """The whole-batch loss with a graph, but embedding chunk by chunk: the RNG is consumed in the same
    order as by GradCache's first pass, so dropout draws the very masks GradCache uses."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(SEED)
    pieces = [model.embed_batch(rows_of(batch, s, s + chunk)) for s in range(0, len(batch), chunk)]
    embeddings = {c: torch.cat([p[c] for p in pieces]) for c in model.columns}
    loss = model.pair_loss(embeddings, batch.presence)
    loss.backward()
    return loss.detach(), gradients(model)


def backward(tensor: Tensor) -> None:
    tensor.backward()


def gradcache(model: ContrastiveNetwork, batch: Batch, chunk: int) -> tuple[Tensor, dict[str, Tensor]]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(SEED)
    loss = gradcache_loss(model, batch, chunk, backward)
    assert loss.grad_fn is None and not loss.requires_grad
    return loss, gradients(model)


def assert_parity(got: tuple[Tensor, dict[str, Tensor]], want: tuple[Tensor, dict[str, Tensor]]) -> None:
    torch.testing.assert_close(got[0], want[0], **TOLERANCE)
    assert got[1].keys() == want[1].keys()
    for name in want[1]:
        assert torch.isfinite(got[1][name]).all(), name
        torch.testing.assert_close(
            got[1][name], want[1][name], **TOLERANCE, msg=lambda m, n=name: f"{n}: {m}"
        )


def assert_reaches_everything(grads: dict[str, Tensor]) -> None:
    """The reference is worth comparing against: every parameter got a non-zero gradient."""
    for name, grad in grads.items():
        if name.endswith("embed.weight"):  # only the rows of tokens in the batch
            assert grad.abs().sum(1).gt(0).sum() > 5, name
        else:
            assert grad.abs().sum() > 0, name


LOSSES = ["infonce", "sigmoid"]
CHUNKS = [4, 5]  # 12 = 4 + 4 + 4 and 5 + 5 + 2 (an uneven last chunk)


# ------------------------------------------------------------------------------------- GradCache
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("chunk", CHUNKS)
def test_gradcache_matches_big_batch_eval_mode(processors: dict[str, Any], loss: str, chunk: int) -> None:
    """Dropout off: GradCache's loss and every gradient (encoders, projections, log_scale, bias) equal
    those of one backward pass over the whole batch.

    In train mode this parity does not hold: the big batch draws dropout masks for all rows of a column
    at once, column after column, while GradCache draws them chunk after chunk, so the masks differ
    (measured: 3.88 vs 4.19 for infonce, chunk 4). Train mode is covered by the two tests below."""
    model = build_network(processors, loss).eval()
    batch = build_batch(processors)
    want = big_batch(model, batch)
    assert_reaches_everything(want[1])
    assert_parity(gradcache(model, batch, chunk), want)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("chunk", [*CHUNKS, SIZE, 20])
def test_gradcache_matches_chunked_rng_reference_train_mode(
    processors: dict[str, Any], loss: str, chunk: int
) -> None:
    """Dropout on: GradCache equals one graph over the whole batch whose dropout masks were drawn chunk
    by chunk from the same seed; with one chunk (chunk >= batch size) that is plainly the big batch."""
    model = build_network(processors, loss).train()
    batch = build_batch(processors)
    want = chunked_rng_batch(model, batch, chunk)
    assert_reaches_everything(want[1])
    assert_parity(gradcache(model, batch, chunk), want)
    if chunk >= SIZE:
        assert_parity(gradcache(model, batch, chunk), big_batch(model, batch))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("chunk", CHUNKS)
def test_gradcache_replays_dropout_exactly(
    processors: dict[str, Any], loss: str, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dropout on: the grad pass embeds every chunk exactly as the no-grad pass did (the RNG is replayed),
    so the returned loss is the loss of the grad-pass embeddings; afterwards the RNG is where one pass
    over the chunks leaves it."""
    model = build_network(processors, loss).train()
    batch = build_batch(processors, text_absent={2}, number_absent={7})
    embed_batch = model.embed_batch
    calls: list[tuple[bool, dict[str, Tensor]]] = []

    def recording(part: Batch) -> dict[str, Tensor]:
        out = embed_batch(part)
        calls.append((torch.is_grad_enabled(), {c: e.detach().clone() for c, e in out.items()}))
        return out

    monkeypatch.setattr(model, "embed_batch", recording)
    torch.manual_seed(SEED)
    loss_value = gradcache_loss(model, batch, chunk, backward)
    state_after = torch.get_rng_state()

    chunks = len(range(0, SIZE, chunk))
    assert [grad for grad, _ in calls] == [False] * chunks + [True] * chunks
    first = {c: torch.cat([out[c] for _, out in calls[:chunks]]) for c in model.columns}
    second = {c: torch.cat([out[c] for _, out in calls[chunks:]]) for c in model.columns}
    for column in model.columns:
        assert torch.equal(first[column].isnan(), ~batch.presence[column].unsqueeze(1).expand(-1, PROJECTION))
        torch.testing.assert_close(second[column], first[column], atol=0, rtol=0, equal_nan=True)
    with torch.no_grad():
        recomputed = model.pair_loss(second, batch.presence)
    torch.testing.assert_close(loss_value, recomputed, atol=1e-6, rtol=1e-6)

    torch.manual_seed(SEED)
    with torch.no_grad():
        for start in range(0, SIZE, chunk):
            embed_batch(rows_of(batch, start, start + chunk))
    assert torch.equal(state_after, torch.get_rng_state())

    # the replay is what makes the passes agree: embedding the first chunk again, unreplayed, differs
    with torch.no_grad():
        again = embed_batch(rows_of(batch, 0, chunk))
    assert not torch.allclose(again[TEXT], first[TEXT][:chunk])


ABSENT_LAYOUTS = {
    "scattered": ({1, 6}, {3, 7, 10}),
    "same-row": ({4, 9}, {4, 11}),
    "no-number-in-last-chunks": (set(), {8, 9, 10, 11}),  # a chunk of 4 (and 5) without the number
}


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("layout", list(ABSENT_LAYOUTS))
def test_gradcache_with_absent_cells(processors: dict[str, Any], loss: str, chunk: int, layout: str) -> None:
    """Rows missing either column are left out of the loss; GradCache still equals the big batch (eval
    mode) and the chunked-RNG reference (train mode), with no NaN leaking into any gradient."""
    text_absent, number_absent = ABSENT_LAYOUTS[layout]
    batch = build_batch(processors, text_absent, number_absent)
    model = build_network(processors, loss).eval()
    want = big_batch(model, batch)
    assert_reaches_everything(want[1])
    assert_parity(gradcache(model, batch, chunk), want)
    model.train()
    assert_parity(gradcache(model, batch, chunk), chunked_rng_batch(model, batch, chunk))


def test_absent_rows_are_left_out_of_the_loss(processors: dict[str, Any]) -> None:
    """The loss with absent rows is the loss over only the rows that have both columns."""
    model = build_network(processors, "infonce").eval()
    batch = build_batch(processors, text_absent={1, 6}, number_absent={3, 7, 10})
    both = [i for i in range(SIZE) if i not in {1, 6, 3, 7, 10}]
    kept = Batch(
        inputs={c: {k: v[both] for k, v in d.items()} for c, d in batch.inputs.items()},
        presence={c: p[both] for c, p in batch.presence.items()},
    )
    with torch.no_grad():
        torch.testing.assert_close(model(batch), model(kept), **TOLERANCE)
        embeddings = model.embed_batch(kept)
        want = infonce_loss(embeddings[TEXT], embeddings[NUMBER], model.scale)
    torch.testing.assert_close(model(batch).detach(), want, **TOLERANCE)


UNPAIRED_LAYOUTS = {
    # every chunk (of 4 or 5) still holds rows of both columns, just never (or once) in the same row
    "one-row-with-both": ({1, 3, 5, 7, 9, 11}, {2, 4, 6, 8, 10}),
    "no-row-with-both": ({1, 3, 5, 7, 9, 11}, {0, 2, 4, 6, 8, 10}),
}


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("layout", list(UNPAIRED_LAYOUTS))
def test_fewer_than_two_pairs_gives_zero_loss(processors: dict[str, Any], loss: str, layout: str) -> None:
    """Under two rows with both columns there is nothing to contrast: the loss is exactly 0, and it
    still backpropagates (a zero gradient on the scale, zeros or nothing elsewhere), big batch and
    GradCache alike."""
    text_absent, number_absent = UNPAIRED_LAYOUTS[layout]
    batch = build_batch(processors, text_absent, number_absent)
    assert int((batch.presence[TEXT] & batch.presence[NUMBER]).sum()) < 2
    model = build_network(processors, loss).train()
    loss_value, grads = big_batch(model, batch)
    assert loss_value.item() == 0.0
    assert model.log_scale.grad is not None and model.log_scale.grad.item() == 0.0
    for chunk in CHUNKS:
        cached_loss, cached_grads = gradcache(model, batch, chunk)
        assert cached_loss.item() == 0.0
        for name, grad in cached_grads.items():
            assert torch.equal(grad, torch.zeros_like(grad)), name
        assert_parity((cached_loss, cached_grads), (loss_value, grads))


# ------------------------------------------------------------------- batches and chunks without an input
def test_batch_without_any_text_gives_zero_loss(processors: dict[str, Any]) -> None:
    """No row has the text column: fewer than two pairs, so the loss should be a zero, as above."""
    model = build_network(processors, "infonce").eval()
    batch = build_batch(processors, text_absent=set(range(SIZE)))
    loss = model(batch)
    loss.backward()
    assert loss.item() == 0.0


def test_gradcache_with_a_chunk_without_text(processors: dict[str, Any]) -> None:
    """The big batch works (test_gradcache_with_absent_cells has the same layout for the number)."""
    batch = build_batch(processors, text_absent={8, 9, 10, 11})
    model = build_network(processors, "infonce").eval()
    want = big_batch(model, batch)
    assert_parity(gradcache(model, batch, 4), want)


def test_gradcache_with_an_empty_chunk(processors: dict[str, Any]) -> None:
    """Two numeric columns (whose encoder takes zero rows fine), rows 8-11 lack both: the last chunk of 4
    has nothing to embed, its surrogate is a constant and backward() raises."""
    torch.manual_seed(0)
    other = NumericProcessor("other")
    other.fit(NUMBERS, Path("."))
    encoders = {
        NUMBER: NumericMLP(MLPOptions(hidden=16), DIM, processors[NUMBER]),
        "other": NumericMLP(MLPOptions(hidden=16), DIM, other),
    }
    model = ContrastiveNetwork(encoders, [(NUMBER, "other")], DIM, PROJECTION).eval()
    items = {
        NUMBER: [None if i >= 8 else processors[NUMBER].load(v, Path(".")) for i, v in enumerate(NUMBERS)],
        "other": [None if i >= 8 else other.load(v, Path(".")) for i, v in enumerate(NUMBERS)],
    }
    batch = make_batch(items, {NUMBER: processors[NUMBER], "other": other}, None, None, True)
    want = big_batch(model, batch)
    assert_parity(gradcache(model, batch, 4), want)
