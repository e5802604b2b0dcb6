"""Cells of a table, as data readers and processors both see them: empty means absent; a bad cell is a
CellError with a short reason (the caller adds file, row and column)."""

from __future__ import annotations

import math
from typing import Any


class CellError(Exception):
    """A cell that names a missing or undecodable file, or holds a value of the wrong type."""


def is_empty(value: Any) -> bool:
    """Empty cells mean 'absent': None, NaN, or blank text."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def as_number(value: Any) -> float | None:
    """A cell as a finite float, or None if it is not a number."""
    if type(value) is float:  # the common case, first
        return value if math.isfinite(value) else None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


__all__ = ["CellError", "as_number", "is_empty"]
