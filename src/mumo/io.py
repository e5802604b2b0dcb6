"""Writing files so that a reader never sees half of one: a temp file beside the target, fsync, then
os.replace. And JSON-safe values. The one copy of each; everything that writes a file goes through here."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temp path in the target's folder to write to (with any writer: torch.save, to_parquet, ...);
    on success it is fsynced and renamed onto `path`, on failure removed. The suffix is kept, since
    some writers choose the format from it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_marked_block(path: str | Path, start: str, end: str, body: str) -> None:
    """Replace only what stands between the start and end markers of a text file (BENCHMARKS.md); a file
    without them gets the marked block at its end, a missing file is created with it."""
    path = Path(path)
    block = f"{start}\n{body}\n{end}"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = f"{text.rstrip()}\n\n{block}\n" if text.strip() else f"{block}\n"
    write_text(path, text)


def write_json(path: str | Path, payload: Any) -> None:
    """JSON with sorted keys; NaN and infinities are written as null (JSON has no such numbers)."""
    write_text(path, json.dumps(json_safe(payload), indent=2, sort_keys=True))


def json_safe(value: Any) -> Any:
    """Plain JSON values: non-finite floats → None, numpy scalars and arrays → Python, paths → str."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays, tensors
        return json_safe(value.tolist())
    return value


__all__ = ["atomic_path", "json_safe", "write_bytes", "write_json", "write_text"]
