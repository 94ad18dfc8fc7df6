"""Product text embeddings cached in PostgreSQL by content hash, shared by every worker.

The key of an embedding is the hash of the encoder name and the exact text
(:func:`magpie.learning.text.text_key`), so a product is embedded again only when its
text (title, category path, description) changes or the encoder does; every worker,
pod or Job of the platform reads the same cache.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from psycopg2.extras import execute_values

from magpie.learning.text import Encoder, TextConfig, load_sentence_encoder, text_key
from magpie.runtime.db import Connection

__all__ = ["Embedded", "embed_with_cache"]

logger = logging.getLogger(__name__)


class Embedded:
    """What one call did: vectors in input order, and how many texts were new."""

    def __init__(self, vectors: NDArray[Any], new: int) -> None:
        self.vectors = vectors
        self.new = new

    @property
    def reused(self) -> int:
        return len(self.vectors) - self.new


def _stored(conn: Connection, keys: Sequence[str]) -> dict[str, NDArray[Any]]:
    with conn.cursor() as cur:
        cur.execute("SELECT key, vector FROM text_embeddings WHERE key = ANY(%s)", (list(keys),))
        return {key: np.frombuffer(bytes(blob), dtype="<f4") for key, blob in cur.fetchall()}


def embed_with_cache(
    conn: Connection,
    texts: Sequence[str],
    config: TextConfig,
    encoder: Encoder | None = None,
    batch_size: int = 256,
) -> Embedded:
    """float32 [len(texts), dim]: cached vectors, and the missing ones encoded and stored
    (``encoder`` overrides loading ``config.encoder``; tests pass a fake)."""
    keys = [text_key(config.encoder, text) for text in texts]
    found = _stored(conn, sorted(set(keys)))
    missing = sorted(
        {key: text for key, text in zip(keys, texts, strict=True) if key not in found}.items()
    )
    if missing:
        logger.info("embedding %d new or changed texts with %s", len(missing), config.encoder)
        encode = encoder or load_sentence_encoder(config.encoder)
        for start in range(0, len(missing), batch_size):
            batch = missing[start : start + batch_size]
            vectors = np.asarray(encode([text for _, text in batch]), dtype="<f4")
            rows = [
                (key, config.encoder, vector.tobytes())
                for (key, _), vector in zip(batch, vectors, strict=True)
            ]
            with conn.cursor() as cur:
                execute_values(
                    cur,
                    "INSERT INTO text_embeddings (key, encoder, vector) VALUES %s"
                    " ON CONFLICT (key) DO NOTHING",
                    rows,
                )
            found.update({key: vector for (key, _), vector in zip(batch, vectors, strict=True)})
    matrix = np.stack([found[key] for key in keys]).astype(np.float32) if keys else np.empty((0, 0))
    return Embedded(matrix, len(missing))
