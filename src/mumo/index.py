"""A search index of one column's embeddings: a FAISS index and a metadata table (Parquet: the row id and
every manifest column), versioned under one small manifest.

INDEX_DIR/
  index.json              the manifest: version, files, run, column, fingerprint, kind, counts, recall@10
  vectors-000003.faiss    the FAISS index of that version (ids are the rows' stable ids)
  rows-000003.parquet     its metadata, one row per vector, in the same ids

A write (build, add, delete) writes the next version's files first, then replaces index.json in one
rename; the previous version stays readable until then, and its files are removed only after
(`faiss.write_index` is not atomic, a rename is). A killed writer leaves either version whole; the
next writer removes what no manifest names. One writer at a time (a lock file).

Index kinds: exact (`flat`) below ~50k vectors; `hnsw` above, when it fits the memory budget; `ivfpq`
(compressed) when HNSW would not. Each build measures its recall@10 against exact search on a sample.
Vectors are L2-normalized: scores are cosine similarities (inner products). FAISS is imported here
only (the library imports without it).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
import pandas as pd

from mumo.errors import MumoError

MANIFEST = "index.json"
FORMAT = 1
KINDS = ("auto", "flat", "hnsw", "ivfpq")
EXACT_BELOW = 50_000
HNSW_M = 32
RECALL_SAMPLE = 200
PLAIN_K = 1024  # a larger k is first cut to the index's size (answers short of k are padded with id -1)
COMPACT_SHARE = 0.2  # hnsw: rebuilt once this share of its vectors is deleted (it cannot remove in place)


def faiss_module() -> Any:
    try:
        import faiss
    except ImportError:
        raise MumoError("mumo index needs FAISS: pip install faiss-cpu") from None
    return faiss


def parse_bytes(text: str) -> int:
    """'512MB', '4GB', '1.5G', '1000000' → bytes."""
    found = re.fullmatch(r"\s*([\d.]+)\s*([kmgt]?)i?b?\s*", str(text).lower())
    if not found:
        raise MumoError(f"--memory: {text!r} is not a size, e.g. 512MB or 4GB")
    return int(float(found.group(1)) * 1024 ** " kmgt".index(found.group(2) or " "))


def estimate_bytes(kind: str, n: int, dim: int) -> int:
    """Resident size of an index of n vectors (FAISS's layouts, with its id map)."""
    if kind == "flat":
        return n * (4 * dim + 8)
    if kind == "hnsw":
        return int(
            n * (4 * dim + 8 + HNSW_M * 2 * 4 * 1.1)
        )  # vectors, ids, links of level 0 (+ upper levels)
    return n * (_pq_bytes(dim) + 16)


def choose_kind(n: int, dim: int, budget: int) -> str:
    if n < EXACT_BELOW:
        return "flat"
    return "hnsw" if estimate_bytes("hnsw", n, dim) <= budget else "ivfpq"


def _pq_bytes(dim: int) -> int:
    """Sub-quantizers of IVF-PQ: a divisor of dim near dim / 4 bytes (8 bits each)."""
    target = max(1, dim // 4)
    return min((m for m in range(1, dim + 1) if dim % m == 0), key=lambda m: (abs(m - target), m))


def build_faiss(kind: str, vectors: np.ndarray, ids: np.ndarray) -> Any:
    """A FAISS index of `kind` holding the vectors under their ids (inner product)."""
    faiss = faiss_module()
    n, dim = vectors.shape
    if kind == "flat":
        base = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        base = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efConstruction = 80
        base.hnsw.efSearch = 64
    elif kind == "ivfpq":
        lists = int(min(max(16, 4 * math.sqrt(n)), max(1, n // 39)))
        quantizer = faiss.IndexFlatIP(dim)
        base = faiss.IndexIVFPQ(quantizer, dim, lists, _pq_bytes(dim), 8, faiss.METRIC_INNER_PRODUCT)
        sample = vectors[np.random.default_rng(0).permutation(n)[: max(lists * 64, 10_000)]]
        base.train(np.ascontiguousarray(sample))
        base.nprobe = max(8, lists // 16)
    else:
        raise MumoError(f"--kind: {kind!r} is not one of {', '.join(KINDS)}")
    index = faiss.IndexIDMap2(base)
    if n:
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
    return index


def recall_at_10(index: Any, vectors: np.ndarray, exclude: set[int] | None = None) -> float:
    """Share of the exact 10 nearest neighbours the index finds, for a sample of its own vectors."""
    faiss = faiss_module()
    ids = faiss.vector_to_array(index.id_map)
    keep = np.array([i not in (exclude or set()) for i in ids], dtype=bool)
    ids, stored = ids[keep], vectors[keep]
    if len(ids) == 0:
        return 1.0
    exact = faiss.IndexIDMap2(faiss.IndexFlatIP(stored.shape[1]))
    exact.add_with_ids(np.ascontiguousarray(stored), ids)
    queries = stored[np.random.default_rng(0).permutation(len(ids))[:RECALL_SAMPLE]]
    k = min(10, len(ids))
    _, truth = exact.search(queries, k)
    _, found = search_faiss(index, queries, k, exclude)
    return float(np.mean([len(set(t) & set(f)) / k for t, f in zip(truth, found, strict=True)]))


def search_faiss(
    index: Any, queries: np.ndarray, k: int, exclude: set[int] | None = None, only: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the k nearest, leaving out the `exclude` ids and, given `only`, every other id.
    Missing hits are id -1."""
    faiss = faiss_module()
    selector = None
    if only is not None:
        allowed = np.setdiff1d(only, np.fromiter(exclude or (), np.int64)) if exclude else only
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
    elif exclude:
        selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.fromiter(exclude, np.int64)))
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if selector is None:
        return index.search(queries, k)
    params = _search_parameters(index, selector)
    return index.search(queries, k, params=params)


class _PlainSearch:
    """index.search(queries, k) without the Python wrapper's per-call work (about a sixth of a 35 us
    HNSW search): FAISS's C++ search_c, the method the wrapper calls, bound once with the index's
    dimension, into arrays made here. A single query gets 1-d arrays (no views to slice)."""

    __slots__ = ("d", "index", "ptr", "search_c")

    def __init__(self, index: Any) -> None:
        self.index = index
        self.search_c = getattr(index, "search_c", None)  # None: a FAISS whose wrapper differs
        self.d, self.ptr = int(index.d), faiss_module().swig_ptr

    def __call__(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not queries.flags.c_contiguous:
            queries = np.ascontiguousarray(queries)
        if queries.shape[1] != self.d:  # what the wrapper asserts; C++ would read past the array
            raise MumoError(f"query vectors have {queries.shape[1]} dimensions; the index holds {self.d}")
        if self.search_c is None:
            return self.index.search(queries, k)  # type: ignore[no-any-return]
        n, ptr = len(queries), self.ptr
        shape = (k,) if n == 1 else (n, k)
        scores, ids = np.empty(shape, np.float32), np.empty(shape, np.int64)
        self.search_c(n, ptr(queries), k, ptr(scores), ptr(ids), None)
        return scores, ids


def _search_parameters(index: Any, selector: Any) -> Any:
    faiss = faiss_module()
    base = faiss.downcast_index(index.index)
    if isinstance(base, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(efSearch=max(64, base.hnsw.efSearch))
    elif isinstance(base, faiss.IndexIVF):
        params = faiss.SearchParametersIVF(nprobe=base.nprobe)
    else:
        params = faiss.SearchParameters()
    params.sel = selector
    return params


class Hit:
    """One search result: its id, its score, and its metadata row, built from the index's columns the
    first time it is read (a search costs FAISS's time, not that of rows nobody looks at)."""

    __slots__ = ("_columns", "_position", "_row", "id", "score")

    def __init__(self, id: int, score: float, columns: dict[str, list[Any]], position: int) -> None:
        self.id, self.score = id, score
        self._columns, self._position = columns, position
        self._row: dict[str, Any] | None = None

    @property
    def row(self) -> dict[str, Any]:
        if self._row is None:
            self._row = {column: values[self._position] for column, values in self._columns.items()}
        return self._row

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hit):
            return NotImplemented
        return (self.id, self.score, self.row) == (other.id, other.score, other.row)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Hit(id={self.id}, score={self.score:.4f})"


class Index:
    """One version of an index folder, loaded."""

    def __init__(self, folder: Path, manifest: dict[str, Any], faiss_index: Any, rows: pd.DataFrame) -> None:
        self.folder, self.manifest, self.faiss, self.rows = folder, manifest, faiss_index, rows
        self.deleted: set[int] = set(manifest.get("deleted", []))
        ids = rows["id"].to_numpy(np.int64)
        self._order = np.argsort(ids, kind="stable")  # id → metadata position, by binary search
        self._sorted = ids[self._order]
        self._identity = bool(np.array_equal(ids, np.arange(len(ids))))
        self._columns = {c: _plain(rows[c]) for c in rows.columns}  # per-hit rows without pandas
        self._plain = _PlainSearch(faiss_index)

    # ------------------------------------------------------------------------------------ loading
    @classmethod
    def open(cls, folder: str | Path) -> Index:
        folder = Path(folder)
        manifest = read_manifest(folder)
        faiss = faiss_module()
        files = manifest["files"]
        try:
            index = faiss.read_index(str(folder / files["vectors"]))
            rows = pd.read_parquet(folder / files["rows"])
        except (RuntimeError, OSError, ValueError) as err:
            raise MumoError(
                f"{folder}: version {manifest['version']} cannot be read ({err}); build it again"
            ) from None
        base = faiss.downcast_index(index.index)
        if hasattr(base, "make_direct_map"):
            base.make_direct_map()  # IVF: reconstruct() by id, for --like
        if index.ntotal != len(rows):
            raise MumoError(f"{folder}: {index.ntotal} vectors but {len(rows)} metadata rows; build it again")
        return cls(folder, manifest, index, rows)

    @property
    def count(self) -> int:
        """Vectors a search can find (deleted ones waiting for compaction left out)."""
        return int(self.faiss.ntotal) - len(self.deleted)

    @property
    def column(self) -> str:
        return str(self.manifest["column"])

    def row(self, row_id: int) -> dict[str, Any]:
        position = int(self.positions(np.array([row_id]))[0])
        if row_id in self.deleted or position < 0:
            raise MumoError(f"--like: row id {row_id} is not in {self.folder}")
        return self._row_at(position)

    def has(self, row_id: int) -> bool:
        return row_id not in self.deleted and int(self.positions(np.array([row_id]))[0]) >= 0

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """Metadata positions of ids (-1 where there is none)."""
        if not len(self._sorted):
            return np.full(len(ids), -1)
        at = np.minimum(np.searchsorted(self._sorted, ids), len(self._sorted) - 1)
        return np.where(self._sorted[at] == ids, self._order[at], -1)

    def _row_at(self, position: int) -> dict[str, Any]:
        return {column: values[position] for column, values in self._columns.items()}

    def vector(self, row_id: int) -> np.ndarray:
        self.row(row_id)
        return np.asarray(self.faiss.reconstruct(int(row_id)), dtype=np.float32)

    # ------------------------------------------------------------------------------------ search
    def where(self, filters: dict[str, str]) -> np.ndarray | None:
        """Ids whose metadata equals every filter value (compared as text); None: no filter."""
        if not filters:
            return None
        keep = pd.Series(True, index=self.rows.index)
        for column, value in filters.items():
            if column not in self.rows.columns:
                names = ", ".join(c for c in self.rows.columns if c != "id")
                raise MumoError(f"--where: {column!r} is not a metadata column; columns: {names}")
            keep &= self.rows[column].astype(str) == str(value)
        return self.rows.loc[keep, "id"].to_numpy(np.int64)

    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        filters: dict[str, str] | None = None,
        exclude: set[int] | None = None,
    ) -> list[Hits]:
        """The k best hits per query vector (rows of `queries`), best first."""
        if k < 1:
            raise MumoError(f"-k: {k} must be at least 1")
        if queries.ndim != 2 or queries.dtype != np.float32:
            queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if filters or exclude or self.deleted or k > PLAIN_K:
            k = min(k, max(self.count, 1))
            only = self.where(filters) if filters else None
            scores, ids = search_faiss(self.faiss, queries, k, self.deleted | (exclude or set()), only)
        else:  # the common case, nothing to leave out: FAISS's C++ search into arrays made here
            scores, ids = self._plain(queries, k)
            if ids.ndim == 1:  # one query (a server's, a CLI's)
                if ids[-1] >= 0:  # k hits (FAISS pads a short answer with id -1 at its end)
                    return [Hits(ids, scores, ids if self._identity else self.positions(ids), self._columns)]
                scores, ids = scores[None], ids[None]
        # ids are the metadata positions until a row is deleted; after that, looked up in one go
        places = ids if self._identity else self.positions(ids.ravel()).reshape(ids.shape)
        found = (ids >= 0).sum(axis=1)
        return [
            Hits(ids[q, :n], scores[q, :n], places[q, :n], self._columns)
            for q, n in enumerate(found.tolist())
        ]


class Hits(Sequence[Hit]):
    """One query's hits, best first: arrays until a hit is looked at (a Hit object per row read)."""

    __slots__ = ("_columns", "_ids", "_places", "_scores")

    def __init__(
        self, ids: np.ndarray, scores: np.ndarray, places: np.ndarray, columns: dict[str, list[Any]]
    ) -> None:
        self._ids, self._scores, self._places, self._columns = ids, scores, places, columns

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, at: int) -> Hit: ...
    @overload
    def __getitem__(self, at: slice) -> list[Hit]: ...
    def __getitem__(self, at: int | slice) -> Hit | list[Hit]:
        if isinstance(at, slice):
            return [self[i] for i in range(*at.indices(len(self)))]
        return Hit(int(self._ids[at]), float(self._scores[at]), self._columns, int(self._places[at]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Hits({list(self)!r})"


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise MumoError(f"{folder}: not an index folder (no {MANIFEST}); make one with mumo index")
    try:
        manifest = json.loads(path.read_text())
        manifest["files"]["vectors"], manifest["files"]["rows"]  # noqa: B018 (checks the keys)
    except (ValueError, KeyError, TypeError) as err:
        raise MumoError(f"{path}: not an index manifest mumo wrote ({err})") from None
    return manifest  # type: ignore[no-any-return]


def _plain(column: pd.Series) -> list[Any]:
    """A metadata column as plain JSON values: NaN → None, numpy scalars → Python."""
    values = column.astype(object).where(column.notna(), None).tolist()
    return [v.item() if isinstance(v, np.generic) else v for v in values]


__all__ = [
    "Hit",
    "Hits",
    "Index",
    "KINDS",
    "build_faiss",
    "choose_kind",
    "estimate_bytes",
    "parse_bytes",
    "read_manifest",
    "recall_at_10",
    "search_faiss",
]
