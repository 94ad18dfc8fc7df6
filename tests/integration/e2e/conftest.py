"""A whole platform for end-to-end tests: five services, Triton, PostgreSQL, Redis.

Built once for the package through the same `LocalPlatform` that `magpie up` uses,
on free ports, with its own database, state directory and model repository.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator

import pytest

from magpie.datasets import synthetic
from magpie.datasets.schema import Dataset, Interaction
from magpie.datasets.warehouse import POSITIVE_KINDS
from magpie.learning.ranker_model import RankerConfig
from magpie.learning.retrieval_model import RetrievalConfig
from magpie.learning.train import PipelineConfig
from magpie.platform.demo import bootstrap, settings_for_cli, wait_for_version
from magpie.platform.local import SERVICES, LocalPlatform, isolated_layout
from magpie.platform.traces import TraceReceiver
from magpie.runtime import schema
from magpie.runtime.settings import Settings
from magpie.runtime.units import SECONDS_PER_DAY
from tests.support import ADMIN_URL, TEST_REDIS_URL

BROKER_URL = "redis://127.0.0.1:6379/13"
RESULT_BACKEND = "redis://127.0.0.1:6379/12"
E2E_PIPELINE = PipelineConfig(
    retrieval=RetrievalConfig(epochs=12, max_seconds=math.inf),
    ranker=RankerConfig(epochs=2, max_seconds=math.inf),
)
"""Fixed epochs, no time budget: a slow machine trains the same model, only later."""


@dataclasses.dataclass
class World:
    """What was loaded, and each evaluation user's held-out next item."""

    loaded: Dataset
    held_out: dict[str, str]


@dataclasses.dataclass
class Platform:
    local: LocalPlatform
    settings: Settings
    world: World
    version: int
    traces: TraceReceiver
    """Every span the platform's processes (Triton included) sent: all requests traced."""


def _split(dataset: Dataset, users: int) -> World:
    """Holds out the last positive interaction of `users` users (and everything after it)."""
    by_user: dict[str, list[Interaction]] = {}
    for interaction in dataset.interactions:
        by_user.setdefault(interaction.user_id, []).append(interaction)
    held_out: dict[str, str] = {}
    kept: list[Interaction] = []
    for user_id, events in by_user.items():
        positives = [i for i, e in enumerate(events) if e.kind in POSITIVE_KINDS]
        if len(held_out) < users and len(positives) >= 4:
            cut = positives[-1]
            held_out[user_id] = events[cut].item_id
            events = events[:cut]
        kept.extend(events)
    return World(Dataset(dataset.name, dataset.items, dataset.users, kept), held_out)


DATABASE_PASSWORD = "e2e-db-password-never-logged"
"""In the platform's database URL (trust authentication ignores it): no log line and no
span may ever contain it."""


@pytest.fixture(scope="package")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    # LocalPlatform.up creates and migrates it, as `magpie up` does.
    with (
        schema.throwaway_database(ADMIN_URL, "magpie_e2e", migrate=False) as database_url,
        TraceReceiver().start() as receiver,
    ):
        local = LocalPlatform(
            isolated_layout(tmp_path_factory.mktemp("platform")),
            database_url=database_url.replace("postgres@", f"postgres:{DATABASE_PASSWORD}@", 1),
            redis_url=TEST_REDIS_URL,
            tracing=receiver.targets,
            settings={
                "MAGPIE_LOG_JSON": "false",
                "MAGPIE_TRITON_TIMEOUT_SECONDS": "0.5",
                # Retraining: a broker of the tests' own; the threshold trigger is off until
                # a test turns it on (tests/integration/e2e/test_retraining.py).
                "MAGPIE_BROKER_URL": BROKER_URL,
                "MAGPIE_RESULT_BACKEND": RESULT_BACKEND,
                "MAGPIE_RETRAIN_EVENT_THRESHOLD": "0",
            },
        )
        try:
            local.up(list(SERVICES))
            settings = settings_for_cli(local.service_settings())
            end = (time.time() // SECONDS_PER_DAY) * SECONDS_PER_DAY
            config = dataclasses.replace(
                synthetic.PRESETS["small"],
                n_products=800,
                n_users=600,
                n_events=40_000,
                start=end - 60 * SECONDS_PER_DAY,
                end=end,
                seed=11,
                name="e2e",
            )
            world = _split(synthetic.generate(config), users=300)
            version = bootstrap(settings, world.loaded, E2E_PIPELINE, progress=False)
            wait_for_version(settings, version, timeout=60)
            yield Platform(local, settings, world, version, receiver)
        finally:
            local.down()
