"""The comparison table, built once as cells and shown in the terminal (rich) or as Markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable

from benchmarks.quality.baselines import ALL
from mumo.io import write_marked_block

START, END = "<!-- quality -->", "<!-- /quality -->"
COLUMNS = (
    "dataset",
    "rows train/val/test",
    "LR/ridge per input",
    "LR/ridge all",
    "HGB per input",
    "HGB all",
    "best baseline",
    "mumo default",
    "mumo − best",
    "mumo train s",
)
SHORT = {"image": "img", "audio": "aud", "text": "txt", "numeric": "num"}


def value(scores: dict[str, float] | None) -> str:
    """accuracy as 0.812; regression as rmse (r2)."""
    if not scores:
        return "–"
    if "accuracy" in scores:
        return f"{scores['accuracy']:.3f}"
    return f"{scores['rmse']:.2f} (r² {scores['r2']:.2f})"


def cells(name: str, result: dict[str, Any]) -> list[str]:
    """One dataset as the table's cells, in COLUMNS order."""
    rows = "/".join(str(result["rows"][split]) for split in ("train", "val", "test"))
    metric = "acc" if result["task"] == "classification" else "rmse"
    out = [f"{name} ({metric})", rows]
    found = result.get("baselines")
    for model in ("linear", "hgb"):
        if found is None:
            out += ["–", "–"]
            continue
        alone = [f"{SHORT[k]} {value(v['test'])}" for k, v in found[model].items() if k != ALL]
        together = found[model].get(ALL) or next(iter(found[model].values()))  # one input: it is all
        out += [" · ".join(alone), value(together["test"])]
    if found is None:
        out.append("–")
    else:
        best = found["best"]
        inputs = "all" if best["inputs"] == ALL else SHORT[best["inputs"]]
        out.append(f"{value(best['test'])} ({'LR' if best['model'] == 'linear' else 'HGB'} {inputs})")
    trained = result.get("mumo", {})
    out.append(value(trained.get("test")) if "error" not in trained else "failed")
    delta = result.get("mumo_minus_best")
    out.append(
        ", ".join(f"{v:+.3f}" if k == "accuracy" else f"{v:+.2f}" for k, v in delta.items()) if delta else "–"
    )
    out.append(f"{trained['seconds']:.0f}" if "seconds" in trained else "–")
    return out


WIDE = Console(highlight=False, soft_wrap=True, width=200)  # the table is wider than mumo's console


def show(results: dict[str, Any], out: Console = WIDE) -> None:
    table = RichTable(title=f"quality suite (seed {results['seed']})")
    for column in COLUMNS:
        left = column in ("dataset", "LR/ridge per input", "HGB per input")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    for name, result in results["datasets"].items():
        table.add_row(*cells(name, result))
    out.print(table)
    out.print(NOTE)


NOTE = (
    "acc: test accuracy; rmse: test root mean squared error (r² beside it). Baselines on raw features, "
    "hyperparameters chosen on val and refitted on train+val; best baseline chosen by val score. "
    "mumo − best: accuracy difference (higher is better) or rmse difference (lower is better)."
)


def markdown(results: dict[str, Any]) -> str:
    overrides = " ".join(f"--set {k}={v}" for k, v in results["overrides"].items())
    lines = [
        f"`python -m benchmarks.quality --seed {results['seed']}{' ' + overrides if overrides else ''}`. {NOTE}",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * (len(COLUMNS) - 1),
    ]
    lines += ["| " + " | ".join(cells(name, r)) + " |" for name, r in results["datasets"].items()]
    return "\n".join(lines)


def write_markdown(path: Path, results: dict[str, Any]) -> None:
    """Replace only the block between the markers; add the block at the end when the file has none."""
    write_marked_block(path, START, END, markdown(results))
