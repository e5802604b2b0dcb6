"""The quality suite's datasets (benchmarks/quality): what the files hold, what the labels mean, that a
seed gives the same bytes, and that the baselines run end to end. Tiny versions, a few seconds each."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image
from scipy.stats import chi2_contingency

from benchmarks.quality.baselines import run_baselines
from benchmarks.quality.datasets import DATASETS, materialize
from benchmarks.quality.digits import SUM_STREAM, pair_records
from benchmarks.quality.relational import QUESTIONS, match_records, qa_records
from benchmarks.quality.report import END, START, write_markdown
from benchmarks.quality.scenes import COLOURS, RELATIONS, SHAPES, Claim, holds, relation_of
from benchmarks.quality.speech import SAMPLE_RATE, espeak_available
from benchmarks.quality.splits import SPLITS

needs_espeak = pytest.mark.skipif(
    not espeak_available(), reason="espeak-ng is not installed (apt-get install -y espeak-ng)"
)
SMALL = {
    "digits-speech": 60,
    "digits-sum": 40,
    "relational-match": 120,
    "relational-qa": 160,
    "digits-regression": 40,
    "digits-table": 200,
}
CASES = [pytest.param(name, marks=[needs_espeak] if DATASETS[name].speech else []) for name in DATASETS]


Build = Callable[[str], Path]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """Each dataset, small, built on first use into one folder shared by the module."""
    root = tmp_path_factory.mktemp("quality")
    return lambda name: materialize(name, seed=0, n=SMALL[name], root=root)  # reused once built


def test_there_are_six_datasets_with_the_spec_sizes() -> None:
    assert len(DATASETS) >= 6
    assert all(1000 <= spec.n <= 5000 for spec in DATASETS.values())


@pytest.mark.parametrize("name", CASES)
def test_manifests_hold_the_columns_and_every_file_decodes(name: str, built: Build) -> None:
    spec = DATASETS[name]
    folder = built(name)
    tables = {split: pd.read_csv(folder / f"{split}.csv") for split in SPLITS}
    sizes = {split: len(table) for split, table in tables.items()}
    assert sum(sizes.values()) == SMALL[name]
    assert abs(sizes["train"] / SMALL[name] - 0.70) < 0.03 and abs(sizes["test"] / SMALL[name] - 0.15) < 0.03
    for table in tables.values():
        assert list(table.columns) == [*spec.inputs, spec.target]
        assert table[spec.target].notna().all()
        for column, kind in spec.inputs.items():
            for path in table[column] if kind in ("image", "audio") else []:
                assert not Path(path).is_absolute()
                if kind == "image":
                    with Image.open(folder / path) as image:
                        image.load()
                        assert image.mode == "RGB" and image.size in ((32, 32), (48, 48))
                else:
                    wave, rate = sf.read(folder / path)
                    assert rate == SAMPLE_RATE and wave.ndim == 1 and 0 < len(wave) <= 1.5 * rate
                    assert np.abs(wave).max() > 0.1
    if spec.task == "regression":
        values = pd.concat(tables.values())[spec.target]
        assert values.between(0, 99).all() and (values == values.round()).all()


def test_digits_table_has_missing_cells_and_real_labels(built: Build) -> None:
    table = pd.read_csv(built("digits-table") / "train.csv")
    pixels = table.drop(columns="label")
    assert pixels.shape[1] == 64
    assert 0.15 < pixels.isna().to_numpy().mean() < 0.25
    assert set(table["label"]) <= {f"d{d}" for d in range(10)}


def test_relational_match_is_balanced_and_negatives_are_near_misses(built: Build) -> None:
    records = [r for split in match_records(1000, seed=0).values() for r in split]
    assert 0.45 < np.mean([r.label == "yes" for r in records]) < 0.55
    assert Counter(r.change for r in records if r.change).keys() == {"colour", "shape", "relation"}
    for record in records:
        scene = record.scene
        assert relation_of(scene.first, scene.second) == scene.relation  # exactly one relation holds
        assert scene.first.thing != scene.second.thing
        assert holds(scene, record.truth)
        assert holds(scene, record.claim) == (record.label == "yes")
        if record.change is None:
            assert record.claim == record.truth
        else:
            assert differences(record.truth, record.claim) == [record.change]
    # the files say what the records say
    written = pd.read_csv(built("relational-match") / "val.csv")
    small = match_records(SMALL["relational-match"], seed=0)["val"]
    assert written["caption"].tolist() == [r.caption for r in small]
    assert written["label"].tolist() == [r.label for r in small]


def differences(truth: Claim, claim: Claim) -> list[str]:
    """Which of colour / shape / relation differ, once per changed field (subject and object apart)."""
    changed = [f.name for side in ("subject", "object") for f in fields(getattr(truth, side))
               if getattr(getattr(truth, side), f.name) != getattr(getattr(claim, side), f.name)]  # fmt: skip
    return changed + (["relation"] if truth.relation != claim.relation else [])


def test_relational_qa_answers_follow_from_the_scene(built: Build) -> None:
    records = [r for split in qa_records(1200, seed=0).values() for r in split]
    kinds = Counter(r.kind for r in records)
    assert set(kinds) == set(QUESTIONS) and min(kinds.values()) > 0.2 * len(records)
    for record in records:
        things = record.scene.first.thing, record.scene.second.thing
        if record.kind == "colour":
            (asked,) = [t for t in things if t.shape in record.question]
            assert record.answer == asked.colour
        elif record.kind == "shape":
            (asked,) = [t for t in things if t.colour in record.question]
            assert record.answer == asked.shape
        elif record.kind == "relation-word":
            assert record.answer in RELATIONS
        else:
            assert record.answer in ("yes", "no")
    yes = [r.answer == "yes" for r in records if r.kind == "relation-yes-no"]
    assert 0.4 < np.mean(yes) < 0.6
    written = pd.read_csv(built("relational-qa") / "test.csv")
    assert set(written["answer"]) <= {*COLOURS, *SHAPES, *RELATIONS, "yes", "no"}


def test_digits_sum_label_is_independent_of_each_input_alone() -> None:
    """label = (a + b) mod 10: given the image digit a (or the spoken b) every label is about as likely."""
    pairs = [
        p for split in pair_records(600, seed=0, stream=SUM_STREAM, same_digit=False).values() for p in split
    ]
    labels = [(p.image_digit + p.spoken_digit) % 10 for p in pairs]
    for seen in ([p.image_digit for p in pairs], [p.spoken_digit for p in pairs]):
        counts = pd.crosstab(pd.Series(seen), pd.Series(labels)).to_numpy()  # (10 inputs, 10 labels)
        assert counts.shape == (10, 10)
        assert chi2_contingency(counts).pvalue > 0.01
        assert (counts / counts.sum(1, keepdims=True)).max() < 0.35  # no label dominates any input digit


@needs_espeak
def test_digits_sum_files_match_its_records(built: Build) -> None:
    written = pd.read_csv(built("digits-sum") / "train.csv")
    pairs = pair_records(SMALL["digits-sum"], seed=0, stream=SUM_STREAM, same_digit=False)["train"]
    assert written["label"].tolist() == [f"d{(p.image_digit + p.spoken_digit) % 10}" for p in pairs]


@pytest.mark.parametrize(
    "name", [pytest.param("digits-speech", marks=needs_espeak), "relational-qa", "digits-table"]
)
def test_generation_is_byte_for_byte_deterministic(name: str, tmp_path: Path) -> None:
    first = materialize(name, seed=3, n=20, root=tmp_path / "a")
    second = materialize(name, seed=3, n=20, root=tmp_path / "b")
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for relative in files:
        assert digest(first / relative) == digest(second / relative), relative
    other = materialize(name, seed=4, n=20, root=tmp_path / "c")
    assert digest(other / "train.csv") != digest(first / "train.csv")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_materialize_reuses_the_cached_folder(tmp_path: Path) -> None:
    folder = materialize("relational-match", seed=0, n=20, root=tmp_path)
    stamp = (folder / "train.csv").stat().st_mtime_ns
    assert materialize("relational-match", seed=0, n=20, root=tmp_path) == folder
    assert (folder / "train.csv").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no temp folder left behind


@pytest.mark.parametrize("name", [pytest.param(n, marks=[needs_espeak] if DATASETS[n].speech else []) for n in ("digits-speech", "relational-qa", "digits-regression", "digits-table")])  # fmt: skip
def test_baselines_run_end_to_end(name: str, built: Build) -> None:
    spec = DATASETS[name]
    results = run_baselines(built(name), spec, say=lambda *_: None)
    modalities = spec.modalities()
    for model in ("linear", "hgb"):
        assert set(results[model]) == set(modalities) | ({"all"} if len(modalities) > 1 else set())
        for found in results[model].values():
            if spec.task == "classification":
                assert 0.0 <= found["test"]["accuracy"] <= 1.0
            else:
                assert found["test"]["rmse"] >= 0 and found["test"]["r2"] <= 1.0
    assert results["best"]["model"] in ("linear", "hgb")
    if name == "digits-table":  # 140 noisy rows of 64 pixels: far above the 10% of chance
        assert results["best"]["test"]["accuracy"] > 0.5


def test_markdown_replaces_only_its_block(tmp_path: Path) -> None:
    results = {"seed": 0, "overrides": {}, "datasets": {}}
    page = tmp_path / "BENCHMARKS.md"
    page.write_text("# Numbers\n\nkept above\n")
    write_markdown(page, results)
    text = page.read_text()
    assert text.startswith("# Numbers\n\nkept above\n") and text.rstrip().endswith(END)
    page.write_text(text.replace(START, f"before\n{START}\nold table") + "\nkept below\n")
    write_markdown(page, results)
    text = page.read_text()
    assert "old table" not in text and text.count(START) == 1 and text.endswith("kept below\n")
    assert "before\n" in text and "kept above" in text
