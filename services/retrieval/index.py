"""FAISS inner-product indexes, one choice for every catalog size.

While one query scans at most ``EXACT_MAX_FLOATS`` numbers (50k items at dim 64, 8k
text vectors at dim 384) the index is exact (``IndexFlatIP``, about a millisecond).
Above it an inverted file with flat (unquantised) lists: ``nlist`` ~ 4 sqrt(n) k-means
cells trained on a sample, of which ``nprobe`` (~8k vectors) are scanned per query. IVF-Flat
builds in seconds (a hot swap rebuilds off the event loop on the cores that serve),
keeps exact scores inside the scanned cells, and ``tools/bench/ann.py`` measures the
recall@100 and speedup of exactly this function's output against exact search.
"""

from __future__ import annotations

import math

import faiss
import numpy as np
from numpy.typing import NDArray

__all__ = ["EXACT_MAX_FLOATS", "build_index", "describe"]

EXACT_MAX_FLOATS = 50_000 * 64
"""Largest matrix (items x dim) searched exhaustively."""
_TRAIN_POINTS_PER_CELL = 40
_SCAN_VECTORS = 8000
"""Vectors scanned per query, roughly (nprobe = this / mean cell size); tuned with
tools/bench/ann.py for recall@100 >= 0.95 at 100k and 1M items."""
_MIN_NPROBE = 16
_SEED = 1234


def _cells(n: int) -> int:
    return int(min(max(4 * math.sqrt(n), 256), 8192))


def build_index(vectors: NDArray[np.float32]) -> faiss.Index:
    """An inner-product index over the rows of ``vectors`` (float32 [n, dim]); ids = rows."""
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = data.shape
    if n * dim <= EXACT_MAX_FLOATS:
        flat = faiss.IndexFlatIP(dim)
        flat.add(data)
        return flat
    nlist = _cells(n)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(_SEED).choice(
        n, size=min(n, nlist * _TRAIN_POINTS_PER_CELL), replace=False
    )
    index.train(data[np.sort(sample)])
    index.add(data)
    index.nprobe = max(_MIN_NPROBE, math.ceil(_SCAN_VECTORS * nlist / n))
    return index


def describe(index: faiss.Index) -> str:
    """A short name of the index and its search parameters, e.g. ``IVF1024,Flat nprobe=32``."""
    if isinstance(index, faiss.IndexIVFFlat):
        return f"IVF{index.nlist},Flat nprobe={index.nprobe}"
    return "Flat (exact)"
