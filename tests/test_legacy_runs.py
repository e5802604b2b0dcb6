"""Runs written by mumo 0.1.0 (tests/fixtures/legacy, made by make_legacy.py at commit d5175d5, before
tasks had their own options) reload and predict exactly what they predicted then."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mumo
from mumo.config_model import CrossOptions
from mumo.errors import MumoError

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
EXPECTED = json.loads((LEGACY / "expected.json").read_text())


@pytest.mark.parametrize("name", ["classification", "regression", "regression2", "matching"])
def test_old_run_predicts_the_same(name: str) -> None:
    model = mumo.load(LEGACY / name)
    rows = pd.read_csv(LEGACY / "data" / "all.csv").to_dict("records")
    got = model.predict(rows, base_dir=LEGACY / "data")
    expected = EXPECTED[name]
    assert len(got) == len(expected) == 48
    for new, old in zip(got, expected, strict=True):
        assert new.keys() == old.keys()
        assert new["prediction"] == (
            pytest.approx(old["prediction"], abs=1e-6) if name.startswith("regression") else old["prediction"]
        )
        for key in ("probabilities", "match_probability"):
            if key in old:
                assert new[key] == pytest.approx(old[key], abs=1e-6)


def test_old_contrastive_run_embeds_the_same() -> None:
    model = mumo.load(LEGACY / "contrastive")
    table = pd.read_csv(LEGACY / "data" / "all.csv")
    for column in ("caption", "image"):
        vectors = model.embed(table, column, base_dir=LEGACY / "data")
        assert np.abs(vectors - np.array(EXPECTED["contrastive"][column])).max() <= 1e-6


def test_old_task_section_is_trimmed_only_of_keys_it_always_wrote(tmp_path: Path) -> None:
    """An edited key (not the value every 0.1.0 run wrote) is still an error."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(LEGACY / "regression", run)
    text = (run / "config.yaml").read_text()
    assert "temperature: 0.07" in text
    (run / "config.yaml").write_text(text.replace("temperature: 0.07", "temperature: 0.5"))
    with pytest.raises(MumoError, match=r"task.temperature: unknown key; valid keys: type"):
        mumo.load(run)


def test_cross_fusion_of_an_older_format_has_no_query_tokens(tmp_path: Path) -> None:
    """Runs of format 2 wrote cross fusion without `queries`; they had none, whatever the default is now."""
    from mumo.rundir import load_run_config

    run = tmp_path / "run"
    (run / "preprocess").mkdir(parents=True)
    fusion = "{type: cross, layers: 2, heads: 4, dropout: 0.1, max_tokens: 64}"
    (run / "config.yaml").write_text(f"data: {{train: t.csv, target: y}}\nmodel: {{fusion: {fusion}}}\n")
    for written, queries in ((2, 0), (3, CrossOptions().queries)):
        (run / "preprocess" / "schema.json").write_text(json.dumps({"format": written}))
        config = load_run_config(run)
        assert isinstance(config.model.fusion, CrossOptions) and config.model.fusion.queries == queries
