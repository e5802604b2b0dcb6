"""Config sections of the image generators (model.generator: cvae, latent_cvae, diffusion)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from mumo.config_errors import Section


class CVAEOptions(Section):
    metrics: ClassVar[tuple[str, ...]] = ("elbo", "reconstruction", "kl", "mse")  # the main one first
    type: Literal["cvae"] = "cvae"
    size: int = Field(
        32, ge=8, description="Side of the generated images (a multiple of 2 ** len(channels))."
    )
    latent: int = Field(32, ge=1, description="Width of the latent code.")
    channels: list[int] = Field(
        [32, 64, 128], min_length=1, description="Channels per stage (each halves the side)."
    )
    beta: float = Field(1.0, gt=0, description="Weight of the KL term (1 = the ELBO).")
    anchor: float = Field(
        0.5,
        ge=0,
        description="Weight of a second reconstruction from the prior's centre, which makes the condition "
        "(not the code) carry what the request says.",
    )
    prior: Literal["standard", "learned"] = Field(
        "standard",
        description="The code's prior: standard = N(0, I); learned = p(z | condition), a Gaussian whose mean "
        "and scale the request sets (builtin:shapes-draw: samples more varied, 0.82 vs 0.55 of the real "
        "images' spread, but the requested shape drawn less often, 0.31 vs 0.39).",
    )


class DiffusionOptions(Section):
    metrics: ClassVar[tuple[str, ...]] = ("denoising",)
    type: Literal["diffusion"] = "diffusion"
    size: int = Field(
        32, ge=8, description="Side of the generated images (a multiple of 2 ** (len(channels) - 1))."
    )
    channels: list[int] = Field(
        [32, 64, 64],
        min_length=2,
        description="UNet channels per resolution (multiples of 8); attention at the lowest.",
    )
    layers: int = Field(1, ge=1, description="ResNet blocks per resolution.")
    steps: int = Field(1000, ge=10, description="Noise levels of training (DDPM).")
    sampling_steps: int = Field(50, ge=1, description="DDIM steps when drawing.")
    guidance: float = Field(3.0, ge=0, description="Classifier-free guidance scale (1 = none).")
    unconditional: float = Field(
        0.1, ge=0, lt=1, description="Share of training rows whose condition is hidden (for guidance)."
    )


# every key a run saved for latent_cvae before `halvings` existed (a user's config rarely names them all)
_SAVED_BEFORE_HALVINGS = {"size", "grid", "width", "hidden", "latent", "blocks", "beta", "anchor"}


class LatentCVAEOptions(Section):
    metrics: ClassVar[tuple[str, ...]] = ("objective", "autoencoder", "elbo", "kl", "match")  # main first
    type: Literal["latent_cvae"] = "latent_cvae"
    size: int = Field(32, ge=8, description="Side of the generated images (a multiple of 8).")
    grid: int = Field(4, ge=1, description="Channels of the autoencoder's latent grid.")
    halvings: int = Field(
        1,
        ge=1,
        le=4,
        description="Stride-2 stages of the autoencoder: its grid is size / 2 ** halvings on a side "
        "(builtin:shapes-draw, 32x32: with 1, test reconstructions show the right shape 0.99 on two seeds; "
        "with 2, 0.41-0.94 from run to run).",
    )
    width: int = Field(48, ge=8, description="Channels of the autoencoder's convolutions (a multiple of 8).")
    hidden: int = Field(
        96, ge=8, description="Channels of the CVAE's convolutions on the latent grid (a multiple of 8)."
    )
    latent: int = Field(32, ge=1, description="Width of the CVAE's code.")
    autoencoder_steps: int = Field(
        3000,
        ge=0,
        description="Steps of the autoencoder's own first stage (Adam, a one-cycle schedule peaking at "
        "autoencoder_lr, batches of autoencoder_batch images: benchmarks.latent_cvae's recipe), before the "
        "CVAE trains on its fixed latent; 0 = the two learn together throughout mumo's training loop.",
    )
    autoencoder_batch: int = Field(
        32, ge=1, description="Images per step of the autoencoder's stage (train.batch_size's batches split)."
    )
    autoencoder_lr: float = Field(1e-3, gt=0, description="Peak learning rate of the autoencoder's stage.")
    blocks: int = Field(4, ge=1, description="FiLM residual blocks of the CVAE's decoder.")
    beta: float = Field(
        1.0,
        gt=0,
        description="Weight of the KL term (builtin:shapes-draw, benchmarks.latent_cvae with every caption word "
        "kept, 8x8 grid: held-out colour-shape pairs drawn right with beta 0.5: 0.83, 1: 0.89, 4: 0.87; lower "
        "is more varied: diversity 0.88, 0.74, 0.41; 16x16 grid, beta 1 / 2: 0.83 / 0.81, diversity 1.09 / "
        "0.95).",
    )
    anchor: float = Field(
        0.0,
        ge=0,
        description="Weight of a second reconstruction from z = 0 (as in cvae). 0 here: it teaches the "
        "decoder to draw each training image from its request alone, which a request that identifies "
        "its image lets it do (it memorizes, the code goes unused, samples of one request hardly vary). "
        "builtin:shapes-draw, 3000 steps, the same seed: 0.5 drew held-out colour-shape pairs right 0.889, "
        "diversity 0.64; 0 drew 0.967, diversity 1.17 (another seed: 0.990, 1.08; BENCHMARKS.md).",
    )
    pixel_noise: bool = Field(
        True,
        description="Samples are drawn from p(image | grid): the decoded image plus Gaussian pixel noise "
        "of the autoencoder's residual spread on the training images (false: the decoded image itself).",
    )
    prior: Literal["aggregate", "standard"] = Field(
        "aggregate",
        description="Where samples draw the code from: aggregate = the posterior of a random one of the "
        "last 4096 training images (their Gaussians, kept with the model; the code of a picture that was "
        "drawn); standard = N(0, I), where codes no training image had land between them "
        "(benchmarks.latent_cvae, the same CVAE: held-out pairs drawn right 0.88 vs 0.75, FID 0.20 vs 0.58).",
    )

    neighbours: int = Field(
        16,
        ge=0,
        description="With prior aggregate: draw the code from one of the this many remembered training "
        "images whose requests are closest to this one (cosine of the fused request), so that it does "
        "not carry what the request says otherwise (a size, a place); 0 = from any of them. 16: held-out "
        "pairs drawn right 0.967 vs 0.939 with 0, diversity 1.16 vs 1.79 (real images of the request: 1), "
        "FID 0.14 vs 0.30 (one 3000-step run; BENCHMARKS.md).",
    )
    rerank: int = Field(
        1,
        ge=1,
        le=64,
        description="Candidates drawn for each sample, of which the one a matcher scores closest to the "
        "request is kept (DALL-E's reranking by CLIP, Ramesh et al. 2021): the matcher, two small towers "
        "over the latent grid and the fused request trained contrastively beside the CVAE on the training "
        "pairs, is trained whatever this is; 1 = every sample is the first candidate. 8: held-out 0.984 vs "
        "0.967 and 0.977 vs 0.990 on two runs, diversity 0.79 vs 1.16 and 0.77 vs 1.08 (the typical "
        "candidate wins): not the default.",
    )

    @model_validator(mode="before")
    @classmethod
    def _older_name(cls, value: Any) -> Any:
        """Runs of the first latent_cvae named the freeze point autoencoder_batches (batches of the one
        loop): the same number of the autoencoder's batches, which a saved run has already had."""
        if isinstance(value, dict) and "autoencoder_batches" in value and "autoencoder_steps" not in value:
            value = dict(value)
            value["autoencoder_steps"] = value.pop("autoencoder_batches")
        if isinstance(value, dict) and "halvings" not in value and _SAVED_BEFORE_HALVINGS <= value.keys():
            value = {**value, "halvings": 2}  # a run's saved config from before halvings: its grid was size/4
        return value

    @field_validator("autoencoder_steps")
    @classmethod
    def _a_schedule(cls, value: int) -> int:
        if 0 < value < 10:
            raise ValueError(
                f"model.generator.autoencoder_steps: {value} must be 0 (the two learn together) or at "
                "least 10 (a warmup and a decay)"
            )
        return value


GeneratorConfig = Annotated[CVAEOptions | LatentCVAEOptions | DiffusionOptions, Field(discriminator="type")]


__all__ = ["CVAEOptions", "DiffusionOptions", "GeneratorConfig", "LatentCVAEOptions"]
