"""Property-based fuzzing of manifests (hypothesis): random column kinds, empty cells, unicode, numbers
as strings, non-finite numbers, wrong types, bad and missing paths, truncated and mislabelled media,
CSV and JSONL. Every manifest goes through `mumo data check` and a one-step `mumo train`; every outcome
is exit 0, or exit 2 with one line — never a traceback. 40 manifests in the fast suite, 500 in test-all."""

from __future__ import annotations

import io
import itertools
import json
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mumo.cli import main

NAMES = ["caption", "ünïcödé", "a b", "x", "price", "image", "sound", "0", "label2"]
IMAGES = ["good.png", "good.jpg", "truncated.png", "text.png", "missing.png", "good.wav", "sub", ""]
SOUNDS = ["good.wav", "truncated.wav", "text.wav", "missing.wav", "good.png", ""]
TEXT = st.one_of(st.text(max_size=24), st.just(""), st.integers(-5, 5), st.floats(allow_nan=True))
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-1000, 1000),
    st.sampled_from(["1.5", "-2", "nan", "NaN", "inf", "1e400", "abc", "", " 3 ", "1,5", "0x10"]),
)
CELLS = {
    "text": TEXT,
    "numeric": NUMBERS,
    "image": st.sampled_from(IMAGES),
    "audio": st.sampled_from(SOUNDS),
    "categorical": st.sampled_from(["a", "b", "c", "", "1", "2.0", True]),
}
TARGETS = st.one_of(
    st.sampled_from(["yes", "no", "", "1", "2", "maybe"]), st.floats(-3, 3), st.integers(0, 3)
)


@st.composite
def manifests(draw: st.DrawFn) -> tuple[list[dict[str, object]], str, str]:
    rows = draw(st.integers(1, 12))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    kinds = {name: draw(st.sampled_from(sorted(CELLS))) for name in names}
    table = [
        {**{name: draw(CELLS[kind]) for name, kind in kinds.items()}, "label": draw(TARGETS)}
        for _ in range(rows)
    ]
    return table, draw(st.sampled_from(["csv", "jsonl"])), draw(st.sampled_from(["fail", "skip", "absent"]))


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    Image.new("RGB", (16, 16), (200, 30, 30)).save(folder / "good.png")
    Image.new("RGB", (20, 12), (30, 30, 200)).save(folder / "good.jpg")
    (folder / "truncated.png").write_bytes((folder / "good.png").read_bytes()[:40])
    (folder / "text.png").write_text("not an image")
    sf.write(folder / "good.wav", np.sin(np.arange(3200) / 5.0).astype(np.float32), 16000)
    (folder / "truncated.wav").write_bytes((folder / "good.wav").read_bytes()[:30])
    (folder / "text.wav").write_text("not audio")
    (folder / "sub").mkdir()
    return folder


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def fuzz(media: Path, examples: int) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    counter = itertools.count()

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
    @given(manifests())
    def one(case: tuple[list[dict[str, object]], str, str]) -> None:
        rows, fmt, on_error = case
        number = next(counter)
        path = media / f"m{number}.{fmt}"
        if fmt == "csv":
            pd.DataFrame(rows).to_csv(path, index=False)
        else:
            path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        base = ["--train", str(path), "--target", "label", "--on-error", on_error]
        code, _, err = run("data", "check", *base)
        assert code in (0, 2), err
        assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err
        outcomes[f"check exit {code}"] += 1
        code, _, err = run("train", *base, "--out", str(media / f"run{number}"), "--quiet",
                           "--set", "train.epochs=1", "--set", "model.dim=8", "--set", "train.batch_size=8")  # fmt: skip
        assert code in (0, 2), err
        lines = err.strip().splitlines()
        assert code == 0 or (len(lines) == 1 and lines[0].startswith("mumo: error: ")), err
        outcomes[f"train exit {code}"] += 1

    one()
    print(
        f"manifests fuzzed: {sum(v for k, v in outcomes.items() if k.startswith('check'))}; {dict(outcomes)}"
    )
    return outcomes


def test_fuzzed_manifests_fast(media: Path) -> None:
    outcomes = fuzz(media, 25)
    assert outcomes["check exit 0"] + outcomes["check exit 2"] == 25
    assert outcomes["train exit 0"] >= 8  # the fuzz reaches training, not only the first error


@pytest.mark.slow
def test_fuzzed_manifests_500(media: Path) -> None:
    outcomes = fuzz(media, 500)
    assert outcomes["check exit 0"] + outcomes["check exit 2"] == 500
    assert outcomes["train exit 0"] >= 50
