"""Wiring of the feedback process: the feedback service (storage, logic, servicer), the
model service beside it (the registry and the online metrics of the events it owns),
health, the event consumer and the retraining threshold trigger."""

from __future__ import annotations

from functools import partial

import grpc

from magpie.runtime.cache import PRODUCT_STATS, PROFILES, Cache
from magpie.runtime.db import Database
from magpie.runtime.server import ServiceSpec
from magpie.runtime.settings import Settings
from magpie.runtime.telemetry import user_digest
from magpie.v1 import feedback_pb2, feedback_pb2_grpc, models_pb2, models_pb2_grpc
from services.feedback import config
from services.feedback.consumer import EventConsumer
from services.feedback.models import ModelsService
from services.feedback.models_servicer import MODEL_VALIDATORS, ModelServicer
from services.feedback.retrain import RetrainTrigger
from services.feedback.service import FeedbackService, KnownProducts
from services.feedback.servicer import VALIDATORS, FeedbackServicer
from services.feedback.storage import DeletedUserStore, EventStore, ModelStore

__all__ = ["NAME", "build_spec"]

NAME = "feedback"
SERVICE_NAME = feedback_pb2.DESCRIPTOR.services_by_name["FeedbackService"].full_name
MODEL_SERVICE_NAME = models_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name


def build_spec(settings: Settings) -> ServiceSpec:
    db = Database.from_settings(settings, name=NAME)
    known = KnownProducts(config.PRODUCT_CACHE_SECONDS, config.PRODUCT_CACHE_MAX)
    trigger = RetrainTrigger(settings, db)
    deleted = DeletedUserStore(db, partial(user_digest, settings=settings))
    caches = [Cache.from_settings(settings, namespace) for namespace in (PROFILES, PRODUCT_STATS)]
    servicer = FeedbackServicer(
        FeedbackService(EventStore(db), known, trigger.stored, deleted=deleted, profiles=caches[0])
    )
    models = ModelServicer(ModelsService(ModelStore(db)), settings.model_name)
    consumer = EventConsumer(db, *caches)

    def register(server: grpc.aio.Server) -> None:
        feedback_pb2_grpc.add_FeedbackServiceServicer_to_server(servicer, server)
        models_pb2_grpc.add_ModelServiceServicer_to_server(models, server)

    async def close() -> None:
        for cache in caches:
            await cache.close()
        db.close()

    return ServiceSpec(
        name=NAME,
        max_request_bytes=config.MAX_REQUEST_BYTES,
        service_names=[SERVICE_NAME, MODEL_SERVICE_NAME],
        register=register,
        validators={**VALIDATORS, **MODEL_VALIDATORS},
        probes=[db.ping],
        close=close,
        background=[consumer.run, trigger.run],
    )
