"""Wiring of the feedback service: storage, logic, servicer, health, the event consumer and
the retraining threshold trigger."""

from __future__ import annotations

from functools import partial

import grpc

from magpie.runtime.cache import PRODUCT_STATS, PROFILES, Cache
from magpie.runtime.db import Database
from magpie.runtime.server import ServiceSpec
from magpie.runtime.settings import Settings
from magpie.runtime.telemetry import user_digest
from magpie.v1 import feedback_pb2, feedback_pb2_grpc
from services.feedback import config
from services.feedback.consumer import EventConsumer
from services.feedback.retrain import RetrainTrigger
from services.feedback.service import FeedbackService, KnownProducts
from services.feedback.servicer import VALIDATORS, FeedbackServicer
from services.feedback.storage import DeletedUserStore, EventStore

__all__ = ["NAME", "build_spec"]

NAME = "feedback"
SERVICE_NAME = feedback_pb2.DESCRIPTOR.services_by_name["FeedbackService"].full_name


def build_spec(settings: Settings) -> ServiceSpec:
    db = Database.from_settings(settings, name=NAME)
    known = KnownProducts(config.PRODUCT_CACHE_SECONDS, config.PRODUCT_CACHE_MAX)
    trigger = RetrainTrigger(settings, db)
    deleted = DeletedUserStore(db, partial(user_digest, settings=settings))
    caches = [Cache.from_settings(settings, namespace) for namespace in (PROFILES, PRODUCT_STATS)]
    servicer = FeedbackServicer(
        FeedbackService(EventStore(db), known, trigger.stored, deleted=deleted, profiles=caches[0])
    )
    consumer = EventConsumer(db, *caches)

    def register(server: grpc.aio.Server) -> None:
        feedback_pb2_grpc.add_FeedbackServiceServicer_to_server(servicer, server)

    async def close() -> None:
        for cache in caches:
            await cache.close()
        db.close()

    return ServiceSpec(
        name=NAME,
        max_request_bytes=config.MAX_REQUEST_BYTES,
        service_names=[SERVICE_NAME],
        register=register,
        validators=VALIDATORS,
        probes=[db.ping],
        close=close,
        background=[consumer.run, trigger.run],
    )
