"""Building and changing an index (see mumo.index for the folder, the versions and the kinds): build a
new one from a run and a manifest, add rows, delete rows, compact; every change written as the next
version (`commit`), under a lock."""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mumo.errors import DataError, MumoError
from mumo.index import (
    COMPACT_SHARE,
    FORMAT,
    MANIFEST,
    Index,
    build_faiss,
    choose_kind,
    faiss_module,
    parse_bytes,
    recall_at_10,
)
from mumo.io import atomic_path, write_json
from mumo.lock import Lock

if TYPE_CHECKING:
    from mumo.predictor import Predictor


def fingerprint(predictor: Predictor, column: str) -> str:
    """What an index's vectors depend on: the run's weights, processors and config (their sha256 in the
    run's manifest) and the column. A retrained run gets another fingerprint."""
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


Embed = Callable[[list[Any], str, Path, str], np.ndarray]  # (cells, column, base_dir, on_error) → vectors


def embed_table(
    predictor: Predictor, table: Any, column: str, on_error: str, embed: Embed | None = None
) -> tuple[np.ndarray, pd.DataFrame, int]:
    """(vectors, metadata rows, rows left out because the column is empty) of a manifest, embedded by
    the predictor or by `embed` (on Ray). File cells become absolute paths, so that the metadata names
    the file wherever the index is read."""
    from mumo.embedding import embedder

    embedder(predictor, column)
    if column not in table.columns:
        raise DataError(f"--column: {column!r} is not in {table.name}; columns: {', '.join(table.columns)}")
    frame = check_rows(table.frame.copy(), table.name)
    if embed is not None:
        vectors = embed(frame[column].tolist(), column, table.base_dir, on_error)
    else:
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
    embed: Embed | None = None,
) -> tuple[dict[str, Any], int]:
    """A new index of `column` in `out` (which must not hold one). Returns the manifest and the number of
    rows left out (empty cells)."""
    if (out / MANIFEST).exists():
        raise MumoError(f"--out {out}: already holds an index; add rows with --add, or choose another folder")
    vectors, rows, absent = embed_table(predictor, table, column, on_error, embed)
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
    predictor: Predictor, index: Index, table: Any, on_error: str = "fail", embed: Embed | None = None
) -> tuple[dict[str, Any], int, int]:
    """Append a manifest's rows (new ids from the manifest's next_id). Returns the manifest, rows
    added and rows left out."""
    check_run(index, predictor)
    vectors, rows, absent = embed_table(predictor, table, index.column, on_error, embed)
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


# ------------------------------------------------------------------------------------ writing
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


def check_rows(rows: pd.DataFrame, where: str) -> pd.DataFrame:
    if "id" in rows.columns:
        raise DataError(f"{where}: a column named 'id' is reserved for the index's row ids; rename it")
    return rows


__all__ = ["add", "build", "check_run", "commit", "compact", "delete", "fingerprint", "writing"]
