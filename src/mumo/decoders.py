"""Text decoders for task: generation: a causal language model from `transformers` whose prefix is the
fused tokens of the inputs (the design of ClipCap, LLaVA and nanoVLM).

    fused tokens (B, T, D) → projector → prefix (B, 1+T, H) → [prefix, BOS, target pieces] → causal LM

The loss covers only the target pieces and the end-of-text token. Position ids come from the attention
mask exactly as `GenerationMixin.generate` derives them (cumsum of the mask - 1, 0 on padding), so a
prefix with padding inside it (shorter questions in a batch) is seen at the same positions in training
and decoding, and a batch decodes to the same text as its rows one at a time. Decoding is `generate()`:
greedy, beam search, sampling; no hand-written search.

transformers is imported when a decoder is built, not with this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mumo.config_model import LMDecoderOptions
from mumo.errors import ConfigError


@dataclass(frozen=True)
class Decoding:
    """How to decode: generate()'s arguments that mumo exposes (task options of task: generation)."""

    max_new_tokens: int
    num_beams: int = 1
    length_penalty: float = 1.0
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    num_return_sequences: int = 1


def position_ids(mask: Tensor) -> Tensor:
    """Positions as generate() derives them from a 2-D attention mask: cumsum - 1, and 0 on padding."""
    mask = mask.long()
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)


class LMDecoder(nn.Module):
    """A projector from fused tokens to the LM's width, a learned start vector that every prefix begins
    with (so no row's prefix is all padding), and the causal language model."""

    def __init__(self, lm: nn.Module, dim: int, projector: str, pad: int, bos: int, eos: int) -> None:
        super().__init__()
        width = int(lm.config.hidden_size)  # type: ignore[union-attr,arg-type]
        if projector == "mlp":
            self.project: nn.Module = nn.Sequential(nn.Linear(dim, width), nn.GELU(), nn.Linear(width, width))
        else:
            self.project = nn.Linear(dim, width)
        self.start = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.lm = lm
        self.pad, self.bos, self.eos = pad, bos, eos

    def prefix(self, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, D) fused tokens and their mask → (B, 1+T+1, H) embeddings ending in BOS, and their mask."""
        size = tokens.shape[0]
        projected = self.project(tokens)  # (B, T, H)
        bos = self.embed(torch.full((size, 1), self.bos, dtype=torch.long, device=tokens.device))
        embeds = torch.cat([self.start.expand(size, -1, -1).to(projected.dtype), projected, bos], dim=1)
        ones = mask.new_ones(size, 1)
        return embeds, torch.cat([ones, mask, ones], dim=1)

    def embed(self, ids: Tensor) -> Tensor:
        return self.lm.get_input_embeddings()(ids)  # type: ignore[operator]

    def logits(self, tokens: Tensor, mask: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher forcing: (B, L, V) logits at each target piece and its mask (B, L), for targets (B, W)
        padded with PAD (trimmed here to the batch's longest)."""
        real = targets != self.pad
        width = max(int(real.sum(1).max()), 1)
        targets, real = targets[:, :width], real[:, :width]
        embeds, visible = self.prefix(tokens, mask)  # ends with BOS: it predicts the first piece
        inputs = targets[:, :-1].masked_fill(~real[:, :-1], self.pad)  # piece j predicts piece j+1
        embeds = torch.cat([embeds, self.embed(inputs)], dim=1)
        visible = torch.cat([visible, real[:, :-1]], dim=1)
        out = self.lm(
            inputs_embeds=embeds,
            attention_mask=visible.long(),
            position_ids=position_ids(visible),
            logits_to_keep=width,  # only the positions that predict target pieces
            use_cache=False,
        )
        return out.logits, real

    def loss(self, tokens: Tensor, mask: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(mean cross-entropy over target pieces, pieces predicted right (B,), target pieces (B,))."""
        logits, real = self.logits(tokens, mask, targets)
        wanted = targets[:, : real.shape[1]]
        loss = F.cross_entropy(logits[real].float(), wanted[real])
        right = ((logits.argmax(-1) == wanted) & real).sum(1)
        return loss, right, real.sum(1)

    @torch.no_grad()
    def generate(self, tokens: Tensor, mask: Tensor, decoding: Decoding) -> Tensor:
        """(B * num_return_sequences, max_new_tokens) piece ids, PAD after each sequence's end."""
        from transformers import GenerationConfig

        embeds, visible = self.prefix(tokens, mask)
        settings: dict[str, Any] = {
            "max_new_tokens": decoding.max_new_tokens,
            "num_beams": decoding.num_beams,
            "num_return_sequences": decoding.num_return_sequences,
            "do_sample": decoding.do_sample,
            "eos_token_id": self.eos,
            "pad_token_id": self.pad,
            "bos_token_id": self.bos,
        }
        if decoding.num_beams > 1:
            settings["length_penalty"] = decoding.length_penalty
        if decoding.do_sample:
            settings.update(temperature=decoding.temperature, top_p=decoding.top_p, top_k=0)
        out = self.lm.generate(  # type: ignore[operator]
            inputs_embeds=embeds,
            attention_mask=visible.long(),
            generation_config=GenerationConfig(**settings),
        )
        ids = torch.full((out.shape[0], decoding.max_new_tokens), self.pad, dtype=torch.long)
        ids[:, : out.shape[1]] = out[:, : decoding.max_new_tokens].cpu()
        return ids


def build_lm_decoder(
    options: LMDecoderOptions, dim: int, vocab: int, pad: int, bos: int, eos: int
) -> LMDecoder:
    """A LlamaForCausalLM built from a small config with random weights, trained from scratch."""
    from transformers import LlamaConfig, LlamaForCausalLM

    width = options.dim or dim
    if width % options.heads or (width // options.heads) % 2:
        raise ConfigError(
            f"model.decoder.heads: {options.heads} heads do not split the decoder width {width} into even-sized heads"
        )
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=width,
        intermediate_size=options.ff_mult * width,
        num_hidden_layers=options.layers,
        num_attention_heads=options.heads,
        num_key_value_heads=options.heads,
        max_position_embeddings=4096,
        attention_dropout=options.dropout,
        pad_token_id=pad,
        bos_token_id=bos,
        eos_token_id=eos,
        tie_word_embeddings=False,
    )
    config._attn_implementation = "sdpa"
    return LMDecoder(LlamaForCausalLM(config), dim, options.projector, pad, bos, eos)


__all__ = ["Decoding", "LMDecoder", "build_lm_decoder", "position_ids"]
