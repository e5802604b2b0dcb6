"""What the quality benchmark scripts share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mumo.io import write_json


def save(result: Any, json_path: str, met: bool) -> int:
    """Write the result as JSON (atomically: a temp file, then rename), say where, and give the exit
    code: 1 when a goal is missed."""
    write_json(Path(json_path), result)
    print(f"wrote {json_path}")
    return 0 if met else 1
