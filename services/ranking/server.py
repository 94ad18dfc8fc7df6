"""Wiring of the ranking service: channels to its dependencies, Triton, the model watcher."""

from __future__ import annotations

import grpc

from magpie.modelstore.client import RankerClient
from magpie.modelstore.watch import registry_watcher
from magpie.runtime.clients import open_channel
from magpie.runtime.db import Database
from magpie.runtime.server import ServiceSpec
from magpie.runtime.settings import Settings
from magpie.v1 import ranking_pb2, ranking_pb2_grpc
from services.ranking import config
from services.ranking.downstream import CatalogClient, GuardedRanker, ProfileClient, RetrievalClient
from services.ranking.model import load_serving_model
from services.ranking.product_cache import ProductCache
from services.ranking.service import RankingService
from services.ranking.servicer import VALIDATORS, RankingServicer

__all__ = ["NAME", "build_spec"]

NAME = "ranking"
SERVICE_NAME = ranking_pb2.DESCRIPTOR.services_by_name["RankingService"].full_name


def build_spec(settings: Settings) -> ServiceSpec:
    channels = [
        open_channel(address, settings)
        for address in (settings.profiles_addr, settings.retrieval_addr, settings.catalog_addr)
    ]
    profiles_channel, retrieval_channel, catalog_channel = channels
    db = Database.from_settings(settings, name=NAME, pool_size=2)

    models = registry_watcher(NAME, db, settings, load_serving_model)
    ranker = RankerClient(
        settings.triton_addr,
        settings.triton_model,
        settings.triton_timeout_seconds,
        tls=settings if settings.triton_tls else None,
    )
    product_cache = (
        ProductCache(config.PRODUCT_CACHE_SECONDS, config.PRODUCT_CACHE_SIZE)
        if config.PRODUCT_CACHE_SECONDS > 0
        else None
    )
    service = RankingService(
        ProfileClient(profiles_channel),
        RetrievalClient(retrieval_channel),
        CatalogClient(catalog_channel, product_cache),
        GuardedRanker(ranker),
        models,
    )
    servicer = RankingServicer(service)

    def register(server: grpc.aio.Server) -> None:
        ranking_pb2_grpc.add_RankingServiceServicer_to_server(servicer, server)

    async def close() -> None:
        await ranker.close()
        for channel in channels:
            await channel.close()
        db.close()

    return ServiceSpec(
        name=NAME,
        max_request_bytes=config.MAX_REQUEST_BYTES,
        service_names=[SERVICE_NAME],
        register=register,
        validators=VALIDATORS,
        background=[models.run],
        close=close,
    )
