"""The network: MultimodalNetwork(encoders, fusion, head) and the builders that turn a model config into
its parts (the one place where config becomes classes; each task calls them for its own network)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mumo.config import DEFAULT_ENCODER, ENCODER_OPTIONS, ENCODERS_FOR_KIND, HeadConfig, ModelConfig
from mumo.data.dataset import Batch
from mumo.errors import ConfigError
from mumo.fusion import build_fusion
from mumo.modalities import ENCODERS, Processor
from mumo.modalities.base import encoder_key
from mumo.outputs import EncoderOutput


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
        out = self.head(self.fusion(self.encode(batch, presence), presence))  # (B, out)
        return out if self.wide is None else out + self.wide(batch, presence)


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
    return model.model_copy(update={"encoders": {c: encoders[c] for c in inputs}})


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
    return MultimodalNetwork(encoders, fusion, head, model.dim, wide, model.modality_dropout)


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return total, trainable
