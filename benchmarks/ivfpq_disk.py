"""The FAISS path for indexes far larger than memory (100M+ vectors): IVF-PQ whose inverted lists live
on disk (OnDiskInvertedLists, memory-mapped), measured here up to --sizes millions of vectors.

For each size N: clustered unit vectors (128 dims), generated a million at a time and never held
together; an IVF-PQ (nlist = 4 sqrt(N) rounded to a power of two, 32-byte codes, inner product)
trained on 100k of them; the vectors added shard by shard (one shard index per million, written to
disk), the shards merged into one .ivfdata file (faiss.contrib.ondisk.merge_ondisk). Then, in a fresh
process: the index opened (the lists stay on disk, paged in as searches touch them), 200 single
queries at nprobe 64 (p50/p99), the process's resident memory after them, and recall@10 against exact
search (brute force over the regenerated vectors) for 50 queries.

What this measures is FAISS's on-disk path, the one mumo's ivfpq kind would take for such sizes;
`mumo index` itself still embeds and holds the vectors of a build in memory (see the README).

Usage: python -m benchmarks.ivfpq_disk [--sizes 1,4,16] [--json F]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import save

DIM, CHUNK, CENTRES = 128, 1_000_000, 4096


def chunk(at: int, rows: int) -> np.ndarray:
    """Rows [at, at + rows) of the generated collection (the same numbers every time)."""
    centres = np.random.default_rng(0).normal(size=(CENTRES, DIM)).astype(np.float32)
    rng = np.random.default_rng([1, at])
    out = centres[rng.integers(CENTRES, size=rows)] + 0.6 * rng.normal(size=(rows, DIM)).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def queries(count: int) -> np.ndarray:
    return chunk(10**12, count)  # from the same distribution, not in the collection


def build(n: int, folder: Path) -> dict[str, Any]:
    import faiss
    from faiss.contrib.ondisk import merge_ondisk

    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    started = time.time()
    trained = faiss.IndexIVFPQ(faiss.IndexFlatIP(DIM), DIM, nlist, 32, 8, faiss.METRIC_INNER_PRODUCT)
    trained.train(chunk(10**11, min(n, max(100_000, 39 * nlist))))
    train_seconds = time.time() - started
    shards = []
    for at in range(0, n, CHUNK):
        shard = faiss.clone_index(trained)
        shard.add_with_ids(chunk(at, min(CHUNK, n - at)), np.arange(at, min(n, at + CHUNK), dtype=np.int64))
        shards.append(str(folder / f"shard-{at // CHUNK:04d}.index"))
        faiss.write_index(shard, shards[-1])
        del shard
    empty = faiss.clone_index(trained)
    merge_ondisk(empty, shards, str(folder / "lists.ivfdata"))
    faiss.write_index(empty, str(folder / "index.faiss"))
    for shard_file in shards:
        os.unlink(shard_file)
    return {
        "nlist": nlist,
        "train_seconds": round(train_seconds, 1),
        "build_seconds": round(time.time() - started, 1),
        "bytes_on_disk": sum(f.stat().st_size for f in folder.iterdir()),
    }


def search(folder: Path, n: int) -> dict[str, Any]:
    """In its own process: open, search, measure."""
    import faiss
    import psutil

    index = faiss.read_index(str(folder / "index.faiss"))
    faiss.extract_index_ivf(index).nprobe = 64
    faiss.omp_set_num_threads(1)
    opened = psutil.Process().memory_info().rss
    probe = queries(200)
    times = []
    for q in probe:
        started = time.perf_counter()
        index.search(q[None], 10)
        times.append(time.perf_counter() - started)
    searched = psutil.Process().memory_info().rss  # before the exact search below allocates its own
    _, found = index.search(probe[:50], 10)
    best = np.full((50, 10), -np.inf, dtype=np.float32)
    ids = np.zeros((50, 10), dtype=np.int64)
    for at in range(0, n, CHUNK):  # exact top 10, a million vectors at a time
        scores = probe[:50] @ chunk(at, min(CHUNK, n - at)).T
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        merged_scores = np.concatenate([best, np.take_along_axis(scores, top, 1)], axis=1)
        merged_ids = np.concatenate([ids, top + at], axis=1)
        keep = np.argsort(-merged_scores, axis=1)[:, :10]
        best, ids = np.take_along_axis(merged_scores, keep, 1), np.take_along_axis(merged_ids, keep, 1)
    recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, ids, strict=True)]))
    ms = np.array(times) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "rss_after_open_bytes": opened,
        "rss_after_search_bytes": searched,
        "recall_at_10": recall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,16", help="millions of vectors, comma-separated")
    parser.add_argument("--json", default="benchmarks/results/ivfpq_disk.json")
    parser.add_argument("--search", nargs=2, metavar=("FOLDER", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.search:
        print(json.dumps(search(Path(args.search[0]), int(args.search[1]))))
        return 0
    results = []
    for millions in [float(s) for s in args.sizes.split(",")]:
        n = int(millions * 1_000_000)
        with tempfile.TemporaryDirectory(prefix="mumo-ivfpq-", dir=os.environ.get("TMPDIR")) as tmp:
            print(f"{n:,} vectors: building", flush=True)
            built = build(n, Path(tmp))
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.ivfpq_disk", "--search", tmp, str(n)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            results.append({"vectors": n, **built, **json.loads(done.stdout.splitlines()[-1])})
    print(
        "| vectors | nlist | build s | on disk | RSS after open | RSS after 200 queries | p50 ms | p99 ms | recall@10 |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['vectors']:,} | {r['nlist']} | {r['build_seconds']:.0f} | {r['bytes_on_disk'] / 2**30:.2f} GiB "
            f"| {r['rss_after_open_bytes'] / 2**20:.0f} MiB | {r['rss_after_search_bytes'] / 2**20:.0f} MiB "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['recall_at_10']:.3f} |"
        )
    return save({"runs": results}, args.json, True)


if __name__ == "__main__":
    raise SystemExit(main())
