"""Queries against an index: text, an image or an audio file (cross-modal through the run's other
encoders), or "more like this" indexed row. The index and its run are loaded once (mumo search, and
the server's lifespan)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mumo.errors import MumoError
from mumo.index import Hits, Index
from mumo.indexing import check_run
from mumo.predictor import Predictor


@dataclass
class Searcher:
    index: Index
    model: Predictor

    @classmethod
    def open(cls, folder: str | Path, model: Predictor | None = None) -> Searcher:
        import mumo

        index = Index.open(folder)
        model = model or mumo.load(index.manifest["run"])
        check_run(index, model)
        return cls(index, model)

    def column_for(self, kind: str) -> str:
        """The run's column that embeds queries of `kind`: the indexed one when it is of that kind."""
        inputs = self.model.schema.inputs
        if inputs.get(self.index.column) == kind:
            return self.index.column
        for column, column_kind in inputs.items():
            if column_kind == kind:
                return column
        described = ", ".join(f"{c} ({k})" for c, k in inputs.items())
        raise MumoError(f"--{kind}: the run embeds no {kind} column; its columns: {described}")

    def vectors(self, kind: str, values: list[Any], base_dir: Path | None = None) -> np.ndarray:
        column = self.column_for(kind)
        vectors = self.model.embed([{column: v} for v in values], column, base_dir)
        if np.isnan(vectors).any():
            raise MumoError(f"--{kind}: an empty query")
        return vectors

    def query(
        self,
        kind: str,
        value: Any,
        k: int = 10,
        filters: dict[str, str] | None = None,
        base_dir: Path | None = None,
    ) -> Hits:
        return self.index.search(self.vectors(kind, [value], base_dir), k, filters)[0]

    def like(self, row_id: int, k: int = 10, filters: dict[str, str] | None = None) -> Hits:
        """Rows most like an indexed one (itself left out)."""
        return self.index.search(self.index.vector(row_id)[None], k, filters, exclude={row_id})[0]


__all__ = ["Searcher"]
