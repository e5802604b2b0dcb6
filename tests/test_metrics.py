"""Parity of mumo.metrics with scikit-learn, plus hand-checked retrieval numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from mumo.metrics import (
    classification_metrics,
    confusion_matrix,
    multilabel_metrics,
    regression_metrics,
    retrieval_metrics,
    roc_auc,
)

TOL = 1e-9


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sk_classification(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    c = probs.shape[1]
    pred = probs.argmax(axis=1)
    auc = (
        skm.roc_auc_score(y, probs[:, 1])
        if c == 2
        else skm.roc_auc_score(y, probs, average="macro", multi_class="ovr", labels=list(range(c)))
    )
    return {
        "accuracy": skm.accuracy_score(y, pred),
        "f1_macro": skm.f1_score(y, pred, average="macro", zero_division=0),
        "auroc": auc,
        "log_loss": skm.log_loss(y, probs, labels=list(range(c))),
    }


def _assert_close(ours: dict[str, float], ref: dict[str, float]) -> None:
    assert set(ours) == set(ref)
    for k, v in ref.items():
        assert ours[k] == pytest.approx(float(v), abs=TOL, rel=TOL), k
        assert type(ours[k]) is float, k


@pytest.mark.parametrize("n_classes", [2, 3, 5, 10])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_parity(n_classes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    y = rng.integers(0, n_classes, size=n)
    y[:n_classes] = np.arange(n_classes)  # every class present
    probs = _softmax(rng.normal(size=(n, n_classes)) + 1.5 * np.eye(n_classes)[y])
    _assert_close(classification_metrics(y, probs), _sk_classification(y, probs))


@pytest.mark.parametrize("n_classes", [2, 4])
def test_classification_ties_in_scores(n_classes: int) -> None:
    rng = np.random.default_rng(7)
    n = 200
    y = rng.integers(0, n_classes, size=n)
    y[:n_classes] = np.arange(n_classes)
    # coarse probabilities: many exact ties in every column
    raw = rng.integers(1, 4, size=(n, n_classes)).astype(float)
    probs = raw / raw.sum(axis=1, keepdims=True)
    _assert_close(classification_metrics(y, probs), _sk_classification(y, probs))


def test_class_never_predicted() -> None:
    rng = np.random.default_rng(3)
    n, c = 150, 4
    y = rng.integers(0, c, size=n)
    y[:c] = np.arange(c)
    logits = rng.normal(size=(n, c))
    logits[:, 2] -= 8.0  # class 2 is never the argmax (but p stays well above the clip floor)
    probs = _softmax(logits)
    assert 2 not in probs.argmax(axis=1)
    _assert_close(classification_metrics(y, probs), _sk_classification(y, probs))


def test_class_absent_from_truth_and_predictions_is_excluded_from_f1() -> None:
    # 4 columns, class 3 neither true nor predicted: sklearn's default labels skip it
    y = np.array([0, 1, 2, 0, 1, 2, 0])
    probs = _softmax(np.random.default_rng(0).normal(size=(7, 4)) - 20.0 * np.eye(4)[[3] * 7])
    ours = classification_metrics(y, probs)
    pred = probs.argmax(axis=1)
    assert ours["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0), abs=TOL)
    assert ours["log_loss"] == pytest.approx(skm.log_loss(y, probs, labels=list(range(4))), abs=TOL)
    # AUC is macro over the 3 present classes
    expected = np.mean([skm.roc_auc_score(y == k, probs[:, k]) for k in range(3)])
    assert ours["auroc"] == pytest.approx(expected, abs=TOL)


def test_auroc_nan_when_single_class() -> None:
    probs = _softmax(np.random.default_rng(0).normal(size=(5, 3)))
    out = classification_metrics(np.zeros(5, dtype=int), probs)
    assert math.isnan(out["auroc"])
    out2 = classification_metrics(np.ones(5, dtype=int), _softmax(np.zeros((5, 2))))
    assert math.isnan(out2["auroc"])
    json.dumps(out)  # nan is a float and still serialisable (as NaN)


def test_log_loss_clips_zero_probability() -> None:
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    out = classification_metrics(np.array([1, 0]), probs)
    assert out["log_loss"] == pytest.approx((-math.log(1e-15) - math.log(0.5)) / 2)


def test_roc_auc_ties_half_credit() -> None:
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75


def test_confusion_matrix_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 5, 100), rng.integers(0, 5, 100)
    np.testing.assert_array_equal(confusion_matrix(t, p, 5), skm.confusion_matrix(t, p, labels=range(5)))


@pytest.mark.parametrize("n_labels", [1, 3, 8])
@pytest.mark.parametrize("seed", [0, 1])
def test_multilabel_parity(n_labels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 250
    y = (rng.random((n, n_labels)) < 0.4).astype(int)
    y[0], y[1] = 0, 1  # both classes present for every label
    probs = 1 / (1 + np.exp(-(rng.normal(size=(n, n_labels)) + 1.2 * (2 * y - 1))))
    probs[5] = 0.5  # exactly at the threshold counts as positive
    pred = (probs >= 0.5).astype(int)
    ours = multilabel_metrics(y, probs)
    clipped = np.clip(probs, 1e-15, 1 - 1e-15)
    bce = -(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)).mean()
    ref = {
        "accuracy": 1 - skm.hamming_loss(y, pred),
        "subset_accuracy": skm.accuracy_score(y, pred),
        # a single (N, 1) column is "binary" to sklearn, so ask for the positive-class F1 explicitly
        "f1_macro": skm.f1_score(y, pred, average="macro" if n_labels > 1 else "binary", zero_division=0),
        "auroc": skm.roc_auc_score(y, probs, average="macro"),
        "log_loss": bce,
    }
    _assert_close(ours, ref)
    expected_ll = np.mean([skm.log_loss(y[:, j], probs[:, j], labels=[0, 1]) for j in range(n_labels)])
    assert ours["log_loss"] == pytest.approx(expected_ll, abs=TOL)


def test_multilabel_auroc_skips_single_class_labels() -> None:
    y = np.array([[0, 1], [1, 1], [0, 1], [1, 1]])
    probs = np.array([[0.2, 0.9], [0.8, 0.1], [0.3, 0.5], [0.6, 0.7]])
    out = multilabel_metrics(y, probs)
    assert out["auroc"] == 1.0
    assert math.isnan(multilabel_metrics(np.ones((3, 2)), np.full((3, 2), 0.7))["auroc"])


@pytest.mark.parametrize("shape", [(120,), (120, 1), (120, 3)])
def test_regression_parity(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(11)
    y = rng.normal(size=shape) * 3 + 1
    pred = y + rng.normal(size=shape)
    ref = {
        "rmse": skm.root_mean_squared_error(y, pred),
        "mae": skm.mean_absolute_error(y, pred),
        "r2": skm.r2_score(y, pred),
    }
    _assert_close(regression_metrics(y, pred), ref)


def test_regression_constant_target_r2_is_zero() -> None:
    out = regression_metrics(np.full(10, 2.0), np.linspace(0, 1, 10))
    assert out["r2"] == 0.0
    assert regression_metrics(np.full(4, 2.0), np.full(4, 2.0))["r2"] == 0.0


def test_regression_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        regression_metrics(np.zeros(5), np.zeros((5, 2)))


# ---------------------------------------------------------------------- retrieval


def test_retrieval_hand_computed() -> None:
    s = np.array(
        [
            [0.9, 0.1, 0.2, 0.3],  # correct 0.9 is the best           -> rank 1
            [0.8, 0.5, 0.6, 0.1],  # 0.8 and 0.6 beat 0.5               -> rank 3
            [0.4, 0.4, 0.4, 0.1],  # ties with two others (pessimistic) -> rank 3
            [0.2, 0.9, 0.7, 0.3],  # 0.9 and 0.7 beat 0.3               -> rank 3
        ]
    )
    out = retrieval_metrics(s, "image", "text", ks=(1, 2, 5))
    assert out["image_to_text/recall@1"] == 0.25
    assert out["image_to_text/recall@2"] == 0.25
    assert out["image_to_text/recall@5"] == 1.0
    assert out["image_to_text/median_rank"] == 3.0
    # columns: col0 [.9,.8,.4,.2] -> 1; col1 [.1,.5,.4,.9] -> 2; col2 [.2,.6,.4,.7] -> 3;
    # col3 [.3,.1,.1,.3] ties with row 0 -> 2
    assert out["text_to_image/recall@1"] == 0.25
    assert out["text_to_image/recall@2"] == 0.75
    assert out["text_to_image/recall@5"] == 1.0
    assert out["text_to_image/median_rank"] == 2.0
    assert len(out) == 8
    assert all(type(v) is float for v in out.values())


def test_retrieval_identity() -> None:
    out = retrieval_metrics(np.eye(20), "a", "b")
    for d in ("a_to_b", "b_to_a"):
        assert out[f"{d}/recall@1"] == 1.0
        assert out[f"{d}/recall@5"] == 1.0
        assert out[f"{d}/recall@10"] == 1.0
        assert out[f"{d}/median_rank"] == 1.0


def test_retrieval_reversed() -> None:
    n = 20
    out = retrieval_metrics(-np.eye(n), "a", "b")  # correct item is strictly worst everywhere
    for d in ("a_to_b", "b_to_a"):
        assert out[f"{d}/recall@1"] == 0.0
        assert out[f"{d}/recall@10"] == 0.0
        assert out[f"{d}/median_rank"] == float(n)
    # anti-diagonal ordering: row i scores column j by -|i - j| reversed -> correct item ranks last
    s = np.abs(np.subtract.outer(np.arange(n), np.arange(n))).astype(float)
    assert retrieval_metrics(s, "a", "b")["a_to_b/recall@1"] == 0.0


def test_retrieval_constant_similarity_is_pessimistic() -> None:
    out = retrieval_metrics(np.ones((6, 6)), "q", "t", ks=(1, 6))
    assert out["q_to_t/recall@1"] == 0.0
    assert out["q_to_t/recall@6"] == 1.0
    assert out["q_to_t/median_rank"] == 6.0


# ---------------------------------------------------------------------- selection
