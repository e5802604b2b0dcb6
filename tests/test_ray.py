"""Ray (the optional extra): `mumo embed --ray` and `mumo index --ray` on a local Ray with two actors give
the vectors and the index of a single process; `mumo tune --engine ray` runs its trials as Ray Tune
trials (OptunaSearch, ASHA)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, tiny_overrides, train_contrastive

pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'mumo[ray]')")


@pytest.fixture(scope="module")
def contrastive(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_contrastive(shapes_dir, tmp_path_factory.mktemp("ray") / "run")


@pytest.mark.parametrize("column", ["caption", pytest.param("image", marks=pytest.mark.slow)])
def test_embed_on_ray_gives_the_single_process_vectors(
    column: str, contrastive: Path, shapes_dir: Path, tmp_path: Path
) -> None:
    data = str(shapes_dir / "train.csv")
    one = run_cli(
        "embed", str(contrastive), "--data", data, "--column", column, "--out", str(tmp_path / "one.npy")
    )
    assert one.returncode == 0, one.stderr[-2000:]
    ray = run_cli(
        "embed", str(contrastive), "--data", data, "--column", column, "--out", str(tmp_path / "ray.npy"),
        "--ray", "--workers", "2", timeout=600,
    )  # fmt: skip
    assert ray.returncode == 0, ray.stderr[-3000:]
    single, spread = np.load(tmp_path / "one.npy"), np.load(tmp_path / "ray.npy")
    assert single.shape == spread.shape == (160, 32)
    np.testing.assert_allclose(spread, single, atol=1e-5)


@pytest.mark.slow
def test_index_on_ray_finds_what_the_single_process_index_finds(
    contrastive: Path, shapes_dir: Path, tmp_path: Path
) -> None:
    data = str(shapes_dir / "train.csv")
    for name, more in (("one", []), ("ray", ["--ray", "--workers", "2"])):
        built = run_cli(
            "index", str(contrastive), "--data", data, "--column", "image", "--out", str(tmp_path / name), *more,
            timeout=600,
        )  # fmt: skip
        assert built.returncode == 0, built.stderr[-3000:]
    hits = {}
    for name in ("one", "ray"):
        found = run_cli("search", str(tmp_path / name), "--text", "a large red circle", "-k", "10", "--json")
        assert found.returncode == 0, found.stderr[-2000:]
        hits[name] = [json.loads(line) for line in found.stdout.splitlines()]
    assert [h["id"] for h in hits["ray"]] == [h["id"] for h in hits["one"]]
    assert [h["score"] for h in hits["ray"]] == pytest.approx([h["score"] for h in hits["one"]], abs=1e-5)


@pytest.mark.slow
def test_tune_on_ray_runs_four_trials(shapes_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tune"
    done = run_cli(
        "tune", "--train", str(shapes_dir / "train.csv"), "--val", str(shapes_dir / "val.csv"),
        "--target", "label", "--trials", "4", "--engine", "ray", "--workers", "2", "--out", str(out),
        "--set", "data.ignore=[image,sound]", *tiny_overrides(), "--set", "train.epochs=2", timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    board = json.loads((out / "leaderboard.json").read_text())
    trials = board["trials"] if isinstance(board, dict) else board
    assert len(trials) == 4
    assert len({json.dumps(t["params"], sort_keys=True) for t in trials}) == 4  # four proposals
    assert all(t["state"] in ("complete", "pruned") for t in trials)
    assert (out / "best" / "model.safetensors").is_file()
