"""Fusion modules: encoder outputs of any number of inputs (+ presence masks) → a fused vector and tokens.

Every fusion is built as `cls(options, kinds, dim, out_dim)`: `kinds` maps each input column (in model
order) to its kind, `dim` is every encoder's width and `out_dim` the task's output size. Absent inputs
arrive already replaced by their learned 'absent' embedding (see model.py) with a presence mask, and
each fusion also masks them itself, so a row missing any (or all but one) of its inputs stays finite.

Every fusion returns FusionOutput(pooled, tokens, mask): the vector a task head reads, and the token
sequence a decoder attends to. Fusions that mix tokens (attention with tokens, cross, FiLM) hand back the
mixed tokens; the others hand back every input's own tokens, side by side, absent inputs masked.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from mumo.config_model import (
    AttentionOptions,
    BilinearOptions,
    ConcatOptions,
    CrossOptions,
    FiLMOptions,
    GatedOptions,
    LateOptions,
    LowRankOptions,
)
from mumo.errors import ConfigError
from mumo.outputs import EncoderOutput, FusionOutput, masked_mean
from mumo.registry import Registry


class Fusion(nn.Module):
    """Base: `forward(outputs, presence)` returns FusionOutput with pooled (B, out_dim); `produces_logits` =
    its pooled vector IS the task output."""

    produces_logits: bool = False
    out_dim: int

    def __init__(self, options: Any, kinds: dict[str, str], dim: int, out_dim: int) -> None:
        super().__init__()
        self.columns = list(kinds)

    def present(self, presence: dict[str, Tensor]) -> Tensor:
        """(B, C) bool; a row with no input at all counts every column (its absent embeddings) as present."""
        present = torch.stack([presence[c] for c in self.columns], dim=1)  # (B, C)
        return present | ~present.any(dim=1, keepdim=True)

    def joined(
        self, outputs: dict[str, EncoderOutput], presence: dict[str, Tensor], columns: list[str] | None = None
    ) -> tuple[Tensor, Tensor]:
        """Every column's tokens side by side, (B, ΣT, D), with their mask (B, ΣT): a token is visible
        where it is real and its column present."""
        present = self.present(presence)
        index = {c: i for i, c in enumerate(self.columns)}
        chosen = self.columns if columns is None else columns
        if not chosen:
            some = outputs[self.columns[0]].tokens
            return some.new_zeros(some.shape[0], 0, some.shape[2]), present.new_zeros(some.shape[0], 0)
        tokens = torch.cat([outputs[c].tokens for c in chosen], dim=1)
        mask = torch.cat([outputs[c].mask & present[:, index[c] : index[c] + 1] for c in chosen], dim=1)
        return tokens, mask

    def with_tokens(
        self, pooled: Tensor, outputs: dict[str, EncoderOutput], presence: dict[str, Tensor]
    ) -> FusionOutput:
        """`pooled` with every column's own tokens."""
        return FusionOutput(pooled, *self.joined(outputs, presence))


FUSIONS: Registry[type[Fusion]] = Registry("a fusion")


def masked_softmax(scores: Tensor, present: Tensor) -> Tensor:
    """Softmax over the present columns only: (B, C), (B, C) bool → (B, C); absent columns get 0."""
    return scores.masked_fill(~present, float("-inf")).softmax(dim=-1)


def projection(in_dim: int, dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, dim), nn.LayerNorm(dim), nn.GELU())


def column(name: str | None, columns: list[str], key: str) -> str | None:
    if name is not None and name not in columns:
        raise ConfigError(f"{key}: no input column {name!r}; inputs are {', '.join(columns)}")
    return name


def pick(kinds: dict[str, str], wanted: tuple[str, ...], avoid: str | None) -> str:
    """The first column of a wanted kind (not `avoid`), else the first other column, else the only one."""
    others = [c for c in kinds if c != avoid] or list(kinds)
    return next((c for c in others if kinds[c] in wanted), others[0])


@FUSIONS.register("concat")
class Concat(Fusion):
    """Early fusion: concatenate the pooled vectors (absent ones are their absent embedding) and project."""

    def __init__(self, options: ConcatOptions, kinds: dict[str, str], dim: int, out_dim: int) -> None:
        super().__init__(options, kinds, dim, out_dim)
        self.project = projection(len(kinds) * dim, dim, options.dropout)
        self.out_dim = dim

    def forward(self, outputs: dict[str, EncoderOutput], presence: dict[str, Tensor]) -> FusionOutput:
        pooled = torch.cat([outputs[c].pooled for c in self.columns], dim=-1)  # (B, C*D)
        return self.with_tokens(self.project(pooled), outputs, presence)  # (B, D)


@FUSIONS.register("gated")
class Gated(Fusion):
    """Gated sum (in the spirit of Arevalo et al. 2017, Gated Multimodal Units): each column scores its own
    relevance, the scores are softmaxed over the present columns, and the projections are averaged."""

    def __init__(self, options: GatedOptions, kinds: dict[str, str], dim: int, out_dim: int) -> None:
        super().__init__(options, kinds, dim, out_dim)
        self.project = nn.ModuleList(nn.Linear(dim, dim) for _ in kinds)
        self.gate = nn.ModuleList(nn.Linear(dim, 1) for _ in kinds)
        self.bias = nn.Parameter(torch.zeros(len(kinds)))  # learned prior per column
        self.dropout = nn.Dropout(options.dropout)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def forward(self, outputs: dict[str, EncoderOutput], presence: dict[str, Tensor]) -> FusionOutput:
        pooled = [outputs[c].pooled for c in self.columns]
        scores = (
            torch.cat([g(p) for g, p in zip(self.gate, pooled, strict=True)], dim=1) + self.bias
        )  # (B, C)
        weights = masked_softmax(scores, self.present(presence))  # (B, C)
        projected = torch.stack([f(p) for f, p in zip(self.project, pooled, strict=True)], dim=1)  # (B, C, D)
        fused = self.norm((weights.unsqueeze(-1) * self.dropout(projected)).sum(dim=1))  # (B, D)
        return self.with_tokens(fused, outputs, presence)


@FUSIONS.register("attention")
class Attention(Fusion):
    """A learned fusion token attends over one token per column (or every encoder token, `tokens: true`)
    in a small transformer, like BERT's [CLS] / ViT's class token; absent columns are padding."""

    def __init__(self, options: AttentionOptions, kinds: dict[str, str], dim: int, out_dim: int) -> None:
        super().__init__(options, kinds, dim, out_dim)
        if dim % options.heads:
            raise ConfigError(f"model.fusion.heads: {options.heads} does not divide model.dim {dim}")
        self.tokens, self.max_tokens = options.tokens, options.max_tokens
        self.fusion_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.column_embedding = nn.Parameter(torch.randn(len(kinds), dim) * 0.02)  # what kind of token
        layer = nn.TransformerEncoderLayer(
            dim, options.heads, 2 * dim, options.dropout, "gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, options.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def forward(self, outputs: dict[str, EncoderOutput], presence: dict[str, Tensor]) -> FusionOutput:
        present = self.present(presence)  # (B, C)
        if self.tokens:
            parts, keep = [], []
            for i, c in enumerate(self.columns):
                out = outputs[c]
                parts.append(out.tokens[:, : self.max_tokens] + self.column_embedding[i])  # (B, T_c, D)
                keep.append(out.mask[:, : self.max_tokens] & present[:, i : i + 1])  # (B, T_c)
            tokens, visible = torch.cat(parts, dim=1), torch.cat(keep, dim=1)  # (B, ΣT_c, D), (B, ΣT_c)
        else:
            pooled = torch.stack([outputs[c].pooled for c in self.columns], dim=1)  # (B, C, D)
            tokens, visible = pooled + self.column_embedding, present
        size = tokens.shape[0]
        sequence = torch.cat([self.fusion_token.expand(size, -1, -1).to(tokens.dtype), tokens], dim=1)
        padding = torch.cat([visible.new_zeros(size, 1), ~visible], dim=1)  # (B, 1+N): True = hidden
        hidden = self.norm(self.encoder(sequence, src_key_padding_mask=padding))  # (B, 1+N, D)
        return FusionOutput(hidden[:, 0], hidden, ~padding)


@FUSIONS.register("late")
class Late(Fusion):
    """Late fusion: a small head per column, logits averaged with learned weights over the present columns
    (decision-level fusion, as in TorchMultimodal's LateOptions with a weighted-mean combiner)."""

    produces_logits = True

    def __init__(self, options: LateOptions, kinds: dict[str, str], dim: int, out_dim: int) -> None:
        super().__init__(options, kinds, dim, out_dim)
        self.heads = nn.ModuleList(
            nn.Sequential(
                nn.Linear(dim, options.hidden),
                nn.GELU(),
                nn.Dropout(options.dropout),
                nn.Linear(options.hidden, out_dim),
            )
            for _ in kinds
        )
        self.weight = nn.Parameter(torch.zeros(len(kinds)))  # equal weights to start
        self.out_dim = out_dim

    def forward(self, outputs: dict[str, EncoderOutput], presence: dict[str, Tensor]) -> FusionOutput:
        logits = torch.stack(
            [head(outputs[c].pooled) for head, c in zip(self.heads, self.columns, strict=True)], dim=1
        )  # (B, C, out)
        weights = masked_softmax(self.weight.expand(logits.shape[0], -1), self.present(presence))  # (B, C)
        return self.with_tokens((weights.unsqueeze(-1) * logits).sum(dim=1), outputs, presence)  # (B, out)


@FUSIONS.register("lrtf")
class LowRank(Fusion):
    """Low-rank tensor fusion (Liu et al. 2018, "Efficient Low-rank Multimodal Fusion with Modality-Specific
    Factors"): the outer product of all [pooled_c; 1] times a weight tensor, computed through rank-r factors
    per column as Σ_r ⊙_c ([pooled_c; 1] W_c^r). An absent column contributes only its bias row."""

    def __init__(self, options: LowRankOptions, kinds: dict[str, str], dim: int, out_dim: int) -> None:
        super().__init__(options, kinds, dim, out_dim)
        # Each factor starts as 1 + a small linear term (std 1/sqrt(C) for unit inputs), so the product
        # over C columns starts near 1 + Σ_c linear_c: it neither vanishes nor explodes as C grows.
        factors = torch.randn(len(kinds), options.rank, dim + 1, dim) / math.sqrt(dim * len(kinds))
        factors[:, :, -1] = 1.0  # bias row
        self.factors = nn.Parameter(factors)  # (C, R, D+1, D)
        self.rank_weight = nn.Parameter(torch.full((options.rank,), 1.0 / options.rank))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.dropout = nn.Dropout(options.dropout)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def forward(self, outputs: dict[str, EncoderOutput], presence: dict[str, Tensor]) -> FusionOutput:
        present = torch.stack([presence[c] for c in self.columns], dim=1)  # (B, C)
        product: Tensor | None = None
        for i, c in enumerate(self.columns):
            pooled = self.dropout(outputs[c].pooled) * present[:, i : i + 1].to(outputs[c].pooled.dtype)
            z = torch.cat([pooled, pooled.new_ones(pooled.shape[0], 1)], dim=1)  # (B, D+1)
            factor = torch.einsum("bi,rio->bro", z, self.factors[i])  # (B, R, D)
            product = factor if product is None else product * factor
        assert product is not None
        fused = self.norm(torch.einsum("r,brd->bd", self.rank_weight, product) + self.bias)  # (B, D)
        return self.with_tokens(fused, outputs, presence)


@FUSIONS.register("film")
class FiLM(Fusion):
    """FiLM (Perez et al. 2018): one column's pooled vector yields a per-channel scale and shift for another
    column's tokens (e.g. the caption modulates the image patches); where the condition is absent the
    modulation is the identity. The modulated tokens are pooled and joined with every other column."""

    def __init__(self, options: FiLMOptions, kinds: dict[str, str], dim: int, out_dim: int) -> None:
        super().__init__(options, kinds, dim, out_dim)
        columns = self.columns
        condition = column(options.condition, columns, "model.fusion.condition")
        target = column(options.target, columns, "model.fusion.target")
        self.condition = condition or pick(kinds, ("text",), avoid=target)
        self.target = target or pick(kinds, ("image", "audio"), avoid=self.condition)
        self.others = [c for c in columns if c != self.target]  # the condition included
        self.film = nn.Linear(dim, 2 * dim)
        nn.init.zeros_(self.film.weight)  # start as the identity modulation
        nn.init.zeros_(self.film.bias)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU())
        self.project = projection((2 + len(self.others)) * dim, dim, options.dropout)
        self.out_dim = dim

    def forward(self, outputs: dict[str, EncoderOutput], presence: dict[str, Tensor]) -> FusionOutput:
        target, condition = outputs[self.target], outputs[self.condition].pooled
        on = presence[self.condition].unsqueeze(1).to(condition.dtype)  # (B, 1)
        gamma, beta = (self.film(condition) * on).unsqueeze(1).chunk(2, dim=-1)  # (B, 1, D) each
        hidden = self.mlp(target.tokens * (1 + gamma) + beta)  # (B, T, D)
        mask = target.mask  # (B, T)
        peak = hidden.masked_fill(~mask.unsqueeze(-1), torch.finfo(hidden.dtype).min).amax(dim=1)  # (B, D)
        peak = torch.where(mask.any(dim=1, keepdim=True), peak, torch.zeros_like(peak))
        pooled = [masked_mean(hidden, mask), peak] + [outputs[c].pooled for c in self.others]
        fused = self.project(torch.cat(pooled, dim=-1))  # (B, D)
        tokens, visible = self.joined(outputs, presence, self.others)  # the modulated tokens, then the rest
        visible = torch.cat(
            [mask & self.present(presence)[:, self.columns.index(self.target), None], visible], 1
        )
        return FusionOutput(fused, torch.cat([hidden, tokens], dim=1), visible)


@FUSIONS.register("bilinear")
class Bilinear(Fusion):
    """Low-rank bilinear pooling (MLB, Kim et al. 2017): z = W_o(tanh(U a) ⊙ tanh(V b)) for one pair of
    columns, joined with every other column; a row missing either side gets a learned vector instead."""

    def __init__(self, options: BilinearOptions, kinds: dict[str, str], dim: int, out_dim: int) -> None:
        super().__init__(options, kinds, dim, out_dim)
        columns, hidden = self.columns, options.hidden or 2 * dim
        pair = [column(c, columns, "model.fusion.pair") for c in options.pair or columns[:2]]
        if len(set(pair)) != len(pair):
            raise ConfigError(
                f"model.fusion.pair: name two different columns; inputs are {', '.join(columns)}"
            )
        self.pair = [c for c in pair if c is not None]
        self.others = [c for c in columns if c not in self.pair]
        if len(self.pair) == 2:  # with a single input there is no pair: just project it
            self.left, self.right = nn.Linear(dim, hidden), nn.Linear(dim, hidden)
            self.output = nn.Linear(hidden, dim)
            self.missing = nn.Parameter(torch.randn(dim) * 0.02)  # the bilinear term when a side is absent
        self.dropout = nn.Dropout(options.dropout)
        self.project = projection((1 + len(self.others)) * dim, dim, options.dropout)
        self.out_dim = dim

    def forward(self, outputs: dict[str, EncoderOutput], presence: dict[str, Tensor]) -> FusionOutput:
        others = [outputs[c].pooled for c in self.others]
        if len(self.pair) < 2:
            fused = self.project(torch.cat([outputs[c].pooled for c in self.pair] + others, dim=-1))
            return self.with_tokens(fused, outputs, presence)
        a, b = (outputs[c].pooled for c in self.pair)  # (B, D) each
        joint = self.output(self.dropout(torch.tanh(self.left(a)) * torch.tanh(self.right(b))))  # (B, D)
        both = (presence[self.pair[0]] & presence[self.pair[1]]).unsqueeze(1)  # (B, 1)
        joint = torch.where(both, joint, self.missing.to(joint.dtype).expand_as(joint))
        return self.with_tokens(self.project(torch.cat([joint, *others], dim=-1)), outputs, presence)


@FUSIONS.register("cross")
class Cross(Fusion):
    """Dual-stream cross-attention (the fusion layers of ALBEF / LXMERT): the words of each text column
    attend, through blocks of self-attention, cross-attention and a feed-forward layer, to the tokens of
    every other column (image regions with their 2-D positions, audio frames, numbers). The attended words
    are pooled (mean and max) and joined with every column's pooled vector. A learned null token is always
    there to attend to, so a row whose other inputs are all absent stays finite. Without a text column,
    the first column's tokens are the queries."""

    def __init__(self, options: CrossOptions, kinds: dict[str, str], dim: int, out_dim: int) -> None:
        super().__init__(options, kinds, dim, out_dim)
        if dim % options.heads:
            raise ConfigError(f"model.fusion.heads: {options.heads} does not divide model.dim {dim}")
        self.max_tokens = options.max_tokens
        self.queries = [c for c, kind in kinds.items() if kind == "text"] or self.columns[:1]
        self.keys = [c for c in self.columns if c not in self.queries] or self.queries
        self.column_embedding = nn.Parameter(torch.randn(len(self.keys), dim) * 0.02)
        self.null = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.count = options.queries  # learned query tokens per text column (none in runs before them)
        if self.count:
            self.slots = nn.Parameter(torch.randn(len(self.queries), self.count, dim) * 0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerDecoder(
                nn.TransformerDecoderLayer(
                    dim, options.heads, 2 * dim, options.dropout, "gelu", batch_first=True, norm_first=True
                ),
                options.layers,
            )
            for _ in self.queries
        )
        self.norm = nn.LayerNorm(dim)
        pooled_per_query = 2 + options.queries  # mean, max and each query token
        self.project = projection(
            (pooled_per_query * len(self.queries) + len(self.columns)) * dim, dim, options.dropout
        )
        self.out_dim = dim

    def forward(self, outputs: dict[str, EncoderOutput], presence: dict[str, Tensor]) -> FusionOutput:
        present = self.present(presence)  # (B, C)
        index = {c: i for i, c in enumerate(self.columns)}
        parts, keep = [], []
        for i, c in enumerate(self.keys):
            out = outputs[c]
            parts.append(out.tokens[:, : self.max_tokens] + self.column_embedding[i])  # (B, T_c, D)
            keep.append(out.mask[:, : self.max_tokens] & present[:, index[c] : index[c] + 1])  # (B, T_c)
        size = present.shape[0]
        memory = torch.cat([self.null.expand(size, -1, -1).to(parts[0].dtype), *parts], dim=1)  # (B, 1+ΣT, D)
        visible = torch.cat([present.new_ones(size, 1), *keep], dim=1)  # (B, 1+ΣT)
        pooled, tokens, masks = [], [], []
        count = self.count
        for i, (block, c) in enumerate(zip(self.blocks, self.queries, strict=True)):
            words, mask = outputs[c].tokens, outputs[c].mask  # (B, L, D), (B, L)
            if count:  # the K query tokens go before the words
                words = torch.cat([self.slots[i].expand(size, -1, -1).to(words.dtype), words], dim=1)
                mask = torch.cat([mask.new_ones(size, count), mask], dim=1)  # (B, K+L)
            attended = self.norm(
                block(words, memory, tgt_key_padding_mask=~mask, memory_key_padding_mask=~visible)
            )  # (B, K+L, D)
            tokens.append(attended)
            masks.append(mask & present[:, index[c] : index[c] + 1])
            attended, mask, kept = attended[:, count:], mask[:, count:], attended[:, :count]
            peak = attended.masked_fill(~mask.unsqueeze(-1), torch.finfo(attended.dtype).min).amax(dim=1)
            pooled += [masked_mean(attended, mask), peak, *kept.unbind(dim=1)]  # (B, D) each
        pooled += [outputs[c].pooled for c in self.columns]
        fused = self.project(torch.cat(pooled, dim=-1))  # (B, D)
        # The decoder's view: each text column's queries and attended words, then what they attended to.
        tokens.append(memory[:, 1:])
        masks.append(visible[:, 1:])
        return FusionOutput(fused, torch.cat(tokens, dim=1), torch.cat(masks, dim=1))


def default_fusion(kinds: dict[str, str]) -> CrossOptions | ConcatOptions:
    """Words attend to image regions and audio frames when a text column meets one; else concat."""
    values = set(kinds.values())
    if "text" in values and values & {"image", "audio"}:
        return CrossOptions()
    return ConcatOptions()


def build_fusion(options: Any, kinds: dict[str, str], dim: int, out_dim: int | None = None) -> Fusion:
    """The fusion `options.type` over the input columns `kinds` ({column: kind}), from `dim` to `out_dim`."""
    options = options if options is not None else default_fusion(kinds)
    cls = FUSIONS.get(options.type, key="model.fusion.type")
    return cls(options, kinds, dim, dim if out_dim is None else out_dim)
