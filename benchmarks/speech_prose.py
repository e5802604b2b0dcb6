"""Speech → text on real prose: sentences from the text that ships with Python (the language reference's
help topics and the standard library's docstrings), spoken by espeak-ng in many voices with light noise.
Test sentences are never heard or read in training, and many of their words never occur in it.

One acoustic model is trained (mumo's default for audio → text: conv1d frames, a bidirectional GRU and
character CTC — a plain CNN + BiGRU character-CTC model) and decoded three ways:
- plain: greedy CTC decoding, what that model gives on its own (the baseline);
- mumo default: prefix beam search with a character 6-gram language model of the train transcripts;
- mumo + text: the same, the language model also learning from the other sentences of that text
  (`model.decoder.lm_text`: text is easier to come by than transcribed speech; no test sentence in it).
Goal: mumo's WER well below the plain model's (at least 15% lower, relative).

Usage: python -m benchmarks.speech_prose [--train-rows 1500] [--test-rows 300] [--set key=value ...] [--json F]
"""

from __future__ import annotations

import argparse
import ast
import random
import re
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import mumo
from benchmarks.common import save
from mumo.config import parse_overrides
from mumo.data.speech import Speaker, draw_voice, write_wav
from mumo.metrics_text import text_metrics
from mumo.ngram import UnitNgram

GOAL_RELATIVE = 0.85  # mumo's WER at most this share of the plain model's


def sentences() -> list[str]:
    """Every prose sentence of 5-14 words in pydoc's topics and the standard library's docstrings (no
    code, digits or symbols), lower case, words only, sorted and without repeats."""
    import pydoc_data.topics

    texts = list(pydoc_data.topics.topics.values())
    for file in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                texts.append(ast.get_docstring(node) or "")
    found = set()
    for text in texts:
        for sentence in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", text)):
            if re.search(r"[`*_=<>{}\[\]|\\/#@$%^&~\d\"]", sentence) or re.search(
                r"[a-z][.(][a-z]", sentence.lower()
            ):
                continue  # code, paths, numbers
            words = re.findall(r"[a-z]+(?:'[a-z]+)?", sentence.lower())
            if 5 <= len(words) <= 14:
                found.add(" ".join(words))
    return sorted(found)


def speak(texts: list[str], folder: Path, seed: int) -> pd.DataFrame:
    """One clip per sentence in a voice, speed and pitch drawn per row, with white noise at 20-35 dB SNR."""
    rng = np.random.default_rng(seed)
    speaker = Speaker()
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, text in enumerate(texts):
        wave = speaker.say(text, draw_voice(rng, speeds=(140, 160, 180, 200)))
        wave = np.concatenate([np.zeros(1600, np.float32), wave, np.zeros(1600, np.float32)])
        power = float(np.mean(wave**2)) / 10 ** (rng.uniform(20, 35) / 10)
        wave = wave + rng.normal(0, np.sqrt(power), len(wave)).astype(np.float32)
        write_wav(str(folder / f"{i:05d}.wav"), wave)
        rows.append({"speech": f"{folder.name}/{i:05d}.wav", "transcript": text})
    return pd.DataFrame(rows)


def run(
    train_rows: int, test_rows: int, overrides: dict[str, Any], work: Path, seed: int = 0
) -> dict[str, Any]:
    pool = sentences()
    random.Random(seed).shuffle(pool)
    test, train, other = (
        pool[:test_rows],
        pool[test_rows : test_rows + train_rows],
        pool[test_rows + train_rows :],
    )
    seen = {w for s in train for w in s.split()}
    test_words = [w for s in test for w in s.split()]
    (work / "lm.txt").write_text("\n".join(train + other) + "\n", encoding="utf-8")
    speak(train, work / "train", seed).to_csv(work / "train.csv", index=False)
    speak(test, work / "test", seed + 1).to_csv(work / "test.csv", index=False)
    config = {
        "name": "prose",
        "data": {"train": str(work / "train.csv"), "test": str(work / "test.csv"), "target": "transcript"},
        "model": {"decoder": {"type": "ctc", "lm_text": str(work / "lm.txt")}},
        "train": {"time_limit": "40m"},
    }
    started = time.time()
    trained = mumo.train(config, overrides=overrides, out=work / "run", quiet=True)
    seconds = time.time() - started
    model = mumo.load(trained.path)
    decoder = model.network.decoder
    with_text = decoder.ngram
    train_only = UnitNgram(with_text.order, model.target.out_dim)
    encoded = model.target.tokenizer.encode_batch(train, add_special_tokens=False)
    train_only.fit([e.ids[: model.target.max_length] for e in encoded])
    beam = decoder.options.beam

    def decode(name: str, width: int, ngram: Any) -> dict[str, Any]:
        decoder.options = decoder.options.model_copy(update={"beam": width})
        decoder.ngram = ngram
        started = time.time()
        generated = [row["generated"] for row in model.predict(str(work / "test.csv"))]
        metrics = text_metrics(test, generated)
        return {
            "decoding": name,
            "wer": metrics["wer"],
            "cer": metrics["cer"],
            "exact": metrics["exact_match"],
            "seconds": round(time.time() - started, 1),
            "examples": list(zip(test[:4], generated[:4], strict=True)),
        }

    rows = [
        decode("plain (greedy CTC)", 1, None),
        decode(
            f"mumo default (beam {beam} + char {train_only.order}-gram of train transcripts)",
            beam,
            train_only,
        ),
        decode(
            f"mumo + text (beam {beam} + {with_text.order}-gram of train and {len(other)} other sentences)",
            beam,
            with_text,
        ),
    ]
    plain = rows[0]["wer"]
    result = {
        "data": f"{len(pool)} sentences from pydoc topics and stdlib docstrings",
        "train_rows": len(train),
        "test_rows": len(test),
        "test_words_unseen_in_train": sum(w not in seen for w in test_words) / len(test_words),
        "train_seconds": round(seconds, 1),
        "decodings": rows,
        "relative_wer_default": rows[1]["wer"] / plain if plain else None,
        "relative_wer_text": rows[2]["wer"] / plain if plain else None,
    }
    result["met"] = bool(plain) and rows[1]["wer"] <= GOAL_RELATIVE * plain
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=1500)
    parser.add_argument("--test-rows", type=int, default=300)
    parser.add_argument(
        "--set", action="append", default=[], help="config overrides, e.g. train.time_limit=20m"
    )
    parser.add_argument("--keep", help="a folder to keep the clips and the run in (default: a temp folder)")
    parser.add_argument("--json", default="benchmarks/results/speech_prose.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = run(args.train_rows, args.test_rows, parse_overrides(args.set), work)
    print(
        f"{result['train_rows']} train / {result['test_rows']} test sentences; "
        f"{result['test_words_unseen_in_train']:.1%} of test words never in train; train {result['train_seconds']:.0f} s"
    )
    print("| decoding | test WER | CER | exact | predict s |")
    print("|---|---:|---:|---:|---:|")
    for row in result["decodings"]:
        print(
            f"| {row['decoding']} | {row['wer']:.4f} | {row['cer']:.4f} | {row['exact']:.3f} | {row['seconds']:.0f} |"
        )
    return save(result, args.json, result["met"])


if __name__ == "__main__":
    raise SystemExit(main())
