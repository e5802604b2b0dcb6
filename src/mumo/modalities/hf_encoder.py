"""The encoder of `hf` columns: a pretrained Hugging Face backbone (the tower of `kind` in a dual
encoder), optionally with LoRA adapters or frozen layers, whose hidden states become mumo's tokens.
Its processor (mumo.modalities.hf) says which checkpoint, or the saved config on reload."""

from __future__ import annotations

import inspect
import re
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from mumo.config_model import HFOptions
from mumo.errors import ConfigError
from mumo.modalities.base import ENCODERS, Processor, encoder_key
from mumo.modalities.hf import HFProcessor, quiet_transformers
from mumo.outputs import EncoderOutput, masked_mean


def load_backbone(processor: HFProcessor) -> nn.Module:
    """The pretrained weights when training; the saved config (weights come from model.safetensors) on reload."""
    from transformers import AutoModel

    with quiet_transformers():
        if processor.source is not None:
            model = AutoModel.from_pretrained(processor.source)
        else:
            model = AutoModel.from_config(processor.hf_config)
    return tower(model, processor.kind)


def tower(model: nn.Module, kind: str) -> nn.Module:
    """The part of a checkpoint that encodes `kind`: a dual encoder's (CLIP, SigLIP) text or vision tower,
    an encoder-decoder's (Whisper) encoder, else the model itself."""
    name = {"text": "text_model", "image": "vision_model"}.get(kind)
    if name and isinstance(getattr(model, name, None), nn.Module):
        return getattr(model, name)
    if getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
        return model.get_encoder()  # type: ignore[operator]
    return model


def drop_pooler(backbone: nn.Module) -> None:
    """Without pooling: pooler, the backbone's pooler head would get no gradient (and trip DDP's unused-
    parameter check): remove it, or (CLIP's post_layernorm, applied only to the pooled token) fix it."""
    if isinstance(getattr(backbone, "pooler", None), nn.Module):
        backbone.pooler = None  # type: ignore[assignment]  # BERT, ViT, ...: forward skips a None pooler
    post = getattr(backbone, "post_layernorm", None)
    if isinstance(post, nn.Module) and hasattr(backbone, "pre_layrnorm"):  # CLIP vision: pooled token only
        post.requires_grad_(False)


def hidden_size(config: Any) -> int:
    for name in ("hidden_size", "d_model"):
        if isinstance(getattr(config, name, None), int):
            return int(getattr(config, name))
    sizes = getattr(config, "hidden_sizes", None)  # ConvNeXt, ResNet: channels per stage
    if sizes:
        return int(sizes[-1])
    raise ConfigError(f"cannot tell the output width of a {type(config).__name__} backbone")


def apply_lora(backbone: nn.Module, options: Any, key: str) -> nn.Module:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError(f"{key}: LoRA needs the peft package (pip install peft)") from None
    config = LoraConfig(
        r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout, target_modules=options.targets
    )
    if options.targets is None:
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

        if getattr(backbone.config, "model_type", None) not in DEFAULTS:
            linear = sorted(
                {n.rsplit(".", 1)[-1] for n, m in backbone.named_modules() if isinstance(m, nn.Linear)}
            )
            raise ConfigError(
                f"{key}.targets: peft has no default modules to adapt in a {type(backbone).__name__}; "
                f"set them, e.g. [{', '.join(linear[:2])}] (its linear layers: {', '.join(linear[:12])})"
            )
    try:
        with warnings.catch_warnings():  # peft still calls transformers' deprecated names
            warnings.simplefilter("ignore", FutureWarning)
            return get_peft_model(backbone, config)  # type: ignore[arg-type]
    except ValueError as err:
        raise ConfigError(f"{key}.targets: {str(err).splitlines()[0][:200]}") from None


@ENCODERS.register(encoder_key("text", "hf"))
@ENCODERS.register(encoder_key("image", "hf"))
@ENCODERS.register(encoder_key("audio", "hf"))
class HFBackbone(nn.Module):
    """A pretrained backbone, its pooling, and a linear projection to model.dim (tokens and pooled)."""

    def __init__(self, options: HFOptions, dim: int, processor: Processor) -> None:
        super().__init__()
        assert isinstance(processor, HFProcessor)
        key = f"model.encoders.{processor.column}"
        self.options = options
        self.kind = processor.kind
        backbone = load_backbone(processor)
        if options.gradient_checkpointing:
            if not getattr(backbone, "supports_gradient_checkpointing", False):
                raise ConfigError(
                    f"{key}.gradient_checkpointing: {type(backbone).__name__} does not support it"
                )
            # transformers 5 renamed it (activation_checkpointing_enable); 4 has only the old name.
            enable = getattr(backbone, "activation_checkpointing_enable", None)
            (enable or backbone.gradient_checkpointing_enable)()  # type: ignore[operator]
        if options.pooling != "pooler":
            drop_pooler(backbone)
        self.frozen = options.freeze or options.lora is not None
        if self.frozen:
            backbone.requires_grad_(False)
        if options.lora is not None:
            backbone = apply_lora(backbone, options.lora, f"{key}.lora")
        self.backbone = backbone
        base = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone  # type: ignore[operator]
        self.accepts = set(inspect.signature(base.forward).parameters)  # inputs the backbone takes
        width = hidden_size(backbone.config)
        self.project = nn.Linear(width, dim)
        self.norm = nn.LayerNorm(dim)

    @property
    def cacheable(self) -> bool:
        """Frozen (no LoRA), so its output for a cell never changes while training."""
        return self.options.freeze and self.options.lora is None

    def train(self, mode: bool = True) -> HFBackbone:
        super().train(mode)
        if self.cacheable:
            self.backbone.eval()  # a frozen backbone is a fixed function: no dropout
        return self

    def backbone_features(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """The backbone's own (pooled (B, H), tokens (B, T, H), mask (B, T)), before the projection."""
        out = self.backbone(**{k: v for k, v in inputs.items() if k in self.accepts})
        hidden = out.last_hidden_state
        if hidden.ndim == 4:  # a conv net's feature map (B, C, h, w): its cells are the tokens
            hidden = hidden.flatten(2).transpose(1, 2)
        if self.kind == "text" and "attention_mask" in inputs:
            mask = inputs["attention_mask"].bool()
        else:
            mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
        if self.options.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.options.pooling == "pooler" and getattr(out, "pooler_output", None) is not None:
            pooled = out.pooler_output.flatten(1)
        else:
            pooled = masked_mean(hidden, mask)
        return pooled, hidden, mask

    def forward(self, inputs: dict[str, Tensor]) -> EncoderOutput:
        if "features" in inputs:  # from the feature cache
            pooled, hidden, mask = inputs["features_pooled"], inputs["features"], inputs["features_mask"]
        elif self.cacheable:
            with torch.no_grad():
                pooled, hidden, mask = self.backbone_features(inputs)
        else:
            pooled, hidden, mask = self.backbone_features(inputs)
        tokens = self.norm(self.project(hidden.float()))
        return EncoderOutput(self.norm(self.project(pooled.float())), tokens, mask)

    def lr_scales(self) -> dict[str, float]:
        """Learning-rate multiple per parameter name: the backbone gets lr_scale, decayed layer by layer
        from the top (lr_decay), embeddings lowest; LoRA adapters and the projection get the full rate."""
        names = [name for name, p in self.backbone.named_parameters() if p.requires_grad]
        depth = [_layer_index(name) for name in names]
        top = max((d for d in depth if d is not None), default=0)
        scales = {}
        for name, layer in zip(names, depth, strict=True):
            if "lora_" in name:
                continue
            below = (
                top + 1 if layer is None and "embed" in name else (top - layer if layer is not None else 0)
            )
            scales[f"backbone.{name}"] = self.options.lr_scale * self.options.lr_decay**below
        return scales


def _layer_index(name: str) -> int | None:
    """The block number in a parameter name (encoder.layer.3.…, layers.3.…), if any."""
    match = re.search(r"\.(?:layer|layers|block|blocks)\.(\d+)\.", f".{name}")
    return int(match.group(1)) if match else None
