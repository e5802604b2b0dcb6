"""Defaults hold up on data mumo did not make: default mumo beats logistic regression on raw features."""

from __future__ import annotations

import pytest

from benchmarks.baselines import run


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["digits-numeric-noisy", "digits-image-noisy"])
def test_default_model_beats_logistic_regression(dataset: str) -> None:
    result = run(dataset)
    print(result)
    assert result["rows"] >= 1500
    assert result["mumo"] > result["baseline"], result
