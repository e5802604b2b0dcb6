"""Evaluation metrics implemented with numpy only.

scikit-learn is a test-only dependency, so everything here is re-implemented and checked against it in
``tests/test_metrics.py``. Every public function returns plain Python floats so results can go straight
into JSON (``nan`` is returned as ``float("nan")`` where a metric is undefined).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "classification_metrics",
    "confusion_matrix",
    "multilabel_metrics",
    "per_class_scores",
    "regression_metrics",
    "retrieval_metrics",
    "roc_auc",
]

_EPS = 1e-15


# --------------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------------


def _rankdata(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (like scipy's ``rankdata(method="average")``)."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # start index of each run of equal values
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    avg = (starts + ends + 1) / 2.0  # mean of 1-based positions starts+1 .. ends
    ranks_sorted = np.repeat(avg, ends - starts)
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = ranks_sorted
    return ranks


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Binary ROC AUC via the Mann-Whitney U statistic; ties count one half. nan if one class is absent."""
    y = np.asarray(y_true).ravel().astype(bool)
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _rankdata(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _counts(true_ind: np.ndarray, pred_ind: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column true positives, false positives and false negatives of two 0/1 indicator matrices."""
    t = true_ind.astype(bool)
    p = pred_ind.astype(bool)
    tp = (t & p).sum(axis=0).astype(np.float64)
    fp = (~t & p).sum(axis=0).astype(np.float64)
    fn = (t & ~p).sum(axis=0).astype(np.float64)
    return tp, fp, fn


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Elementwise division that yields 0 where the denominator is 0 (sklearn's zero_division=0)."""
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def per_class_scores(true_ind: np.ndarray, pred_ind: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per column of (N, K) 0/1 indicator matrices.

    Works for multilabel targets directly and for multiclass after one-hot encoding; undefined
    ratios are 0 (zero_division=0).
    """
    true_ind = np.asarray(true_ind)
    pred_ind = np.asarray(pred_ind)
    if true_ind.shape != pred_ind.shape or true_ind.ndim != 2:
        raise ValueError(
            f"expected two (N, K) arrays of equal shape, got {true_ind.shape} and {pred_ind.shape}"
        )
    tp, fp, fn = _counts(true_ind, pred_ind)
    return {
        "precision": _safe_div(tp, tp + fp),
        "recall": _safe_div(tp, tp + fn),
        "f1": _safe_div(2 * tp, 2 * tp + fp + fn),
        "support": (tp + fn).astype(np.int64),
    }


def _one_hot(idx: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((len(idx), n_classes), dtype=bool)
    out[np.arange(len(idx)), idx] = True
    return out


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) count matrix; rows are true classes, columns predicted classes."""
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape} vs {p.shape}")
    if len(t) and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n_classes):
        raise ValueError(f"class indices must lie in [0, {n_classes})")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _check_class_inputs(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must have shape (N, C) with C >= 2, got {p.shape}")
    y = y.ravel()
    if len(y) != p.shape[0]:
        raise ValueError(f"y_true has {len(y)} rows but probs has {p.shape[0]}")
    if len(y) == 0:
        raise ValueError("cannot compute metrics on zero samples")
    if not np.all(np.equal(np.mod(y, 1), 0)):
        raise ValueError("y_true must hold integer class indices")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"y_true class indices must lie in [0, {p.shape[1]})")
    return y, p


# --------------------------------------------------------------------------------------------------
# task metrics
# --------------------------------------------------------------------------------------------------


def classification_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Accuracy, macro F1, ROC AUC and log loss for single-label classification.

    ``y_true`` holds class indices (N,), ``probs`` class probabilities (N, C). Semantics follow
    scikit-learn: F1 is macro-averaged over classes seen in ``y_true`` or in the predictions; AUC is
    binary AUC of ``probs[:, 1]`` for C == 2, otherwise macro one-vs-rest over classes that have both
    positives and negatives in ``y_true`` (nan when no class qualifies); log loss clips to [1e-15, 1].
    """
    y, p = _check_class_inputs(y_true, probs)
    n, c = p.shape
    pred = p.argmax(axis=1)

    accuracy = float(np.mean(pred == y))

    t_ind, p_ind = _one_hot(y, c), _one_hot(pred, c)
    f1 = per_class_scores(t_ind, p_ind)["f1"]
    seen = t_ind.any(axis=0) | p_ind.any(axis=0)
    f1_macro = float(f1[seen].mean())

    if c == 2:
        auroc = roc_auc(y == 1, p[:, 1])
    else:
        aucs = [roc_auc(t_ind[:, k], p[:, k]) for k in range(c) if 0 < t_ind[:, k].sum() < n]
        auroc = float(np.mean(aucs)) if aucs else float("nan")

    p_true = np.clip(p[np.arange(n), y], _EPS, 1.0)
    log_loss = float(-np.mean(np.log(p_true)))

    return {"accuracy": accuracy, "f1_macro": f1_macro, "auroc": auroc, "log_loss": log_loss}


def multilabel_metrics(y_true: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Metrics for independent binary labels: y_true (N, L) in {0, 1}, probs (N, L) sigmoid outputs.

    ``accuracy`` is 1 - hamming loss; ``subset_accuracy`` needs every label of a row right; ``f1_macro``
    averages per-label F1 (zero_division=0); ``auroc`` is macro over labels with both classes present
    (nan if none); ``log_loss`` is the mean binary cross-entropy over all entries, clipped.
    A probability exactly equal to ``threshold`` counts as positive.
    """
    t = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    if t.ndim == 1:
        t = t[:, None]
    if p.ndim == 1:
        p = p[:, None]
    if t.shape != p.shape:
        raise ValueError(f"y_true and probs must share a shape (N, L), got {t.shape} and {p.shape}")
    if t.shape[0] == 0:
        raise ValueError("cannot compute metrics on zero samples")
    t = t.astype(bool)
    pred = p >= threshold

    correct = pred == t
    accuracy = float(correct.mean())
    subset_accuracy = float(correct.all(axis=1).mean())
    f1_macro = float(per_class_scores(t, pred)["f1"].mean())

    aucs = [roc_auc(t[:, j], p[:, j]) for j in range(t.shape[1]) if 0 < t[:, j].sum() < t.shape[0]]
    auroc = float(np.mean(aucs)) if aucs else float("nan")

    pc = np.clip(p, _EPS, 1.0 - _EPS)
    bce = -(t * np.log(pc) + (~t) * np.log1p(-pc))
    log_loss = float(bce.mean())

    return {
        "accuracy": accuracy,
        "subset_accuracy": subset_accuracy,
        "f1_macro": f1_macro,
        "auroc": auroc,
        "log_loss": log_loss,
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R² for (N,), (N, 1) or (N, K) targets; multi-output values are averaged over outputs.

    Each output is scored separately and then averaged (scikit-learn's ``multioutput="uniform_average"``).
    An output with constant targets (SS_tot == 0) gets R² = 0.0, so a degenerate split cannot report a
    perfect or infinite score.
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    t = t.reshape(len(t), -1) if t.ndim else t.reshape(1, 1)
    p = p.reshape(len(p), -1) if p.ndim else p.reshape(1, 1)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred shapes do not match: {t.shape} vs {p.shape}")
    if t.shape[0] == 0:
        raise ValueError("cannot compute metrics on zero samples")
    err = t - p
    rmse = np.sqrt(np.mean(err**2, axis=0))
    mae = np.mean(np.abs(err), axis=0)
    ss_res = np.sum(err**2, axis=0)
    ss_tot = np.sum((t - t.mean(axis=0)) ** 2, axis=0)
    r2 = np.where(ss_tot > 0, 1.0 - _safe_div(ss_res, ss_tot), 0.0)
    return {"rmse": float(rmse.mean()), "mae": float(mae.mean()), "r2": float(r2.mean())}


def _ranks_of_diagonal(similarity: np.ndarray) -> np.ndarray:
    """1-based rank of the correct column (the diagonal) in each row, with pessimistic ties.

    rank = 1 + #(items scoring strictly higher) + #(other items scoring exactly the same), i.e. the correct
    item is placed last among everything it ties with. A constant similarity therefore gives rank N, so a
    collapsed embedding can never look good.
    """
    diag = np.diag(similarity)[:, None]
    ge: np.ndarray = (similarity >= diag).sum(axis=1)  # includes the correct item itself
    return ge.astype(np.float64)


def retrieval_metrics(
    similarity: np.ndarray, query_name: str, target_name: str, ks: tuple[int, ...] = (1, 5, 10)
) -> dict[str, float]:
    """Recall@k and median rank in both directions for a paired (N, N) similarity matrix.

    Row i is query i and its correct target is column i. Keys are
    ``"{query}_to_{target}/recall@{k}"`` and ``"{query}_to_{target}/median_rank"``, plus the same for
    ``"{target}_to_{query}"`` computed on ``similarity.T``. Ties are broken pessimistically (see
    ``_ranks_of_diagonal``); ranks are 1-based and NaN similarities are treated as -inf.
    """
    s = np.asarray(similarity, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1] or s.shape[0] == 0:
        raise ValueError(f"similarity must be a non-empty square (N, N) matrix, got {s.shape}")
    s = np.where(np.isnan(s), -np.inf, s)
    out: dict[str, float] = {}
    for name, mat in ((f"{query_name}_to_{target_name}", s), (f"{target_name}_to_{query_name}", s.T)):
        ranks = _ranks_of_diagonal(mat)
        for k in ks:
            out[f"{name}/recall@{k}"] = float(np.mean(ranks <= k))
        out[f"{name}/median_rank"] = float(np.median(ranks))
    return out
