"""A single self-contained HTML report for a training/evaluation run.

Everything (CSS, PNG plots) is inlined so the file can be mailed, archived or opened offline. Plots are
drawn on standalone ``Figure`` objects with the Agg canvas, never through pyplot, so no global matplotlib
state leaks between calls or into the caller's process.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mumo.metrics import confusion_matrix, per_class_scores

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ["write_report"]

MAX_CM_CLASSES = 30
_MARKER_LIMIT = 60  # draw point markers on curves with at most this many points

_CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #ddd;padding-bottom:.3em}h2{margin-top:1.8em;border-bottom:1px solid #eee}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.3em .7em;text-align:right}
th:first-child,td:first-child{text-align:left}thead th{background:#f4f4f6}
tbody tr:nth-child(even){background:#fafafa}
img{max-width:100%;height:auto;display:block;margin:.6em 0}
pre{background:#f6f8fa;border:1px solid #e1e4e8;padding:1em;overflow:auto;font-size:.88em}
.meta{color:#666;font-size:.9em}.note{color:#666;font-style:italic}
"""


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _fmt(value: Any) -> str:
    """Numbers to 4 significant digits; anything else as escaped text."""
    if isinstance(value, bool) or value is None:
        return _esc(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    try:
        v = float(value)
    except (TypeError, ValueError):
        return _esc(value)
    if math.isnan(v):
        return "nan"
    return f"{v:.4g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(c) if i == 0 else _fmt(c)}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _img(fig: Figure, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    fig.clear()
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def _names(class_names: list[str] | None, n: int) -> list[str]:
    """Use the given names where available and fall back to the index, so a length mismatch never fails."""
    names = list(class_names or [])
    return [str(names[i]) if i < len(names) else str(i) for i in range(n)]


# --------------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------------


def _metrics_section(metrics: dict[str, dict[str, float]]) -> str:
    splits = list(metrics)
    names: list[str] = []
    for split in splits:
        names.extend(k for k in metrics[split] if k not in names)
    if not names:
        return _note("No metrics recorded.")
    rows = [[name, *(metrics[s].get(name, "") for s in splits)] for name in names]
    return _table(["metric", *splits], rows)


def _plot_series(ax: Axes, x: np.ndarray, y: np.ndarray, label: str) -> None:
    marker = "o" if len(x) <= _MARKER_LIMIT else None
    ax.plot(x, y, marker=marker, markersize=3, linewidth=1.4, label=label)


def _series(df: pd.DataFrame, col: str, xcol: str | None, per_epoch: bool) -> tuple[np.ndarray, np.ndarray]:
    """Non-NaN values of ``col`` against ``xcol`` (or the row order), keeping the last value per epoch."""
    import pandas as pd

    y = pd.to_numeric(df[col], errors="coerce")
    if xcol is None:
        sub = pd.DataFrame({"x": np.arange(1, len(df) + 1, dtype=float), "y": y.to_numpy()})
    else:
        sub = pd.DataFrame({"x": pd.to_numeric(df[xcol], errors="coerce").to_numpy(), "y": y.to_numpy()})
    sub = sub.dropna()
    if per_epoch and xcol is not None:
        sub = sub.groupby("x", sort=True, as_index=False).last()
    else:
        sub = sub.sort_values("x", kind="stable")
    return sub["x"].to_numpy(dtype=float), sub["y"].to_numpy(dtype=float)


def _history_section(history: pd.DataFrame | None) -> str:
    if history is None or len(history) == 0:
        return _note("No training history.")
    cols = [str(c) for c in history.columns]
    history = history.set_axis(cols, axis=1)
    has_step = "step" in cols and history["step"].notna().any()
    has_epoch = "epoch" in cols and history["epoch"].notna().any()
    loss_cols = [c for c in cols if c.startswith(("train/", "val/")) and "loss" in c]
    val_cols = [c for c in cols if c.startswith("val/") and "loss" not in c]
    parts: list[str] = []

    loss_x = "step" if has_step else ("epoch" if has_epoch else None)
    drawn = []
    for c in loss_cols:
        x, y = _series(history, c, loss_x, per_epoch=loss_x == "epoch")
        if len(x):
            drawn.append((c, x, y))
    if drawn:
        fig = _figure(8, 4)
        ax = fig.add_subplot()
        for c, x, y in drawn:
            _plot_series(ax, x, y, c)
        ax.set_xlabel(loss_x or "logged row")
        ax.set_ylabel("loss")
        ax.set_title("Loss")
        ax.grid(alpha=0.3)
        ax.legend()
        parts.append(_img(fig, "loss curves: " + ", ".join(c for c, _, _ in drawn)))

    epoch_x = "epoch" if has_epoch else None
    curves = []
    for c in val_cols:
        x, y = _series(history, c, epoch_x, per_epoch=True)
        if len(x):
            curves.append((c, x, y))
    if curves:
        ncols = min(3, len(curves))
        nrows = math.ceil(len(curves) / ncols)
        fig = _figure(3.6 * ncols, 2.8 * nrows)
        for i, (c, x, y) in enumerate(curves):
            ax = fig.add_subplot(nrows, ncols, i + 1)
            _plot_series(ax, x, y, c)
            ax.set_title(c, fontsize=10)
            ax.set_xlabel(epoch_x or "logged row")
            ax.grid(alpha=0.3)
        parts.append(_img(fig, "validation metrics per epoch: " + ", ".join(c for c, _, _ in curves)))

    return "".join(parts) if parts else _note("No training history.")


def _confusion_image(cm: np.ndarray, names: list[str]) -> str:
    n = len(names)
    row_sums = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, row_sums, out=np.zeros(cm.shape, dtype=float), where=row_sums > 0)
    side = min(max(4.5, 0.45 * n + 2.5), 16.0)
    fig = _figure(side + 1.0, side)
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ticks = np.arange(n)
    ax.set_xticks(ticks, labels=names, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center")
    ax.set_yticks(ticks, labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (counts; colour = row-normalised)")
    fontsize = 10 if n <= 10 else (8 if n <= 20 else 6)
    for i in range(n):
        for j in range(n):
            colour = "white" if norm[i, j] > 0.5 else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color=colour, fontsize=fontsize)
    return _img(fig, "confusion matrix")


def _prf_table(scores: dict[str, np.ndarray], names: list[str], label: str) -> str:
    rows = [
        [names[k], scores["precision"][k], scores["recall"][k], scores["f1"][k], int(scores["support"][k])]
        for k in range(len(names))
    ]
    return _table([label, "precision", "recall", "F1", "support"], rows)


def _classification_section(
    y_true: np.ndarray | None,
    probs: np.ndarray | None,
    y_pred: np.ndarray | None,
    class_names: list[str] | None,
) -> str:
    if y_true is None or (probs is None and y_pred is None):
        return _note("No predictions provided.")
    t = np.asarray(y_true).astype(np.int64).ravel()
    if probs is not None:
        p = np.asarray(probs)
        pred = p.argmax(axis=1)
        n = p.shape[1]
    else:
        pred = np.asarray(y_pred).astype(np.int64).ravel()
        n = max(len(class_names or []), int(max(t.max(initial=-1), pred.max(initial=-1))) + 1)
    names = _names(class_names, n)
    cm = confusion_matrix(t, pred, n)
    parts = ["<h3>Confusion matrix</h3>"]
    if n > MAX_CM_CLASSES:
        parts.append(_note(f"{n} classes: confusion matrix omitted (shown for at most {MAX_CM_CLASSES})."))
    else:
        parts.append(_confusion_image(cm, names))
    onehot = np.eye(n, dtype=bool)
    parts.append("<h3>Per-class scores</h3>")
    parts.append(_prf_table(per_class_scores(onehot[t], onehot[pred]), names, "class"))
    return "".join(parts)


def _regression_section(y_true: np.ndarray | None, y_pred: np.ndarray | None) -> str:
    if y_true is None or y_pred is None:
        return _note("No predictions provided.")
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    t = t.reshape(len(t), -1)
    p = p.reshape(len(p), -1)
    if t.shape != p.shape:
        return _note(f"Prediction shape {p.shape} does not match target shape {t.shape}.")
    k = t.shape[1]
    shown = min(k, 6)
    fig = _figure(10, 4 * shown)
    for o in range(shown):
        tt, pp = t[:, o], p[:, o]
        suffix = f" (output {o})" if k > 1 else ""
        ax1 = fig.add_subplot(shown, 2, 2 * o + 1)
        ax1.scatter(tt, pp, s=10, alpha=0.6, edgecolors="none")
        finite = np.concatenate([tt, pp])
        finite = finite[np.isfinite(finite)]
        if len(finite):
            lo, hi = float(finite.min()), float(finite.max())
            ax1.plot([lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=1)
        ax1.set_xlabel("true")
        ax1.set_ylabel("predicted")
        ax1.set_title("Predicted vs true" + suffix)
        ax1.grid(alpha=0.3)
        ax2 = fig.add_subplot(shown, 2, 2 * o + 2)
        ax2.scatter(pp, tt - pp, s=10, alpha=0.6, edgecolors="none")
        ax2.axhline(0.0, color="grey", linestyle="--", linewidth=1)
        ax2.set_xlabel("predicted")
        ax2.set_ylabel("residual (true - predicted)")
        ax2.set_title("Residuals" + suffix)
        ax2.grid(alpha=0.3)
    out = _img(fig, "residual plots")
    if k > shown:
        out += _note(f"Showing the first {shown} of {k} outputs.")
    return out


def _multilabel_section(
    y_true: np.ndarray | None,
    probs: np.ndarray | None,
    y_pred: np.ndarray | None,
    class_names: list[str] | None,
) -> str:
    if y_true is None or (probs is None and y_pred is None):
        return _note("No predictions provided.")
    t = np.asarray(y_true).astype(bool)
    pred = np.asarray(probs) >= 0.5 if probs is not None else np.asarray(y_pred).astype(bool)
    t = t.reshape(len(t), -1)
    pred = pred.reshape(len(pred), -1)
    if t.shape != pred.shape:
        return _note(f"Prediction shape {pred.shape} does not match target shape {t.shape}.")
    names = _names(class_names, t.shape[1])
    return "<h3>Per-label scores (threshold 0.5)</h3>" + _prf_table(per_class_scores(t, pred), names, "label")


# --------------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------------


def write_report(
    path: str | Path,
    *,
    title: str,
    task: str,
    metrics: dict[str, dict[str, float]],
    history: pd.DataFrame | None,
    class_names: list[str] | None = None,
    y_true: np.ndarray | None = None,
    probs: np.ndarray | None = None,
    y_pred: np.ndarray | None = None,
    extra_sections: list[tuple[str, str]] | None = None,
    config_yaml: str | None = None,
) -> Path:
    """Render a standalone HTML report and write it atomically to ``path``; returns the path.

    ``history`` is Lightning's CSVLogger ``metrics.csv`` as a DataFrame (sparse rows are fine).
    For classification pass ``y_true`` (indices) and ``probs`` (or ``y_pred`` indices); for regression
    ``y_true`` and ``y_pred``; for multilabel ``y_true`` (N, L) and ``probs`` (or 0/1 ``y_pred``).
    ``extra_sections`` are (heading, trusted HTML fragment) pairs inserted verbatim.
    """
    path = Path(path)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        f"<h1>{_esc(title)}</h1>",
        f'<p class="meta">task: {_esc(task)} &middot; generated {_esc(generated)}</p>',
        "<h2>Metrics</h2>",
        _metrics_section(metrics),
        "<h2>Training curves</h2>",
        _history_section(history),
    ]
    if task == "classification":
        body += [
            "<h2>Classification details</h2>",
            _classification_section(y_true, probs, y_pred, class_names),
        ]
    elif task == "regression":
        body += ["<h2>Regression details</h2>", _regression_section(y_true, y_pred)]
    elif task == "multilabel":
        body += ["<h2>Multilabel details</h2>", _multilabel_section(y_true, probs, y_pred, class_names)]
    for heading, fragment in extra_sections or []:
        body += [f"<h2>{_esc(heading)}</h2>", fragment]
    if config_yaml is not None:
        body += ["<h2>Configuration</h2>", f"<pre>{_esc(config_yaml)}</pre>"]

    doc = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(doc)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
