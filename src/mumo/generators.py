"""Image generators for task: image_generation, conditioned on a vector (the fused inputs: a caption, a
label, numbers).

CVAE (Sohn et al. 2015, the classic conditional generator of small images): an encoder q(z | image,
condition), a decoder p(image | z, condition) with Bernoulli pixels; trained on the ELBO (per pixel,
KL weighted by beta); sampled with z ~ N(0, I).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mumo.config_model import CVAEOptions
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


def _norm(channels: int) -> nn.Module:
    """GroupNorm: the same in training and sampling, whatever the batch (BatchNorm's running statistics
    made sampled images differ from trained ones)."""
    return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)


def build_generator(options: CVAEOptions | None, dim: int) -> CVAE:
    return CVAE(options or CVAEOptions(), dim)


__all__ = ["CVAE", "build_generator"]
