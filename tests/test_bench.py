"""`mumo bench --quick` runs end to end and writes the keys BENCHMARKS.md and CI read (no timing asserts:
speed is measured by the benchmark, not by tests). Slow: about a minute here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli


@pytest.mark.slow
def test_bench_quick_writes_ratios(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = run_cli("bench", "--quick", "--json", str(out), timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    for key in ("train/small", "train/medium", "embed/minilm"):
        assert results[key]["ratio"] > 0, key
    assert results["train/medium"]["samples_per_epoch"] > 0
    assert results["embed/minilm"]["min_cosine"] >= 0.9999  # the same embeddings, only the speed differs
    assert "mumo bench" in done.stdout
