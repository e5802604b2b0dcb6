"""`mumo bench --quick` runs end to end and writes the keys BENCHMARKS.md and CI read (no timing asserts:
speed is measured by the benchmark, not by tests). Slow: about two minutes here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli


@pytest.mark.slow
def test_bench_quick_writes_ratios(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    page = tmp_path / "BENCHMARKS.md"
    page.write_text("# Benchmarks\n\n<!-- bench -->\n<!-- /bench -->\n\nmore\n")
    done = run_cli("bench", "--quick", "--json", str(out), "--markdown", str(page), timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    keys = ["train/small", "train/medium", "infer/small", "infer/medium", "data/image_jpeg"]
    keys += ["data/audio_wav16k", "data/audio_wav44k", "embed/minilm"]
    for key in keys:
        assert results[key]["ratio"] == pytest.approx(results[key]["mumo"] / results[key]["reference"]), key
        assert results[key]["ratio"] > 0, key
        assert f"`{key}`" in page.read_text(), key
    assert results["train/medium"]["samples_per_epoch"] > 0
    assert 0 < results["train/medium"]["data_wait_share"] < 1
    assert set(results["infer/medium"]["single_row_ms"]) == {"preprocess", "forward", "postprocess"}
    assert results["embed/minilm"]["min_cosine"] >= 0.9999  # the same embeddings, only the speed differs
    assert "mumo bench" in done.stdout
    assert page.read_text().endswith("<!-- /bench -->\n\nmore\n")
