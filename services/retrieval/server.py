"""Wiring of the retrieval service: storage, profile client, model watcher, servicer, health."""

from __future__ import annotations

from functools import partial

import grpc

from magpie.modelstore.watch import ModelWatcher, registry_watcher
from magpie.runtime.clients import open_channel
from magpie.runtime.db import Database
from magpie.runtime.errors import Unavailable
from magpie.runtime.server import ServiceSpec
from magpie.runtime.settings import Settings
from magpie.v1 import retrieval_pb2, retrieval_pb2_grpc
from services.retrieval import config
from services.retrieval.model import ServingModel, load_bundle
from services.retrieval.profiles import GrpcProfiles
from services.retrieval.service import RetrievalService
from services.retrieval.servicer import VALIDATORS, RetrievalServicer
from services.retrieval.storage import RetrievalStore

__all__ = ["NAME", "build_spec"]

NAME = "retrieval"
SERVICE_NAME = retrieval_pb2.DESCRIPTOR.services_by_name["RetrievalService"].full_name


def build_spec(settings: Settings) -> ServiceSpec:
    db = Database.from_settings(settings, name=NAME)
    store = RetrievalStore(db, settings.model_name)
    models: ModelWatcher[ServingModel] = registry_watcher(NAME, db, settings, load_bundle)
    profiles = GrpcProfiles(partial(open_channel, settings.profiles_addr, settings))
    servicer = RetrievalServicer(RetrievalService(store, profiles, models))

    async def model_ready() -> None:
        """SERVING once the champion is loaded, or while there is none (or none loadable)."""
        if models.current is None:
            version = await store.champion()
            if version is not None and not models.failed(version):
                raise Unavailable(f"model version {version} is still loading")

    def register(server: grpc.aio.Server) -> None:
        retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server(servicer, server)

    async def close() -> None:
        await profiles.close()
        db.close()

    return ServiceSpec(
        name=NAME,
        max_request_bytes=config.MAX_REQUEST_BYTES,
        service_names=[SERVICE_NAME],
        register=register,
        validators=VALIDATORS,
        probes=[db.ping, model_ready],
        close=close,
        background=[models.run],
    )
