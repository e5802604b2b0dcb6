"""task: image_generation — images drawn from a caption: conditioning, seeds, `mumo generate`, reload."""

from __future__ import annotations

import re
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


@pytest.mark.parametrize(
    ("item", "said"),
    [
        ("caption", "--input 'caption': expected COLUMN=VALUE"),
        ("colour=red", "--input 'colour': not an input of this model; inputs: caption"),
    ],
)
def test_generate_names_a_bad_input_as_predict_does(
    draw_run: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], item: str, said: str
) -> None:
    for command in (["generate", "--out", str(tmp_path / "pngs")], ["predict"]):
        assert main([command[0], str(draw_run.path), *command[1:], "--input", item]) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1].endswith(said)
    assert not (tmp_path / "pngs").exists()


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


@pytest.mark.parametrize("halvings", [2, 1])
def test_the_latent_cvae_draws_each_request_where_its_images_have_it(halvings: int) -> None:
    """Request 0's images have a bright patch at the top left, request 1's at the bottom right: the
    autoencoder learns to draw them in its own stage (fit_autoencoder), the CVAE on its frozen latent grid
    learns which request wants which, and samples decode z ~ N(0, I) through both with the grid's
    statistics, which are those of the training images' grids. halvings 1: a grid of 8x8 for 16x16
    images, which the CVAE reaches from 4x4 by one doubling."""
    import torch

    from mumo.config_model import LatentCVAEOptions
    from mumo.errors import ConfigError
    from mumo.generators import build_generator

    torch.manual_seed(0)
    options = LatentCVAEOptions(
        size=16,
        width=16,
        hidden=16,
        latent=4,
        blocks=1,
        autoencoder_steps=250,
        halvings=halvings,
        pixel_noise=True,
    )
    generator = build_generator(options, 2)
    side = 16 // 2**halvings
    assert generator.encoder(torch.zeros(1, 3, 16, 16)).shape == (1, 4, side, side)  # type: ignore[operator]
    assert len(generator.finer) == {2: 0, 1: 1}[halvings]  # type: ignore[arg-type]
    which = torch.randint(0, 2, (256,))
    data = torch.full((256, 3, 16, 16), 0.3) + 0.02 * torch.randn(256, 3, 16, 16)
    data[which == 0, :, 2:7, 2:7] = 0.9
    data[which == 1, :, 9:14, 9:14] = 0.9
    requests = torch.nn.functional.one_hot(which, 2).float()
    lines: list[str] = []
    with torch.no_grad():
        before = float(generator.autoencoder_loss(data))  # type: ignore[operator]
    sizes: list[int] = []  # the loader's batches of 128 are split into steps of autoencoder_batch (32)
    loss_of = generator.autoencoder_loss
    generator.autoencoder_loss = lambda images, grid=None: (sizes.append(len(images)), loss_of(images, grid))[
        1
    ]
    last = generator.fit_autoencoder(lambda: data.split(128), "cpu", lines.append)  # type: ignore[operator]
    del generator.autoencoder_loss
    assert sizes == [32] * 250
    assert last < 0.5 * before
    assert len(lines) == 10 and lines[-1].startswith("autoencoder 250/250  loss=")
    with torch.no_grad():
        grid = generator.encoder(data).double()  # type: ignore[operator]
    assert torch.allclose(generator.grid_mean.flatten().double(), grid.mean((0, 2, 3)), atol=1e-5)  # type: ignore[union-attr]
    assert torch.allclose(generator.grid_std.flatten().double(), grid.std((0, 2, 3)), atol=1e-3)  # type: ignore[union-attr]
    assert float(generator.seen) == 250  # type: ignore[arg-type]
    frozen = [t.detach().clone() for t in (*generator.encoder.parameters(), generator.grid_mean)]  # type: ignore[union-attr]
    optimizer = torch.optim.Adam(generator.parameters(), lr=3e-3)
    generator.train()
    for step in range(1, 301):
        rows = torch.randint(0, 256, (32,))
        losses = generator.losses(data[rows], requests[rows])  # type: ignore[operator]
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        assert float(losses["autoencoder"]) == 0  # frozen: not computed in training
        if step == 20:  # rerank, early in training: the CVAE still misplaces some patches
            generator.eval()
            check_rerank(generator, options)
            generator.train()
    now = [*generator.encoder.parameters(), generator.grid_mean]  # type: ignore[union-attr]
    assert all(torch.equal(a, b) for a, b in zip(frozen, now, strict=True))
    assert float(generator.seen) == 550  # type: ignore[arg-type]
    assert int(generator.written) == 300 * 32  # each training batch's posteriors went into the ring
    generator.eval()
    with torch.no_grad():
        generator.losses(data[:32], requests[:32])  # type: ignore[operator]
    assert int(generator.written) == 300 * 32  # evaluation writes none
    assert int(generator.matched) == 300  # the matcher trained at every training step, and only then
    requests = torch.eye(2).repeat_interleave(50, dim=0)
    for prior in ("aggregate", "standard"):  # a code from a remembered training image's posterior, or N(0, I)
        generator.options = options.model_copy(update={"prior": prior})
        images = generator.sample(requests, torch.Generator().manual_seed(0))  # type: ignore[operator]
        assert images.shape == (100, 3, 16, 16) and 0 <= float(images.min()) and float(images.max()) <= 1
        top_left = images[..., 2:7, 2:7].mean((1, 2, 3))
        bottom_right = images[..., 9:14, 9:14].mean((1, 2, 3))
        assert float((top_left - bottom_right)[:50].min()) > 0.3, prior  # every sample of request 0
        assert float((bottom_right - top_left)[50:].min()) > 0.3, prior
        assert torch.equal(images, generator.sample(requests, torch.Generator().manual_seed(0)))  # type: ignore[operator]
    draw = torch.Generator().manual_seed(0)
    z = torch.randn(100, 4, generator=draw)
    picked = torch.randint(0, len(generator.codes), (100,), generator=draw)  # type: ignore[arg-type]
    generator.options = options.model_copy(update={"pixel_noise": False, "neighbours": 0})  # any image
    assert_draws_from(generator, requests, generator.codes[picked], z)  # type: ignore[index]
    # neighbours 16 (the default): the code of one of the 16 remembered images whose requests are closest
    generator.options = options.model_copy(update={"pixel_noise": False})
    assert generator.options.neighbours == 16
    draw = torch.Generator().manual_seed(0)
    z, choice = torch.randn(100, 4, generator=draw), torch.randint(0, 16, (100, 1), generator=draw)
    remembered = generator.requests[: len(generator.codes)]  # type: ignore[index]
    similar = torch.nn.functional.normalize(requests, dim=1) @ remembered.T
    picked = similar.topk(16, dim=1).indices.gather(1, choice).squeeze(1)
    assert torch.equal(remembered[picked], requests)  # each code is that of an image of the same request
    assert_draws_from(generator, requests, generator.codes[picked], z)  # type: ignore[index]
    generator.options = options.model_copy(update={"prior": "standard"})
    # a sample is the decoded grid plus pixel noise of the autoencoder's residual spread (training images)
    with torch.no_grad():
        residual = generator.decoder(generator.encoder(data)).sigmoid() - data  # type: ignore[operator]
    assert float(generator.pixel_noise) == pytest.approx(float(residual.pow(2).mean().sqrt()), rel=1e-4)  # type: ignore[arg-type]
    draw = torch.Generator().manual_seed(0)
    z = torch.randn(100, 4, generator=draw)
    grid = generator.decode(z, requests) * generator.grid_std + generator.grid_mean  # type: ignore[operator]
    mean = generator.decoder(grid).sigmoid()  # type: ignore[operator]
    noise = torch.randn(mean.shape, generator=draw) * generator.pixel_noise
    assert torch.allclose(images, (mean + noise).clamp(0, 1))
    generator.options = options.model_copy(update={"pixel_noise": False, "prior": "standard"})
    assert torch.allclose(generator.sample(requests, torch.Generator().manual_seed(0)), mean)  # type: ignore[operator]
    older = {k: v for k, v in generator.state_dict().items() if k != "pixel_noise"}  # saved before it
    again = build_generator(options, 2)
    again.load_state_dict(older)
    assert float(again.pixel_noise) == 0  # type: ignore[arg-type]
    # saved before the ring of codes and the matcher: prior aggregate (the default) draws from N(0, I), as
    # the run did, and rerank keeps the first candidate (an untrained matcher)
    older = {
        k: v
        for k, v in generator.state_dict().items()
        if k not in ("codes", "written", "requests") and not k.startswith("match")
    }
    again = build_generator(options.model_copy(update={"pixel_noise": False, "rerank": 8}), 2)
    again.load_state_dict(older)
    again.eval()
    assert int(again.written) == 0 and int(again.matched) == 0  # type: ignore[arg-type]
    assert torch.allclose(again.sample(requests, torch.Generator().manual_seed(0)), mean)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=r"^model.generator: size \(12\), width \(16\) and hidden"):
        build_generator(LatentCVAEOptions(size=12, width=16, hidden=16), 2)
    with pytest.raises(
        ConfigError, match=r"^model.generator.size: 8 is not a multiple of 2 \*\* halvings \(16\)$"
    ):
        build_generator(LatentCVAEOptions(size=8, width=16, hidden=16, halvings=4), 2)
    with pytest.raises(
        ValueError, match=r"autoencoder_steps: 5 must be 0 \(the two learn together\) or at least 10"
    ):
        LatentCVAEOptions(autoencoder_steps=5)
    older = {"type": "latent_cvae", "autoencoder_batches": 1500}  # a run of the first latent_cvae
    assert LatentCVAEOptions.model_validate(older).autoencoder_steps == 1500
    # a run saved before halvings (every key but it) built its grid at size / 4; a user's config gets 1
    saved = LatentCVAEOptions(halvings=2).model_dump()
    del saved["halvings"]
    assert LatentCVAEOptions.model_validate(saved).halvings == 2
    assert LatentCVAEOptions.model_validate({"type": "latent_cvae", "beta": 2}).halvings == 1


def assert_draws_from(generator: Any, requests: Any, codes: Any, z: Any) -> None:
    """Seed 0's samples are the decoded grids of these remembered posteriors (mean, log variance), each
    shifted by its spread times z (prior aggregate, no pixel noise)."""
    import torch

    mean, log_var = codes.chunk(2, dim=1)
    grid = (
        generator.decode(mean + z * (0.5 * log_var).exp(), requests) * generator.grid_std
        + generator.grid_mean
    )
    assert torch.allclose(
        generator.sample(requests, torch.Generator().manual_seed(0)), generator.decoder(grid).sigmoid()
    )


def check_rerank(generator: Any, options: Any) -> None:
    """Codes far from the prior's centre (temperature 4) draw some patches where the request does not
    want them; of 8 candidates per request the matcher keeps one where it does."""
    import torch

    requests = torch.eye(2).repeat_interleave(50, dim=0)

    def misplaced(images: torch.Tensor) -> int:
        top_left = images[..., 2:7, 2:7].mean((1, 2, 3))
        bottom_right = images[..., 9:14, 9:14].mean((1, 2, 3))
        return int((top_left[:50] <= bottom_right[:50]).sum() + (bottom_right[50:] <= top_left[50:]).sum())

    far = options.model_copy(update={"prior": "standard", "pixel_noise": False})
    generator.options = far
    candidates = generator.sample(requests.repeat_interleave(8, dim=0), torch.Generator().manual_seed(1), 4.0)
    generator.options = far.model_copy(update={"rerank": 8})
    kept = generator.sample(requests, torch.Generator().manual_seed(1), 4.0)
    generator.options = options
    assert kept.shape == (100, 3, 16, 16)
    distance = (candidates.reshape(100, 8, -1) - kept.reshape(100, 1, -1)).abs().amax(2)  # (100, 8)
    assert float(distance.min(1).values.max()) < 1e-5  # each kept image is one of its request's candidates
    first = candidates[::8]  # one candidate of each request's 8
    assert misplaced(first) >= 10  # the candidates are often wrong ...
    assert misplaced(kept) == 0  # ... and the matcher keeps a right one for every request


def tiny_latent_cvae(rows: int, epochs: int, autoencoder_steps: int) -> dict[str, Any]:
    """The config of a tiny latent_cvae run on builtin:shapes-draw."""
    generator = {"type": "latent_cvae", "width": 8, "hidden": 8, "latent": 4, "blocks": 1}
    return {
        "name": "latent",
        "data": {"train": "builtin:shapes-draw", "builtin": {"n": rows}},
        "model": {"dim": 16, "generator": {**generator, "autoencoder_steps": autoencoder_steps}},
        "train": {"epochs": epochs, "batch_size": 32, "progress": False},
    }


def test_a_latent_cvae_run_draws_the_same_in_a_fresh_process(tmp_path: Path) -> None:
    config = tiny_latent_cvae(400, epochs=2, autoencoder_steps=20)
    run = mumo.train(config, out=tmp_path / "run", quiet=True)
    assert {"objective", "autoencoder", "elbo", "kl", "spread"} <= set(run.metrics["test"])
    caption = run.model.config.model.encoders["caption"]
    assert (caption.type, caption.dropout) == ("bow", 0.0)  # the default text encoder here: every word kept
    fusion = run.model.config.model.fusion
    assert fusion is not None and (fusion.type, fusion.dropout) == ("concat", 0.0)  # nor features hidden
    # the autoencoder's own stage ran before the loop (which alone has fewer than 20 batches here)
    import torch

    generator = run.model.network.generator
    assert float(generator.seen) > 20, float(generator.seen)
    assert not torch.allclose(generator.grid_std, torch.ones_like(generator.grid_std))
    out = tmp_path / "pngs"
    args = ["generate", str(run.path), "--text", "a blue star", "--n", "2", "--seed", "5", "--out", str(out)]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    expected = run.model.generate([{"caption": "a blue star"}], n=2, seed=5)[0]
    for j, image in enumerate(expected):
        assert np.array_equal(np.asarray(Image.open(out / f"0-{j}.png")), np.asarray(image))
    # a lower temperature: the code drawn closer to 0, the same images as the API's at that temperature
    cooler = run.model.with_task_options({"temperature": 0.25}).generate(
        [{"caption": "a blue star"}], n=2, seed=5
    )
    result = run_cli(*args[:-1], str(tmp_path / "cool"), "--temperature", "0.25")
    assert result.returncode == 0, result.stderr
    for j, image in enumerate(cooler[0]):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "cool" / f"0-{j}.png")), np.asarray(image))
        assert not np.array_equal(np.asarray(image), np.asarray(expected[j]))
    refused = run_cli(*args[:-1], str(tmp_path / "cold"), "--temperature", "0")
    assert refused.returncode == 2 and "temperature" in refused.stderr.strip().splitlines()[-1], (
        refused.stderr
    )
    assert "Traceback" not in refused.stderr and not (tmp_path / "cold").exists()


def test_a_resumed_latent_cvae_run_does_not_train_its_autoencoder_again(tmp_path: Path) -> None:
    """The autoencoder's stage runs before the first epoch and prints its progress; a run killed after
    an epoch resumes from its checkpoint (which holds the trained autoencoder) without that stage."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    config = tmp_path / "draw.yaml"
    config.write_text(
        "data: {train: 'builtin:shapes-draw', builtin: {n: 400}}\n"
        "model: {dim: 16, generator: {type: latent_cvae, width: 8, hidden: 8, latent: 4, blocks: 1,"
        " autoencoder_steps: 30}}\n"
        "train: {epochs: 8, batch_size: 32, patience: 100}\n"
    )
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mumo.cli", "train", str(config), "--out", str(out)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    last = tmp_path / ".run.partial" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    _, first = proc.communicate(timeout=30)
    assert "latent_cvae: training the autoencoder first (30 steps)" in first
    assert "autoencoder 30/30  loss=" in first
    resumed = run_cli("train", "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "training the autoencoder first" not in resumed.stderr
    assert not re.findall(r"^autoencoder \d+/30", resumed.stderr, flags=re.M)
    assert re.findall(r"^epoch (\d+)/", resumed.stderr, flags=re.M)[0] != "1"


def test_the_benchmark_scores_other_sampling_options_of_one_run(tmp_path: Path) -> None:
    """benchmarks.image_generation --sample: a trained run's sampling options changed in memory, checked
    as its config is (an unknown key or a bad value is named); --seeds: figures averaged over seeds."""
    from benchmarks.image_generation import averaged, sampling

    config = tiny_latent_cvae(200, epochs=1, autoencoder_steps=10)
    model = mumo.train(config, out=tmp_path / "run", quiet=True).model
    rows = [{"caption": "a red circle"}, {"caption": "a blue cross on the left"}]
    before = model.generate(rows, n=3, seed=1)
    sampling(model, {"rerank": "4", "neighbours": "0"})
    generator = model.network.generator
    assert (generator.options.rerank, generator.options.neighbours) == (4, 0)
    assert (model.config.model.generator.rerank, model.config.model.generator.neighbours) == (4, 0)
    after = model.generate(rows, n=3, seed=1)
    assert any(
        not np.array_equal(np.asarray(a), np.asarray(b))
        for row_a, row_b in zip(before, after, strict=True)
        for a, b in zip(row_a, row_b, strict=True)
    )
    with pytest.raises(
        SystemExit, match=r"^--sample: steps is not an option of model.generator \(latent_cvae\)$"
    ):
        sampling(model, {"steps": "3"})
    with pytest.raises(SystemExit, match=r"^--sample: rerank: Input should be greater than or equal to 1$"):
        sampling(model, {"rerank": "0"})  # (at least 1)
    mean = averaged(
        [
            {"a": {"both": 0.5, "images": 8, "drawn_most": "red circle"}},
            {"a": {"both": 1.0, "images": 8, "drawn_most": "x"}},
        ]
    )
    assert mean == {"a": {"both": 0.75, "images": 8, "drawn_most": "red circle"}}
