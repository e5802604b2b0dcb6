"""task: image_generation — images drawn from a caption: conditioning, seeds, `mumo generate`, reload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tests.conftest import run_cli

import mumo
from mumo.cli import main
from mumo.data.builtin import materialize
from mumo.data.shapes_tasks import HELD_OUT_COMBOS


@pytest.fixture(scope="module")
def draw_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    config = {
        "name": "draw",
        "data": {"train": "builtin:shapes-draw", "builtin": {"n": 800}},
        "model": {"dim": 32, "generator": {"channels": [16, 32, 64], "latent": 8}},
        "train": {"epochs": 25, "batch_size": 32, "lr": 2e-3, "progress": False},
    }
    return mumo.train(config, out=tmp_path_factory.mktemp("draw") / "run", quiet=True)


def test_auto_task_and_the_split_without_held_out_pairs(draw_run: Any) -> None:
    assert draw_run.model.task.name == "image_generation"  # task auto: the target holds image files
    paths = materialize("shapes-draw", 800, 0)
    import pandas as pd

    captions = " ".join(pd.read_csv(paths["train"])["caption"]).lower()
    for colour, shape in HELD_OUT_COMBOS:  # never shown together in train (test has them)
        assert f"{colour} {shape}" not in captions
    metrics = draw_run.metrics["test"]
    assert {"elbo", "reconstruction", "kl", "mse", "spread"} <= set(metrics)
    assert metrics["spread"] > 0  # samples for one request differ


def test_the_caption_decides_the_picture(draw_run: Any) -> None:
    """On this little training the background (most of the pixels) already follows the words; colours
    and shapes of the small objects take the default run (benchmarks/image_generation.py)."""
    model = draw_run.model
    dark = model.generate([{"caption": "a large red square on a dark background"}], n=8, seed=0)[0]
    light = model.generate([{"caption": "a large red square on a light background"}], n=8, seed=0)[0]
    assert all(image.size == (32, 32) and image.mode == "RGB" for image in dark + light)
    brightness = [np.mean([np.median(np.asarray(i, np.float64)) for i in images]) for images in (dark, light)]
    assert brightness[1] - brightness[0] > 60, brightness


def test_seeds_repeat_and_differ(draw_run: Any) -> None:
    model = draw_run.model
    row = [{"caption": "a small green circle at the top left"}]
    first = [np.asarray(i) for i in model.generate(row, n=3, seed=7)[0]]
    again = [np.asarray(i) for i in model.generate(row, n=3, seed=7)[0]]
    other = [np.asarray(i) for i in model.generate(row, n=3, seed=8)[0]]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_generate_command_writes_pngs_reloaded_in_a_fresh_process(draw_run: Any, tmp_path: Path) -> None:
    out = tmp_path / "pngs"
    args = [
        "generate",
        str(draw_run.path),
        "--text",
        "a red circle",
        "--n",
        "2",
        "--seed",
        "3",
        "--out",
        str(out),
    ]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["0-0.png", "0-1.png"]
    expected = draw_run.model.generate([{"caption": "a red circle"}], n=2, seed=3)[0]
    for j, image in enumerate(expected):
        assert np.array_equal(np.asarray(Image.open(out / f"0-{j}.png")), np.asarray(image))
    assert main(args) == 2  # never overwrites what is there


def test_generate_refuses_a_run_that_draws_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mumo.errors import MumoError
    from mumo.predictor import Predictor

    assert hasattr(Predictor, "generate")
    with pytest.raises(MumoError, match="^generate: a classification run does not draw images"):
        Predictor.generate(type("P", (), {"task": type("T", (), {"name": "classification"})()})(), [{}])  # type: ignore[arg-type]


def test_diffusion_generator_trains_and_draws_the_same_for_a_seed() -> None:
    import torch

    from mumo.config_model import DiffusionOptions
    from mumo.generators import build_generator

    torch.manual_seed(0)
    options = DiffusionOptions(size=8, channels=[8, 16], sampling_steps=3, guidance=2.0)
    generator = build_generator(options, 4)
    images, condition = torch.rand(6, 3, 8, 8), torch.randn(6, 4)
    optimizer = torch.optim.Adam(generator.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = generator.losses(images, condition)["loss"]  # type: ignore[operator]
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert sum(losses[-5:]) < sum(losses[:5])  # it learns to predict the noise
    generator.eval()
    first = generator.sample(condition[:2], torch.Generator().manual_seed(1))  # type: ignore[operator]
    again = generator.sample(condition[:2], torch.Generator().manual_seed(1))  # type: ignore[operator]
    assert first.shape == (2, 3, 8, 8) and 0 <= float(first.min()) and float(first.max()) <= 1
    assert torch.equal(first, again)
    validation = [float(generator.losses(images, condition)["denoising"]) for _ in range(2)]  # type: ignore[operator]
    assert validation[0] == validation[1]  # fixed noise levels and noises outside training


def test_the_server_draws_what_the_library_draws(draw_run: Any) -> None:
    import base64
    import io

    from fastapi.testclient import TestClient

    from mumo.serve import create_app

    rows = [{"caption": "a large red circle in the center"}, {"caption": "a small blue square"}]
    expected = mumo.load(draw_run.path).generate(rows, n=2, seed=3)
    with TestClient(create_app(draw_run.path)) as client:
        assert client.get("/info").json()["generates"] == "images"
        answer = client.post("/generate", json={"rows": rows, "n": 2, "seed": 3}).json()
        assert client.post("/generate", json={"rows": rows, "n": 99}).status_code == 422
    assert [len(images) for images in answer["images"]] == [2, 2]
    for got_row, expected_row in zip(answer["images"], expected, strict=True):
        for uri, image in zip(got_row, expected_row, strict=True):
            assert uri.startswith("data:image/png;base64,")
            decoded = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
            assert np.array_equal(np.asarray(decoded), np.asarray(image))


def test_the_learned_prior_draws_each_request_as_varied_as_its_images() -> None:
    """Request 0's images are all one grey; request 1's have a left half of a grey drawn at random. The
    samples of request 1 vary as its images do and those of request 0 hardly do; and they are decoded from
    z drawn from p(z | condition), not N(0, I)."""
    import torch

    from mumo.config_model import CVAEOptions
    from mumo.generators import build_generator

    torch.manual_seed(0)
    generator = build_generator(CVAEOptions(size=8, channels=[8, 16], latent=4, prior="learned"), 2)
    optimizer = torch.optim.Adam(generator.parameters(), lr=3e-3)
    for _ in range(300):
        which = torch.randint(0, 2, (64,))
        grey = torch.where(which == 0, torch.full((64,), 0.5), torch.rand(64) * 0.8 + 0.1)
        images = torch.full((64, 3, 8, 8), 0.5)
        images[..., :4] = grey[:, None, None, None]  # (GroupNorm in the encoder sees contrast, not a level)
        loss = generator.losses(images, torch.nn.functional.one_hot(which, 2).float())["loss"]  # type: ignore[operator]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    generator.eval()
    requests = torch.eye(2).repeat_interleave(200, dim=0)
    images = generator.sample(requests, torch.Generator().manual_seed(0))  # type: ignore[operator]
    drawn = images[..., :4].mean((1, 2, 3))
    fixed, varied = drawn[:200].std(), drawn[200:].std()
    assert float(varied) > 0.15 and float(fixed) < 0.1 * float(varied), (fixed, varied)  # real: 0.23 and 0
    mean, log_var = generator.code_prior(requests)  # type: ignore[operator]
    noise = torch.randn(400, 4, generator=torch.Generator().manual_seed(0))
    by_hand = generator.decode(mean + noise * (0.5 * log_var).exp(), requests).sigmoid()  # type: ignore[operator]
    assert torch.allclose(images, by_hand)


def test_the_latent_cvae_draws_each_request_where_its_images_have_it() -> None:
    """Request 0's images have a bright patch at the top left, request 1's at the bottom right: the
    autoencoder learns to draw them, the CVAE on its latent grid learns which request wants which, and
    samples decode z ~ N(0, I) through both with the grid's running statistics. After
    `autoencoder_batches` the autoencoder and those statistics stop changing."""
    import torch

    from mumo.config_model import LatentCVAEOptions
    from mumo.errors import ConfigError
    from mumo.generators import build_generator

    torch.manual_seed(0)
    options = LatentCVAEOptions(size=16, width=16, hidden=16, latent=4, blocks=1, autoencoder_batches=250)
    generator = build_generator(options, 2)
    optimizer = torch.optim.Adam(generator.parameters(), lr=3e-3)
    first = []
    for step in range(300):
        which = torch.randint(0, 2, (32,))
        images = torch.full((32, 3, 16, 16), 0.3) + 0.02 * torch.randn(32, 3, 16, 16)
        images[which == 0, :, 2:7, 2:7] = 0.9
        images[which == 1, :, 9:14, 9:14] = 0.9
        losses = generator.losses(images, torch.nn.functional.one_hot(which, 2).float())  # type: ignore[operator]
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        if step < 10:
            first.append(float(losses["autoencoder"]))
        if step == 249:
            frozen = [t.detach().clone() for t in (*generator.encoder.parameters(), generator.grid_mean)]  # type: ignore[union-attr]
    now = [*generator.encoder.parameters(), generator.grid_mean]  # type: ignore[union-attr]
    assert all(torch.equal(a, b) for a, b in zip(frozen, now, strict=True))
    assert float(generator.seen) == 300  # type: ignore[arg-type]
    assert float(losses["autoencoder"]) < 0.5 * np.mean(first)
    assert not torch.allclose(generator.grid_std, torch.ones_like(generator.grid_std))  # type: ignore[arg-type]
    generator.eval()
    requests = torch.eye(2).repeat_interleave(50, dim=0)
    images = generator.sample(requests, torch.Generator().manual_seed(0))  # type: ignore[operator]
    assert images.shape == (100, 3, 16, 16) and 0 <= float(images.min()) and float(images.max()) <= 1
    top_left, bottom_right = images[..., 2:7, 2:7].mean((1, 2, 3)), images[..., 9:14, 9:14].mean((1, 2, 3))
    assert float((top_left - bottom_right)[:50].min()) > 0.3  # every sample of request 0
    assert float((bottom_right - top_left)[50:].min()) > 0.3
    assert torch.equal(images, generator.sample(requests, torch.Generator().manual_seed(0)))  # type: ignore[operator]
    z = torch.randn(100, 4, generator=torch.Generator().manual_seed(0))
    grid = generator.decode(z, requests) * generator.grid_std + generator.grid_mean  # type: ignore[operator]
    assert torch.allclose(images, generator.decoder(grid).sigmoid())  # type: ignore[operator]
    with pytest.raises(ConfigError, match=r"^model.generator: size \(12\), width \(16\) and hidden"):
        build_generator(LatentCVAEOptions(size=12, width=16, hidden=16), 2)


def test_a_latent_cvae_run_draws_the_same_in_a_fresh_process(tmp_path: Path) -> None:
    config = {
        "name": "latent",
        "data": {"train": "builtin:shapes-draw", "builtin": {"n": 400}},
        "model": {
            "dim": 16,
            "generator": {"type": "latent_cvae", "width": 8, "hidden": 8, "latent": 4, "blocks": 1},
        },
        "train": {"epochs": 2, "batch_size": 32, "progress": False},
    }
    run = mumo.train(config, out=tmp_path / "run", quiet=True)
    assert {"objective", "autoencoder", "elbo", "kl", "spread"} <= set(run.metrics["test"])
    assert run.model.config.model.encoders["caption"].type == "bow"  # the default text encoder here
    out = tmp_path / "pngs"
    args = ["generate", str(run.path), "--text", "a blue star", "--n", "2", "--seed", "5", "--out", str(out)]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    expected = run.model.generate([{"caption": "a blue star"}], n=2, seed=5)[0]
    for j, image in enumerate(expected):
        assert np.array_equal(np.asarray(Image.open(out / f"0-{j}.png")), np.asarray(image))
