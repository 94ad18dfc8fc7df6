"""Fixtures of the feedback tests: a catalog to send events about, a running service."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import psycopg2
import pytest

from magpie.runtime.settings import Settings
from magpie.v1 import feedback_pb2_grpc
from services.feedback.server import build_spec

PRODUCTS = {"p1": "Books > Fiction", "p2": "Books > Poetry", "p3": "Garden > Tools"}


def add_products(database_url: str, products: dict[str, str]) -> None:
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO products (product_id, title, category_path) VALUES (%s, %s, %s)",
                [(p, f"title {p}", path) for p, path in products.items()],
            )
    finally:
        conn.close()


@pytest.fixture
def catalog(clean_db: str) -> dict[str, str]:
    add_products(clean_db, PRODUCTS)
    return PRODUCTS


@pytest.fixture
async def feedback(
    settings: Settings, catalog: dict[str, str], serve
) -> AsyncIterator[feedback_pb2_grpc.FeedbackServiceStub]:  # type: ignore[no-untyped-def]
    running = await serve(build_spec(settings), settings)
    async with grpc.aio.insecure_channel(running.address) as channel:
        yield feedback_pb2_grpc.FeedbackServiceStub(channel)
