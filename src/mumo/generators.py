"""Image generators for task: image_generation, conditioned on a vector (the fused inputs: a caption, a
label, numbers). Each has `losses(images, condition)` → {"loss": what training minimizes, and the
metrics its options class names (the main one first)} and `sample(condition, generator)`.

CVAE (Sohn et al. 2015, the classic conditional generator of small images): an encoder q(z | image,
condition), a decoder p(image | z, condition) whose upsampling stages are each modulated by the
condition (FiLM) and whose pixels are Gaussian with one learned scale (a calibrated decoder, Rybkin et
al. 2021); trained on the ELBO (per pixel, KL weighted by beta). The code's prior is learned from the
condition, p(z | condition) (Sohn et al.'s prior network; `prior: learned`), or N(0, I) (`standard`);
samples draw z from it.

Latent CVAE (the two-stage route of VQ-VAE-2 / latent diffusion, Rombach et al. 2022, with a CVAE as the
second stage): a deterministic spatial autoencoder (size → size/4 on a side, `grid` channels, 3x3 conv
stages, trained on L1 + L1 of the image gradients: sharp edges, Mathieu et al. 2016) does the drawing, and
a CVAE learns its latent grid from the condition (FiLM residual blocks on the grid, Gaussian with one
learned scale, the same anchor term as the CVAE's). The two are trained together for the first
`autoencoder_batches`, then the autoencoder is frozen and the CVAE goes on alone; the CVAE sees the
autoencoder's latent without a gradient, normalized per channel by running statistics. A vector code
cannot place a small shape precisely; a grid of codes for a decoder that already draws sharp shapes can
(builtin:shapes-draw, held-out colour-shape pairs drawn right: the CVAE 0.28, benchmarks.latent_cvae 0.68
with the autoencoder trained alone first; this port, both in mumo's one schedule, 0.23: see BENCHMARKS.md).

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
            down += [nn.Conv2d(previous, width, 4, 2, 1), _norm(width), nn.GELU()]
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
    def sample(self, condition: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One image per condition row: (B, 3, size, size) in [0, 1]."""
        noise = torch.randn(len(condition), self.options.latent, generator=generator).to(condition)
        mean, log_var = self.code_prior(condition)
        z = (mean + noise * (0.5 * log_var).exp()).to(condition.dtype)
        return self.decode(z, condition).float().sigmoid()


class LatentCVAE(nn.Module):
    grid_mean: Tensor
    grid_std: Tensor
    seen: Tensor

    def __init__(self, options: LatentCVAEOptions, dim: int) -> None:
        super().__init__()
        if options.size % 8 or options.width % 8 or options.hidden % 8:
            raise ConfigError(
                f"model.generator: size ({options.size}), width ({options.width}) and hidden "
                f"({options.hidden}) must be multiples of 8"
            )
        self.options, self.side = options, options.size // 4
        width, hidden, grid = options.width, options.hidden, options.grid
        self.encoder = nn.Sequential(
            _conv(3, width), nn.Conv2d(width, width, 4, 2, 1), nn.GELU(), _conv(width, width),
            nn.Conv2d(width, width, 4, 2, 1), nn.GELU(), _conv(width, width), nn.Conv2d(width, grid, 1),
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.Conv2d(grid, width, 3, 1, 1), nn.GELU(), _conv(width, width), nn.Upsample(scale_factor=2),
            _conv(width, width), _conv(width, width), nn.Upsample(scale_factor=2), _conv(width, width),
            _conv(width, width), nn.Conv2d(width, 3, 3, 1, 1),
        )  # fmt: skip
        # running per-channel mean and standard deviation of the latent grid (what the CVAE models is
        # the normalized grid; the first training batch sets them)
        self.register_buffer("grid_mean", torch.zeros(1, grid, 1, 1))
        self.register_buffer("grid_std", torch.ones(1, grid, 1, 1))
        self.register_buffer("seen", torch.zeros(()))  # training batches so far
        self.down = nn.Sequential(
            nn.Conv2d(grid, hidden, 3, 1, 1), nn.GELU(), nn.Conv2d(hidden, hidden, 3, 2, 1), nn.GELU(),
            nn.Flatten(),
        )  # fmt: skip
        self.posterior = nn.Linear(hidden * (self.side // 2) ** 2 + dim, 2 * options.latent)
        self.expand = nn.Linear(options.latent + dim, hidden * self.side**2)
        self.place = nn.Parameter(torch.randn(1, hidden, self.side, self.side) * 0.1)  # one per cell
        self.blocks = nn.ModuleList(_FiLMResidual(hidden, dim) for _ in range(options.blocks))
        self.out = nn.Conv2d(hidden, grid, 3, 1, 1)
        self.log_scale = nn.Parameter(torch.tensor(0.0))  # of the normalized grid's Gaussian, learned

    def decode(self, z: Tensor, condition: Tensor) -> Tensor:
        """The normalized latent grid (B, grid, size/4, size/4) from the code and the condition."""
        side = self.side
        hidden = self.expand(torch.cat([z, condition], dim=1)).reshape(len(z), -1, side, side) + self.place
        for block in self.blocks:
            hidden = block(hidden, condition)
        return self.out(F.gelu(hidden))  # type: ignore[no-any-return]

    @property
    def learning_to_draw(self) -> bool:
        """Whether the autoencoder still learns (training, and before `autoencoder_batches`)."""
        limit = self.options.autoencoder_batches
        return self.training and (limit == 0 or float(self.seen) < limit)

    def _normalized(self, grid: Tensor) -> Tensor:
        """The grid over its running statistics, which a training batch first moves (momentum 0.02)
        while the autoencoder learns."""
        if self.learning_to_draw:
            mean, std = grid.mean((0, 2, 3), keepdim=True), grid.std((0, 2, 3), keepdim=True) + 1e-4
            share = 1.0 if float(self.seen) == 0 else 0.02
            self.grid_mean.lerp_(mean, share)
            self.grid_std.lerp_(std, share)
        if self.training:
            self.seen.add_(1)
        return (grid - self.grid_mean) / self.grid_std

    def losses(self, images: Tensor, condition: Tensor) -> dict[str, Tensor]:
        """objective: autoencoder + elbo + anchor; autoencoder: L1 of the reconstruction and of its right
        and below differences; elbo: the CVAE's per grid value (Gaussian negative log-likelihood + beta *
        KL / values); kl: per image, nats."""
        drawing = self.learning_to_draw
        with torch.set_grad_enabled(drawing and torch.is_grad_enabled()):
            grid = self.encoder(images)
            error = self.decoder(grid).float().sigmoid() - images
            autoencoder = (
                error.abs().mean() + error.diff(dim=-1).abs().mean() + error.diff(dim=-2).abs().mean()
            )
        target = self._normalized(grid.detach().float())
        stats = self.posterior(torch.cat([self.down(target.to(condition.dtype)), condition], dim=1))
        mean, log_var = stats.float().chunk(2, dim=1)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp() if self.training else mean
        kl = (0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(1)).mean()
        reconstruction = gaussian_nll(
            self.decode(z.to(condition.dtype), condition).float(), target, self.log_scale
        )
        elbo = reconstruction + self.options.beta * kl / target[0].numel()
        central = self.decode(torch.zeros_like(z).to(condition.dtype), condition).float()
        anchor = gaussian_nll(central, target, self.log_scale)
        objective = autoencoder + elbo + self.options.anchor * anchor
        return {"loss": objective, "objective": objective, "autoencoder": autoencoder, "elbo": elbo, "kl": kl}

    @torch.no_grad()
    def sample(self, condition: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One image per condition row: (B, 3, size, size) in [0, 1]."""
        z = torch.randn(len(condition), self.options.latent, generator=generator).to(condition)
        grid = self.decode(z, condition).float() * self.grid_std + self.grid_mean
        return self.decoder(grid.to(condition.dtype)).float().sigmoid()  # type: ignore[no-any-return]


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


class _Up(nn.Module):
    """Double the side: a transposed convolution, GroupNorm, a per-channel scale and shift from the
    condition (FiLM, Perez et al. 2018: what is asked for reaches every scale), GELU."""

    def __init__(self, width: int, following: int, dim: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(width, following, 4, 2, 1)
        self.norm = _norm(following)
        self.film = nn.Linear(dim, 2 * following)

    def forward(self, hidden: Tensor, condition: Tensor) -> Tensor:
        scale, shift = self.film(condition)[..., None, None].chunk(2, dim=1)
        return F.gelu(self.norm(self.conv(hidden)) * (1 + scale) + shift)


class _FiLMResidual(nn.Module):
    """A residual block on a grid: GELU, 3x3 conv, GroupNorm modulated by the condition (FiLM), GELU,
    3x3 conv."""

    def __init__(self, width: int, dim: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(width, width, 3, 1, 1), nn.Conv2d(width, width, 3, 1, 1)
        self.norm = _norm(width)
        self.film = nn.Linear(dim, 2 * width)

    def forward(self, hidden: Tensor, condition: Tensor) -> Tensor:
        scale, shift = self.film(condition)[..., None, None].chunk(2, dim=1)
        inner = F.gelu(self.norm(self.conv1(F.gelu(hidden))) * (1 + scale) + shift)
        return hidden + self.conv2(inner)  # type: ignore[no-any-return]


def _conv(i: int, o: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(i, o, 3, 1, 1), _norm(o), nn.GELU())


def gaussian_nll(decoded: Tensor, target: Tensor, log_scale: Tensor) -> Tensor:
    """Gaussian negative log-likelihood per value (constant dropped), with one learned scale: a
    calibrated decoder (Rybkin et al. 2021) weighs a few wrong pixels of a shape's edge as much as the
    data's own noise says, where a fixed scale or Bernoulli pixels blur them."""
    log_scale = log_scale.clamp(min=-6.0)
    return (0.5 * (decoded - target).pow(2) / (2 * log_scale).exp() + log_scale).mean()


def _norm(channels: int) -> nn.Module:
    """GroupNorm: the same in training and sampling, whatever the batch (BatchNorm's running statistics
    made sampled images differ from trained ones)."""
    return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)


def build_generator(
    options: CVAEOptions | LatentCVAEOptions | DiffusionOptions | None, dim: int
) -> nn.Module:
    if isinstance(options, LatentCVAEOptions):
        return LatentCVAE(options, dim)
    if isinstance(options, DiffusionOptions):
        try:
            return Diffusion(options, dim)
        except ImportError:
            raise ConfigError(
                "model.generator.type: diffusion needs the diffusers package (pip install diffusers)"
            ) from None
    return CVAE(options or CVAEOptions(), dim)


__all__ = ["CVAE", "Diffusion", "LatentCVAE", "build_generator"]
