"""A single self-contained HTML report for a run: metrics, training curves, the task's own sections
(confusion matrix, residuals, example queries, ...) and the config.

Everything (CSS, PNG plots) is inlined so the file can be mailed, archived or opened offline. Plots are
drawn on standalone ``Figure`` objects with the Agg canvas, never through pyplot, so no global matplotlib
state leaks between calls or into the caller's process. The helpers below are what tasks build their
sections from.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mumo.io import write_text

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = [
    "cell_html",
    "confusion_image",
    "figure",
    "image_html",
    "note",
    "prf_table",
    "table_html",
    "write_report",
]

MAX_CM_CLASSES = 30
_MARKER_LIMIT = 60  # draw point markers on curves with at most this many points
# The loss columns Lightning's CSV logger writes for mumo's logged losses.
LOSS_COLUMNS = ("train/loss_step", "train/loss_epoch", "train/loss", "val/loss")

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
# helpers for sections
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


def table_html(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table: the first column as text, the others as numbers (4 significant digits)."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(c) if i == 0 else _fmt(c)}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def image_html(fig: Figure, alt: str) -> str:
    """The figure as an inline PNG <img>."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    fig.clear()
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


def note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def confusion_image(cm: np.ndarray, names: list[str]) -> str:
    n = len(names)
    row_sums = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, row_sums, out=np.zeros(cm.shape, dtype=float), where=row_sums > 0)
    side = min(max(4.5, 0.45 * n + 2.5), 16.0)
    fig = figure(side + 1.0, side)
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
    return image_html(fig, "confusion matrix")


def prf_table(scores: dict[str, np.ndarray], names: list[str], label: str) -> str:
    rows = [
        [names[k], scores["precision"][k], scores["recall"][k], scores["f1"][k], int(scores["support"][k])]
        for k in range(len(names))
    ]
    return table_html([label, "precision", "recall", "F1", "support"], rows)


def cell_html(value: Any, kind: str, base_dir: Path) -> str:
    """A cell as HTML: an image as a 64-pixel thumbnail, anything else as escaped text."""
    from mumo.cells import CellError
    from mumo.modalities.image import open_image, to_rgb

    if value is None:
        return "<i>absent</i>"
    if kind == "image":
        try:
            path = Path(str(value))
            with open_image(path if path.is_absolute() else base_dir / path) as source:
                source.draft("RGB", (64, 64))
                source.load()
                image = to_rgb(source)
            image.thumbnail((64, 64))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            data = base64.b64encode(buffer.getvalue()).decode()
            return f"<img alt='{_esc(value)}' src='data:image/png;base64,{data}'>"
        except (CellError, OSError):
            return _esc(value)
    return _esc(value)


# --------------------------------------------------------------------------------------------------
# the page's own sections
# --------------------------------------------------------------------------------------------------


def _metrics_section(metrics: dict[str, dict[str, float]]) -> str:
    splits = list(metrics)
    names: list[str] = []
    for split in splits:
        names.extend(k for k in metrics[split] if k not in names)
    if not names:
        return note("No metrics recorded.")
    rows = [[name, *(metrics[s].get(name, "") for s in splits)] for name in names]
    return table_html(["metric", *splits], rows)


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
        return note("No training history.")
    cols = [str(c) for c in history.columns]
    history = history.set_axis(cols, axis=1)
    has_step = "step" in cols and history["step"].notna().any()
    has_epoch = "epoch" in cols and history["epoch"].notna().any()
    loss_cols = [c for c in cols if c in LOSS_COLUMNS]
    val_cols = [c for c in cols if c.startswith("val/") and c not in LOSS_COLUMNS]
    parts: list[str] = []

    loss_x = "step" if has_step else ("epoch" if has_epoch else None)
    drawn = []
    for c in loss_cols:
        x, y = _series(history, c, loss_x, per_epoch=loss_x == "epoch")
        if len(x):
            drawn.append((c, x, y))
    if drawn:
        fig = figure(8, 4)
        ax = fig.add_subplot()
        for c, x, y in drawn:
            _plot_series(ax, x, y, c)
        ax.set_xlabel(loss_x or "logged row")
        ax.set_ylabel("loss")
        ax.set_title("Loss")
        ax.grid(alpha=0.3)
        ax.legend()
        parts.append(image_html(fig, "loss curves: " + ", ".join(c for c, _, _ in drawn)))

    epoch_x = "epoch" if has_epoch else None
    curves = []
    for c in val_cols:
        x, y = _series(history, c, epoch_x, per_epoch=True)
        if len(x):
            curves.append((c, x, y))
    if curves:
        ncols = min(3, len(curves))
        nrows = math.ceil(len(curves) / ncols)
        fig = figure(3.6 * ncols, 2.8 * nrows)
        for i, (c, x, y) in enumerate(curves):
            ax = fig.add_subplot(nrows, ncols, i + 1)
            _plot_series(ax, x, y, c)
            ax.set_title(c, fontsize=10)
            ax.set_xlabel(epoch_x or "logged row")
            ax.grid(alpha=0.3)
        parts.append(image_html(fig, "validation metrics per epoch: " + ", ".join(c for c, _, _ in curves)))

    return "".join(parts) if parts else note("No training history.")


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
    sections: list[tuple[str, str]] | None = None,
    config_yaml: str | None = None,
) -> Path:
    """Render a standalone HTML report and write it atomically to ``path``; returns the path.

    ``history`` is Lightning's CSVLogger ``metrics.csv`` as a DataFrame (sparse rows are fine).
    ``sections`` are (heading, trusted HTML fragment) pairs, from the task and the evaluation.
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
    for heading, fragment in sections or []:
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
    write_text(path, doc)
    return path
