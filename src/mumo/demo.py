"""`mumo demo`: builtin:shapes, one fused text+image+audio+numeric model and the same model per single modality."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mumo.config import build_config
from mumo.data.builtin import materialize

console = Console(highlight=False, soft_wrap=True)
INPUTS = {"image": "image", "sound": "audio", "caption": "text", "weight": "numeric"}


def demo_config(data_dir: Path, epochs: int, keep: list[str]) -> dict[str, Any]:
    return {
        "name": "demo",
        "data": {
            "train": str(data_dir / "train.csv"),
            "val": str(data_dir / "val.csv"),
            "test": str(data_dir / "test.csv"),
            "target": "label",
            "ignore": [c for c in INPUTS if c not in keep],
        },
        "train": {"epochs": epochs, "batch_size": 64, "lr": 2e-3},
    }


def run_demo(out: Path, n: int = 3000, epochs: int = 4) -> dict[str, dict[str, float]]:
    """Train the fused model and one model per modality; print test metrics side by side."""
    from mumo.runner import train

    started = time.time()
    data_dir = out / "data"
    console.print(f"[bold]mumo demo[/bold]: generating builtin:shapes ({n} rows) in {data_dir}")
    materialize("shapes", n, 0, out_dir=data_dir)
    variants: dict[str, list[str]] = {"fused (all four)": list(INPUTS)}
    variants.update({f"{column} only ({kind})": [column] for column, kind in INPUTS.items()})
    results: dict[str, dict[str, float]] = {}
    for i, (label, keep) in enumerate(variants.items(), 1):
        run_dir = out / ("fused" if len(keep) > 1 else f"only-{keep[0]}")
        console.print(f"[{i}/{len(variants)}] training {label} → {run_dir}")
        t0 = time.time()
        config = build_config(demo_config(data_dir, epochs, keep))
        run = train(config, out=run_dir, overwrite=True, quiet=True)
        results[label] = {**run.metrics["test"], "seconds": time.time() - t0}
    _print(results)
    fused = results["fused (all four)"]["accuracy"]
    best_single = max(v["accuracy"] for k, v in results.items() if not k.startswith("fused"))
    console.print(
        f"fused accuracy {fused:.3f} vs best single modality {best_single:.3f}: "
        f"[bold]{100 * (fused - best_single):+.1f} points[/bold]  (total {time.time() - started:.0f}s)"
    )
    console.print(f"runs: {out}   fused run: {out / 'fused'}   report: {out / 'fused' / 'report.html'}")
    return results


def _print(results: dict[str, dict[str, float]]) -> None:
    table = Table(title="builtin:shapes, test split (label = shape seen × pitch heard)")
    for column in ("model", "accuracy", "f1_macro", "auroc", "log_loss", "train s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for label, m in results.items():
        table.add_row(
            label,
            *(f"{m[k]:.3f}" for k in ("accuracy", "f1_macro", "auroc", "log_loss")),
            f"{m['seconds']:.0f}",
        )
    console.print(table)
