"""Image generators for task: image_generation, conditioned on a vector (the fused inputs: a caption, a
label, numbers). Each has `losses(images, condition)` → {"loss": what training minimizes, and the
metrics its options class names (the main one first)} and `sample(condition, generator)`.

CVAE (Sohn et al. 2015, the classic conditional generator of small images): an encoder q(z | image,
condition), a decoder p(image | z, condition) whose upsampling stages are each modulated by the
condition (FiLM) and whose pixels are Gaussian with one learned scale (a calibrated decoder, Rybkin et
al. 2021); trained on the ELBO (per pixel, KL weighted by beta). The code's prior is learned from the
condition, p(z | condition) (Sohn et al.'s prior network; `prior: learned`), or N(0, I) (`standard`);
samples draw z from it.

Latent CVAE (a CVAE in the latent grid of a sharp spatial autoencoder): mumo.latent_cvae.

Diffusion (Ho et al. 2020; DDIM sampling, Song et al. 2021; classifier-free guidance, Ho & Salimans
2022): a diffusers UNet2DModel predicts the noise of a noised image, the condition added to its time
embedding; trained with some conditions hidden, drawn with DDIM and guidance. diffusers is imported
when one is built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mumo.config_model import CVAEOptions, DiffusionOptions, LatentCVAEOptions
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
            down += [nn.Conv2d(previous, width, 4, 2, 1), group_norm(width), nn.GELU()]
            previous = width
        self.down = nn.Sequential(*down, nn.Flatten())
        flat = channels[-1] * self.side**2
        self.posterior = nn.Linear(flat + dim, 2 * options.latent)
        self.expand = nn.Sequential(nn.Linear(options.latent + dim, flat), nn.GELU())
        widths = channels[::-1]
        self.up = nn.ModuleList(
            _Up(width, following, dim) for width, following in zip(widths[:-1], widths[1:], strict=True)
        )
        self.out = nn.ConvTranspose2d(widths[-1], 3, 4, 2, 1)
        self.log_scale = nn.Parameter(torch.tensor(-1.0))  # of the pixels' Gaussian, learned
        self.prior = (
            nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 2 * options.latent))
            if options.prior == "learned"
            else None
        )

    def code_prior(self, condition: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of p(z | condition): learned, or N(0, I)."""
        if self.prior is None:
            zeros = condition.new_zeros(len(condition), self.options.latent)
            return zeros, zeros
        mean, log_var = self.prior(condition).float().chunk(2, dim=1)
        return mean, log_var

    def decode(self, z: Tensor, condition: Tensor) -> Tensor:
        """Pixel logits (B, 3, size, size): the code and the condition through a linear layer to the
        smallest grid, then upsampling stages, each modulated by the condition (FiLM)."""
        hidden = self.expand(torch.cat([z, condition], dim=1))
        hidden = hidden.reshape(len(z), self.options.channels[-1], self.side, self.side)
        for stage in self.up:
            hidden = stage(hidden, condition)
        return self.out(hidden)

    def losses(self, images: Tensor, condition: Tensor) -> dict[str, Tensor]:
        """elbo (per pixel: Gaussian negative log-likelihood + beta * KL / pixels), reconstruction (the
        negative log-likelihood per pixel), kl (per image, nats) and mse (of the reconstruction)."""
        stats = self.posterior(torch.cat([self.down(images), condition], dim=1))
        mean, log_var = stats.chunk(2, dim=1)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp() if self.training else mean
        decoded = self.decode(z, condition).float().sigmoid()
        pixels = images[0].numel()
        reconstruction = self._nll(decoded, images)
        prior_mean, prior_log_var = self.code_prior(condition)
        kl = (
            0.5
            * (
                prior_log_var
                - log_var
                + (log_var.exp() + (mean - prior_mean).pow(2)) / prior_log_var.exp()
                - 1
            ).sum(1)
        ).mean()
        elbo = reconstruction + self.options.beta * kl / pixels
        mse = F.mse_loss(decoded, images)
        # The same decoder from the prior's centre must draw the image from the condition alone: without
        # it the code z, which can carry a colour for a few nats, learns what the condition says and
        # sampling ignores the request.
        central = self.decode(prior_mean.to(z.dtype), condition).float().sigmoid()
        loss = elbo + self.options.anchor * self._nll(central, images)
        return {"loss": loss, "elbo": elbo, "reconstruction": reconstruction, "kl": kl, "mse": mse}

    def _nll(self, decoded: Tensor, images: Tensor) -> Tensor:
        return gaussian_nll(decoded, images, self.log_scale)

    @torch.no_grad()
    def sample(
        self, condition: Tensor, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> Tensor:
        """One image per condition row: (B, 3, size, size) in [0, 1]; the code's spread around the prior's
        mean scaled by `temperature`."""
        noise = torch.randn(len(condition), self.options.latent, generator=generator).to(condition)
        mean, log_var = self.code_prior(condition)
        z = (mean + temperature * noise * (0.5 * log_var).exp()).to(condition.dtype)
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
    def sample(
        self, condition: Tensor, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> Tensor:
        """One image per condition row: (B, 3, size, size) in [0, 1], DDIM with classifier-free guidance."""
        from diffusers import DDIMScheduler

        if temperature != 1:
            raise ConfigError(
                f"task.temperature: {temperature} — diffusion draws from unit noise (guidance sets how "
                "closely it follows the request); temperature applies to cvae and latent_cvae"
            )

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


class _Up(nn.Module):
    """Double the side: a transposed convolution, GroupNorm, a per-channel scale and shift from the
    condition (FiLM, Perez et al. 2018: what is asked for reaches every scale), GELU."""

    def __init__(self, width: int, following: int, dim: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(width, following, 4, 2, 1)
        self.norm = group_norm(following)
        self.film = nn.Linear(dim, 2 * following)

    def forward(self, hidden: Tensor, condition: Tensor) -> Tensor:
        scale, shift = self.film(condition)[..., None, None].chunk(2, dim=1)
        return F.gelu(self.norm(self.conv(hidden)) * (1 + scale) + shift)


def gaussian_nll(decoded: Tensor, target: Tensor, log_scale: Tensor) -> Tensor:
    """Gaussian negative log-likelihood per value (constant dropped), with one learned scale: a
    calibrated decoder (Rybkin et al. 2021) weighs a few wrong pixels of a shape's edge as much as the
    data's own noise says, where a fixed scale or Bernoulli pixels blur them."""
    log_scale = log_scale.clamp(min=-6.0)
    return (0.5 * (decoded - target).pow(2) / (2 * log_scale).exp() + log_scale).mean()


def group_norm(channels: int) -> nn.Module:
    """GroupNorm: the same in training and sampling, whatever the batch (BatchNorm's running statistics
    made sampled images differ from trained ones)."""
    return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)


def build_generator(
    options: CVAEOptions | LatentCVAEOptions | DiffusionOptions | None, dim: int
) -> nn.Module:
    if isinstance(options, LatentCVAEOptions):
        from mumo.latent_cvae import LatentCVAE  # (it builds on this module's parts)

        return LatentCVAE(options, dim)
    if isinstance(options, DiffusionOptions):
        try:
            return Diffusion(options, dim)
        except ImportError:
            raise ConfigError(
                "model.generator.type: diffusion needs the diffusers package (pip install diffusers)"
            ) from None
    return CVAE(options or CVAEOptions(), dim)


__all__ = ["CVAE", "Diffusion", "build_generator", "gaussian_nll", "group_norm"]
