"""The network: MultimodalNetwork(encoders, fusion, head) and the builders that turn a model config into
its parts (the one place where config becomes classes; each task calls them for its own network)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mumo.config_model import DEFAULT_ENCODER, ENCODER_OPTIONS, ENCODERS_FOR_KIND, HeadConfig, ModelConfig
from mumo.data.dataset import Batch
from mumo.errors import ConfigError
from mumo.fusion import build_fusion, default_fusion
from mumo.modalities import ENCODERS, Processor
from mumo.modalities.base import encoder_key
from mumo.outputs import EncoderOutput, FusionOutput


def module_key(column: str) -> str:
    """Column names may hold dots; module names may not."""
    return column.replace(".", "\u2024")  # one-dot leader: looks like a dot, is not one


class MultimodalNetwork(nn.Module):
    """Encode each input, replace absent rows by a learned 'absent' embedding, fuse, and apply the head."""

    def __init__(
        self,
        encoders: dict[str, nn.Module],
        fusion: nn.Module,
        head: nn.Module,
        dim: int,
        wide: nn.Module | None = None,
        modality_dropout: float = 0.0,
        align: Alignment | None = None,
    ) -> None:
        super().__init__()
        self.modality_dropout = modality_dropout  # chance, per row and input, of hiding it while training
        self.columns = list(encoders)
        self.encoders = nn.ModuleDict({module_key(c): e for c, e in encoders.items()})
        self.absent = nn.ParameterDict(
            {module_key(c): nn.Parameter(torch.randn(dim) * 0.02) for c in encoders}
        )
        self.fusion = fusion
        self.head = head
        self.wide = wide  # optional linear path from tabular inputs straight to the output
        self.align = align  # optional auxiliary loss on the encoders' pooled vectors, while training
        self._auxiliary: Tensor | None = None

    def presence(self, batch: Batch) -> dict[str, Tensor]:
        """The batch's presence masks; while training, modality dropout hides inputs at random (never
        every input of a row), so the model learns to predict from any subset of them."""
        if not (self.training and self.modality_dropout > 0 and len(self.columns) > 1):
            return batch.presence
        present = torch.stack([batch.presence[c] for c in self.columns], dim=1)  # (B, F)
        dropped = present & (torch.rand(present.shape, device=present.device) < self.modality_dropout)
        kept = present & ~dropped
        none_left = ~kept.any(dim=1, keepdim=True) & present.any(dim=1, keepdim=True)
        kept = torch.where(none_left, present, kept)  # such rows keep all their inputs
        return {c: kept[:, i] for i, c in enumerate(self.columns)}

    def encode(self, batch: Batch, presence: dict[str, Tensor] | None = None) -> dict[str, EncoderOutput]:
        """Per input: EncoderOutput for every row; absent rows hold the absent embedding as one token."""
        presence = batch.presence if presence is None else presence
        return {
            column: self.encode_column(column, batch.inputs[column], presence[column])
            for column in self.columns
        }

    def encode_column(self, column: str, inputs: dict[str, Tensor], present: Tensor) -> EncoderOutput:
        key = module_key(column)
        absent = self.absent[key]
        size = present.shape[0]
        if bool(present.all()):
            return self.encoders[key](inputs)
        if not bool(present.any()):  # the whole batch lacks this input: nothing to encode
            tokens = absent.view(1, 1, -1).expand(size, 1, -1)
            mask = torch.ones(size, 1, dtype=torch.bool, device=absent.device)
            return EncoderOutput(absent.expand(size, -1), tokens, mask)
        rows = present.nonzero().squeeze(1)  # encode only the rows that have this input
        out = self.encoders[key]({name: tensor[rows] for name, tensor in inputs.items()})
        pooled = absent.to(out.pooled.dtype).expand(size, -1).index_copy(0, rows, out.pooled)  # (B, D)
        filler = torch.zeros(size, *out.tokens.shape[1:], dtype=out.tokens.dtype, device=out.tokens.device)
        filler[:, 0] = absent.to(out.tokens.dtype)
        tokens = filler.index_copy(0, rows, out.tokens)  # (B, T, D)
        mask = torch.zeros(size, out.mask.shape[1], dtype=torch.bool, device=out.mask.device)
        mask[:, 0] = True
        mask = mask.index_copy(0, rows, out.mask)  # (B, T): absent rows see only their absent token
        return EncoderOutput(pooled, tokens, mask)

    def forward(self, batch: Batch) -> Tensor:
        presence = self.presence(batch)
        encoded = self.encode(batch, presence)
        if self.align is not None and self.training:
            self._auxiliary = self.align(encoded, presence)
        out = self.head(self.fusion(encoded, presence).pooled)  # (B, out)
        return out if self.wide is None else out + self.wide(batch, presence)

    def auxiliary_loss(self) -> Tensor | None:
        """The auxiliary loss of the last training forward (added to the task's loss), once."""
        loss, self._auxiliary = self._auxiliary, None
        return loss


ALIGNED_KINDS = ("text", "image", "audio")
# Largest (rows x rows x words x tokens) similarity tensor the word-level alignment builds (128 MB in
# float32); a bigger batch or longer inputs compare pooled vectors instead.
TOKEN_PAIRS = 2**25


class Alignment(nn.Module):
    """Each row's inputs are pulled together and pushed from the other rows' in the batch (symmetric
    InfoNCE, CLIP's loss; ALBEF aligns image and text this way before fusing them). On a few thousand rows
    it grounds words in image colours and shapes, and spoken digits in written ones, which fusion alone,
    learning from one label per row, may never find. Where one input is text, the similarity is FILIP's
    fine-grained one: each word finds its best-matching region (or frame, or word) of the other input, and
    the row's score is the mean over its words, so single words are grounded, not only whole captions;
    other pairs (and batches too big for it, see TOKEN_PAIRS) compare pooled vectors. Every pair of aligned columns, averaged; rows that lack either
    input of a pair are left out of it."""

    def __init__(self, columns: list[str], kinds: dict[str, str], dim: int, weight: float) -> None:
        super().__init__()
        self.columns, self.kinds, self.weight = columns, kinds, weight
        self.project = nn.ModuleDict({module_key(c): nn.Linear(dim, dim) for c in columns})
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's starting temperature

    def forward(self, encoded: dict[str, EncoderOutput], presence: dict[str, Tensor]) -> Tensor:
        scale = self.log_scale.exp().clamp(max=100)
        losses = []
        for i, first in enumerate(self.columns):
            for second in self.columns[i + 1 :]:
                rows = presence[first] & presence[second]
                if int(rows.sum()) < 2:
                    continue
                if self.kinds[second] == "text" and self.kinds[first] != "text":
                    first, second = second, first  # words are the side that is averaged over
                similarity = self.similarity(encoded[first], encoded[second], first, second, rows)
                logits = scale * similarity  # (n, n): row i's first input against row j's second
                labels = torch.arange(len(logits), device=logits.device)
                losses.append((F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2)
        if not losses:
            return self.log_scale.new_zeros(())
        return self.weight * torch.stack(losses).mean()

    def similarity(self, a: EncoderOutput, b: EncoderOutput, first: str, second: str, rows: Tensor) -> Tensor:
        """(n, n) cosine similarities of the rows' inputs: token-level when `first` is text, else pooled."""
        project_a, project_b = self.project[module_key(first)], self.project[module_key(second)]
        n = int(rows.sum())
        if self.kinds[first] != "text" or n * n * a.tokens.shape[1] * b.tokens.shape[1] > TOKEN_PAIRS:
            va = F.normalize(project_a(a.pooled[rows]).float(), dim=-1)  # (n, D)
            vb = F.normalize(project_b(b.pooled[rows]).float(), dim=-1)
            return va @ vb.T
        words = F.normalize(project_a(a.tokens[rows]).float(), dim=-1)  # (n, L, D)
        other = F.normalize(project_b(b.tokens[rows]).float(), dim=-1)  # (n, T, D)
        word_mask, other_mask = a.mask[rows], b.mask[rows]  # (n, L), (n, T)
        pairs = torch.einsum("ild,jtd->ijlt", words, other)  # (n, n, L, T)
        best = pairs.masked_fill(~other_mask[None, :, None, :], -2.0).amax(-1)  # (n, n, L): cosines >= -1
        weights = word_mask.float()[:, None, :]  # (n, 1, L)
        return (best * weights).sum(-1) / weights.sum(-1).clamp(min=1)


def build_alignment(model: ModelConfig, inputs: dict[str, str]) -> Alignment | None:
    """model.align's loss over the text, image and audio columns; null = on (weight 1) when two of those
    kinds meet."""
    columns = [c for c, kind in inputs.items() if kind in ALIGNED_KINDS]
    kinds = {inputs[c] for c in columns}
    weight = model.align if model.align is not None else (1.0 if len(kinds) >= 2 else 0.0)
    if weight <= 0 or len(columns) < 2:
        return None
    return Alignment(columns, {c: inputs[c] for c in columns}, model.dim, weight)


class Wide(nn.Module):
    """Wide & deep: a generalized linear model over numeric and categorical inputs, added to the head's
    output, so the default model can always represent (at least) the linear baseline."""

    def __init__(self, numeric: list[str], categorical: dict[str, int], out_dim: int) -> None:
        super().__init__()
        self.numeric, self.categorical = numeric, list(categorical)
        self.linear = nn.Linear(len(numeric), out_dim) if numeric else None
        embeddings = {module_key(c): nn.Embedding(n, out_dim) for c, n in categorical.items()}
        for embedding in embeddings.values():
            nn.init.zeros_(embedding.weight)  # start as the deep model alone
        self.embeddings = nn.ModuleDict(embeddings)

    def forward(self, batch: Batch, presence: dict[str, Tensor]) -> Tensor:
        parts = []
        if self.linear is not None:
            values = torch.cat(
                [batch.inputs[c]["value"] * presence[c].unsqueeze(1) for c in self.numeric], dim=1
            )  # (B, n_numeric); an absent value contributes nothing
            parts.append(self.linear(values))
        for column in self.categorical:
            index = batch.inputs[column]["index"] * presence[column]
            parts.append(self.embeddings[module_key(column)](index))
        return torch.stack(parts).sum(0)  # (B, out)


def build_head(options: HeadConfig, in_dim: int, out_dim: int) -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(options.layers):
        layers += [nn.Linear(in_dim, options.hidden), nn.GELU(), nn.Dropout(options.dropout)]
        in_dim = options.hidden
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


def resolve_encoders(model: ModelConfig, inputs: dict[str, str]) -> ModelConfig:
    """Give every input column an encoder config (its kind's default if unset) and check kinds match."""
    encoders = dict(model.encoders)
    for column in encoders:
        if column not in inputs:
            raise ConfigError(
                f"model.encoders.{column}: no input column {column!r}; inputs are {', '.join(inputs)}"
            )
    for column, kind in inputs.items():
        if column not in encoders:
            encoders[column] = ENCODER_OPTIONS[DEFAULT_ENCODER[kind]]()  # type: ignore[assignment]
        allowed = ENCODERS_FOR_KIND[kind]
        if encoders[column].type not in allowed:
            raise ConfigError(
                f"model.encoders.{column}.type: {encoders[column].type!r} is not {'an' if kind[0] in 'aeiou' else 'a'} {kind} encoder; "
                f"choose one of {', '.join(allowed)}"
            )
    fusion = model.fusion if model.fusion is not None else default_fusion(inputs)
    return model.model_copy(update={"encoders": {c: encoders[c] for c in inputs}, "fusion": fusion})


def build_encoders(
    model: ModelConfig, inputs: dict[str, str], processors: dict[str, Processor]
) -> dict[str, nn.Module]:
    """An encoder per input column, as model.encoders says (resolved: every column listed)."""
    encoders: dict[str, nn.Module] = {}
    for column, kind in inputs.items():
        options = model.encoders[column]
        cls = ENCODERS.get(encoder_key(kind, options.type), key=f"model.encoders.{column}.type")
        encoders[column] = cls(options, model.dim, processors[column])  # type: ignore[call-arg]
        if column in model.freeze:
            encoders[column].requires_grad_(False)
    return encoders


def build_network(
    model: ModelConfig, inputs: dict[str, str], processors: dict[str, Processor], out_dim: int
) -> MultimodalNetwork:
    """Config → parts → MultimodalNetwork. `model` must already be resolved (resolve_encoders)."""
    encoders = build_encoders(model, inputs, processors)
    fusion = build_fusion(model.fusion, inputs, model.dim, out_dim)
    # A fusion that produces logits (late) is its own head.
    head = nn.Identity() if fusion.produces_logits else build_head(model.head, fusion.out_dim, out_dim)
    wide = None
    numeric = [c for c, k in inputs.items() if k == "numeric"]
    categorical = {c: len(processors[c].categories) for c, k in inputs.items() if k == "categorical"}  # type: ignore[attr-defined]
    if model.wide and (numeric or categorical):
        wide = Wide(numeric, categorical, out_dim)
    return MultimodalNetwork(
        encoders,
        fusion,
        head,
        model.dim,
        wide,
        modality_dropout(model, inputs),
        build_alignment(model, inputs),
    )


class FusedNetwork(nn.Module):
    """Encoders and fusion (a MultimodalNetwork without a head) for tasks whose own part reads the fused
    output (a text decoder, an image generator): `fuse(batch)` gives FusionOutput(pooled, tokens, mask)."""

    def __init__(self, body: MultimodalNetwork) -> None:
        super().__init__()
        self.body = body

    @property
    def encoders(self) -> nn.ModuleDict:
        """The encoders by module key (for the feature cache and model.init_from)."""
        return self.body.encoders

    def fuse(self, batch: Batch) -> FusionOutput:
        presence = self.body.presence(batch)
        return self.body.fusion(self.body.encode(batch, presence), presence)  # type: ignore[no-any-return]


def build_body(
    model: ModelConfig, inputs: dict[str, str], processors: dict[str, Processor]
) -> MultimodalNetwork:
    """Encoders and fusion without a head (see FusedNetwork); a fusion that is itself a head (late) is
    refused: it has no fused vector and tokens to give."""
    encoders = build_encoders(model, inputs, processors)
    fusion = build_fusion(model.fusion, inputs, model.dim, model.dim)
    if fusion.produces_logits:
        raise ConfigError(
            f"model.fusion.type: {getattr(model.fusion, 'type', '')!r} gives no fused tokens to read; "
            "use cross, concat, attention, ..."
        )
    return MultimodalNetwork(
        encoders, fusion, nn.Identity(), model.dim, None, modality_dropout(model, inputs)
    )


MANY_INPUTS = 8  # from this many inputs on, no single one is likely to be needed on every row


def modality_dropout(model: ModelConfig, inputs: dict[str, str]) -> float:
    """model.modality_dropout; null = 0.2 with MANY_INPUTS or more inputs, else 0 (with a few inputs
    each is often needed: hiding the image of an image-caption pair makes its label a guess)."""
    if model.modality_dropout is not None:
        return model.modality_dropout
    return 0.2 if len(inputs) >= MANY_INPUTS else 0.0


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return total, trainable
