"""`mumo index` and `mumo search`: a FAISS index of one column's embeddings, and queries against it.

mumo index RUN --data F --column C --out INDEX_DIR [--kind auto|flat|hnsw|ivfpq] [--memory 4GB]
mumo index --out INDEX_DIR --add F | --delete ID,ID,... | --compact
mumo search INDEX_DIR --text "..." | --image F | --audio F | --like ROW_ID [-k 10] [--where col=value] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mumo.errors import MumoError

if TYPE_CHECKING:
    from mumo.index import Hit


def index_setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", nargs="?", help="a contrastive or matching run (to build a new index)")
    p.add_argument("--out", required=True, help="the index folder")
    p.add_argument("--data", help="manifest of the rows to index (a new index)")
    p.add_argument("--column", help="the column whose embeddings are indexed (a new index)")
    p.add_argument(
        "--kind",
        default="auto",
        choices=["auto", "flat", "hnsw", "ivfpq"],
        help="auto: exact below 50k vectors, HNSW above when it fits --memory, else IVF-PQ",
    )
    p.add_argument("--memory", default="4GB", help="memory budget of the index (auto kind), e.g. 512MB")
    p.add_argument("--add", metavar="F", help="append the rows of this manifest to the index")
    p.add_argument("--delete", metavar="IDS", help="remove rows by id, e.g. 3,17,20")
    p.add_argument("--compact", action="store_true", help="rebuild without the deleted rows now")
    p.add_argument("--on-error", choices=["fail", "skip", "absent"], default="fail")
    p.add_argument("--ray", action="store_true", help="embed on Ray actors (pip install 'mumo[ray]')")
    ray_flags(p, "actors, each with the run loaded")


def ray_flags(p: argparse.ArgumentParser, workers: str) -> None:
    """--address and --workers, for the commands that can run on Ray (index, embed, tune)."""
    p.add_argument("--address", help="a Ray cluster to join (default: start Ray here)")
    p.add_argument("--workers", type=int, default=2, help=f"Ray: {workers} (default 2)")


def _ray_embedder(args: argparse.Namespace, run_dir: str) -> Any:
    """With --ray: embedding on Ray actors, in the form indexing takes; else None."""
    if not args.ray:
        return None
    from mumo import ray_engine

    def embed(cells: list[Any], column: str, base_dir: Path, on_error: str) -> Any:
        return ray_engine.embed(run_dir, cells, column, base_dir, on_error, args.address, args.workers)

    return embed


def index_run(args: argparse.Namespace) -> int:
    import mumo
    from mumo import index as idx
    from mumo import indexing
    from mumo.data.table import read_table

    out = Path(args.out)
    actions = [a for a in ("add", "delete", "compact") if getattr(args, a)]
    if len(actions) > 1:
        raise MumoError(f"--{actions[0]} and --{actions[1]}: one change at a time")
    if not actions:
        if not (args.run_dir and args.data and args.column):
            raise MumoError(
                "mumo index: a new index needs RUN, --data and --column (or --add/--delete on --out)"
            )
        model = mumo.load(args.run_dir)
        manifest, absent = indexing.build(
            model,
            read_table(args.data),
            args.column,
            out,
            args.kind,
            args.memory,
            args.on_error,
            _ray_embedder(args, args.run_dir),
        )
        _say(
            manifest,
            f"built a {manifest['index']} index of {manifest['vectors']} vectors",
            absent,
            args.column,
        )
        return 0
    with indexing.writing(out):
        index = idx.Index.open(out)
        if args.add:
            run_dir = args.run_dir or index.manifest["run"]
            model = mumo.load(run_dir)
            embed = _ray_embedder(args, run_dir)
            manifest, added, absent = indexing.add(model, index, read_table(args.add), args.on_error, embed)
            _say(manifest, f"added {added} rows", absent, index.column)
        elif args.delete:
            ids = _ids(args.delete)
            manifest = indexing.delete(index, ids)
            _say(manifest, f"deleted {len(ids)} rows", 0, index.column)
        else:
            manifest = indexing.compact(index)
            _say(manifest, "compacted", 0, index.column)
    return 0


def _ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise MumoError(f"--delete {text!r}: expected row ids separated by commas, e.g. 3,17,20") from None
    if not ids:
        raise MumoError("--delete: name at least one row id")
    return ids


def _say(manifest: dict[str, Any], what: str, absent: int, column: str) -> None:
    left = f"; {absent} rows without {column!r} left out" if absent else ""
    deleted = len(manifest.get("deleted", []))
    waiting = f", {deleted} deleted waiting for compaction" if deleted else ""
    print(
        f"{what}: version {manifest['version']}, {manifest['vectors'] - deleted} searchable vectors{waiting}, "
        f"recall@10 {manifest['recall_at_10']:.3f}{left}",
        file=sys.stderr,
    )


def search_setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("index_dir", help="an index folder made by mumo index")
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="find rows like this text")
    query.add_argument("--image", help="find rows like this image file")
    query.add_argument("--audio", help="find rows like this audio file")
    query.add_argument("--like", type=int, metavar="ROW_ID", help="more like this indexed row")
    p.add_argument("-k", type=int, default=10, help="hits to return (default 10)")
    p.add_argument(
        "--where", action="append", default=[], metavar="COL=VALUE", help="only rows whose metadata matches"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per hit: id, score and metadata")


def search_run(args: argparse.Namespace) -> int:
    from mumo.search import Searcher

    searcher = Searcher.open(args.index_dir)
    filters = {}
    for item in args.where:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise MumoError(f"--where {item!r}: expected COLUMN=VALUE")
        filters[key] = value
    if args.like is not None:
        hits = searcher.like(args.like, args.k, filters)
    else:
        kind, value = next(
            (k, v)
            for k, v in (("text", args.text), ("image", args.image), ("audio", args.audio))
            if v is not None
        )
        hits = searcher.query(kind, value, args.k, filters, base_dir=Path.cwd())
    if args.json:
        for hit in hits:
            print(json.dumps({"id": hit.id, "score": round(hit.score, 6), **hit.row}, default=str))
        return 0
    _print_hits(hits)
    return 0


def _print_hits(hits: Sequence[Hit]) -> None:
    if not hits:
        print("no hits", file=sys.stderr)
        return
    columns = [c for c in hits[0].row if c != "id"][:4]
    print("\t".join(["rank", "id", "score", *columns]))
    for rank, hit in enumerate(hits, 1):
        cells = [str(hit.row.get(c, ""))[:60] for c in columns]
        print("\t".join([str(rank), str(hit.id), f"{hit.score:.4f}", *cells]))
