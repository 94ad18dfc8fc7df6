"""Wiring of the profile service: storage, logic, servicer, health."""

from __future__ import annotations

from functools import partial

import grpc

from magpie.runtime.cache import PROFILES, Cache
from magpie.runtime.db import Database
from magpie.runtime.server import ServiceSpec
from magpie.runtime.settings import Settings
from magpie.runtime.telemetry import user_digest
from magpie.v1 import profiles_pb2, profiles_pb2_grpc
from services.profiles import config
from services.profiles.service import ProfileService
from services.profiles.servicer import VALIDATORS, ProfileServicer
from services.profiles.storage import WRITE_MARKERS, CachedProfiles, ProfileStore

__all__ = ["NAME", "build_spec"]

NAME = "profiles"
SERVICE_NAME = profiles_pb2.DESCRIPTOR.services_by_name["ProfileService"].full_name


def build_spec(settings: Settings) -> ServiceSpec:
    db = Database.from_settings(settings, name=NAME)
    profiles, markers = (Cache.from_settings(settings, n) for n in (PROFILES, WRITE_MARKERS))
    user_hash = partial(user_digest, settings=settings)
    cache = CachedProfiles(profiles, markers, user_hash)
    service = ProfileService(ProfileStore(db), cache, user_hash)
    servicer = ProfileServicer(service)

    def register(server: grpc.aio.Server) -> None:
        profiles_pb2_grpc.add_ProfileServiceServicer_to_server(servicer, server)

    async def close() -> None:
        await profiles.close()
        await markers.close()
        db.close()

    return ServiceSpec(
        name=NAME,
        max_request_bytes=config.MAX_REQUEST_BYTES,
        service_names=[SERVICE_NAME],
        register=register,
        validators=VALIDATORS,
        probes=[db.ping],
        close=close,
    )
