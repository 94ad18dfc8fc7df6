"""What `magpie up` does after the services are up: data, a first model, recommendations.

On an empty platform it generates a synthetic e-commerce world that ends today,
loads it through the public gRPC APIs, trains a first model version from what
was stored, publishes it to Triton and promotes it, then asks the ranking
service for a few users' recommendations and prints them with their reasons.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from magpie.datasets import synthetic
from magpie.datasets.loader import Addresses, Loader
from magpie.datasets.schema import Dataset
from magpie.datasets.warehouse import read_dataset
from magpie.learning.ranker_model import RankerConfig
from magpie.learning.retrieval_model import RetrievalConfig
from magpie.learning.train import PipelineConfig
from magpie.modelstore import registry
from magpie.modelstore.lifecycle import connection, roll_out, train_candidate
from magpie.retraining import runs
from magpie.runtime.clients import blocking_channel
from magpie.runtime.settings import ENV_PREFIX, Settings, load_settings
from magpie.runtime.units import SECONDS_PER_DAY
from magpie.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    common_pb2,
    ranking_pb2,
    ranking_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
)

__all__ = [
    "DEMO_PIPELINE",
    "bootstrap",
    "demo_world",
    "print_recommendations",
    "settings_for_cli",
    "wait_for_version",
]

logger = logging.getLogger(__name__)


DEMO_PIPELINE = PipelineConfig(
    retrieval=RetrievalConfig(epochs=12, max_seconds=90.0),
    ranker=RankerConfig(epochs=3, max_seconds=60.0),
)
"""A first model in a couple of minutes on two cores; retraining uses the full defaults."""


def demo_world(
    n_products: int = 2_000, n_users: int = 1_000, n_events: int = 60_000
) -> synthetic.SyntheticConfig:
    """The synthetic world `magpie up` loads, shifted so that its last day is today."""
    end = (time.time() // SECONDS_PER_DAY) * SECONDS_PER_DAY
    return dataclasses.replace(
        synthetic.PRESETS["small"],
        n_products=n_products,
        n_users=n_users,
        n_events=n_events,
        start=end - 90 * SECONDS_PER_DAY,
        end=end,
        name="demo",
    )


def bootstrap(
    settings: Settings,
    world: Dataset | None = None,
    pipeline: PipelineConfig = DEMO_PIPELINE,
    *,
    progress: bool = True,
) -> int:
    """Loads `world` (default: the demo world) and trains, publishes and promotes a first
    model from what was stored, unless a version is promoted already and its bundle is in
    this platform's artifact directory. Returns the version served.

    The database can outlive the artifact directory (the machine's PostgreSQL is shared by
    every checkout's `.magpie/`): then the stored world is kept and a model is trained here.
    """
    with connection(settings) as conn:
        active = registry.active_version(conn, settings.model_name)
    if active is not None and (Path(settings.artifact_dir) / str(active.version)).is_dir():
        return active.version
    world = world or synthetic.generate(demo_world())
    if active is None:
        logger.info("empty platform: loading the world %s", world.name)
        addresses = Addresses(settings.catalog_addr, settings.profiles_addr, settings.feedback_addr)
        with Loader(addresses, progress=progress, token_file=settings.auth_token_file) as loader:
            report = loader.load(world)
        if report.failed or report.events_rejected:
            raise RuntimeError(f"the platform refused part of {world.name}: {report}")
    else:
        logger.info(
            "version %s is promoted but not in %s: training a model here",
            active.version,
            settings.artifact_dir,
        )
    with connection(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(max(seq), 0) FROM events")
        (through_seq,) = cur.fetchone()  # type: ignore[misc]
    dataset = read_dataset(settings.database_url, name=world.name, through_seq=through_seq)
    logger.info("training a first model on %d interactions", len(dataset.interactions))
    candidate = train_candidate(settings, dataset, pipeline)
    served = roll_out(settings, candidate.version, "bootstrap", reason="first model").version
    with connection(settings) as conn:  # retraining's event threshold counts from here
        runs.record_finished_run(
            conn, settings.model_name, {"actor": "bootstrap"}, served, int(through_seq)
        )
    return served


def wait_for_version(settings: Settings, version: int, timeout: float = 30.0) -> None:
    """Waits until retrieval and ranking both serve `version` (each polls the registry on
    its own: a Recommend answered by the new ranker may still get its candidates from a
    retrieval service without the model, popular products only)."""
    give_up = time.monotonic() + timeout
    expected = str(version)
    with (
        blocking_channel(settings.retrieval_addr, settings.auth_token_file) as retrieval_channel,
        blocking_channel(settings.ranking_addr, settings.auth_token_file) as ranking_channel,
    ):
        retrieval = retrieval_pb2_grpc.RetrievalServiceStub(retrieval_channel)
        ranking = ranking_pb2_grpc.RankingServiceStub(ranking_channel)
        while time.monotonic() < give_up:
            retrieved = retrieval.Retrieve(
                retrieval_pb2.RetrieveRequest(user_id="u000001", limit=1), timeout=5
            )
            reply = ranking.Recommend(
                ranking_pb2.RecommendRequest(user_id="u000001", k=1), timeout=5
            )
            if (
                retrieved.model_version == expected
                and reply.model_version == expected
                and not reply.degradations
            ):
                return
            time.sleep(0.5)
    raise TimeoutError(f"the platform did not serve model version {version} within {timeout:.0f}s")


def print_recommendations(settings: Settings, user_ids: list[str], k: int = 5) -> None:
    with (
        blocking_channel(settings.ranking_addr, settings.auth_token_file) as ranking,
        blocking_channel(settings.catalog_addr, settings.auth_token_file) as catalog,
    ):
        stub = ranking_pb2_grpc.RankingServiceStub(ranking)
        products = catalog_pb2_grpc.CatalogServiceStub(catalog)
        for user_id in user_ids:
            reply = stub.Recommend(
                ranking_pb2.RecommendRequest(
                    user_id=user_id,
                    k=k,
                    diversity=0.3,
                    context=common_pb2.RequestContext(device=common_pb2.DEVICE_MOBILE),
                ),
                timeout=5,
            )
            degraded = [ranking_pb2.Degradation.Name(d) for d in reply.degradations]
            note = f", degraded: {', '.join(degraded)}" if degraded else ""
            print(f"\n{user_id} (model {reply.model_version}{note}, {reply.recommendation_id}):")
            found = products.GetProducts(
                catalog_pb2.GetProductsRequest(product_ids=[i.product_id for i in reply.items]),
                timeout=5,
            ).products
            titles = {p.product_id: p.title for p in found}
            for item in reply.items:
                title = titles.get(item.product_id, item.product_id)
                print(f"  {item.position:>2}. {title:<48} {item.reason.text}")


def settings_for_cli(platform_settings: dict[str, str]) -> Settings:
    """Settings of the `magpie up` process itself, from the platform's MAGPIE_* values."""
    return load_settings(
        {k.removeprefix(ENV_PREFIX).lower(): v for k, v in platform_settings.items()}
    )
