"""One model version loaded for serving: user tower, item and text indexes, co-visitation.

Built by :func:`load_bundle` on a worker thread from ``<artifact_dir>/<version>/`` (the
layout in :mod:`magpie.modelstore.bundle`) and never changed afterwards, so a request
that holds a reference keeps a consistent version while a newer one is swapped in.
Rows are vocabulary indices; product ids start at ``FIRST_ITEM_INDEX``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from magpie.contract.covisitation import Covisitation
from magpie.contract.signature import (
    FIRST_ITEM_INDEX,
    HISTORY_IDS,
    OOV_INDEX,
    PAD_INDEX,
    USER_TOWER_HISTORY_LEN,
    USER_TOWER_MIN_HISTORY,
    USER_VECTORS,
)
from magpie.modelstore import bundle
from services.retrieval import config
from services.retrieval.index import build_index, describe

__all__ = ["Neighbours", "ServingModel", "load_bundle"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Neighbours:
    """Products found for some anchors: vocabulary rows, scores (descending), anchor rows."""

    rows: NDArray[Any]
    scores: NDArray[Any]
    anchors: NDArray[Any]


@dataclass(frozen=True, eq=False)
class ServingModel:
    version: str
    item_ids: NDArray[Any]
    """object [vocab]: product id per row ("" for the reserved rows)."""
    positions: dict[str, int]
    user_tower: ort.InferenceSession
    item_vectors: NDArray[Any]
    item_index: faiss.Index
    """Over rows FIRST_ITEM_INDEX.. (FAISS id + FIRST_ITEM_INDEX = row)."""
    text_vectors: NDArray[Any]
    text_index: faiss.Index
    covisitation: Covisitation
    """The same lists the ranker's candidate features come from."""
    text_lists: dict[int, tuple[NDArray[np.int32], NDArray[np.float32]]] = field(
        default_factory=dict, repr=False
    )
    """Each anchor's ``config.TEXT_NEIGHBOURS`` nearest texts once searched (see
    :meth:`similar_texts`); at most ``config.TEXT_LISTS_KEPT`` anchors."""

    def rows(self, product_ids: list[str]) -> NDArray[Any]:
        """int64 rows of ``product_ids``; OOV_INDEX for products the model does not know."""
        rows = map(self.positions.get, product_ids, repeat(OOV_INDEX))  # a loop in C
        return np.fromiter(rows, np.int64, len(product_ids))

    def user_vector(self, newest_first: NDArray[Any]) -> NDArray[Any]:
        """float32 [dim] from history rows, newest first (any length; the tower's tail kept).

        The tower takes histories of any length up to its own (at least
        ``USER_TOWER_MIN_HISTORY``), so only what the user has is sent: padding to the full
        length gives the same vector for several times the work.
        """
        tail = newest_first[:USER_TOWER_HISTORY_LEN][::-1]
        width = max(len(tail), USER_TOWER_MIN_HISTORY)
        history = np.full((1, width), PAD_INDEX, dtype=np.int64)
        if len(tail):
            history[0, width - len(tail) :] = tail
        outputs = self.user_tower.run([USER_VECTORS], {HISTORY_IDS: history})
        vector: NDArray[np.float32] = outputs[0][0]
        return vector

    def nearest(self, vector: NDArray[Any], k: int, exclude: NDArray[Any]) -> Neighbours:
        """The ``k`` items with the largest dot product with ``vector``, minus ``exclude`` rows."""
        return self._search(
            self.item_index, vector[None, :], np.full(1, PAD_INDEX), np.ones(1), k, exclude
        )

    def similar_texts(self, anchors: NDArray[Any], weights: NDArray[Any], k: int) -> Neighbours:
        """Items whose text is closest to any anchor row (score = weight x cosine).

        The anchors are users' recent products, which many users share, so each anchor's
        list is searched once per model version and kept: a search scans every text
        vector (the largest cost of a Retrieve call, measured under load). Lists are
        ``config.TEXT_NEIGHBOURS`` long, enough for the exact answer while ``k`` plus the
        number of anchors fits in them; a larger ``k`` searches directly.
        """
        if k + len(anchors) > config.TEXT_NEIGHBOURS:
            return self._search(
                self.text_index, self.text_vectors[anchors], anchors, weights, k, anchors
            )
        lists = [self._text_list(int(anchor)) for anchor in anchors]
        return _best_per_item(
            np.concatenate([rows for rows, _ in lists]).astype(np.int64),
            np.concatenate([scores * w for (_, scores), w in zip(lists, weights, strict=True)]),
            np.repeat(anchors, [len(rows) for rows, _ in lists]),
            k,
            anchors,
        )

    def _text_list(self, anchor: int) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
        """The anchor's nearest text rows (itself left out) and cosines, best first."""
        kept = self.text_lists.get(anchor)
        if kept is None:
            one = np.array([anchor])
            found = self._search(
                self.text_index,
                self.text_vectors[one],
                one,
                np.ones(1),
                config.TEXT_NEIGHBOURS,
                one,
            )
            kept = (found.rows.astype(np.int32), found.scores)
            if len(self.text_lists) < config.TEXT_LISTS_KEPT:
                self.text_lists[anchor] = kept
        return kept

    def similar_items(self, row: int, k: int) -> Neighbours:
        """Items nearest to one item in the retrieval space."""
        anchor = np.array([row])
        return self._search(
            self.item_index, self.item_vectors[anchor], anchor, np.ones(1), k, anchor
        )

    def covisited(self, anchors: NDArray[Any], weights: NDArray[Any], k: int) -> Neighbours:
        """Items co-visited with any anchor row (score = weight x co-visitation score)."""
        lists = self.covisitation
        starts, stops = lists.indptr[anchors], lists.indptr[anchors + 1]
        lengths = stops - starts
        if not lengths.sum():
            return _empty()
        spans = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops, strict=True)])
        return _best_per_item(
            lists.indices[spans].astype(np.int64),
            lists.scores[spans] * np.repeat(weights, lengths),
            np.repeat(anchors, lengths),
            k,
            anchors,
        )

    def _search(
        self,
        index: faiss.Index,
        queries: NDArray[Any],
        anchors: NDArray[Any],
        weights: NDArray[Any],
        k: int,
        exclude: NDArray[Any],
    ) -> Neighbours:
        if k <= 0 or not len(queries):
            return _empty()
        wanted = min(k + len(exclude), index.ntotal)
        # OpenMP settings are per thread and searches run on executor threads.
        faiss.omp_set_num_threads(config.FAISS_THREADS)
        scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), wanted)
        found = ids >= 0
        return _best_per_item(
            ids[found] + FIRST_ITEM_INDEX,
            (scores * weights[:, None])[found],
            np.broadcast_to(anchors[:, None], ids.shape)[found],
            k,
            exclude,
        )


def _empty() -> Neighbours:
    return Neighbours(np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0, np.int64))


def _best_per_item(
    rows: NDArray[Any], scores: NDArray[Any], anchors: NDArray[Any], k: int, exclude: NDArray[Any]
) -> Neighbours:
    """Per distinct row its best score and that score's anchor; the top ``k`` rows."""
    keep = ~np.isin(rows, exclude)
    rows, scores, anchors = rows[keep], scores[keep], anchors[keep]
    order = np.lexsort((-scores, rows))
    first = np.ones(len(order), dtype=bool)
    first[1:] = rows[order[1:]] != rows[order[:-1]]
    best = order[first]
    top = best[np.argsort(-scores[best], kind="stable")[:k]]
    return Neighbours(rows[top], scores[top].astype(np.float32), anchors[top])


def load_bundle(version: int, directory: Path) -> ServingModel:
    """Reads a bundle and builds its indexes (seconds for a million items; call off the loop)."""
    started = time.perf_counter()
    item_ids = json.loads((directory / bundle.VOCAB).read_text())["item_ids"]
    ids = np.empty(len(item_ids) + FIRST_ITEM_INDEX, dtype=object)
    ids[:FIRST_ITEM_INDEX] = ""
    ids[FIRST_ITEM_INDEX:] = item_ids
    item_vectors = np.load(directory / bundle.ITEM_VECTORS).astype(np.float32, copy=False)
    text_vectors = np.load(directory / bundle.TEXT_VECTORS).astype(np.float32, copy=False)
    for name, matrix in ((bundle.ITEM_VECTORS, item_vectors), (bundle.TEXT_VECTORS, text_vectors)):
        if matrix.ndim != 2 or matrix.shape[0] != len(ids):
            raise ValueError(f"{directory / name}: {matrix.shape} rows do not match the vocabulary")
    with np.load(directory / bundle.COVISITATION) as arrays:
        covisitation = Covisitation.from_arrays(arrays)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    tower = ort.InferenceSession(
        str(directory / bundle.USER_TOWER), options, providers=["CPUExecutionProvider"]
    )
    model = ServingModel(
        version=str(version),
        item_ids=ids,
        positions={p: i + FIRST_ITEM_INDEX for i, p in enumerate(item_ids)},
        user_tower=tower,
        item_vectors=item_vectors,
        item_index=build_index(item_vectors[FIRST_ITEM_INDEX:]),
        text_vectors=text_vectors,
        text_index=build_index(text_vectors[FIRST_ITEM_INDEX:]),
        covisitation=covisitation,
    )
    logger.info(
        "loaded model %s from %s: %d items, index %s, %.1fs",
        version,
        directory,
        len(item_ids),
        describe(model.item_index),
        time.perf_counter() - started,
    )
    return model
