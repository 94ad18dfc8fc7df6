"""A tiny catalog in PostgreSQL, model bundles on disk and the real profile service."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psycopg2
import pytest
import torch
from psycopg2.extras import execute_values

from magpie.contract.signature import FIRST_ITEM_INDEX
from magpie.learning.export import export_user_tower
from magpie.learning.retrieval_model import RetrievalConfig, RetrievalModel
from magpie.modelstore import bundle, registry
from magpie.runtime.settings import Settings
from services.profiles import server as profiles_server

CATEGORIES = ("Home > Kitchen", "Home > Garden", "Sports > Running", "Books > Fiction")
ITEMS = 80
TEXT_DIM = 16


def product_id(i: int) -> str:
    return f"p{i:03d}"


PRODUCTS = [product_id(i) for i in range(ITEMS)]
CATEGORY = {p: CATEGORIES[i % len(CATEGORIES)] for i, p in enumerate(PRODUCTS)}
BRAND = {p: ("acme", "bolt", "cora")[i % 3] for i, p in enumerate(PRODUCTS)}
PRICE_UNITS = {p: 5 + (i * 7) % 50 for i, p in enumerate(PRODUCTS)}
HIDDEN = {product_id(i) for i in (3, 17, 42)}
WITHDRAWN = {product_id(i) for i in (8, 55)}
OUT_OF_STOCK = {product_id(i) for i in (12, 29, 64, 71)}
NEVER = HIDDEN | WITHDRAWN | OUT_OF_STOCK


def write_bundle(directory: Path, seed: int) -> None:
    """A complete retrieval bundle: exported user tower, item/text vectors, co-visitation."""
    directory.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    vocab = ITEMS + FIRST_ITEM_INDEX
    item_category = torch.zeros(vocab, dtype=torch.long)
    item_category[FIRST_ITEM_INDEX:] = torch.tensor([i % len(CATEGORIES) + 1 for i in range(ITEMS)])
    centres = rng.standard_normal((len(CATEGORIES), TEXT_DIM))
    text = np.zeros((vocab, TEXT_DIM), dtype=np.float32)
    text[FIRST_ITEM_INDEX:] = centres[
        np.arange(ITEMS) % len(CATEGORIES)
    ] + 0.5 * rng.standard_normal((ITEMS, TEXT_DIM))
    text[FIRST_ITEM_INDEX:] /= np.linalg.norm(text[FIRST_ITEM_INDEX:], axis=1, keepdims=True)
    config = RetrievalConfig(dim=8, layers=1, heads=1, dropout=0.0, id_dropout=0.0)
    model = RetrievalModel(config, item_category, torch.from_numpy(text))
    with torch.no_grad():
        model.items.ids.weight.normal_(0, 1.0)
    export_user_tower(model, directory)
    np.save(directory / bundle.TEXT_VECTORS, text)
    # Co-visitation: each item's next three items of the same category.
    indptr, indices, scores = [0] * (FIRST_ITEM_INDEX + 1), [], []
    for i in range(ITEMS):
        neighbours = [(i + step * len(CATEGORIES)) % ITEMS for step in (1, 2, 3)]
        indices += [n + FIRST_ITEM_INDEX for n in neighbours]
        scores += [3.0, 2.0, 1.0]
        indptr.append(len(indices))
    np.savez(
        directory / bundle.COVISITATION,
        indptr=np.array(indptr, np.int64),
        indices=np.array(indices, np.int32),
        scores=np.array(scores, np.float32),
    )
    (directory / bundle.VOCAB).write_text(json.dumps({"item_ids": PRODUCTS}))


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifact directory holding versions 1 and 2 (different weights)."""
    root = tmp_path_factory.mktemp("artifacts")
    write_bundle(root / "1", seed=1)
    write_bundle(root / "2", seed=2)
    return root


def seed_catalog(url: str) -> None:
    rows = []
    for i, p in enumerate(PRODUCTS):
        status = 2 if p in HIDDEN else 3 if p in WITHDRAWN else 1
        stock = 0 if p in OUT_OF_STOCK else 10
        rows.append(
            (p, f"Product {i}", CATEGORY[p], BRAND[p], "EUR", PRICE_UNITS[p] * 10**9, stock, status)
        )
    popularity = [(p, float(ITEMS - i)) for i, p in enumerate(PRODUCTS)]
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        execute_values(
            cur,
            "INSERT INTO products (product_id, title, category_path, brand, currency_code,"
            " price_nanos, stock, status) VALUES %s",
            rows,
        )
        execute_values(
            cur,
            "INSERT INTO product_popularity (product_id, score, as_of) VALUES %s",
            popularity,
            template="(%s, %s, now())",
        )
    conn.close()


def publish(url: str, model_name: str, version: int) -> None:
    """Registers and promotes a version, as training does."""
    with psycopg2.connect(url) as conn:
        registry.register_candidate(conn, model_name, version, {}, f"file:///{version}")
        registry.promote(conn, model_name, version, "manual")
    conn.close()


def put_history(
    url: str, user_id: str, recent: Sequence[str], purchased: Sequence[str] = ()
) -> None:
    """Stores events that give the user these recent clicks (newest first) and purchases
    (older), for the real profile service to read back."""
    now = time.time()
    rows = [(f"{user_id}-click-{i}", user_id, p, 2, now - i) for i, p in enumerate(recent)]
    rows += [(f"{user_id}-buy-{i}", user_id, p, 4, now - 3600 - i) for i, p in enumerate(purchased)]
    if not rows:
        return
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        execute_values(
            cur,
            "INSERT INTO events (event_id, user_id, product_id, event_type, occurred_at) VALUES %s",
            rows,
            template="(%s, %s, %s, %s, to_timestamp(%s))",
        )
    conn.close()


@pytest.fixture
async def profiles_addr(settings: Settings, serve: Callable[..., Any]) -> str:
    """The real profile service, on the test database, for retrieval to call."""
    running = await serve(profiles_server.build_spec(settings), settings)
    return str(running.address)


@pytest.fixture
def retrieval_settings(
    settings: Settings, bundles: Path, profiles_addr: str
) -> Callable[..., Settings]:
    """Settings pointing at the bundles and the real profile service; catalog seeded."""
    seed_catalog(settings.database_url)

    def make(**overrides: object) -> Settings:
        values: Mapping[str, object] = {
            "artifact_dir": str(bundles),
            "profiles_addr": profiles_addr,
            **overrides,
        }
        return settings.model_copy(update=values)

    return make
