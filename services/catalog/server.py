"""Wiring of the catalog service: storage, caches, logic, servicer, health."""

from __future__ import annotations

import asyncio

import grpc

from magpie.runtime.cache import PRODUCT_STATS, Cache
from magpie.runtime.db import Database
from magpie.runtime.server import ServiceSpec
from magpie.runtime.settings import Settings
from magpie.v1 import catalog_pb2, catalog_pb2_grpc
from services.catalog import config
from services.catalog.service import CatalogService
from services.catalog.servicer import VALIDATORS, CatalogServicer
from services.catalog.storage import CatalogStore

__all__ = ["NAME", "SERVICE_NAME", "build_spec"]

NAME = "catalog"
SERVICE_NAME = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name


def build_spec(settings: Settings) -> ServiceSpec:
    db = Database.from_settings(settings, name=NAME)
    products_cache = Cache.from_settings(settings, "catalog")
    stats_cache = Cache.from_settings(settings, PRODUCT_STATS, config.STATS_CACHE_SECONDS)
    service = CatalogService(CatalogStore(db), products_cache, stats_cache)
    servicer = CatalogServicer(service)

    def register(server: grpc.aio.Server) -> None:
        catalog_pb2_grpc.add_CatalogServiceServicer_to_server(servicer, server)

    async def close() -> None:
        await asyncio.gather(products_cache.close(), stats_cache.close())
        db.close()

    return ServiceSpec(
        name=NAME,
        max_request_bytes=config.MAX_REQUEST_BYTES,
        service_names=[SERVICE_NAME],
        register=register,
        validators=VALIDATORS,
        probes=[db.ping],  # Redis is optional: health follows PostgreSQL only
        close=close,
    )
