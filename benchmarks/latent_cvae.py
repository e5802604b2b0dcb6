"""Research script: text → image by a CVAE in the latent space of a sharp autoencoder.

The default CVAE's decoder cannot draw small shapes from a vector code (its own posterior reconstructions
show the right shape ~0.4 of the time). Here the drawing is left to a deterministic spatial autoencoder
(32x32 → grid x grid x 4, 3x3 conv stages of 48 channels, trained on L1 + L1 of the image gradients,
Mathieu et al. 2016). Its test reconstructions, judged: --grid 8, seed 0: colour 1.000, shape 0.94, other
seeds and variants 0.41-0.91; --grid 16: shape 0.987 and 0.99 (seeds 0 and 1), colour 1.000. A CVAE
learns that latent from a bag of caption words: FiLM-modulated 3x3 residual blocks at 8x8 (for grid 16
then doubled at half the channels, two more blocks), Gaussian latent with one learned scale, the same
anchor term as mumo's CVAE (a reconstruction from z = 0), KL weighted by --beta, every caption word kept
(hidden words teach the code what they said, and samples then draw it at random). Samples: z ~ N(0,
temperature² I) (--prior standard) or from the posterior of a random training image, its spread scaled
by the temperature (--prior aggregate) → latent → the frozen autoencoder's decoder, scored at each of
--temperatures by benchmarks.image_generation's judges, after the CVAE's own posterior reconstructions
of the test images (what it draws given the right code). --rows trains on more of builtin:shapes-draw
(the judges always learn the 3000-row data); --pixel-loss adds L1 + gradients of the posterior's
reconstruction drawn by the frozen decoder (16 rows a step). mumo's port is model.generator.type:
latent_cvae (BENCHMARKS.md).

Usage: python -m benchmarks.latent_cvae [--grid 8|16] [--seed 0] [--rows 3000] [--ae-steps 3000]
       [--ae-only] [--cvae-steps 3000] [--beta 1] [--word-dropout 0] [--text mlp|linear] [--anchor 0.5]
       [--pixel-loss 0] [--prior standard|aggregate] [--temperatures 1,0.8]
       [--keep-autoencoder PREFIX (the autoencoder and the CVAE, saved or reused)] [--judges DIR] [--json F]
       (grid 16 on one thread: about 10 min of autoencoder, 40 min of CVAE)
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from benchmarks.common import save
from benchmarks.image_generation import (
    GOAL_CORRECT,
    GOAL_DIVERSITY,
    classify,
    judge_folder,
    judges,
    report,
    score,
)
from mumo.data.builtin import materialize

LATENT, WIDTH = 4, 48  # autoencoder: channels of the 8x8 latent, of its conv stages
DIM, CODE, HIDDEN, WORDS = 128, 32, 96, 24  # CVAE: caption vector, code, conv width, words kept


def _block(i: int, o: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(i, o, 3, 1, 1), nn.GroupNorm(8, o), nn.GELU())


class AutoEncoder(nn.Module):
    """32x32 → grid x grid x LATENT (grid 8: two stride-2 stages; 16: one) → 32x32."""

    def __init__(self, grid: int = 8) -> None:
        super().__init__()
        w, stages = WIDTH, {8: 2, 16: 1}[grid]
        down: list[nn.Module] = [_block(3, w)]
        up: list[nn.Module] = [nn.Conv2d(LATENT, w, 3, 1, 1), nn.GELU(), _block(w, w)]
        for _ in range(stages):
            down += [nn.Conv2d(w, w, 4, 2, 1), nn.GELU(), _block(w, w)]
            up += [nn.Upsample(scale_factor=2), _block(w, w), _block(w, w)]
        self.encode = nn.Sequential(*down, nn.Conv2d(w, LATENT, 1))
        self.decode = nn.Sequential(*up, nn.Conv2d(w, 3, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x)).sigmoid()


def sharp_loss(decoded: Tensor, images: Tensor) -> Tensor:
    """L1 on the pixels and on their differences to the right and below neighbours."""
    error = decoded - images
    return error.abs().mean() + error.diff(dim=-1).abs().mean() + error.diff(dim=-2).abs().mean()


class Captions:
    """Lower-case words → ids (0 pad, 1 unknown or dropped), left-padded to WORDS."""

    def __init__(self, captions: list[str]) -> None:
        self.vocab = {w: i + 2 for i, w in enumerate(sorted({w for c in captions for w in self.words(c)}))}

    @staticmethod
    def words(caption: str) -> list[str]:
        return re.findall(r"[a-z]+", caption.lower())

    def ids(self, captions: list[str]) -> Tensor:
        out = torch.zeros(len(captions), WORDS, dtype=torch.long)
        for i, caption in enumerate(captions):
            ids = [self.vocab.get(w, 1) for w in self.words(caption)][:WORDS]
            out[i, WORDS - len(ids) :] = torch.tensor(ids)
        return out


class _FiLMBlock(nn.Module):
    def __init__(self, width: int = HIDDEN) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(width, width, 3, 1, 1), nn.Conv2d(width, width, 3, 1, 1)
        self.norm = nn.GroupNorm(8, width)
        self.film = nn.Linear(DIM, 2 * width)

    def forward(self, hidden: Tensor, condition: Tensor) -> Tensor:
        scale, shift = self.film(condition)[..., None, None].chunk(2, dim=1)
        inner = F.gelu(self.norm(self.conv1(F.gelu(hidden))) * (1 + scale) + shift)
        return hidden + self.conv2(inner)


class LatentCVAE(nn.Module):
    def __init__(
        self, vocabulary: int, beta: float, text: str = "mlp", anchor: float = 0.5, grid: int = 8
    ) -> None:
        super().__init__()
        self.beta, self.anchor = beta, anchor
        self.words = nn.Embedding(vocabulary, DIM)
        # mlp: the mean of the words through a two-layer MLP; linear: the mean alone (a request reads as
        # the average of its words' vectors, each word's part the same whatever words it comes with)
        self.text = (
            nn.Sequential(nn.Linear(DIM, DIM), nn.GELU(), nn.Linear(DIM, DIM))
            if text == "mlp"
            else nn.Identity()
        )
        halvings = [m for _ in range(grid // 8) for m in (nn.Conv2d(HIDDEN, HIDDEN, 3, 2, 1), nn.GELU())]
        self.down = nn.Sequential(nn.Conv2d(LATENT, HIDDEN, 3, 1, 1), nn.GELU(), *halvings, nn.Flatten())
        self.posterior = nn.Linear(HIDDEN * 16 + DIM, 2 * CODE)
        self.expand = nn.Linear(CODE + DIM, HIDDEN * 64)
        self.place = nn.Parameter(torch.randn(1, HIDDEN, 8, 8) * 0.1)  # a learned embedding per cell
        self.blocks = nn.ModuleList(_FiLMBlock() for _ in range(4))
        # grid 16: the 8x8 hidden map narrowed to half its channels and doubled, then two more blocks with
        # their own cell embedding (at half the width a block at 16x16 costs what one at 8x8 does)
        fine = HIDDEN // 2 if grid == 16 else HIDDEN
        self.narrow = nn.Conv2d(HIDDEN, fine, 1) if grid == 16 else None
        self.fine = nn.ModuleList(_FiLMBlock(fine) for _ in range(2 if grid == 16 else 0))
        self.fine_place = nn.Parameter(torch.randn(1, fine, grid, grid) * 0.1) if grid == 16 else None
        self.out = nn.Conv2d(fine, LATENT, 3, 1, 1)
        self.log_scale = nn.Parameter(torch.tensor(0.0))

    def condition(self, ids: Tensor) -> Tensor:
        """The mean of the caption's word embeddings (pads and dropped words left out), through an MLP."""
        known = (ids > 1).unsqueeze(-1).float()
        return self.text((self.words(ids) * known).sum(1) / known.sum(1).clamp(min=1))

    def decode(self, z: Tensor, condition: Tensor) -> Tensor:
        hidden = self.expand(torch.cat([z, condition], 1)).reshape(-1, HIDDEN, 8, 8) + self.place
        for block in self.blocks:
            hidden = block(hidden, condition)
        if self.narrow is not None and self.fine_place is not None:
            hidden = F.interpolate(self.narrow(F.gelu(hidden)), scale_factor=2.0) + self.fine_place
            for block in self.fine:
                hidden = block(hidden, condition)
        return self.out(F.gelu(hidden))

    def nll(self, decoded: Tensor, latent: Tensor) -> Tensor:
        log_scale = self.log_scale.clamp(min=-5)
        return (0.5 * (decoded - latent).pow(2) / (2 * log_scale).exp() + log_scale).mean()

    def encode(self, latent: Tensor, condition: Tensor) -> tuple[Tensor, Tensor]:
        """The posterior's mean and log variance."""
        mean, log_var = self.posterior(torch.cat([self.down(latent), condition], 1)).chunk(2, 1)
        return mean, log_var

    def loss(self, latent: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
        """The negative ELBO per latent value (plus the anchor term), and the posterior's reconstruction."""
        condition = self.condition(ids)
        mean, log_var = self.encode(latent, condition)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp() if self.training else mean
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(1).mean()
        anchor = self.nll(self.decode(torch.zeros_like(z), condition), latent)
        decoded = self.decode(z, condition)
        return (
            self.nll(decoded, latent) + self.beta * kl / latent[0].numel() + self.anchor * anchor,
            decoded,
        )


def _images(folder: Path, table: pd.DataFrame) -> Tensor:
    array = np.stack([np.asarray(Image.open(folder / f).convert("RGB")) for f in table["image"]])
    return torch.from_numpy(array).permute(0, 3, 1, 2).float() / 255


def _pil(images: Tensor) -> list[Image.Image]:
    arrays = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    return [Image.fromarray(a) for a in arrays]


def _train(model: nn.Module, loss: Any, steps: int, lr: float, name: str) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.05)
    started = time.time()
    for step in range(steps):
        value = loss()
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        schedule.step()
        if step % 500 == 0 or step == steps - 1:
            print(
                f"{name} step {step}: loss {float(value.detach()):.4f} ({time.time() - started:.0f} s)",
                flush=True,
            )
    model.eval()


class Drawer:
    """What benchmarks.image_generation.score asks of a model: generate(rows, n, seed) → PIL images;
    the code drawn from N(0, temperature² I)."""

    def __init__(
        self,
        ae: AutoEncoder,
        cvae: LatentCVAE,
        captions: Captions,
        mean: Tensor,
        std: Tensor,
        temperature: float,
    ) -> None:
        self.ae, self.cvae, self.captions = ae, cvae, captions
        self.mean, self.std, self.temperature = mean, std, temperature
        self.codes: tuple[Tensor, Tensor] | None = None  # (mean, log variance) of training posteriors

    def aggregate(self, latents: Tensor, ids: Tensor) -> Drawer:
        """Draw each code from the posterior of a random training image (the aggregate posterior, a
        mixture of the training images' Gaussians) instead of N(0, I)."""
        with torch.no_grad():
            stats = [
                self.cvae.encode(x, self.cvae.condition(i))
                for x, i in zip(latents.split(256), ids.split(256), strict=True)
            ]
        self.codes = torch.cat([m for m, _ in stats]), torch.cat([v for _, v in stats])
        return self

    @torch.no_grad()
    def generate(self, rows: list[dict[str, Any]], n: int = 1, seed: int = 0) -> list[list[Image.Image]]:
        ids = self.captions.ids([row["caption"] for row in rows for _ in range(n)])
        draw = torch.Generator().manual_seed(seed)
        z = torch.randn(len(ids), CODE, generator=draw) * self.temperature
        if self.codes is not None:
            picked = torch.randint(0, len(self.codes[0]), (len(ids),), generator=draw)
            z = self.codes[0][picked] + z * (0.5 * self.codes[1][picked]).exp()
        latent = self.cvae.decode(z, self.cvae.condition(ids)) * self.std + self.mean
        images = _pil(self.ae.decode(latent).sigmoid())
        return [images[i * n : (i + 1) * n] for i in range(len(rows))]


def run(options: argparse.Namespace, judge_dir: Path, work: Path) -> dict[str, Any]:
    """Train the autoencoder (or reuse it), judge its test reconstructions, then (unless --ae-only) train
    the CVAE on its latent and judge samples."""
    torch.manual_seed(options.seed)
    paths = materialize("shapes-draw", options.rows, 0)
    folder = paths["train"].parent
    train, test = pd.read_csv(paths["train"]), pd.read_csv(paths["test"])
    x_train, x_test = _images(folder, train), _images(folder, test)
    result: dict[str, Any] = {
        k: v for k, v in vars(options).items() if k not in ("judges", "json", "keep_autoencoder")
    }

    started = time.time()
    ae = AutoEncoder(options.grid)
    keep = options.keep_autoencoder
    saved = Path(f"{keep}-g{options.grid}-s{options.seed}-{options.ae_steps}.pt") if keep else None
    if saved is not None and saved.is_file():  # the same grid, seed and steps: the same autoencoder
        ae.load_state_dict(torch.load(saved))
        ae.eval()
        result["ae_reused"] = str(saved)
    else:
        _train(ae, lambda: sharp_loss(ae(batch := x_train[torch.randint(0, len(x_train), (32,))]), batch),
               options.ae_steps, options.ae_lr, "autoencoder")  # fmt: skip
        if saved is not None:  # whole or not at all: another run may be waiting for it
            torch.save(ae.state_dict(), saved.with_suffix(".part"))
            saved.with_suffix(".part").replace(saved)
    result["ae_seconds"] = round(time.time() - started, 1)
    judge = judges(judge_folder(), judge_dir)
    attributes = pd.read_csv(folder / "attributes.csv")
    wanted = attributes[attributes["split"] == "test"].reset_index(drop=True)
    with torch.no_grad():
        decoded = ae(x_test)
        reconstructions = _pil(decoded)
        latents = ae.encode(x_train)
    result["ae_test_loss"] = float(sharp_loss(decoded, x_test))
    work.mkdir(parents=True, exist_ok=True)
    result["reconstructions_judged"] = {
        a: float(np.mean(np.array(classify(judge[a], reconstructions, work / "rec")) == wanted[a].to_numpy()))
        for a in ("color", "shape")
    }
    print("reconstructions judged", result["reconstructions_judged"], "test loss", result["ae_test_loss"])
    if options.ae_only:
        result["met"] = False
        return result

    mean, std = latents.mean((0, 2, 3), keepdim=True), latents.std((0, 2, 3), keepdim=True)
    normed = (latents - mean) / std
    captions = Captions(train["caption"].tolist())
    ids = captions.ids(train["caption"].tolist())
    cvae = LatentCVAE(len(captions.vocab) + 2, options.beta, options.text, options.anchor, options.grid)
    cvae.train()

    ae.requires_grad_(False)

    def cvae_loss() -> Tensor:
        rows = torch.randint(0, len(normed), (64,))
        hidden = (torch.rand(len(rows), WORDS) < options.word_dropout) & (ids[rows] > 1)
        loss, decoded = cvae.loss(normed[rows], ids[rows].masked_fill(hidden, 1))
        if options.pixel_loss:  # the posterior's reconstruction drawn by the frozen decoder, on 16 rows
            drawn = ae.decode(decoded[:16] * std + mean).sigmoid()
            loss = loss + options.pixel_loss * sharp_loss(drawn, x_train[rows[:16]])
        return loss

    started = time.time()
    name = f"g{options.grid}-s{options.seed}-b{options.beta}-w{options.word_dropout}-{options.cvae_steps}"
    name += f"-r{options.rows}-p{options.pixel_loss}"
    kept = Path(f"{keep}-cvae-{name}.pt") if keep else None
    if kept is not None and kept.is_file():  # the same settings: the same CVAE, reused (to score again)
        cvae.load_state_dict(torch.load(kept))
        cvae.eval()
        result["cvae_reused"] = str(kept)
    else:
        _train(cvae, cvae_loss, options.cvae_steps, 1e-3, "latent cvae")
        if kept is not None:
            torch.save(cvae.state_dict(), kept)
    result["cvae_seconds"] = round(time.time() - started, 1)
    with torch.no_grad():  # the CVAE given each test image's own code (posterior mean): its drawing alone
        test_latents = (ae.encode(x_test) - mean) / std
        _, decoded = cvae.loss(test_latents, captions.ids(test["caption"].tolist()))
        posterior = _pil(ae.decode(decoded * std + mean).sigmoid())
    result["posterior_judged"] = {
        a: float(np.mean(np.array(classify(judge[a], posterior, work / "post")) == wanted[a].to_numpy()))
        for a in ("color", "shape")
    }
    print("posterior reconstructions judged", result["posterior_judged"], flush=True)
    result["train_seconds"] = result["ae_seconds"] + result["cvae_seconds"]
    (work / "score").mkdir(exist_ok=True)
    drawer = Drawer(ae, cvae, captions, mean, std, 1.0)
    if options.prior == "aggregate":  # the training images' posteriors, once for every temperature
        drawer.aggregate(normed, ids)
    for i, temperature in enumerate(options.temperatures):
        drawer.temperature = temperature
        scored = score(drawer, paths, judge, 4, work / "score")
        if i == 0:
            result.update(scored)
        result.setdefault("by_temperature", {})[temperature] = {
            "held_out": scored["held_out_pairs"], "seen_both": scored["seen_pairs"]["both"],
            "diversity": scored["diversity"], "fid": scored["fid_judge_features"],
        }  # fmt: skip
        print("temperature", temperature, result["by_temperature"][temperature], flush=True)
    result["met"] = result["held_out_pairs"]["both"] >= GOAL_CORRECT and result["diversity"] >= GOAL_DIVERSITY
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=3000, help="rows of builtin:shapes-draw (the judges: 3000)"
    )
    parser.add_argument(
        "--pixel-loss", type=float, default=0.0, help="weight of L1 + gradients on the decoded image"
    )
    parser.add_argument("--ae-steps", type=int, default=3000)
    parser.add_argument("--ae-lr", type=float, default=1e-3)
    parser.add_argument("--grid", type=int, choices=[8, 16], default=8, help="side of the latent grid")
    parser.add_argument("--seed", type=int, default=0, help="torch's seed (the data stay the same)")
    parser.add_argument("--ae-only", action="store_true", help="stop after judging the autoencoder")
    parser.add_argument("--cvae-steps", type=int, default=3000)
    parser.add_argument(
        "--temperatures",
        type=lambda text: [float(t) for t in text.split(",")],
        default=[1.0],
        help="comma-separated scales of the code's samples, each scored (the first is the result)",
    )
    parser.add_argument(
        "--prior",
        choices=["standard", "aggregate"],
        default="standard",
        help="samples' codes: N(0, I), or the posterior of a random training image",
    )
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--anchor", type=float, default=0.5, help="weight of the reconstruction from z = 0")
    parser.add_argument("--word-dropout", type=float, default=0.0, help="share of caption words dropped")
    parser.add_argument(
        "--text", choices=["mlp", "linear"], default="mlp", help="caption vector: MLP or mean"
    )
    parser.add_argument(
        "--keep-autoencoder",
        metavar="PREFIX",
        help="save the autoencoder to PREFIX-g<grid>-s<seed>-<steps>.pt, or reuse it",
    )
    parser.add_argument("--judges", help="a folder to keep the judges in and reuse them from")
    parser.add_argument("--json", default="benchmarks/results/latent_cvae.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        judge_dir = Path(args.judges) if args.judges else Path(tmp) / "judges"
        result = run(args, judge_dir, Path(tmp) / "work")
    if not args.ae_only:
        report(result)
    return save(result, args.json, result["met"])


if __name__ == "__main__":
    raise SystemExit(main())
