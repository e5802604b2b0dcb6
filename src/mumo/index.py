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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mumo.errors import DataError, MumoError
from mumo.io import atomic_path, write_json
from mumo.lock import Lock

if TYPE_CHECKING:
    from mumo.predictor import Predictor

MANIFEST = "index.json"
FORMAT = 1
KINDS = ("auto", "flat", "hnsw", "ivfpq")
EXACT_BELOW = 50_000
HNSW_M = 32
RECALL_SAMPLE = 200
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


@dataclass
class Hit:
    id: int
    score: float
    row: dict[str, Any]


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
    ) -> list[list[Hit]]:
        """The k best hits per query vector (rows of `queries`), best first."""
        if k < 1:
            raise MumoError(f"-k: {k} must be at least 1")
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        only = self.where(filters) if filters else None
        skip = self.deleted | exclude if exclude else self.deleted
        searchable = int(self.faiss.ntotal) - len(self.deleted)
        scores, ids = search_faiss(self.faiss, queries, min(k, max(searchable, 1)), skip, only)
        out = []
        columns = self._columns.items()
        for row_scores, row_ids in zip(scores.tolist(), ids.tolist(), strict=True):
            hits = [(i, s) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
            places = (
                [i for i, _ in hits]  # ids are the metadata positions (no row deleted yet)
                if self._identity
                else self.positions(np.array([i for i, _ in hits], dtype=np.int64)).tolist()
            )
            out.append(
                [
                    Hit(i, s, {c: values[p] for c, values in columns})
                    for (i, s), p in zip(hits, places, strict=True)
                ]
            )
        return out


# ------------------------------------------------------------------------------- build, add, delete
def fingerprint(predictor: Predictor, column: str) -> str:
    """What an index's vectors depend on: the run's weights, processors and config (their sha256 in the
    run's manifest) and the column. A retrained run gets another fingerprint."""
    import hashlib

    from mumo.rundir import read_manifest as read_run_manifest

    files = (read_run_manifest(run_path(predictor)) or {}).get("files", {})
    parts = {
        k: v.get("sha256")
        for k, v in files.items()
        if k == "model.safetensors" or k == "config.yaml" or k.startswith("preprocess/")
    }
    return hashlib.sha256(json.dumps([column, parts], sort_keys=True).encode()).hexdigest()[:16]


def run_path(predictor: Predictor) -> Path:
    if predictor.path is None:
        raise MumoError("an index needs a saved run (mumo.load(RUN_DIR)), not a model in memory")
    return Path(predictor.path)


def embed_table(
    predictor: Predictor, table: Any, column: str, on_error: str
) -> tuple[np.ndarray, pd.DataFrame, int]:
    """(vectors, metadata rows, rows left out because the column is empty) of a manifest. File cells
    become absolute paths, so that the metadata names the file wherever the index is read."""
    from mumo.embedding import embedder

    embedder(predictor, column)
    if column not in table.columns:
        raise DataError(f"--column: {column!r} is not in {table.name}; columns: {', '.join(table.columns)}")
    frame = check_rows(table.frame.copy(), table.name)
    vectors = predictor.embed(frame, column, table.base_dir, on_error)
    for name, kind in predictor.schema.inputs.items():
        if kind in ("image", "audio") and name in frame.columns:
            frame[name] = [_absolute(v, table.base_dir) for v in frame[name]]
    present = ~np.isnan(vectors).any(axis=1)
    return vectors[present], frame[present].reset_index(drop=True), int((~present).sum())


def _absolute(cell: Any, base: Path) -> Any:
    if cell is None or (isinstance(cell, float) and math.isnan(cell)) or not str(cell).strip():
        return cell
    path = Path(str(cell)).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def build(
    predictor: Predictor,
    table: Any,
    column: str,
    out: Path,
    kind: str = "auto",
    memory: str = "4GB",
    on_error: str = "fail",
) -> tuple[dict[str, Any], int]:
    """A new index of `column` in `out` (which must not hold one). Returns the manifest and the number of
    rows left out (empty cells)."""
    if (out / MANIFEST).exists():
        raise MumoError(f"--out {out}: already holds an index; add rows with --add, or choose another folder")
    vectors, rows, absent = embed_table(predictor, table, column, on_error)
    if not len(vectors):
        raise DataError(f"{table.name}: no row has a value in {column!r}; nothing to index")
    budget = parse_bytes(memory)
    chosen = choose_kind(len(vectors), vectors.shape[1], budget) if kind == "auto" else kind
    ids = np.arange(len(vectors), dtype=np.int64)
    index = build_faiss(chosen, vectors, ids)
    manifest = {
        "run": str(run_path(predictor).resolve()),
        "column": column,
        "kind": predictor.schema.inputs[column],
        "fingerprint": fingerprint(predictor, column),
        "index": chosen,
        "dim": int(vectors.shape[1]),
        "memory_budget": budget,
        "next_id": int(len(vectors)),
        "deleted": [],
        "recall_at_10": recall_at_10(index, vectors),
    }
    with writing(out):
        return commit(out, manifest, index, rows.assign(id=ids)[["id", *rows.columns]]), absent


def add(
    predictor: Predictor, index: Index, table: Any, on_error: str = "fail"
) -> tuple[dict[str, Any], int, int]:
    """Append a manifest's rows (new ids from the manifest's next_id). Returns the manifest, rows
    added and rows left out."""
    check_run(index, predictor)
    vectors, rows, absent = embed_table(predictor, table, index.column, on_error)
    missing = [c for c in index.rows.columns if c != "id" and c not in rows.columns]
    if missing:
        raise DataError(f"{table.name}: lacks the index's metadata column(s) {', '.join(missing)}")
    start = int(index.manifest["next_id"])
    ids = np.arange(start, start + len(vectors), dtype=np.int64)
    if len(vectors):
        index.faiss.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
    merged = pd.concat([index.rows, rows.assign(id=ids)[index.rows.columns]], ignore_index=True)
    manifest = {**index.manifest, "next_id": start + len(vectors)}
    manifest["recall_at_10"] = recall_at_10(index.faiss, _stored(index.faiss), index.deleted)
    return commit(index.folder, manifest, index.faiss, merged), len(vectors), absent


def delete(index: Index, ids: list[int]) -> dict[str, Any]:
    """Remove rows by id. Flat and IVF-PQ indexes remove them at once; HNSW, which cannot, leaves
    them out of every search and is rebuilt once COMPACT_SHARE of it is deleted."""
    faiss = faiss_module()
    unknown = [i for i in ids if not index.has(i)]
    if unknown:
        raise MumoError(f"--delete: no row with id {', '.join(map(str, unknown[:5]))} in {index.folder}")
    gone = set(ids)
    manifest = dict(index.manifest)
    if manifest["index"] == "hnsw":
        deleted = index.deleted | gone
        if len(deleted) < COMPACT_SHARE * index.faiss.ntotal:
            manifest["deleted"] = sorted(deleted)
            return commit(index.folder, manifest, index.faiss, index.rows)
        return compact(index, deleted)
    index.faiss.remove_ids(faiss.IDSelectorBatch(np.fromiter(gone, np.int64)))
    rows = index.rows[~index.rows["id"].isin(gone)]
    return commit(index.folder, manifest, index.faiss, rows)


def compact(index: Index, deleted: set[int] | None = None) -> dict[str, Any]:
    """Rebuild without the deleted rows (the same kind, ids kept)."""
    deleted = index.deleted if deleted is None else deleted
    vectors, ids = _stored(index.faiss), _ids(index.faiss)
    keep = ~np.isin(ids, np.fromiter(deleted, np.int64))
    rebuilt = build_faiss(index.manifest["index"], vectors[keep], ids[keep])
    rows = index.rows.set_index("id").loc[ids[keep]].reset_index()
    manifest = {**index.manifest, "deleted": [], "recall_at_10": recall_at_10(rebuilt, vectors[keep])}
    return commit(index.folder, manifest, rebuilt, rows)


def check_run(index: Index, predictor: Predictor) -> None:
    """Refuse a run whose embeddings differ from the index's (another run, or this one retrained)."""
    if fingerprint(predictor, index.column) != index.manifest["fingerprint"]:
        raise MumoError(
            f"{index.folder}: was built with other embeddings than {predictor.path} gives now (run "
            f"{index.manifest['run']}, column {index.column!r}); build a new index with this run"
        )


def _ids(faiss_index: Any) -> np.ndarray:
    return faiss_module().vector_to_array(faiss_index.id_map).astype(np.int64)


def _stored(faiss_index: Any) -> np.ndarray:
    """The vectors an index holds, in its internal order (decoded: approximate for IVF-PQ)."""
    base = faiss_module().downcast_index(faiss_index.index)
    if hasattr(base, "make_direct_map"):
        base.make_direct_map()
    return np.asarray(base.reconstruct_n(0, base.ntotal), dtype=np.float32)


# ---------------------------------------------------------------------------------------- writing
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


def commit(folder: Path, manifest: dict[str, Any], faiss_index: Any, rows: pd.DataFrame) -> dict[str, Any]:
    """Write the next version: its files, then the manifest (one rename), then remove the files no
    manifest names any more. Returns the manifest written."""
    faiss = faiss_module()
    folder.mkdir(parents=True, exist_ok=True)
    version = int(manifest.get("version", 0)) + 1
    files = {"vectors": f"vectors-{version:06d}.faiss", "rows": f"rows-{version:06d}.parquet"}
    with atomic_path(folder / files["vectors"]) as tmp:
        faiss.write_index(faiss_index, str(tmp))
    with atomic_path(folder / files["rows"]) as tmp:
        rows.reset_index(drop=True).to_parquet(tmp, index=False)
    manifest = {
        **manifest,
        "format": FORMAT,
        "version": version,
        "files": files,
        "vectors": int(faiss_index.ntotal),
    }
    manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(folder / MANIFEST, manifest)
    _remove_unnamed(folder, set(files.values()))
    return manifest


def _remove_unnamed(folder: Path, keep: set[str]) -> None:
    """Earlier versions' files and what a killed writer left (temp files, an uncommitted version)."""
    for path in folder.iterdir():
        versioned = re.fullmatch(r"(vectors-\d+\.faiss|rows-\d+\.parquet)", path.name)
        temp = path.name.startswith((".vectors-", ".rows-", f".{MANIFEST}."))
        if (versioned or temp) and path.name not in keep and path.is_file():
            path.unlink(missing_ok=True)


def writing(folder: Path) -> Lock:
    folder.mkdir(parents=True, exist_ok=True)
    return Lock(folder / ".index.lock", f"index {folder}")


def _plain(column: pd.Series) -> list[Any]:
    """A metadata column as plain JSON values: NaN → None, numpy scalars → Python."""
    values = column.astype(object).where(column.notna(), None).tolist()
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def check_rows(rows: pd.DataFrame, where: str) -> pd.DataFrame:
    if "id" in rows.columns:
        raise DataError(f"{where}: a column named 'id' is reserved for the index's row ids; rename it")
    return rows


__all__ = [
    "Hit",
    "Index",
    "KINDS",
    "build_faiss",
    "choose_kind",
    "commit",
    "estimate_bytes",
    "parse_bytes",
    "recall_at_10",
    "search_faiss",
]
