"""Pretrain on unlabelled pairs, then fine-tune with 10% of the labels, vs the same model from scratch.

builtin:shapes: `mumo pretrain` aligns caption and image on every train row (no labels). Then a
classifier of `label` (shape seen × pitch heard) from image and sound is trained on a 10% labelled
subset of train, once starting from the pretrained image encoder (model.init_from) and once from
scratch, with the same splits, seeds and epochs. (The caption is left out of the classifier: it names
the shape in words, which makes the task easy without any pretraining.) Prints both, writes JSON.

Usage: python -m benchmarks.pretrain_finetune [--n 3000] [--fraction 0.1] [--json F]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

import mumo
from benchmarks.common import save
from mumo.data.builtin import materialize


def run(n: int, fraction: float, work: Path, pretrain_epochs: int = 15, epochs: int = 15) -> dict[str, Any]:
    paths = materialize("shapes", n, 0, out_dir=work / "data")
    data_dir = paths["train"].parent
    started = time.time()
    pretrained = mumo.train(
        {
            "name": "pretrain",
            "data": {"train": str(paths["train"]), "val": str(paths["val"]), "test": str(paths["test"])},
            "task": {"type": "contrastive", "pairs": [["caption", "image"]]},
            "train": {"epochs": pretrain_epochs, "progress": False},
        },
        out=work / "pretrain",
        quiet=True,
    )
    train = pd.read_csv(paths["train"])
    labelled = train.sample(frac=fraction, random_state=0)
    labelled.to_csv(data_dir / "train-labelled.csv", index=False)
    results: dict[str, Any] = {
        "pretrain": {k: v for k, v in pretrained.metrics["test"].items() if "recall@" in k},
        "labelled_rows": len(labelled),
    }
    for name, init in (("from scratch", None), ("from pretrained image encoder", str(pretrained.path))):
        run_ = mumo.train(
            {
                "name": "fine-tune",
                "data": {
                    "train": str(data_dir / "train-labelled.csv"),
                    "val": str(paths["val"]),
                    "test": str(paths["test"]),
                    "target": "label",
                    "ignore": ["weight", "caption"],
                },
                "model": {"init_from": init},
                "train": {"epochs": epochs, "progress": False},
            },
            out=work / name.replace(" ", "-").replace("+", "-"),
            quiet=True,
        )
        results[name] = run_.metrics["test"]["accuracy"]
    results["gain_points"] = 100 * (results["from pretrained image encoder"] - results["from scratch"])
    results["met"] = results["gain_points"] > 0
    results["seconds"] = time.time() - started
    results["dataset"] = f"builtin:shapes n={n}, {len(labelled)} labelled train rows ({fraction:.0%})"
    return results


def show(result: dict[str, Any]) -> None:
    print(f"\n{result['dataset']}; test accuracy of label (shape x pitch) from image and sound")
    print(f"{'from scratch':<34}{result['from scratch']:>8.3f}")
    print(f"{'from pretrained image encoder':<34}{result['from pretrained image encoder']:>8.3f}")
    recall = result["pretrain"]
    print(
        f"pretraining (caption-image, no labels): caption_to_image recall@1 "
        f"{recall['caption_to_image/recall@1']:.3f}, recall@10 {recall['caption_to_image/recall@10']:.3f}"
    )
    verdict = "met" if result["met"] else "NOT met"
    print(f"gain {result['gain_points']:+.1f} points (goal > 0: {verdict}); {result['seconds']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--json", default="benchmarks/results/pretrain_finetune.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mumo-pretrain-") as tmp:
        result = run(args.n, args.fraction, Path(tmp))
    show(result)
    return save(result, args.json, result["met"])


if __name__ == "__main__":
    raise SystemExit(main())
