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
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mumo.config_model import CTCDecoderOptions, DecoderConfig, LMDecoderOptions
from mumo.data.targets import TextTarget
from mumo.errors import ConfigError, MumoError
from mumo.outputs import FusionOutput


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
    greedy: bool = False  # validation: the cheapest decoding (ctc: no beam search)


def position_ids(mask: Tensor) -> Tensor:
    """Positions as generate() derives them from a 2-D attention mask: cumsum - 1, and 0 on padding."""
    mask = mask.long()
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)


class LMDecoder(nn.Module):
    """A projector from fused tokens to the LM's width, a learned start vector that every prefix begins
    with (so no row's prefix is all padding), and the causal language model."""

    def __init__(
        self, lm: nn.Module, dim: int, projector: str, pad: int, bos: int, eos: int, lm_lr_scale: float = 1.0
    ) -> None:
        super().__init__()
        self.lm_lr_scale = lm_lr_scale
        width = int(lm.config.hidden_size)  # type: ignore[union-attr,arg-type]
        if projector == "mlp":
            self.project: nn.Module = nn.Sequential(nn.Linear(dim, width), nn.GELU(), nn.Linear(width, width))
        else:
            self.project = nn.Linear(dim, width)
        self.start = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.lm = lm
        self.pad, self.bos, self.eos = pad, bos, eos

    def lr_scales(self) -> dict[str, float]:
        """A pretrained LM that is fine-tuned learns at lr_scale times the rate (LoRA adapters: the full rate)."""
        if self.lm_lr_scale == 1.0:
            return {}
        return {f"lm.{n}": self.lm_lr_scale for n, _ in self.lm.named_parameters() if "lora_" not in n}

    def inputs(self, fused: FusionOutput) -> tuple[Tensor, Tensor]:
        """What the prefix is made of: the fused vector, then the fused tokens."""
        tokens = torch.cat([fused.pooled.unsqueeze(1), fused.tokens], dim=1)
        return tokens, torch.cat([fused.mask.new_ones(fused.mask.shape[0], 1), fused.mask], dim=1)

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
        padded with a negative fill (trimmed here to the batch's longest)."""
        real = targets >= 0
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
        # (a pretrained LM's vocabulary may be padded past its tokenizer's: those logits are never wanted)
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


class CTCDecoder(nn.Module):
    """CTC over the input's frames (speech recognition): the fused tokens in order (audio frames, for an
    audio input), each made `upsample` output steps, a bidirectional GRU, and a layer to the units and
    the blank. Trained with torch's CTCLoss (zero_infinity: a target longer than its clip adds nothing);
    decoded greedily, each row cut at its own number of steps (decoding padded frames would add
    characters), repeats merged and blanks dropped."""

    def __init__(
        self, options: CTCDecoderOptions, dim: int, vocab: int, blank: int, eos: int, ngram: Any = None
    ) -> None:
        super().__init__()
        self.options, self.ngram = options, ngram
        self.factor = options.upsample
        self.upsample = nn.Linear(dim, dim * options.upsample) if options.upsample > 1 else nn.Identity()
        self.rnn = (
            nn.GRU(
                dim,
                dim // 2,
                options.layers,
                batch_first=True,
                bidirectional=True,
                dropout=options.dropout if options.layers > 1 else 0.0,
            )
            if options.layers
            else None
        )
        width = 2 * (dim // 2) if options.layers else dim
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, vocab)
        self.blank, self.eos = blank, eos

    def inputs(self, fused: FusionOutput) -> tuple[Tensor, Tensor]:
        return fused.tokens, fused.mask

    def steps(self, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T * upsample, V) logits and each row's number of steps (its visible tokens, moved to the
        front in order, times upsample)."""
        order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices  # visible tokens first
        tokens = tokens.gather(1, order.unsqueeze(-1).expand_as(tokens))
        size, length, dim = tokens.shape
        hidden = self.upsample(tokens).reshape(size, length * self.factor, dim)
        lengths = mask.sum(1) * self.factor
        if self.rnn is not None:
            packed = pack_padded_sequence(
                hidden, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
            )
            hidden = pad_packed_sequence(
                self.rnn(packed)[0], batch_first=True, total_length=length * self.factor
            )[0]
        return self.out(self.norm(hidden)), lengths

    def loss(self, tokens: Tensor, mask: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(CTC loss per target unit, units in place of the greedy transcript (B,), target units (B,))."""
        logits, lengths = self.steps(tokens, mask)
        real = (targets >= 0) & (targets != self.eos)
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # (T, B, V)
        loss = F.ctc_loss(
            log_probs,
            targets[real],
            lengths,
            real.sum(1),
            blank=self.blank,
            reduction="mean",
            zero_infinity=True,
        )
        decoded = self.greedy(logits, lengths)
        wanted = [row[row >= 0].tolist() for row in targets.masked_fill(~real, -1)]
        right = torch.tensor(
            [sum(a == b for a, b in zip(d, w, strict=False)) for d, w in zip(decoded, wanted, strict=True)]
        )
        return loss, right, real.sum(1)

    def greedy(self, logits: Tensor, lengths: Tensor) -> list[list[int]]:
        best = logits.argmax(-1).tolist()
        out = []
        for row, length in zip(best, lengths.tolist(), strict=True):
            units, previous = [], None
            for unit in row[:length]:
                if unit != previous and unit != self.blank:
                    units.append(unit)
                previous = unit
            out.append(units)
        return out

    @torch.no_grad()
    def generate(self, tokens: Tensor, mask: Tensor, decoding: Decoding) -> Tensor:
        """(B, max_new_tokens): the greedy transcript, its end, then PAD (the blank)."""
        if decoding.num_beams > 1 or decoding.do_sample or decoding.num_return_sequences > 1:
            raise MumoError(
                "task.num_beams / do_sample / num_return_sequences: model.decoder ctc writes one text per row "
                "(its beam search is model.decoder.beam)"
            )
        logits, lengths = self.steps(tokens, mask)
        if decoding.greedy or self.options.beam == 1:
            found = self.greedy(logits, lengths)
        else:
            from mumo.ngram import prefix_beam_search

            log_probs = logits.float().log_softmax(-1).cpu().numpy()
            o = self.options
            found = [
                prefix_beam_search(rows[:length], self.blank, o.beam, self.ngram, o.lm_weight, o.length_bonus)
                for rows, length in zip(log_probs, lengths.tolist(), strict=True)
            ]
        ids = torch.full((len(tokens), decoding.max_new_tokens), self.blank, dtype=torch.long)
        for i, units in enumerate(found):
            units = [*units[: decoding.max_new_tokens - 1], self.eos]
            ids[i, : len(units)] = torch.tensor(units, dtype=torch.long)
        return ids


def build_decoder(options: DecoderConfig | None, dim: int, target: TextTarget) -> nn.Module:
    """model.decoder as a module (null: lm)."""
    if isinstance(options, CTCDecoderOptions):
        if dim < 2:
            raise ConfigError("model.dim: too small for the ctc decoder")
        return CTCDecoder(options, dim, target.out_dim, target.pad, target.eos, target.ngram)
    return build_lm_decoder(options or LMDecoderOptions(), dim, target)


def build_lm_decoder(options: LMDecoderOptions, dim: int, target: TextTarget) -> LMDecoder:
    """The decoder of a generation run: a pretrained causal LM (model.decoder.pretrained: its weights when
    training, its saved config on reload, as the weights then come from model.safetensors; frozen, with
    LoRA adapters, or fine-tuned), else a LlamaForCausalLM built from a small config with random weights."""
    scale = 1.0
    if target.lm_config is not None:
        lm = _pretrained_lm(options, target)
        scale = options.lr_scale if options.lora is None else 1.0
    else:
        lm = _scratch_lm(options, dim, target.out_dim, target.pad, target.bos, target.eos)
    return LMDecoder(lm, dim, options.projector, target.pad, target.bos, target.eos, scale)


def _pretrained_lm(options: LMDecoderOptions, target: TextTarget) -> nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    from mumo.modalities.hf import quiet_transformers
    from mumo.modalities.hf_encoder import apply_lora

    lm: nn.Module
    with quiet_transformers():
        if target.source is not None:
            lm = AutoModelForCausalLM.from_pretrained(target.source)
        else:
            assert target.lm_config is not None
            lm = AutoModelForCausalLM.from_config(AutoConfig.for_model(**target.lm_config))
    if options.freeze or options.lora is not None:
        lm.requires_grad_(False)
    if options.lora is not None:
        lm = apply_lora(lm, options.lora, "model.decoder.lora")
    return lm


def _scratch_lm(options: LMDecoderOptions, dim: int, vocab: int, pad: int, bos: int, eos: int) -> nn.Module:
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
    return LlamaForCausalLM(config)


__all__ = ["CTCDecoder", "Decoding", "LMDecoder", "build_decoder", "build_lm_decoder", "position_ids"]
