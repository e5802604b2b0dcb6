"""Caption-image retrieval on builtin:shapes: from scratch, and LiT with a frozen pretrained text tower.

1. `task: contrastive` from scratch (mumo's own text transformer and image CNN) on the train pairs;
   recall@K of caption → image over the unseen test pairs.
2. LiT: the caption through frozen all-MiniLM-L6-v2 (type hf, freeze: true, features cached), the
   image CNN trained into its space. Both models are then queried with text worded apart from every
   training caption (`mumo.data.shapes.query_for`: other words and synonyms, e.g. "crimson wedge"),
   and recall@5 of the right test image is measured. (No query equals a training caption: the script
   checks.)

Prints a table, writes JSON.  Usage: python -m benchmarks.retrieval [--n 10000] [--epochs 25] [--variants scratch,lit] [--json F]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import mumo
from benchmarks.common import save
from mumo.data.builtin import materialize
from mumo.data.shapes import ShapeItem, query_for
from mumo.data.table import read_table
from mumo.metrics import retrieval_metrics

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
QUERY_STREAM = 9  # a random stream the dataset's own captions (stream 3) never use


def queries(data_dir: Path, split: str, seed: int = 0) -> list[str]:
    attributes = pd.read_csv(data_dir / "attributes.csv")
    rows = attributes[attributes["split"] == split]
    out = []
    for record in rows.to_dict("records"):
        item = ShapeItem(
            **{k: record[k] for k in ShapeItem.__dataclass_fields__ if k != "weight"}, weight=0.0
        )
        out.append(query_for(item, np.random.default_rng([seed, int(record["id"]), QUERY_STREAM])))
    return out


def config(paths: dict[str, Path], epochs: int, lit: bool) -> dict[str, Any]:
    encoders = {"caption": {"type": "hf", "pretrained": MINILM, "freeze": True}} if lit else {}
    freeze = ["caption"] if lit else []  # LiT: the text tower is locked, its projection included
    return {
        "name": "lit" if lit else "scratch",
        "data": {k: str(paths[k]) for k in ("train", "val", "test")},
        "task": {"type": "contrastive", "pairs": [["caption", "image"]]},
        # LiT works in the locked tower's own width (MiniLM: 384), so its fixed projection loses nothing.
        "model": {"encoders": encoders, "freeze": freeze, **({"dim": 384} if lit else {})},
        "train": {"epochs": epochs, "patience": epochs, "progress": False},
    }


def run(n: int, epochs: int, work: Path, variants: tuple[str, ...] = ("scratch", "lit")) -> dict[str, Any]:
    paths = materialize("shapes", n, 0, out_dir=work / "data")
    data_dir = paths["train"].parent
    test_queries = queries(data_dir, "test")
    train_captions = set(pd.read_csv(paths["train"])["caption"].str.lower())
    assert not train_captions & {q.lower() for q in test_queries}
    result: dict[str, Any] = {
        "dataset": f"builtin:shapes n={n}",
        "test_pairs": len(test_queries),
        "epochs": epochs,
    }
    for name, lit in [(v, v == "lit") for v in variants]:
        started = time.time()
        run_ = mumo.train(config(paths, epochs, lit), out=work / name, quiet=True)
        model = run_.model
        assert model is not None
        split = model.prepare(read_table(paths["test"]))
        images = model.embed_split(split, "image")
        asked = model.embed(test_queries, column="caption")
        paraphrased = retrieval_metrics(asked @ images.T, "query", "image")
        result[name] = {
            "test": run_.metrics["test"],
            "paraphrased_query_to_image": {k: v for k, v in paraphrased.items() if k.startswith("query_to")},
            "seconds": time.time() - started,
        }
    goals = {}
    if "scratch" in result:
        scratch = result["scratch"]["test"]
        goals["scratch caption_to_image/recall@1 >= 0.5"] = scratch["caption_to_image/recall@1"] >= 0.5
        goals["scratch caption_to_image/recall@10 >= 0.9"] = scratch["caption_to_image/recall@10"] >= 0.9
    if "lit" in result:
        lit = result["lit"]["paraphrased_query_to_image"]
        goals["lit paraphrased query_to_image/recall@5 >= 0.6"] = lit["query_to_image/recall@5"] >= 0.6
    result["goals"] = goals
    show(result)
    return result


def show(result: dict[str, Any]) -> None:
    print(f"\n{result['dataset']}, {result['test_pairs']} unseen test pairs, {result['epochs']} epochs")
    print(f"{'':<30}{'R@1':>7}{'R@5':>7}{'R@10':>7}{'median rank':>13}")
    for name in [v for v in ("scratch", "lit") if v in result]:
        for label, metrics, prefix in (
            ("captions", result[name]["test"], "caption_to_image"),
            ("paraphrased queries", result[name]["paraphrased_query_to_image"], "query_to_image"),
        ):
            row = [metrics[f"{prefix}/recall@{k}"] for k in (1, 5, 10)]
            print(
                f"{name + ': ' + label:<30}"
                + "".join(f"{v:>7.3f}" for v in row)
                + f"{metrics[f'{prefix}/median_rank']:>13.1f}"
            )
    for goal, met in result["goals"].items():
        print(f"{goal}: {'met' if met else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--variants", default="scratch,lit", help="scratch, lit or both")
    parser.add_argument("--json", default="benchmarks/results/retrieval.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mumo-retrieval-") as tmp:
        result = run(args.n, args.epochs, Path(tmp), tuple(args.variants.split(",")))
    return save(result, args.json, all(result["goals"].values()))


if __name__ == "__main__":
    raise SystemExit(main())
