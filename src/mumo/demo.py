"""`mumo demo`: builtin:shapes, one fused text+image+audio+numeric model and the same model per single input.

It is `mumo compare --fusions concat --unimodal` on a generated copy of builtin:shapes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console

from mumo.compare import Variant, compare
from mumo.config import build_config
from mumo.data.builtin import materialize

console = Console(highlight=False, soft_wrap=True)


def demo_config(data_dir: Path, epochs: int) -> dict[str, Any]:
    return {
        "name": "demo",
        "data": {
            "train": str(data_dir / "train.csv"),
            "val": str(data_dir / "val.csv"),
            "test": str(data_dir / "test.csv"),
            "target": "label",
        },
        "train": {"epochs": epochs, "batch_size": 64, "lr": 2e-3},
    }


def run_demo(out: Path, n: int = 3000, epochs: int = 4) -> list[Variant]:
    """Train the fused model and one model per input on the same splits; print test accuracy side by side."""
    started = time.time()
    data_dir = out / "data"
    console.print(f"[bold]mumo demo[/bold]: generating builtin:shapes ({n} rows) in {data_dir}")
    materialize("shapes", n, 0, out_dir=data_dir)
    variants = compare(build_config(demo_config(data_dir, epochs)), out, ["concat"], unimodal=True)
    fused, singles = variants[0], variants[1:]
    best = max(singles, key=lambda v: v.mean)
    console.print(
        f"fused accuracy {fused.mean:.3f} vs best single input ({best.name}) {best.mean:.3f}: "
        f"[bold]{100 * (fused.mean - best.mean):+.1f} points[/bold]  (total {time.time() - started:.0f}s)"
    )
    console.print(f"fused run: {fused.runs[0]}   its report: {Path(fused.runs[0]) / 'report.html'}")
    return variants
