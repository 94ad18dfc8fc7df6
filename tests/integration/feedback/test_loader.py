"""The loader fills the real catalog, profile and feedback services; reloading is harmless."""

from __future__ import annotations

import asyncio
import logging

import pytest

from magpie.datasets import synthetic
from magpie.datasets.loader import Addresses, Loader, LoadReport
from magpie.datasets.schema import User
from magpie.runtime.settings import Settings
from magpie.runtime.telemetry import hashed_user
from services.catalog.server import build_spec as catalog_spec
from services.feedback.server import build_spec as feedback_spec
from services.profiles.server import build_spec as profiles_spec
from tests.integration.feedback.events import query

pytestmark = pytest.mark.integration


async def test_loading_a_synthetic_world_twice_stores_it_once(
    settings: Settings, clean_db: str, serve
) -> None:  # type: ignore[no-untyped-def]
    catalog = await serve(catalog_spec(settings), settings)
    profiles = await serve(profiles_spec(settings), settings)
    feedback = await serve(feedback_spec(settings), settings)
    addresses = Addresses(catalog.address, profiles.address, feedback.address)
    config = synthetic.preset("tiny")

    def load() -> LoadReport:
        with Loader(addresses, progress=False) as loader:
            loader.products(synthetic.iter_items(config, batch_size=64))
            loader.users(synthetic.iter_users(config, batch_size=64))
            loader.interactions(config.name, synthetic.iter_interactions(config, batch_size=777))
            return loader.report

    first = await asyncio.to_thread(load)
    second = await asyncio.to_thread(load)

    events = sum(len(batch) for batch in synthetic.iter_interactions(config))
    assert (first.products, first.users, first.failed) == (200, 100, 0)
    assert (first.events_accepted, first.events_rejected) == (events, 0)
    assert (second.events_accepted, second.events_duplicate) == (0, events)
    assert query(clean_db, "SELECT count(*) FROM products") == [(200,)]
    assert query(clean_db, "SELECT count(*) FROM users") == [(100,)]
    assert query(clean_db, "SELECT count(*), min(event_id) FROM events") == [
        (events, f"{config.name}-0")
    ]


async def test_a_refused_user_is_logged_by_hash_only(
    settings: Settings, serve, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    profiles = await serve(profiles_spec(settings), settings)
    addresses = Addresses(profiles.address, profiles.address, profiles.address)

    def load() -> LoadReport:
        with Loader(addresses, progress=False) as loader:
            loader.users([[User("jane.doe@example.com", region="DE\x00BY")]])
            return loader.report

    with caplog.at_level(logging.WARNING, logger="magpie.datasets.loader"):
        report = await asyncio.to_thread(load)

    assert report.failed == 1
    assert f"user {hashed_user('jane.doe@example.com')} refused" in caplog.text
    assert "jane.doe" not in caplog.text
