"""Speech → text on builtin:shapes-speech (espeak-ng, several voices, light noise), default config: task
auto → generation, the ctc decoder over conv1d frames. Test WER and CER overall, on the voices train
heard, and on the voice it never heard (half of the test rows). Goal: WER <= 0.02 on the whole test split.

Usage: python -m benchmarks.speech [--n 3000] [--set key=value ...] [--json F]
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
from mumo.config import parse_overrides
from mumo.data.builtin import materialize
from mumo.data.shapes_tasks import HELD_OUT_VOICE
from mumo.metrics_text import text_metrics

GOAL = 0.02


def run(n: int, overrides: dict[str, Any], work: Path, seed: int = 0) -> dict[str, Any]:
    config = {"name": "speech", "data": {"train": "builtin:shapes-speech", "builtin": {"n": n, "seed": seed}}}
    started = time.time()
    trained = mumo.train(config, overrides=overrides, out=work / "speech", quiet=True)
    seconds = time.time() - started
    paths = materialize("shapes-speech", n, seed)
    test = pd.read_csv(paths["test"])
    attributes = pd.read_csv(paths["train"].parent / "attributes.csv")
    voices = attributes[attributes["split"] == "test"]["voice"].tolist()
    generated = [row["generated"] for row in mumo.load(trained.path).predict(str(paths["test"]))]
    references = test["transcript"].tolist()
    held = [v.split("+")[0] == HELD_OUT_VOICE for v in voices]

    def scores(keep: list[bool]) -> dict[str, float]:
        pairs = [(r, g) for r, g, k in zip(references, generated, keep, strict=True) if k]
        metrics = text_metrics([r for r, _ in pairs], [g for _, g in pairs])
        return {
            "rows": len(pairs),
            "wer": metrics["wer"],
            "cer": metrics["cer"],
            "exact": metrics["exact_match"],
        }

    config_written = trained.model.config.model if trained.model is not None else None
    decoder = getattr(getattr(config_written, "decoder", None), "type", "?")
    result = {
        "dataset": "builtin:shapes-speech",
        "decoder": decoder,
        "train_seconds": round(seconds, 1),
        "test": scores([True] * len(references)),
        "seen_voices": scores([not h for h in held]),
        "held_out_voice": scores(held),
        "baseline_wer": trained.metrics["test"].get("baseline/wer"),
        "examples": [(r, g) for r, g in zip(references[:5], generated[:5], strict=True)],
    }
    result["met"] = result["test"]["wer"] <= GOAL
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument(
        "--set", action="append", default=[], help="config overrides, e.g. model.decoder.type=lm"
    )
    parser.add_argument("--json", default="benchmarks/results/speech.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.n, parse_overrides(args.set), Path(tmp))
    print(
        "| decoder | test WER (goal <= 0.02) | CER | seen voices WER | held-out voice WER | baseline WER | train s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {result['decoder']} | {result['test']['wer']:.4f} | {result['test']['cer']:.4f} "
        f"| {result['seen_voices']['wer']:.4f} | {result['held_out_voice']['wer']:.4f} "
        f"| {result['baseline_wer']:.4f} | {result['train_seconds']:.0f} |"
    )
    return save(result, args.json, result["met"])


if __name__ == "__main__":
    raise SystemExit(main())
