"""Issue 3 acceptance: an interaction between a seen and a heard attribute (shape XOR pitch), where
neither input alone is above chance, is learned to >= 90% of the accuracy of the same model given the
two attributes directly. Slow (about 10 minutes here): `make test-all`; the full table over every
fusion is `python -m benchmarks.interaction`."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.interaction import run


@pytest.mark.slow
def test_bilinear_fusion_learns_shape_xor_pitch(tmp_path: Path) -> None:
    result = run(n=3000, epochs=25, fusions=["bilinear"], work=tmp_path)
    scores = result["variants"]
    assert scores["only image (image)"] < 0.6 and scores["only sound (audio)"] < 0.6  # chance is 0.5
    assert result["upper_bound_categorical"] > 0.95
    assert result["interaction_ratio"] >= 0.9, result
