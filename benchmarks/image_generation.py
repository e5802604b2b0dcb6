"""Text → image on builtin:shapes-draw, default config (task auto → image_generation, the CVAE).

An independent judge: two mumo image classifiers (colour; shape) trained on the real images of all three
splits. For every test caption, `--n` images are drawn; the judge says whether each shows the requested
colour and shape. Reported for the colour-shape pairs held out of training and for the others:
- the share of images classified as the requested colour, shape, and both (goal: >= 0.95 on held-out);
- diversity: the mean per-pixel standard deviation of the images drawn for one caption, over the same
  for the real test images of that colour and shape (goal: >= 0.9);
- FID in the judge's feature space (torchmetrics' FrechetInceptionDistance with the colour judge's fused
  vector as the feature; Inception weights are not reachable here), drawn vs real test images.

Usage: python -m benchmarks.image_generation [--n-rows 3000] [--n 4] [--set key=value ...] [--json F]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import mumo
from benchmarks.common import save
from mumo.config import parse_overrides
from mumo.data.builtin import materialize
from mumo.data.dataset import make_batch
from mumo.data.shapes_tasks import HELD_OUT_COMBOS

GOAL_CORRECT, GOAL_DIVERSITY = 0.95, 0.9


def judges(folder: Path, work: Path) -> dict[str, Any]:
    """A colour and a shape classifier on the real images (every split of the dataset)."""
    attributes = pd.read_csv(folder / "attributes.csv")
    images = [f"images/{i:05d}.png" for i in attributes["id"]]
    table = pd.DataFrame(
        {
            "image": [str(folder / p) for p in images],
            "color": attributes["color"],
            "shape": attributes["shape"],
        }
    )
    table.to_csv(work / "judge.csv", index=False)
    out = {}
    for attribute in ("color", "shape"):
        config = {
            "name": f"judge-{attribute}",
            "data": {
                "train": str(work / "judge.csv"),
                "target": attribute,
                "ignore": [a for a in ("color", "shape") if a != attribute],
            },
            "train": {"epochs": 15},
        }
        run = mumo.train(config, out=work / f"judge-{attribute}", quiet=True)
        out[attribute] = run.model
        out[f"{attribute}_val_accuracy"] = run.metrics["val"]["accuracy"]
    return out


def classify(model: Any, images: list[Any], folder: Path) -> list[str]:
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{i}.png"
        image.save(path)
        paths.append({"image": str(path)})
    return [row["prediction"] for row in model.predict(paths)]


@torch.no_grad()
def features(model: Any, images: torch.Tensor) -> torch.Tensor:
    """The judge's fused vector of (N, 3, H, W) images in [0, 1], through its own image processor."""
    items = [(image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for image in images]
    batch = make_batch({"image": items}, model.processors, None, None, train=False)
    network = model.network
    presence = network.presence(batch)
    return network.fusion(network.encode(batch, presence), presence).pooled.double()


def fid(model: Any, real: torch.Tensor, drawn: torch.Tensor) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    class Judge(torch.nn.Module):
        num_features = int(model.config.model.dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return features(model, x.float() / 255.0 if x.dtype == torch.uint8 else x)

    metric = FrechetInceptionDistance(feature=Judge(), normalize=True, input_img_size=tuple(real.shape[1:]))
    metric.update(real, real=True)
    metric.update(drawn, real=False)
    return float(metric.compute())


def run(rows: int, n: int, overrides: dict[str, Any], work: Path, seed: int = 0) -> dict[str, Any]:
    paths = materialize("shapes-draw", rows, seed)
    folder = paths["train"].parent
    config = {"name": "draw", "data": {"train": "builtin:shapes-draw", "builtin": {"n": rows, "seed": seed}}}
    started = time.time()
    trained = mumo.train(config, overrides=overrides, out=work / "draw", quiet=True)
    seconds = time.time() - started
    judge = judges(folder, work)
    attributes = pd.read_csv(folder / "attributes.csv")
    test = attributes[attributes["split"] == "test"].reset_index(drop=True)
    captions = pd.read_csv(paths["test"])["caption"].tolist()
    drawn = trained.model.generate([{"caption": c} for c in captions], n=n, seed=seed)  # type: ignore[union-attr]
    flat = [image for row in drawn for image in row]
    (work / "drawn").mkdir()
    colours = classify(judge["color"], flat, work / "drawn")
    shapes = classify(judge["shape"], flat, work / "drawn")
    wanted = [(c, s) for c, s in zip(test["color"], test["shape"], strict=True) for _ in range(n)]
    held = [pair in HELD_OUT_COMBOS for pair in wanted]

    def rates(keep: list[bool]) -> dict[str, float]:
        picked = [(w, c, s) for w, c, s, k in zip(wanted, colours, shapes, keep, strict=True) if k]
        return {
            "images": len(picked),
            "colour": float(np.mean([c == w[0] for w, c, _ in picked])),
            "shape": float(np.mean([s == w[1] for w, _, s in picked])),
            "both": float(np.mean([c == w[0] and s == w[1] for w, c, s in picked])),
        }

    as_tensor = torch.stack([torch.from_numpy(np.asarray(i)).permute(2, 0, 1) for i in flat]).float() / 255
    spread_drawn = float(as_tensor.reshape(len(captions), n, -1).std(dim=1).mean())
    real = trained.model.target.stack(  # type: ignore[union-attr]
        [
            trained.model.target.encode_cells([p], paths["test"].parent)
            for p in pd.read_csv(paths["test"])["image"]
        ]  # type: ignore[union-attr]
    )
    groups = test.groupby(["color", "shape"]).indices
    spread_real = float(
        np.mean(
            [real[idx].reshape(len(idx), -1).std(dim=0).mean() for idx in groups.values() if len(idx) > 1]
        )
    )
    result = {
        "train_seconds": round(seconds, 1),
        "judge_val_accuracy": {"colour": judge["color_val_accuracy"], "shape": judge["shape_val_accuracy"]},
        "held_out_pairs": rates(held),
        "seen_pairs": rates([not h for h in held]),
        "diversity": spread_drawn / spread_real,
        "spread_drawn": spread_drawn,
        "spread_real_same_pair": spread_real,
        "fid_judge_features": fid(judge["color"], real, as_tensor[::n][: len(real)]),
        "test_metrics": trained.metrics["test"],
    }
    result["met"] = result["held_out_pairs"]["both"] >= GOAL_CORRECT and result["diversity"] >= GOAL_DIVERSITY
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-rows", type=int, default=3000)
    parser.add_argument("--n", type=int, default=4, help="images drawn per test caption")
    parser.add_argument("--set", action="append", default=[], help="config overrides, e.g. train.epochs=100")
    parser.add_argument("--json", default="benchmarks/results/image_generation.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.n_rows, args.n, parse_overrides(args.set), Path(tmp))
    print("| pairs | colour | shape | both (goal >= 0.95 held-out) |")
    print("|---|---:|---:|---:|")
    for name in ("held_out_pairs", "seen_pairs"):
        r = result[name]
        print(f"| {name} ({r['images']} images) | {r['colour']:.3f} | {r['shape']:.3f} | {r['both']:.3f} |")
    print(
        f"diversity {result['diversity']:.3f} (goal >= 0.9) · FID (judge features) {result['fid_judge_features']:.2f} · "
        f"judge val accuracy colour {result['judge_val_accuracy']['colour']:.3f}, shape {result['judge_val_accuracy']['shape']:.3f} · "
        f"train {result['train_seconds']:.0f} s"
    )
    return save(result, args.json, result["met"])


if __name__ == "__main__":
    raise SystemExit(main())
