"""The model section of the config: encoder options per kind, fusion options, the head, and `model:`
itself (the generators' sections: mumo.config_generators). Each options class is a tagged union member (its `type`), so errors name the tag's own keys."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from mumo.config_errors import Section, tagged
from mumo.config_generators import CVAEOptions as CVAEOptions
from mumo.config_generators import DiffusionOptions as DiffusionOptions
from mumo.config_generators import GeneratorConfig
from mumo.config_generators import LatentCVAEOptions as LatentCVAEOptions


class TransformerOptions(Section):
    type: Literal["transformer"] = "transformer"
    layers: int = Field(2, ge=1, description="Transformer blocks.")
    heads: int = Field(4, ge=1, description="Attention heads per block.")
    ff_mult: int = Field(2, ge=1, description="Feed-forward width as a multiple of model.dim.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout inside the blocks.")


class GRUOptions(Section):
    type: Literal["gru"] = "gru"
    layers: int = Field(1, ge=1, description="Stacked bidirectional GRU layers.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on embeddings and between layers.")


class BagOfWordsOptions(Section):
    type: Literal["bow"] = "bow"
    dropout: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Share of words hidden while training (word dropout: a request is read from its words "
        "together, not from one memorized caption).",
    )


class CNNOptions(Section):
    type: Literal["cnn"] = "cnn"
    channels: list[int] = Field(
        [32, 64, 128], min_length=1, description="Channels per stage (each halves H, W)."
    )
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the pooled features.")
    positions: Literal["coords", "learned", "none"] = Field(
        "coords",
        description="Where each token is, added to it: images: coords = the cell's x, y and their sines and "
        "cosines through a learned map (the geometry that 'left of' and 'above' are made of, known from the "
        "start), learned = learned row and column embeddings; audio: learned time embeddings unless none. "
        "true/false (older runs) mean learned/none.",
    )

    @field_validator("positions", mode="before")
    @classmethod
    def _older_switch(cls, value: Any) -> Any:
        return {True: "learned", False: "none"}.get(value, value) if isinstance(value, bool) else value


class MLPOptions(Section):
    type: Literal["mlp"] = "mlp"
    hidden: int = Field(64, ge=1, description="Hidden width of the per-column MLP.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the output.")


class EmbeddingOptions(Section):
    type: Literal["embedding"] = "embedding"
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the embedding.")


class LoRAOptions(Section):
    r: int = Field(8, ge=1, description="Rank of the low-rank update.")
    alpha: int = Field(16, ge=1, description="Scale of the update (alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    targets: list[str] | None = Field(
        None, description="Module names to adapt (e.g. [query, value]); null = peft's default for the model."
    )


class HFOptions(Section):
    type: Literal["hf"] = "hf"
    pretrained: str = Field(
        description="Local folder, a model carried by an installed package, or a Hugging Face Hub name."
    )
    pooling: Literal["mean", "cls", "pooler"] = Field(
        "mean",
        description="Row vector: mean of the tokens, the first token, or the backbone's pooler output.",
    )
    freeze: bool = Field(False, description="Keep the backbone's weights fixed (its features can be cached).")
    lora: LoRAOptions | None = Field(None, description="Train LoRA adapters (peft) instead of the backbone.")
    lr_scale: float = Field(0.1, gt=0, description="Backbone learning rate as a multiple of train.lr.")
    lr_decay: float = Field(
        1.0, gt=0, le=1, description="Layer-wise decay: each layer below the top gets this times the rate."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in backward to save memory."
    )
    max_length: int = Field(128, ge=1, description="Text: tokens kept per cell (the rest is cut).")
    max_seconds: float = Field(10.0, gt=0, description="Audio: seconds kept per clip.")


class Conv1dOptions(Section):
    type: Literal["conv1d"] = "conv1d"
    channels: list[int] = Field(
        [192, 192, 192, 192], min_length=1, description="Channels of each 1-D convolution over time."
    )
    kernel: int = Field(5, ge=1, description="Frames each convolution sees (odd keeps frames centred).")
    stride: int = Field(
        2, ge=1, description="Time downsampling of the first convolution (10 ms hops → 20 ms)."
    )
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout after each convolution.")


EncoderConfig = Annotated[
    TransformerOptions
    | GRUOptions
    | BagOfWordsOptions
    | CNNOptions
    | Conv1dOptions
    | MLPOptions
    | EmbeddingOptions
    | HFOptions,
    Field(discriminator="type"),
]

ENCODERS_FOR_KIND: dict[str, tuple[str, ...]] = {
    "text": ("transformer", "gru", "bow", "hf"),
    "image": ("cnn", "hf"),
    "audio": ("cnn", "conv1d", "hf"),
    "numeric": ("mlp",),
    "categorical": ("embedding",),
}
DEFAULT_ENCODER: dict[str, str] = {
    "text": "transformer",
    "image": "cnn",
    "audio": "cnn",
    "numeric": "mlp",
    "categorical": "embedding",
}


class ConcatOptions(Section):
    type: Literal["concat"] = "concat"
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the concatenated vector.")


class GatedOptions(Section):
    type: Literal["gated"] = "gated"
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on each projected column vector.")


class AttentionOptions(Section):
    type: Literal["attention"] = "attention"
    layers: int = Field(1, ge=1, description="Transformer blocks over the column tokens.")
    heads: int = Field(4, ge=1, description="Attention heads per block (must divide model.dim).")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout inside the blocks.")
    tokens: bool = Field(False, description="Attend over every encoder's tokens, not one pooled token each.")
    max_tokens: int = Field(64, ge=1, description="With tokens: true, keep at most this many per column.")


class LateOptions(Section):
    type: Literal["late"] = "late"
    hidden: int = Field(64, ge=1, description="Hidden width of each column's own head.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout inside each column's head.")


class LowRankOptions(Section):
    type: Literal["lrtf"] = "lrtf"
    rank: int = Field(4, ge=1, le=64, description="Rank of the low-rank factors of the fusion tensor.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on each column's pooled vector.")


class FiLMOptions(Section):
    type: Literal["film"] = "film"
    condition: str | None = Field(
        None, description="Column that produces the modulation; null = the first text column."
    )
    target: str | None = Field(
        None, description="Column whose tokens are modulated; null = the first image or audio column."
    )
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout before the output projection.")


class BilinearOptions(Section):
    type: Literal["bilinear"] = "bilinear"
    pair: list[str] | None = Field(
        None, min_length=2, max_length=2, description="The two columns fused bilinearly; null = first two."
    )
    hidden: int | None = Field(None, ge=1, description="Rank of the bilinear product; null = 2 * model.dim.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the bilinear product.")


class CrossOptions(Section):
    type: Literal["cross"] = "cross"
    layers: int = Field(
        2, ge=1, description="Blocks of self-attention over the words and cross-attention to the rest."
    )
    heads: int = Field(4, ge=1, description="Attention heads per block (must divide model.dim).")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout inside the blocks.")
    max_tokens: int = Field(64, ge=1, description="Tokens kept per attended column.")
    queries: int = Field(
        4,
        ge=0,
        description="Learned query tokens before the words (as a Q-Former's): they attend to the words and the "
        "other columns like the words do, and each one's output is kept in its place rather than pooled, so "
        "roles such as a relation's subject and object stay apart.",
    )


FusionConfig = Annotated[
    ConcatOptions
    | GatedOptions
    | AttentionOptions
    | LateOptions
    | LowRankOptions
    | FiLMOptions
    | BilinearOptions
    | CrossOptions,
    Field(discriminator="type"),
]


class HeadConfig(Section):
    hidden: int = Field(256, ge=1, description="Hidden width of the task head MLP.")
    layers: int = Field(1, ge=0, description="Hidden layers in the head (0 = a linear head).")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout in the head.")


class LMDecoderOptions(Section):
    type: Literal["lm"] = "lm"
    layers: int = Field(2, ge=1, description="Transformer layers of the language model trained from scratch.")
    heads: int = Field(4, ge=1, description="Attention heads (must divide the decoder width).")
    dim: int | None = Field(None, ge=8, description="Width of the language model; null = model.dim.")
    ff_mult: int = Field(4, ge=1, description="Feed-forward width as a multiple of the decoder width.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Attention dropout inside the language model.")
    projector: Literal["linear", "mlp"] = Field(
        "mlp", description="Map from fused tokens to the decoder's prefix: linear, or 2 layers with GELU."
    )
    vocab_size: int = Field(4000, ge=16, description="Word pieces learned from the train targets.")
    max_length: int = Field(128, ge=1, description="Pieces kept per target (the rest is cut).")
    pretrained: str | None = Field(
        None,
        description="A causal LM (local folder with config.json and tokenizer.json, a model an installed "
        "package carries, or a Hub name) used instead of one trained from scratch; then layers, heads, "
        "dim, ff_mult and vocab_size do not apply, and its own tokenizer is used.",
    )
    freeze: bool = Field(False, description="Pretrained: keep the language model's weights fixed.")
    lr_scale: float = Field(
        0.1, gt=0, description="Pretrained, fine-tuned: its learning rate as a multiple of train.lr."
    )
    lora: LoRAOptions | None = Field(
        None, description="Pretrained: train LoRA adapters (peft) instead of the LM."
    )


class CTCDecoderOptions(Section):
    type: Literal["ctc"] = "ctc"
    units: Literal["chars", "pieces"] = Field(
        "chars", description="What it writes: characters (any word can be spelled) or word pieces."
    )
    vocab_size: int = Field(1000, ge=16, description="Pieces: word pieces learned from the train targets.")
    layers: int = Field(
        2, ge=0, description="Bidirectional GRU layers over the frames, before the output layer."
    )
    upsample: int = Field(
        1,
        ge=1,
        description="Output steps per input frame: CTC needs at least one step per character; raise it for "
        "long frames (the 2-D audio CNN's are 80 ms; conv1d's, 20 ms).",
    )
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout between the GRU layers.")
    max_length: int = Field(512, ge=1, description="Units kept per target (the rest is cut).")
    beam: int = Field(
        8, ge=1, description="Prefix beam search width when predicting (1 = greedy); validation is greedy."
    )
    lm_order: int = Field(
        6, ge=0, description="Order of the unit n-gram language model fitted on the train targets (0 = none)."
    )
    lm_text: str | None = Field(
        None,
        description="A UTF-8 text file, one sentence per line, the n-gram language model learns from besides "
        "the train targets (text is easier to come by than transcribed audio).",
    )
    lm_weight: float = Field(
        0.5, ge=0, description="Weight of the language model in the beam search (shallow fusion)."
    )
    length_bonus: float = Field(
        0.5, description="Score added per unit in the beam search (offsets the LM's cost)."
    )


DecoderConfig = Annotated[LMDecoderOptions | CTCDecoderOptions, Field(discriminator="type")]


class ModelConfig(Section):
    dim: int = Field(128, ge=8, description="Width of every encoder's output and of the fused vector.")
    encoders: dict[str, EncoderConfig] = Field(
        default_factory=dict,
        description="Encoder per input column; columns not listed get their kind's default.",
    )
    fusion: FusionConfig | None = Field(
        None,
        description="How the inputs are combined; null = cross when a text column meets an image or audio "
        "column (words attend to regions and frames), else concat.",
    )
    head: HeadConfig = Field(default_factory=HeadConfig, description="Task head on the fused vector.")
    wide: bool = Field(True, description="Add a linear path from numeric/categorical inputs to the output.")
    modality_dropout: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="Chance, per row and input, that training hides the input (absent); null = 0.2 with 8 or "
        "more inputs (a table of features, where it regularizes like dropout on features), else 0.",
    )
    align: float | None = Field(
        None,
        ge=0,
        description="Weight of an auxiliary loss while training (classification, multilabel, regression) that "
        "pulls each row's text, image and audio inputs together and apart from other rows' (contrastive, as ALBEF aligns before fusing); "
        "null = 1 when inputs of two of those kinds meet, else 0.",
    )
    decoder: DecoderConfig | None = Field(
        None,
        description="The text decoder of task: generation: lm (a causal language model whose prefix is the "
        "fused tokens) or ctc (CTC over the input's frames, for speech); null = ctc when every input is audio, "
        "else lm.",
    )

    @field_validator("decoder", mode="before")
    @classmethod
    def _decoder_type(cls, value: Any) -> Any:
        """A decoder section without a type is the language model's (its options alone read naturally)."""
        return {"type": "lm", **value} if isinstance(value, dict) and "type" not in value else value

    generator: GeneratorConfig | None = Field(
        None,
        description="The image generator of task: image_generation: cvae (a conditional VAE), latent_cvae (a "
        "conditional VAE of a spatial autoencoder's latent grid, the autoencoder trained first) or diffusion (a "
        "conditional DDPM through diffusers); null = cvae.",
    )

    @field_validator("generator", mode="before")
    @classmethod
    def _generator_type(cls, value: Any) -> Any:
        return {"type": "cvae", **value} if isinstance(value, dict) and "type" not in value else value

    init_from: str | None = Field(
        None, description="A run whose encoders (and their processors) start this model, matched by column."
    )
    freeze: list[str] = Field(
        default_factory=list, description="Columns whose encoders are not trained (e.g. after init_from)."
    )


# ------------------------------------------------------------------------------- tagged tables
ENCODER_OPTIONS = tagged(EncoderConfig)  # {"cnn": CNNOptions, ...}
FUSION_OPTIONS = tagged(FusionConfig)
