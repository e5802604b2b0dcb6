"""The HTML report is standalone, embeds its plots and degrades gracefully without history; the tasks'
sections (confusion matrix, residuals, per-label scores) render into it."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mumo.report import write_report
from mumo.tasks.classification import classification_section
from mumo.tasks.multilabel import multilabel_section
from mumo.tasks.regression import residuals_section

IMG = "data:image/png;base64,"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _lightning_history(
    epochs: int = 3, steps_per_epoch: int = 4, val_metric: str = "val/accuracy"
) -> pd.DataFrame:
    """Mimic CSVLogger's sparse metrics.csv: train rows per step, one val row per epoch, lr rows."""
    rows: list[dict[str, float]] = []
    step = 0
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            rows.append({"epoch": epoch, "step": step, "train/loss": 2.0 / (step + 1), "lr-AdamW": 1e-3})
            step += 1
        rows.append(
            {"epoch": epoch, "step": step - 1, "val/loss": 1.5 / (epoch + 1), val_metric: 0.5 + 0.1 * epoch}
        )
    cols = ["epoch", "lr-AdamW", "step", "train/loss", "val/loss", val_metric]
    return pd.DataFrame(rows).reindex(columns=cols)


def _assert_standalone(text: str) -> None:
    assert "<script src=" not in text
    assert "<link" not in text
    assert "http://" not in text and "https://" not in text


def _images(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)]


def test_classification_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    names = ["cat", "dog", "<bird>"]
    y = rng.integers(0, 3, size=60)
    logits = rng.normal(size=(60, 3)) + 2 * np.eye(3)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    metrics = {
        "val": {"accuracy": 0.812345, "f1_macro": 0.8, "auroc": float("nan")},
        "test": {"accuracy": 0.79},
    }
    out = write_report(
        tmp_path / "sub" / "report.html",
        title="Run <1>",
        task="classification",
        metrics=metrics,
        history=_lightning_history(),
        sections=[
            ("Classification details", classification_section(y, probs, names)),
            ("Modality contribution", "<p id='extra'>text 42%</p>"),
        ],
        config_yaml="model:\n  name: a<b>&c\n",
    )
    assert out == tmp_path / "sub" / "report.html"
    text = out.read_text(encoding="utf-8")
    # loss curves + val metric curves + confusion matrix
    assert text.count(IMG) == 3
    assert all(img.startswith(PNG_MAGIC) for img in _images(text))
    for key in ("accuracy", "f1_macro", "auroc", "val", "test", "cat", "dog", "&lt;bird&gt;", "precision"):
        assert key in text
    assert "<bird>" not in text
    assert "0.8123" in text and "0.812345" not in text  # 4 significant digits
    assert "Run &lt;1&gt;" in text
    assert "<p id='extra'>text 42%</p>" in text  # extra sections are verbatim
    assert "a&lt;b&gt;&amp;c" in text
    assert "<pre>" in text
    _assert_standalone(text)
    assert list(tmp_path.joinpath("sub").iterdir()) == [out]  # no temp file left behind


def test_classification_many_classes_only_notes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    c = 40
    y = rng.integers(0, c, size=200)
    probs = rng.dirichlet(np.ones(c), size=200)
    out = write_report(
        tmp_path / "r.html",
        title="t",
        task="classification",
        metrics={"val": {"accuracy": 0.1}},
        history=None,
        sections=[("Classification details", classification_section(y, probs, [str(i) for i in range(c)]))],
    )
    text = out.read_text()
    assert IMG not in text
    assert "confusion matrix omitted" in text
    assert "No training history" in text
    assert "<td>39</td>" in text  # the per-class table still lists every class


def test_regression_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(size=80)
    pred = y + 0.3 * rng.normal(size=80)
    hist = _lightning_history(val_metric="val/rmse")
    out = write_report(
        tmp_path / "reg.html",
        title="reg",
        task="regression",
        metrics={"val": {"rmse": 0.3, "mae": 0.25, "r2": 0.9}},
        history=hist,
        sections=[("Regression details", residuals_section(y, pred, ["y"]))],
    )
    text = out.read_text()
    assert text.count(IMG) == 3  # loss, val/rmse, residuals
    for key in ("rmse", "mae", "r2", "val/rmse"):
        assert key in text
    _assert_standalone(text)


def test_multilabel_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    y = (rng.random((50, 3)) < 0.5).astype(int)
    probs = np.clip(y * 0.7 + rng.random((50, 3)) * 0.3, 0, 1)
    out = write_report(
        tmp_path / "ml.html",
        title="ml",
        task="multilabel",
        metrics={"val": {"f1_macro": 0.7}},
        history=_lightning_history(val_metric="val/f1_macro"),
        sections=[("Multilabel details", multilabel_section(y, probs, ["red", "green", "blue"]))],
    )
    text = out.read_text()
    assert text.count(IMG) == 2  # loss + val/f1_macro
    for key in ("f1_macro", "red", "green", "blue", "Per-label"):
        assert key in text
    _assert_standalone(text)


@pytest.mark.parametrize(
    "history",
    [
        None,
        pd.DataFrame(),
        pd.DataFrame({"epoch": [0, 1], "step": [3, 7], "val/loss": [np.nan, np.nan]}),
        pd.DataFrame({"epoch": [0.0, 0.0, 1.0], "step": [0.0, 1.0, 2.0], "lr-AdamW": [1e-3, 1e-3, 1e-4]}),
    ],
)
def test_missing_history_still_writes(tmp_path: Path, history: pd.DataFrame | None) -> None:
    out = write_report(tmp_path / "r.html", title="t", task="regression", metrics={}, history=history)
    text = out.read_text()
    assert "No training history" in text
    assert IMG not in text
    _assert_standalone(text)


def test_overwrite_is_atomic_replacement(tmp_path: Path) -> None:
    target = tmp_path / "r.html"
    target.write_text("old")
    write_report(str(target), title="new one", task="other", metrics={"val": {"x": 1.0}}, history=None)
    assert "new one" in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_history_without_epoch_column(tmp_path: Path) -> None:
    hist = pd.DataFrame(
        {"train/loss": [1.0, 0.8, np.nan, 0.5], "val/accuracy": [np.nan, np.nan, 0.6, np.nan]}
    )
    out = write_report(tmp_path / "r.html", title="t", task="classification", metrics={}, history=hist)
    assert out.read_text().count(IMG) == 2


def test_sections_of_empty_splits_are_notes() -> None:
    assert "No rows to show" in classification_section(np.zeros(0), np.zeros((0, 2)), ["a", "b"])
    assert "No rows to show" in residuals_section(np.zeros(0), np.zeros(0), ["y"])
    assert "No rows to show" in multilabel_section(np.zeros((0, 2)), np.zeros((0, 2)), ["a", "b"])
