"""task: image_generation — any inputs (a caption, a label, numbers) → an image column.

The inputs are encoded and fused as for any task; the fused vector conditions an image generator
(mumo.generators: a conditional VAE by default). `mumo generate RUN --text "a red circle" --n 4 --out DIR`
and `model.generate(rows, n)` sample images; `mumo predict` gives one image per row as a PNG data URI.
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import Field
from torch import Tensor, nn

from mumo.config import TaskOptions, TrainConfig
from mumo.config_model import (
    BagOfWordsOptions,
    ConcatOptions,
    CVAEOptions,
    GRUOptions,
    LatentCVAEOptions,
    ModelConfig,
)
from mumo.data.dataset import Batch, make_batch
from mumo.data.prepare import Split
from mumo.data.table import Table
from mumo.data.targets import ImageTarget, TargetProcessor
from mumo.errors import ConfigError, MumoError
from mumo.generators import build_generator
from mumo.latent_cvae import LatentCVAE
from mumo.network import FusedNetwork, MultimodalNetwork, build_body
from mumo.report import figure, image_html, note
from mumo.tasks.base import TASKS, Direction, Evaluated, ReportSection, Task

if TYPE_CHECKING:
    from mumo.predictor import Predictor

SPREAD_ROWS, SPREAD_SAMPLES = 16, 4  # rows and samples per row behind the `spread` metric


class ImageGenerationOptions(TaskOptions):
    type: Literal["image_generation"] = "image_generation"
    seed: int = Field(0, description="Seed of sampling: the same seed gives the same images.")
    temperature: float = Field(
        1.0,
        gt=0,
        description="Scale of the generator's code when sampling (cvae, latent_cvae): below 1, images keep "
        "closer to the request's likeliest one and vary less; set at prediction (`--set "
        "task.temperature=0.8`) without retraining.",
    )


class ImageGenerationNetwork(FusedNetwork):
    """Encoders and fusion → the fused vector → the generator."""

    def __init__(self, body: MultimodalNetwork, generator: nn.Module) -> None:
        super().__init__(body)
        self.generator = generator

    def condition(self, batch: Batch) -> Tensor:
        return self.fuse(batch).pooled

    def losses(self, batch: Batch) -> dict[str, Tensor]:
        assert batch.target is not None
        return self.generator.losses(batch.target, self.condition(batch))  # type: ignore[operator,no-any-return]

    @torch.no_grad()
    def sample(self, batch: Batch, n: int, seed: int, temperature: float = 1.0) -> Tensor:
        """(B, n, 3, size, size) images in [0, 1]: n samples for each row's inputs."""
        condition = self.condition(batch).repeat_interleave(n, dim=0)
        draw = torch.Generator().manual_seed(seed)
        images = self.generator.sample(condition, draw, temperature)  # type: ignore[operator]
        return images.reshape(len(batch), n, *images.shape[1:])  # type: ignore[no-any-return]

    def forward(self, batch: Batch) -> Tensor:
        return self.losses(batch)["loss"]


@TASKS.register("image_generation")
class ImageGeneration(Task):
    """The generator's loss (the ELBO per pixel for the CVAE); predictions are generated images."""

    name = "image_generation"
    Options = ImageGenerationOptions
    target_class = ImageTarget
    one_target = True
    options: ImageGenerationOptions
    target: ImageTarget

    @classmethod
    def resolve_model(cls, model: ModelConfig, inputs: dict[str, str]) -> ModelConfig:
        """Text inputs default to the BiGRU encoder: learning from the generator's gradient alone, it
        carries each word of a request sooner than the transformer (builtin:shapes-draw, 2000 steps:
        held-out colour named right 0.99 vs 0.89, FID 1.4 vs 5.0). Under latent_cvae they default to the
        bag of words (3000 steps, the autoencoder then trained in the same loop: held-out pairs drawn
        right 0.23 vs 0.00; with the BiGRU its samples lose the colour, 0.07, FID 57), every word kept:
        with words hidden the code learns what a hidden word said and samples draw it at random
        (benchmarks.latent_cvae, word dropout 0 / 0.1 / 0.3: held-out pairs 0.87 / 0.68 / 0.31), and the
        fused vector without dropout (concat's 0.1 hides part of the request as word dropout does:
        held-out pairs 0.725 with it, 0.807 without; diversity 0.64 vs 0.52)."""
        encoders = dict(model.encoders)
        latent = isinstance(model.generator, LatentCVAEOptions)
        for column, kind in inputs.items():
            if kind == "text" and column not in encoders:
                encoders[column] = BagOfWordsOptions(dropout=0.0) if latent else GRUOptions()
        update: dict[str, Any] = {"encoders": encoders}
        if latent and model.fusion is None and not {"image", "audio"} & set(inputs.values()):
            update["fusion"] = ConcatOptions(dropout=0.0)  # what null picks for these inputs, less dropout
        return model.model_copy(update=update)

    @classmethod
    def make_target(cls, columns: list[str], model: ModelConfig | None = None) -> TargetProcessor | None:
        generator = (model.generator if model is not None else None) or CVAEOptions()
        return ImageTarget(columns, generator.size, generator.metrics)

    def build_network(self, model: ModelConfig, processors: dict[str, Any]) -> nn.Module:
        body = build_body(model, self.inputs, processors)
        generator = model.generator or CVAEOptions()
        if generator.size != self.target.size:  # checked too: the run's images were stacked at that size
            raise ConfigError(
                f"model.generator.size: {generator.size} differs from the run's images ({self.target.size})"
            )
        return ImageGenerationNetwork(body, build_generator(generator, model.dim))

    def training_loss(self, network: nn.Module, batch: Batch) -> Tensor:
        return network.losses(batch)["loss"]  # type: ignore[operator,no-any-return]

    def before_fit(
        self,
        network: nn.Module,
        passes: Callable[[], Iterable[Batch]],
        train: TrainConfig,
        say: Callable[[str], None] | None,
    ) -> None:
        """latent_cvae: its autoencoder's own stage on the training images (on the first GPU when
        train.accelerator allows one; each process of a distributed run trains the same one, seeded
        alike, and DDP starts every rank from rank zero's weights)."""
        generator = getattr(network, "generator", None)
        if not isinstance(generator, LatentCVAE) or generator.options.autoencoder_steps == 0:
            return
        device = "cpu"
        if torch.cuda.is_available() and train.accelerator in ("auto", "gpu", "cuda"):
            device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"

        def images() -> Iterator[Tensor]:
            for batch in passes():
                assert batch.target is not None
                yield batch.target

        if say is not None:
            say(f"latent_cvae: training the autoencoder first ({generator.options.autoencoder_steps} steps)")
        generator.fit_autoencoder(images, device, say)

    def eval_step(self, network: nn.Module, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """outputs: per row, the batch's elbo, reconstruction, kl and mse (their mean over rows weighs
        each batch by its size)."""
        losses = network.losses(batch)  # type: ignore[operator]
        row = torch.stack([losses[name].detach().float() for name in self.metric_names])
        return losses["loss"], row.expand(len(batch), -1), torch.zeros(len(batch))

    def metrics(self, targets: Tensor, outputs: Tensor) -> dict[str, float]:
        names = self.metric_names
        if not len(outputs):
            return {name: math.nan for name in names}
        return {name: float(value) for name, value in zip(names, outputs.mean(0).tolist(), strict=True)}

    @property
    def metric_names(self) -> tuple[str, ...]:
        return self.target.metrics

    def directions(self) -> dict[str, Direction]:
        return {**dict.fromkeys(self.metric_names, "min"), "spread": "max", "loss": "min"}  # type: ignore[dict-item]

    @property
    def main_metric(self) -> str:
        return self.metric_names[0]

    def keeps_last(self, network: nn.Module) -> bool:
        """latent_cvae keeps its last epoch: its validation objective turns upward long before its samples
        stop improving (builtin:shapes-draw, 3000 steps: lowest at epoch 26 of 94, whose samples drew
        held-out pairs right 0.56, the last epoch's 0.71; see BENCHMARKS.md)."""
        return isinstance(getattr(network, "generator", None), LatentCVAE)

    # ------------------------------------------------------------------------------------- prediction
    def predict_outputs(self, network: nn.Module, batch: Batch) -> Tensor:
        """(B, 3 * size * size): one sampled image per row, flattened."""
        return network.sample(batch, 1, self.options.seed, self.options.temperature).flatten(1)  # type: ignore[operator,no-any-return]

    def rows(self, outputs: Tensor) -> list[dict[str, Any]]:
        size = self.target.size
        images = outputs.reshape(-1, 3, size, size)
        return [{"generated": data_uri(to_pil(image))} for image in images]

    def skipped_row(self) -> dict[str, Any]:
        return {"generated": None, "skipped": True}

    def generate(
        self,
        predictor: Predictor,
        rows: list[dict[str, Any]],
        n: int = 1,
        seed: int | None = None,
        base_dir: Any = None,
    ) -> list[list[Image.Image]]:
        """n images (PIL) per row of inputs; the same seed gives the same images."""
        split = predictor.prepare(predictor.table(rows, base_dir))
        if len(split) != len(rows):
            raise MumoError("generate: some rows could not be read")
        items = {c: split.take(c, range(len(split))) for c in split.items}
        batch = make_batch(items, predictor.processors, None, None, train=False)
        seed = self.options.seed if seed is None else seed
        images = predictor.network.sample(batch, n, seed, self.options.temperature)  # type: ignore[operator]
        return [[to_pil(image) for image in row] for row in images]

    # ------------------------------------------------------------------------------------- evaluation
    def evaluate(self, predictor: Predictor, split: Split, absent: tuple[str, ...] = ()) -> Evaluated:
        """The generator's losses (posterior means, no sampling), and `spread`: the mean per-pixel standard
        deviation of SPREAD_SAMPLES images drawn for each of the first SPREAD_ROWS rows (0: the same image
        every time)."""
        names = self.metric_names
        hidden, sums, count = set(absent), np.zeros(len(names)), 0
        network: Any = predictor.network
        spreads = []
        with torch.no_grad():
            for start in range(0, len(split), 256):
                rows = range(start, min(start + 256, len(split)))
                items = {c: [None] * len(rows) if c in hidden else split.take(c, rows) for c in split.items}
                batch = make_batch(
                    items, predictor.processors, [split.targets[i] for i in rows], self.target, False
                )
                losses = network.losses(batch)
                sums += np.array([float(losses[name]) * len(rows) for name in names])
                count += len(rows)
                if start == 0 and not hidden:  # (each input's contribution is scored by the losses)
                    first = make_batch(
                        {c: v[:SPREAD_ROWS] for c, v in items.items()},
                        predictor.processors,
                        None,
                        None,
                        False,
                    )
                    # (B, n, 3, S, S)
                    samples = network.sample(
                        first, SPREAD_SAMPLES, self.options.seed, self.options.temperature
                    )
                    spreads.append(float(samples.std(dim=1).mean()))
        metrics = {name: float(total / max(count, 1)) for name, total in zip(names, sums, strict=True)}
        metrics["spread"] = spreads[0] if spreads else math.nan
        return Evaluated(metrics)

    def report_sections(
        self, predictor: Predictor, split: Split, table: Table | None, evaluated: Evaluated
    ) -> list[ReportSection]:
        shown = min(8, len(split))
        if not shown:
            return [("Generated images", note("No rows to show."))]
        items = {c: split.take(c, range(shown)) for c in split.items}
        batch = make_batch(items, predictor.processors, None, None, train=False)
        samples = predictor.network.sample(batch, 6, self.options.seed, self.options.temperature)  # type: ignore[operator]
        real = self.target.stack([split.targets[i] for i in range(shown)])
        texts = [""] * shown
        if table is not None:
            numbers = {table.row_number(i): i for i in range(len(table))}
            words = [
                c for c, kind in self.inputs.items() if kind not in ("image", "audio") and c in table.columns
            ]
            for i in range(shown):
                index = numbers.get(split.rows[i])
                if index is not None:
                    texts[i] = " · ".join(str(table.values(c)[index]) for c in words)
        fig = figure(7 * 1.1, shown * 1.1)
        for i in range(shown):
            for j, image in enumerate([real[i], *samples[i]]):
                ax = fig.add_subplot(shown, 7, i * 7 + j + 1)
                ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
                ax.set_axis_off()
                if j == 0:
                    ax.set_title(_short(texts[i]) if texts[i] else "real", fontsize=6, loc="left")
        html = note("Each row: the real image of a test row, then 6 images generated from that row's inputs.")
        return [("Generated images", html + image_html(fig, "generated images"))]


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_pil(image: Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] → an RGB PIL image."""
    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(pixels, "RGB")


def data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
