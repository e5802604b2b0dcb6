"""Text → image on builtin:shapes-draw, default config (task auto → image_generation, the CVAE).

An independent judge: two mumo image classifiers (colour; shape) trained on the real images of all three
splits, every image (real or drawn) slightly blurred first (see soften()). For every test caption, `--n` images are drawn; the judge says whether each shows the requested
colour and shape. Reported for the colour-shape pairs held out of training and for the others:
- the share of images classified as the requested colour, shape, and both (goal: >= 0.95 on held-out);
- diversity: how varied the images drawn for one caption are next to the real images of it — the real
  images (all splits) of the same colour and shape and of the size, position and background the caption
  states (what it leaves out may vary): sqrt(mean per-pixel variance of the drawn / the same of the
  real), variances unbiased over each caption's group (goal: >= 0.9);
- FID in the judge's feature space (torchmetrics' FrechetInceptionDistance with the colour judge's fused
  vector as the feature; Inception weights are not reachable here), drawn vs real test images.

With `--seeds 0,1,2` every figure is the mean over those sampling seeds (each seed's own in `per_seed`);
with `--sample neighbours=0,rerank=8` (repeatable) the same trained run is scored again with those of its
generator's sampling options changed (in memory; `settings` in the JSON), after the run's own.

Usage: python -m benchmarks.image_generation [--n-rows 3000] [--n 4] [--set key=value ...]
       [--seeds 0,1,2] [--sample key=value,key=value ...]
       [--judges DIR (kept and reused)] [--run RUN (score a trained run)] [--json F]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from pydantic import ValidationError

import mumo
from benchmarks.common import save
from mumo.config import parse_overrides
from mumo.data.builtin import materialize
from mumo.data.dataset import make_batch
from mumo.data.shapes import _BG_WORDS, _COL_WORDS, _ROW_WORDS, _SIZE_WORDS
from mumo.data.shapes_tasks import HELD_OUT_COMBOS

GOAL_CORRECT, GOAL_DIVERSITY = 0.95, 0.9
JUDGE_BLUR = 0.8  # pixels (Gaussian radius) of soften()
JUDGE_ROWS = 3000  # the judges learn builtin:shapes-draw's 3000 rows (seed 0), whatever size a run trains on


def judge_folder() -> Path:
    """The folder of the data the judges learn from (one judge for every --n-rows)."""
    return materialize("shapes-draw", JUDGE_ROWS, 0)["train"].parent


def judges(folder: Path, work: Path) -> dict[str, Any]:
    """A colour and a shape classifier on the real images (every split of the dataset), trained into
    `work` or loaded from it when an earlier call left them there."""
    attributes = pd.read_csv(folder / "attributes.csv")
    (work / "real").mkdir(parents=True, exist_ok=True)
    for i in attributes["id"]:
        if not (work / "real" / f"{i:05d}.png").is_file():
            soften(Image.open(folder / f"images/{i:05d}.png").convert("RGB")).save(
                work / "real" / f"{i:05d}.png"
            )
    table = pd.DataFrame(
        {
            "image": [str(work / "real" / f"{i:05d}.png") for i in attributes["id"]],
            "color": attributes["color"],
            "shape": attributes["shape"],
        }
    )
    table.to_csv(work / "judge.csv", index=False)
    out: dict[str, Any] = {}
    for attribute in ("color", "shape"):
        folder_run = work / f"judge-{attribute}"
        if not (folder_run / "metrics.json").is_file():
            config = {
                "name": f"judge-{attribute}",
                "data": {
                    "train": str(work / "judge.csv"),
                    "target": attribute,
                    "ignore": [a for a in ("color", "shape") if a != attribute],
                },
                "train": {"epochs": 15},
            }
            mumo.train(config, out=folder_run, quiet=True)
        out[attribute] = mumo.load(folder_run)
        out[f"{attribute}_val_accuracy"] = json.loads((folder_run / "metrics.json").read_text())["val"][
            "accuracy"
        ]
    return out


def soften(image: Image.Image) -> Image.Image:
    """What the judges see, real or drawn: a slight blur. The real images carry pixel noise and hard
    edges that drawn ones lack; a judge trained on them as they are called a drawn triangle a square
    with 0.99 confidence (texture, not shape). Softened, both look alike to it."""
    from PIL import ImageFilter

    return image.filter(ImageFilter.GaussianBlur(JUDGE_BLUR))


def classify(model: Any, images: list[Any], folder: Path) -> list[str]:
    folder.mkdir(exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{i}.png"
        soften(image).save(path)
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


_STATED = {
    "size": {w for words in _SIZE_WORDS.values() for w in words},
    "position": {w for words in (*_ROW_WORDS.values(), *_COL_WORDS.values()) for w in words} | {"centered"},
    "background": {w for words in _BG_WORDS.values() for w in words},
}
_GROUPING = {"size": ("size",), "position": ("row", "col"), "background": ("background",)}


def stated(caption: str) -> tuple[str, ...]:
    """The attribute columns a caption pins down besides colour and shape (builtin:shapes' wording)."""
    words = set(caption.lower().replace(",", " ").replace(".", " ").split())
    return tuple(c for name, columns in _GROUPING.items() if words & _STATED[name] for c in columns)


def to_tensor(images: list[Any]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(i)).permute(2, 0, 1) for i in images]).float() / 255


def score(
    model: Any, paths: dict[str, Path], judge: dict[str, Any], n: int, work: Path, seed: int = 0
) -> dict[str, Any]:
    """Judge `n` images drawn per test caption (see the module's docstring)."""
    folder = paths["train"].parent
    attributes = pd.read_csv(folder / "attributes.csv")
    manifest = pd.read_csv(paths["test"])
    test = attributes[attributes["split"] == "test"].reset_index(drop=True)
    captions = manifest["caption"].tolist()
    drawn = model.generate([{"caption": c} for c in captions], n=n, seed=seed)
    flat = [image for row in drawn for image in row]
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

    as_tensor = to_tensor(flat)
    real_all = to_tensor(
        [Image.open(folder / f"images/{i:05d}.png").convert("RGB") for i in attributes["id"]]
    )
    drawn_var, real_var = [], []
    for k, caption in enumerate(captions):
        columns = ["color", "shape", *stated(caption)]
        same = (attributes[columns] == test.loc[k, columns]).all(axis=1).to_numpy()
        if same.sum() < 2:
            continue
        real_var.append(float(real_all[same].reshape(int(same.sum()), -1).var(dim=0).mean()))
        drawn_var.append(float(as_tensor[k * n : (k + 1) * n].reshape(n, -1).var(dim=0).mean()))
    real_test = real_all[(attributes["split"] == "test").to_numpy()]
    return {
        "judge_val_accuracy": {"colour": judge["color_val_accuracy"], "shape": judge["shape_val_accuracy"]},
        "held_out_pairs": rates(held),
        "seen_pairs": rates([not h for h in held]),
        "held_out_by_pair": {
            f"{colour} {shape}": {
                **rates([w == (colour, shape) for w in wanted]),
                "drawn_most": " ".join(
                    Counter(
                        (c, s)
                        for w, c, s in zip(wanted, colours, shapes, strict=True)
                        if w == (colour, shape)
                    ).most_common(1)[0][0]
                ),
            }
            for colour, shape in HELD_OUT_COMBOS
        },
        "diversity": float(np.sqrt(np.mean(drawn_var) / np.mean(real_var))),
        "diversity_captions": len(real_var),
        "fid_judge_features": fid(judge["color"], real_test, as_tensor[::n][: len(real_test)]),
    }


def averaged(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean of each number over `results` (dicts of the same keys); anything else from the first."""
    first = results[0]
    if isinstance(first, dict):
        return {key: averaged([r[key] for r in results]) for key in first}
    if isinstance(first, bool) or not isinstance(first, int | float):
        return first
    mean = float(np.mean(results))
    return round(mean) if isinstance(first, int) and mean == round(mean) else mean


def sampling(model: Any, options: dict[str, Any]) -> None:
    """Change sampling options of a loaded run's generator in memory (e.g. neighbours, rerank), checked
    as its config is; a key that is not one of its options is an error naming it."""
    generator = model.config.model.generator
    unknown = [key for key in options if key not in type(generator).model_fields or key == "type"]
    if unknown:
        raise SystemExit(
            f"--sample: {', '.join(unknown)} is not an option of model.generator ({generator.type})"
        )
    try:
        changed = type(generator).model_validate({**generator.model_dump(), **options})
    except ValidationError as error:
        first = error.errors()[0]
        raise SystemExit(f"--sample: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    model.config.model.generator = changed
    for module in model.network.modules():  # the generator keeps the options it was built with
        if type(getattr(module, "options", None)) is type(generator):
            module.options = changed


def scored(
    model: Any, paths: dict[str, Path], judge: dict[str, Any], n: int, work: Path, seeds: list[int]
) -> dict[str, Any]:
    """score() at each sampling seed: the mean over them, each seed's own in per_seed."""
    each = []
    for seed in seeds:
        (work / f"seed{seed}").mkdir(parents=True, exist_ok=True)
        each.append(score(model, paths, judge, n, work / f"seed{seed}", seed))
    return {**averaged(each), "seeds": seeds, **({"per_seed": each} if len(each) > 1 else {})}


def run(
    rows: int,
    n: int,
    overrides: dict[str, Any],
    work: Path,
    judge_dir: Path,
    trained_run: str | None,
    seed: int = 0,
    seeds: list[int] | None = None,
    samples: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    paths = materialize("shapes-draw", rows, seed)
    result: dict[str, Any] = {}
    if trained_run is None:
        config = {
            "name": "draw",
            "data": {"train": "builtin:shapes-draw", "builtin": {"n": rows, "seed": seed}},
        }
        started = time.time()
        trained = mumo.train(config, overrides=overrides, out=work / "draw", quiet=True)
        result = {"train_seconds": round(time.time() - started, 1), "test_metrics": trained.metrics["test"]}
        trained_run = str(trained.path)
    model = mumo.load(trained_run)
    result["generator"] = model.config.model.generator.model_dump() if model.config.model.generator else None
    judge = judges(judge_folder(), judge_dir)
    result.update(scored(model, paths, judge, n, work / "drawn", seeds or [seed]))
    result["met"] = met(result)
    if samples:
        result["settings"] = []
        for k, options in enumerate(samples):
            sampling(model, options)
            other = scored(model, paths, judge, n, work / f"setting{k}", seeds or [seed])
            result["settings"].append({"sample": options, **other, "met": met(other)})
    return result


def met(result: dict[str, Any]) -> bool:
    return bool(result["held_out_pairs"]["both"] >= GOAL_CORRECT and result["diversity"] >= GOAL_DIVERSITY)


def report(result: dict[str, Any]) -> None:
    """The table of what the judges said, and one line of diversity, FID and time (for the run's own
    sampling options, then for each --sample setting)."""
    seeds = result.get("seeds", [0])
    print(
        f"sampling seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
        + (" (means)" if len(seeds) > 1 else "")
    )
    print("| pairs | colour | shape | both (goal >= 0.95 held-out) |")
    print("|---|---:|---:|---:|")
    for name in ("held_out_pairs", "seen_pairs"):
        r = result[name]
        print(f"| {name} ({r['images']} images) | {r['colour']:.3f} | {r['shape']:.3f} | {r['both']:.3f} |")
    for pair, r in result.get("held_out_by_pair", {}).items():
        print(
            f"| {pair} (drawn most: {r['drawn_most']}) | {r['colour']:.3f} | {r['shape']:.3f} | {r['both']:.3f} |"
        )
    print(
        f"diversity {result['diversity']:.3f} (goal >= 0.9) · FID (judge features) {result['fid_judge_features']:.2f} · "
        f"judge val accuracy colour {result['judge_val_accuracy']['colour']:.3f}, shape {result['judge_val_accuracy']['shape']:.3f}"
        + (f" · train {result['train_seconds']:.0f} s" if "train_seconds" in result else "")
    )
    for setting in result.get("settings", []):
        print(f"\nwith {', '.join(f'{k}={v}' for k, v in setting['sample'].items())}:")
        report(setting)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-rows", type=int, default=3000)
    parser.add_argument("--n", type=int, default=4, help="images drawn per test caption")
    parser.add_argument("--set", action="append", default=[], help="config overrides, e.g. train.epochs=100")
    parser.add_argument("--judges", help="a folder to keep the judges in and reuse them from")
    parser.add_argument("--run", help="score this trained run instead of training one")
    parser.add_argument(
        "--seeds", default="0", help="sampling seeds, comma-separated (figures are their means)"
    )
    parser.add_argument(
        "--sample",
        action="append",
        default=[],
        help="score the run again with these sampling options, e.g. neighbours=0,rerank=8 (repeatable)",
    )
    parser.add_argument("--json", default="benchmarks/results/image_generation.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        judge_dir = Path(args.judges) if args.judges else Path(tmp) / "judges"
        seeds = [int(s) for s in args.seeds.split(",")]
        samples = [dict(kv.split("=", 1) for kv in option.split(",")) for option in args.sample]
        result = run(
            args.n_rows, args.n, parse_overrides(args.set), Path(tmp), judge_dir, args.run, 0, seeds, samples
        )
    report(result)
    return save(result, args.json, result["met"])


if __name__ == "__main__":
    raise SystemExit(main())
