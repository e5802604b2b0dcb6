"""Image generators for task: image_generation, conditioned on a vector (the fused inputs: a caption, a
label, numbers). Each has `losses(images, condition)` → {"loss": what training minimizes, and the
metrics its options class names (the main one first)} and `sample(condition, generator)`.

CVAE (Sohn et al. 2015, the classic conditional generator of small images): an encoder q(z | image,
condition), a decoder p(image | z, condition) with Bernoulli pixels; trained on the ELBO (per pixel,
KL weighted by beta); sampled with z ~ N(0, I).

Diffusion (Ho et al. 2020; DDIM sampling, Song et al. 2021; classifier-free guidance, Ho & Salimans
2022): a diffusers UNet2DModel predicts the noise of a noised image, the condition added to its time
embedding; trained with some conditions hidden, drawn with DDIM and guidance. diffusers is imported
when one is built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mumo.config_model import CVAEOptions, DiffusionOptions
from mumo.errors import ConfigError


class CVAE(nn.Module):
    def __init__(self, options: CVAEOptions, dim: int) -> None:
        super().__init__()
        stages = len(options.channels)
        if options.size % 2**stages:
            raise ConfigError(
                f"model.generator.size: {options.size} is not a multiple of 2 ** {stages} (one halving per stage)"
            )
        self.options, self.side = options, options.size // 2**stages
        channels = options.channels
        down: list[nn.Module] = []
        previous = 3
        for width in channels:
            down += [nn.Conv2d(previous, width, 4, 2, 1), _norm(width), nn.GELU()]
            previous = width
        self.down = nn.Sequential(*down, nn.Flatten())
        flat = channels[-1] * self.side**2
        self.posterior = nn.Linear(flat + dim, 2 * options.latent)
        self.expand = nn.Sequential(nn.Linear(options.latent + dim, flat), nn.GELU())
        up: list[nn.Module] = []
        for width, following in zip(channels[::-1], [*channels[::-1][1:], None], strict=True):
            if following is None:
                up.append(nn.ConvTranspose2d(width, 3, 4, 2, 1))
            else:
                up += [nn.ConvTranspose2d(width, following, 4, 2, 1), _norm(following), nn.GELU()]
        self.up = nn.Sequential(*up)

    def decode(self, z: Tensor, condition: Tensor) -> Tensor:
        """Pixel logits (B, 3, size, size)."""
        hidden = self.expand(torch.cat([z, condition], dim=1))
        return self.up(hidden.reshape(len(z), self.options.channels[-1], self.side, self.side))

    def losses(self, images: Tensor, condition: Tensor) -> dict[str, Tensor]:
        """elbo (per pixel: reconstruction + beta * KL / pixels), reconstruction (BCE per pixel), kl (per
        image, nats) and mse (of the posterior mean's reconstruction)."""
        stats = self.posterior(torch.cat([self.down(images), condition], dim=1))
        mean, log_var = stats.chunk(2, dim=1)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp() if self.training else mean
        logits = self.decode(z, condition)
        pixels = images[0].numel()
        reconstruction = F.binary_cross_entropy_with_logits(logits.float(), images, reduction="mean")
        kl = (-0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(1)).mean()
        elbo = reconstruction + self.options.beta * kl / pixels
        mse = F.mse_loss(logits.float().sigmoid(), images)
        # The same decoder with z = 0 (the prior's centre) must draw the image from the condition alone:
        # without it the code z, which can carry a colour for a few nats, learns what the condition says
        # and sampling ignores the request.
        central = self.decode(torch.zeros_like(z), condition)
        anchor = F.binary_cross_entropy_with_logits(central.float(), images, reduction="mean")
        loss = elbo + self.options.anchor * anchor
        return {"loss": loss, "elbo": elbo, "reconstruction": reconstruction, "kl": kl, "mse": mse}

    @torch.no_grad()
    def sample(self, condition: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One image per condition row: (B, 3, size, size) in [0, 1]."""
        z = torch.randn(len(condition), self.options.latent, generator=generator).to(condition)
        return self.decode(z, condition).float().sigmoid()


class Diffusion(nn.Module):
    def __init__(self, options: DiffusionOptions, dim: int) -> None:
        super().__init__()
        from diffusers import DDPMScheduler, UNet2DModel

        levels = len(options.channels)
        if options.size % 2 ** (levels - 1) or any(c % 8 for c in options.channels):
            raise ConfigError(
                f"model.generator: size {options.size} must be a multiple of 2 ** {levels - 1} and channels multiples of 8"
            )
        self.options = options
        down = ("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",)
        up = ("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1)
        self.unet = UNet2DModel(
            sample_size=options.size,
            in_channels=3,
            out_channels=3,
            down_block_types=down,
            up_block_types=up,
            block_out_channels=tuple(options.channels),
            layers_per_block=options.layers,
            norm_num_groups=8,
            attention_head_dim=8,
            class_embed_type="identity",
        )
        self.embed = nn.Linear(dim, options.channels[0] * 4)  # the condition, added to the time embedding
        self.null = nn.Parameter(torch.zeros(dim))  # the hidden condition
        self.schedule = DDPMScheduler(num_train_timesteps=options.steps)

    def losses(self, images: Tensor, condition: Tensor) -> dict[str, Tensor]:
        """denoising: mean squared error of the predicted noise (validation draws a fixed set of noise
        levels and noises, so the value repeats)."""
        generator = None if self.training else torch.Generator().manual_seed(0)
        x0 = images * 2 - 1
        noise = torch.randn(x0.shape, generator=generator).to(x0)
        steps = torch.randint(0, self.options.steps, (len(x0),), generator=generator).to(x0.device)
        noisy = self.schedule.add_noise(x0, noise, steps)  # type: ignore[attr-defined]
        if self.training and self.options.unconditional > 0:
            hide = torch.rand(len(condition), device=condition.device) < self.options.unconditional
            condition = torch.where(hide.unsqueeze(1), self.null.to(condition.dtype), condition)
        predicted = self.unet(noisy, steps, class_labels=self.embed(condition)).sample  # type: ignore[operator]
        loss = F.mse_loss(predicted.float(), noise)
        return {"loss": loss, "denoising": loss}

    @torch.no_grad()
    def sample(self, condition: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One image per condition row: (B, 3, size, size) in [0, 1], DDIM with classifier-free guidance."""
        from diffusers import DDIMScheduler

        scheduler = DDIMScheduler.from_config(self.schedule.config)  # type: ignore[attr-defined]
        scheduler.set_timesteps(self.options.sampling_steps)
        size = self.options.size
        x = torch.randn((len(condition), 3, size, size), generator=generator).to(condition)
        guided = self.options.guidance != 1
        labels = self.embed(condition)
        if guided:
            labels = torch.cat([labels, self.embed(self.null.to(condition.dtype)).expand_as(labels)])
        for step in scheduler.timesteps:
            inputs = torch.cat([x, x]) if guided else x
            predicted = self.unet(inputs, step, class_labels=labels).sample  # type: ignore[operator]
            if guided:
                conditional, unconditional = predicted.chunk(2)
                predicted = unconditional + self.options.guidance * (conditional - unconditional)
            x = scheduler.step(predicted, step, x).prev_sample
        return ((x.float() + 1) / 2).clamp(0, 1)


def _norm(channels: int) -> nn.Module:
    """GroupNorm: the same in training and sampling, whatever the batch (BatchNorm's running statistics
    made sampled images differ from trained ones)."""
    return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)


def build_generator(options: CVAEOptions | DiffusionOptions | None, dim: int) -> nn.Module:
    if isinstance(options, DiffusionOptions):
        try:
            return Diffusion(options, dim)
        except ImportError:
            raise ConfigError(
                "model.generator.type: diffusion needs the diffusers package (pip install diffusers)"
            ) from None
    return CVAE(options or CVAEOptions(), dim)


__all__ = ["CVAE", "Diffusion", "build_generator"]
