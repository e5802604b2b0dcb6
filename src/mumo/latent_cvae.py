"""The latent CVAE generator of task: image_generation (model.generator.type: latent_cvae).

Latent CVAE (the two-stage route of VQ-VAE-2 / latent diffusion, Rombach et al. 2022, with a CVAE as the
second stage): a deterministic spatial autoencoder (size → size / 2 ** `halvings` on a side, `grid`
channels, 3x3 conv stages, trained on L1 + L1 of the image gradients: sharp edges, Mathieu et al. 2016)
does the drawing, and a CVAE learns its latent grid from the condition (FiLM residual blocks at size / 4
on a side at most, doubled at half the channels up to a finer grid; Gaussian with one learned scale;
the CVAE's anchor term is an option, off by default: with a request that identifies each training image,
it teaches the decoder to draw that image from the request alone, and the code goes unused). The
autoencoder first trains alone (`autoencoder_steps`, its own Adam and one-cycle schedule:
`fit_autoencoder`, which the task runs before mumo's training loop), then it is frozen and the CVAE
learns its latent, normalized per channel by the grid's statistics over the training images. Samples
decode a code drawn from the posterior of one of the remembered training images whose requests are
closest to theirs (prior aggregate, `neighbours`; or z ~ N(0, I) with prior standard), optionally the
best of `rerank` candidates by a matcher, and add pixel noise of the autoencoder's residual spread (a
draw from p(image | grid); `pixel_noise`). A vector code cannot place a small shape precisely; a grid
of codes for a decoder that already draws sharp shapes can (builtin:shapes-draw, held-out colour-shape
pairs drawn right: the CVAE 0.28, this generator 0.97-0.99: see BENCHMARKS.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mumo.config_model import LatentCVAEOptions
from mumo.errors import ConfigError
from mumo.generators import gaussian_nll, group_norm

CODES = 4096  # training images' posteriors kept for prior aggregate
MATCH = 128  # width of the matcher's embeddings (rerank)


class LatentCVAE(nn.Module):
    codes: Tensor
    requests: Tensor
    written: Tensor
    grid_mean: Tensor
    grid_std: Tensor
    seen: Tensor
    pixel_noise: Tensor
    matched: Tensor

    def __init__(self, options: LatentCVAEOptions, dim: int) -> None:
        super().__init__()
        if options.size % 8 or options.width % 8 or options.hidden % 8:
            raise ConfigError(
                f"model.generator: size ({options.size}), width ({options.width}) and hidden "
                f"({options.hidden}) must be multiples of 8"
            )
        scale = 2**options.halvings
        if options.size % scale:
            raise ConfigError(
                f"model.generator.size: {options.size} is not a multiple of 2 ** halvings ({scale})"
            )
        self.options, self.side = options, options.size // scale
        width, hidden, grid = options.width, options.hidden, options.grid
        encoder: list[nn.Module] = [_conv(3, width)]
        decoder: list[nn.Module] = [nn.Conv2d(grid, width, 3, 1, 1), nn.GELU(), _conv(width, width)]
        for _ in range(options.halvings):
            encoder += [nn.Conv2d(width, width, 4, 2, 1), nn.GELU(), _conv(width, width)]
            decoder += [nn.Upsample(scale_factor=2), _conv(width, width), _conv(width, width)]
        self.encoder = nn.Sequential(*encoder, nn.Conv2d(width, grid, 1))
        self.decoder = nn.Sequential(*decoder, nn.Conv2d(width, 3, 3, 1, 1))
        # running per-channel mean and standard deviation of the latent grid (what the CVAE models is
        # the normalized grid; the first training batch sets them)
        self.register_buffer("grid_mean", torch.zeros(1, grid, 1, 1))
        self.register_buffer("grid_std", torch.ones(1, grid, 1, 1))
        self.register_buffer("seen", torch.zeros(()))  # training batches so far
        # the standard deviation of the autoencoder's residual on the training images (fit_autoencoder):
        # the pixel noise of p(image | grid), which samples draw when options.pixel_noise
        self.register_buffer("pixel_noise", torch.zeros(()))
        # prior aggregate: the posterior (mean, log variance) of the last CODES training images, written
        # as training sees them (a ring), and how many were written; samples draw a code from one of them
        self.register_buffer("codes", torch.zeros(CODES, 2 * options.latent))
        self.register_buffer("requests", torch.zeros(CODES, dim))  # each code's request (neighbours)
        self.register_buffer("written", torch.zeros((), dtype=torch.long))
        # The CVAE's blocks work at size / 4 on a side at most (the grid's side when it is smaller); a
        # finer grid is reached by doubling, each time at half the channels, with FiLM blocks at each.
        self.core = min(self.side, options.size // 4)
        doublings = (self.side // self.core).bit_length() - 1
        halving = [m for _ in range(doublings + 1) for m in (nn.Conv2d(hidden, hidden, 3, 2, 1), nn.GELU())]
        self.down = nn.Sequential(nn.Conv2d(grid, hidden, 3, 1, 1), nn.GELU(), *halving, nn.Flatten())
        self.posterior = nn.Linear(hidden * (self.core // 2) ** 2 + dim, 2 * options.latent)
        self.expand = nn.Linear(options.latent + dim, hidden * self.core**2)
        self.place = nn.Parameter(torch.randn(1, hidden, self.core, self.core) * 0.1)  # one per cell
        self.blocks = nn.ModuleList(_FiLMResidual(hidden, dim) for _ in range(options.blocks))
        self.finer = nn.ModuleList(_Finer(hidden // 2**i, self.core * 2**i, dim) for i in range(doublings))
        self.out = nn.Conv2d(hidden // 2**doublings, grid, 3, 1, 1)
        self.log_scale = nn.Parameter(torch.tensor(0.0))  # of the normalized grid's Gaussian, learned
        # The matcher (rerank): a grid tower (3x3 convs, stride 2 down to 4 on a side at most, so it still
        # sees where things are) and a request tower, trained contrastively (CLIP's loss, Radford et al.
        # 2021) on the training pairs beside the CVAE, the request detached so that it leaves the CVAE's
        # conditioning alone. `matched`: its training steps (0 in runs saved before it: no reranking).
        side, halvings = self.side, []
        while side > 4:
            halvings += [nn.Conv2d(hidden, hidden, 3, 2, 1), nn.GELU()]
            side = (side + 1) // 2
        self.match_grid = nn.Sequential(
            nn.Conv2d(grid, hidden, 3, 1, 1),
            nn.GELU(),
            *halvings,
            nn.Flatten(),
            nn.Linear(hidden * side**2, MATCH),
        )
        self.match_request = nn.Sequential(nn.Linear(dim, MATCH), nn.GELU(), nn.Linear(MATCH, MATCH))
        self.match_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature
        self.register_buffer("matched", torch.zeros((), dtype=torch.long))

    def decode(self, z: Tensor, condition: Tensor) -> Tensor:
        """The normalized latent grid (B, grid, side, side) from the code and the condition."""
        core = self.core
        hidden = self.expand(torch.cat([z, condition], dim=1)).reshape(len(z), -1, core, core) + self.place
        for block in self.blocks:
            hidden = block(hidden, condition)
        for stage in self.finer:
            hidden = stage(hidden, condition)
        return self.out(F.gelu(hidden))  # type: ignore[no-any-return]

    @property
    def learning_to_draw(self) -> bool:
        """Whether the autoencoder learns in this training step: always with `autoencoder_steps` 0;
        otherwise until it has had that many batches (fit_autoencoder gives them all at once)."""
        limit = self.options.autoencoder_steps
        return self.training and (limit == 0 or float(self.seen) < limit)

    def _normalized(self, grid: Tensor) -> Tensor:
        """The grid over its statistics, which a training batch moves (momentum 0.02) while the
        autoencoder learns."""
        if self.learning_to_draw:
            mean, std = grid.mean((0, 2, 3), keepdim=True), grid.std((0, 2, 3), keepdim=True) + 1e-4
            share = 1.0 if float(self.seen) == 0 else 0.02
            self.grid_mean.lerp_(mean, share)
            self.grid_std.lerp_(std, share)
        if self.training:
            self.seen.add_(1)
        return (grid - self.grid_mean) / self.grid_std

    def autoencoder_loss(self, images: Tensor, grid: Tensor | None = None) -> Tensor:
        """L1 of the reconstruction and of its right and below differences (sharp edges); `grid`: the
        images' latent grid when already encoded."""
        grid = self.encoder(images) if grid is None else grid
        error = self.decoder(grid).float().sigmoid() - images
        return error.abs().mean() + error.diff(dim=-1).abs().mean() + error.diff(dim=-2).abs().mean()

    def fit_autoencoder(
        self,
        passes: Callable[[], Iterable[Tensor]],
        device: torch.device | str = "cpu",
        say: Callable[[str], None] | None = None,
    ) -> float:
        """The first stage: the autoencoder alone for `autoencoder_steps` batches of `autoencoder_batch`
        images (Adam, a one-cycle schedule peaking at `autoencoder_lr`), then the per-channel mean and standard deviation of its
        grid over one pass of the images; it is frozen after. `passes()` gives one pass over the training
        images (batches of (B, 3, size, size) in [0, 1]). Returns the last batches' mean loss."""
        steps, lr = self.options.autoencoder_steps, self.options.autoencoder_lr
        parts = nn.ModuleList([self.encoder, self.decoder])
        home = self.grid_mean.device
        parts.to(device).train()
        optimizer = torch.optim.Adam(parts.parameters(), lr=lr)
        warmup = max(0.05, 2 / steps)  # (OneCycleLR needs two steps of warmup)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=warmup)
        started, recent = time.perf_counter(), list[float]()
        chunks = (
            part for images in _forever(passes) for part in images.split(self.options.autoencoder_batch)
        )
        for step, images in zip(range(1, steps + 1), chunks, strict=False):
            loss = self.autoencoder_loss(images.to(device).float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            if step < steps:
                schedule.step()
            recent = [*recent[-49:], float(loss.detach())]
            if say is not None and (step % max(1, steps // 10) == 0 or step == steps):
                say(
                    f"autoencoder {step}/{steps}  loss={sum(recent) / len(recent):.4g}  "
                    f"({time.perf_counter() - started:.0f} s)"
                )
        parts.eval()
        total = torch.zeros(self.options.grid, dtype=torch.float64)
        squares, count, residual, pixels = torch.zeros_like(total), 0, 0.0, 0
        with torch.no_grad():
            for images in passes():
                images = images.to(device).float()
                encoded = self.encoder(images)
                error = self.decoder(encoded).float().sigmoid() - images
                residual, pixels = residual + float(error.double().pow(2).sum()), pixels + error.numel()
                grid = encoded.double().transpose(0, 1).flatten(1).cpu()
                total, squares, count = (
                    total + grid.sum(1),
                    squares + grid.pow(2).sum(1),
                    count + grid.shape[1],
                )
        mean = total / max(count, 1)
        std = ((squares - count * mean.pow(2)) / max(count - 1, 1)).clamp(min=0).sqrt()
        parts.to(home)
        self.grid_mean.copy_(mean.reshape(1, -1, 1, 1).to(self.grid_mean))
        self.grid_std.copy_((std + 1e-4).reshape(1, -1, 1, 1).to(self.grid_std))
        self.pixel_noise.fill_((residual / max(pixels, 1)) ** 0.5)
        self.seen.fill_(max(steps, float(self.seen)))
        return sum(recent) / max(len(recent), 1)

    def losses(self, images: Tensor, condition: Tensor) -> dict[str, Tensor]:
        """objective: autoencoder + elbo + anchor; autoencoder: autoencoder_loss (0 in training steps once
        the autoencoder is frozen); elbo: the CVAE's per grid value (Gaussian negative log-likelihood + beta *
        KL / values); kl: per image, nats."""
        drawing = self.learning_to_draw
        with torch.set_grad_enabled(drawing and torch.is_grad_enabled()):
            grid = self.encoder(images)
            if drawing or not self.training:
                autoencoder = self.autoencoder_loss(images, grid)
            else:  # frozen: a constant of the objective, not worth a decoder pass per training step
                autoencoder = grid.new_zeros((), dtype=torch.float32)
        target = self._normalized(grid.detach().float())
        stats = self.posterior(torch.cat([self.down(target.to(condition.dtype)), condition], dim=1))
        mean, log_var = stats.float().chunk(2, dim=1)
        if self.training:
            self.remember(mean.detach(), log_var.detach(), condition.detach())
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp() if self.training else mean
        kl = (0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(1)).mean()
        reconstruction = gaussian_nll(
            self.decode(z.to(condition.dtype), condition).float(), target, self.log_scale
        )
        elbo = reconstruction + self.options.beta * kl / target[0].numel()
        if self.options.anchor:
            central = self.decode(torch.zeros_like(z).to(condition.dtype), condition).float()
            anchor = gaussian_nll(central, target, self.log_scale)
        else:  # (the default: a decode per step saved)
            anchor = elbo.new_zeros(())
        match = self.match_loss(target.to(condition.dtype), condition.detach()).float()
        objective = autoencoder + elbo + self.options.anchor * anchor + match
        return {
            "loss": objective,
            "objective": objective,
            "autoencoder": autoencoder,
            "elbo": elbo,
            "kl": kl,
            "match": match,
        }

    def match_loss(self, grid: Tensor, condition: Tensor) -> Tensor:
        """The matcher's symmetric InfoNCE over the batch: each normalized grid against every request,
        its own the right one (0 for a batch of one)."""
        if self.training:
            self.matched.add_(1)
        grids, requests = self.match(grid, condition)
        logits = grids @ requests.T * self.match_scale.clamp(max=math.log(100.0)).exp()
        labels = torch.arange(len(logits), device=logits.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

    def match(self, grid: Tensor, condition: Tensor) -> tuple[Tensor, Tensor]:
        """Unit embeddings of normalized grids (B, grid, side, side) and of their requests (B, dim)."""
        return F.normalize(self.match_grid(grid), dim=1), F.normalize(self.match_request(condition), dim=1)

    @torch.no_grad()
    def remember(self, mean: Tensor, log_var: Tensor, condition: Tensor) -> None:
        """Write training images' posteriors and their requests into the ring of codes (prior aggregate)."""
        at = (int(self.written) + torch.arange(len(mean), device=self.codes.device)) % len(self.codes)
        self.codes[at] = torch.cat([mean, log_var], dim=1).to(self.codes)
        self.requests[at] = condition.to(self.requests)
        self.written.add_(len(mean))

    @torch.no_grad()
    def sample(
        self, condition: Tensor, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> Tensor:
        """One image per condition row: (B, 3, size, size) in [0, 1]. The code: prior aggregate (once
        training has written codes): from the posterior of a random remembered training image, its
        spread scaled by the temperature; else z ~ N(0, temperature² I). With rerank k (once the matcher
        has trained), k candidates per row (rows' candidates together), the one the matcher scores
        closest to its request kept."""
        k = self.options.rerank if int(self.matched) > 0 else 1
        rows, condition = len(condition), condition.repeat_interleave(k, dim=0)
        z = torch.randn(len(condition), self.options.latent, generator=generator).to(condition) * temperature
        kept = min(int(self.written), len(self.codes))
        if self.options.prior == "aggregate" and kept > 0:
            # (runs saved before the requests were kept draw from any remembered image)
            near = min(self.options.neighbours, kept) if bool(self.requests[:kept].any()) else 0
            picked = torch.randint(0, near or kept, (len(condition),), generator=generator).to(
                self.codes.device
            )
            if near:
                similar = F.normalize(condition.float(), dim=1) @ F.normalize(self.requests[:kept], dim=1).T
                picked = similar.topk(near, dim=1).indices.gather(1, picked.unsqueeze(1)).squeeze(1)
            mean, log_var = self.codes[picked].to(z).chunk(2, dim=1)
            z = mean + z * (0.5 * log_var).exp()
        grid = self.decode(z, condition)
        if k > 1:
            grids, requests = self.match(grid, condition)
            best = (grids * requests).sum(1).reshape(rows, k).argmax(1)
            grid = grid.reshape(rows, k, *grid.shape[1:])[torch.arange(rows, device=grid.device), best]
            condition = condition[::k]
        grid = grid.float() * self.grid_std + self.grid_mean
        images = self.decoder(grid.to(condition.dtype)).float().sigmoid()
        if self.options.pixel_noise and float(self.pixel_noise) > 0:
            noise = torch.randn(images.shape, generator=generator).to(images)
            images = (images + float(self.pixel_noise) * noise).clamp(0, 1)
        return images  # type: ignore[no-any-return]

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:  # type: ignore[override]
        """Runs saved before pixel_noise existed draw the decoded mean, as they did; before the ring of
        codes, from N(0, I), as they did; before the matcher, without reranking (its weights as built,
        never trained: matched 0)."""
        state_dict.setdefault(prefix + "pixel_noise", torch.zeros(()))
        if prefix + "matched" not in state_dict:
            state_dict[prefix + "matched"] = torch.zeros((), dtype=torch.long)
            for name, value in self.state_dict().items():
                if name.startswith("match"):
                    state_dict.setdefault(prefix + name, value)
        state_dict.setdefault(prefix + "codes", torch.zeros_like(self.codes))
        state_dict.setdefault(prefix + "requests", torch.zeros_like(self.requests))
        state_dict.setdefault(prefix + "written", torch.zeros((), dtype=torch.long))
        super()._load_from_state_dict(state_dict, prefix, *args)


class _FiLMResidual(nn.Module):
    """A residual block on a grid: GELU, 3x3 conv, GroupNorm modulated by the condition (FiLM), GELU,
    3x3 conv."""

    def __init__(self, width: int, dim: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(width, width, 3, 1, 1), nn.Conv2d(width, width, 3, 1, 1)
        self.norm = group_norm(width)
        self.film = nn.Linear(dim, 2 * width)

    def forward(self, hidden: Tensor, condition: Tensor) -> Tensor:
        scale, shift = self.film(condition)[..., None, None].chunk(2, dim=1)
        inner = F.gelu(self.norm(self.conv1(F.gelu(hidden))) * (1 + scale) + shift)
        return hidden + self.conv2(inner)  # type: ignore[no-any-return]


class _Finer(nn.Module):
    """Doubles the CVAE's hidden map at half its channels (`width` → width / 2, side → 2 side), adds a
    learned embedding per cell, then two FiLM residual blocks."""

    def __init__(self, width: int, side: int, dim: int) -> None:
        super().__init__()
        self.narrow = nn.Conv2d(width, width // 2, 1)
        self.place = nn.Parameter(torch.randn(1, width // 2, 2 * side, 2 * side) * 0.1)
        self.blocks = nn.ModuleList(_FiLMResidual(width // 2, dim) for _ in range(2))

    def forward(self, hidden: Tensor, condition: Tensor) -> Tensor:
        hidden = F.interpolate(self.narrow(F.gelu(hidden)), scale_factor=2.0) + self.place
        for block in self.blocks:
            hidden = block(hidden, condition)
        return hidden


def _forever(passes: Callable[[], Iterable[Tensor]]) -> Iterator[Tensor]:
    """Pass after pass over the training images (none when a pass is empty)."""
    while True:
        empty = True
        for images in passes():
            empty = False
            yield images
        if empty:
            return


def _conv(i: int, o: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(i, o, 3, 1, 1), group_norm(o), nn.GELU())


__all__ = ["LatentCVAE"]
