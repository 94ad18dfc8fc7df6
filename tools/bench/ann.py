"""FAISS ANN (the retrieval service's own index choice) against exact inner-product search.

Data: ``--clusters`` Gaussian clusters in ``--dim`` dimensions (centres ~ N(0, I), items =
centre + N(0, spread^2 I); spread 1 makes clusters overlap), rows L2-normalised, like the
retrieval model's item vectors.
Queries are drawn like user vectors: the mean of 5 items of one cluster plus 3 items of
random clusters (a mixed history), plus noise, not normalised. Ground truth is exact
search over the same vectors (IndexFlatIP); recall@100 = |ANN top 100 ∩ exact top 100| / 100.

Timings: "single" = one query per call on one thread (how the service searches, the
serving-relevant number); "batched" = all queries in one call on every core.

    python -m tools.bench.ann                 # 100k and 1M items, dim 64
    python -m tools.bench.ann --sizes 20000   # quick look
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from services.retrieval.index import build_index, describe
from tools.bench._report import write_report

K = 100


def clustered_items(
    n: int, dim: int, clusters: int, spread: float, rng: np.random.Generator
) -> np.ndarray:
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    items = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for start in range(0, n, step):
        stop = min(start + step, n)
        labels = rng.integers(0, clusters, stop - start)
        noise = rng.standard_normal((stop - start, dim), dtype=np.float32)
        block = centres[labels] + spread * noise
        items[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return items


def user_queries(items: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Each query: the mean of 5 nearby items (one taste) and 3 random ones, plus noise."""
    anchors = rng.integers(0, len(items), count)
    _, near = faiss.knn(
        items[anchors], items[: min(len(items), 200_000)], 50, faiss.METRIC_INNER_PRODUCT
    )
    picks = near[np.arange(count)[:, None], rng.integers(0, 50, (count, 5))]
    history = np.concatenate([picks, rng.integers(0, len(items), (count, 3))], axis=1)
    queries = items[history].mean(axis=1)
    queries += 0.05 * rng.standard_normal(queries.shape, dtype=np.float32)
    return np.ascontiguousarray(queries, dtype=np.float32)


def single_query_ms(index: faiss.Index, queries: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean milliseconds per query searching one query per call on one thread."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    found = np.empty((len(queries), K), dtype=np.int64)
    try:
        started = time.perf_counter()
        for i in range(len(queries)):
            found[i] = index.search(queries[i : i + 1], K)[1][0]
        elapsed = time.perf_counter() - started
    finally:
        faiss.omp_set_num_threads(threads)
    return elapsed * 1000 / len(queries), found


def batched_ms(index: faiss.Index, queries: np.ndarray) -> float:
    started = time.perf_counter()
    index.search(queries, K)
    return (time.perf_counter() - started) * 1000 / len(queries)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed + n)
    items = clustered_items(n, args.dim, args.clusters, args.spread, rng)
    queries = user_queries(items, args.queries, rng)

    exact = faiss.IndexFlatIP(args.dim)
    exact.add(items)
    _, truth = exact.search(queries, K)
    exact_batched = batched_ms(exact, queries)
    exact_single, _ = single_query_ms(exact, queries[: args.exact_queries])
    del exact

    started = time.perf_counter()
    index = build_index(items)
    build_seconds = time.perf_counter() - started
    ann_single, found = single_query_ms(index, queries)
    ann_batched = batched_ms(index, queries)
    row: dict[str, Any] = {
        "items": n,
        "index": describe(index),
        "recall_at_100": round(recall(found, truth), 4),
        "speedup_vs_exact": round(exact_single / ann_single, 1),
        "ann_ms_per_query": round(ann_single, 4),
        "exact_ms_per_query": round(exact_single, 4),
        "batched_speedup_vs_exact": round(exact_batched / ann_batched, 1),
        "ann_batched_ms_per_query": round(ann_batched, 4),
        "exact_batched_ms_per_query": round(exact_batched, 4),
        "build_seconds": round(build_seconds, 2),
        "index_mb": round(faiss.serialize_index(index).nbytes / 2**20, 1),
    }
    if isinstance(index, faiss.IndexIVFFlat):
        chosen = index.nprobe
        sweep = []
        for nprobe in sorted({16, 32, 64, 128, 256, chosen}):
            index.nprobe = nprobe
            ms, hits = single_query_ms(index, queries[: args.sweep_queries])
            sweep.append(
                {
                    "nprobe": nprobe,
                    "recall_at_100": round(recall(hits, truth[: args.sweep_queries]), 4),
                    "speedup_vs_exact": round(exact_single / ms, 1),
                }
            )
        index.nprobe = chosen
        row["nprobe_sweep"] = sweep
    row["peak_rss_mb"] = round(peak_rss_mb())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=1.0)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--exact-queries", type=int, default=200)
    parser.add_argument("--sweep-queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    rows = [run_size(n, args) for n in args.sizes]
    print(
        f"{'items':>9} {'index':<24} {'recall@100':>10} {'speedup':>8} {'ann ms':>8} "
        f"{'exact ms':>9} {'batch x':>8} {'build s':>8} {'rss MB':>7}"
    )
    for r in rows:
        print(
            f"{r['items']:>9} {r['index']:<24} {r['recall_at_100']:>10.4f} "
            f"{r['speedup_vs_exact']:>8.1f} {r['ann_ms_per_query']:>8.3f} "
            f"{r['exact_ms_per_query']:>9.3f} {r['batched_speedup_vs_exact']:>8.1f} "
            f"{r['build_seconds']:>8.1f} {r['peak_rss_mb']:>7}"
        )
    results = {
        "sizes": rows,
        "k": K,
        "dim": args.dim,
        "data": f"{args.clusters} Gaussian clusters (spread {args.spread}), normalised items; "
        f"user-like queries (mean of 5 near + 3 random items + noise); {args.queries} queries "
        f"({args.exact_queries} for exact single-query timing)",
    }
    print(f"wrote {write_report('ann', results, args.output)}")


if __name__ == "__main__":
    main()
