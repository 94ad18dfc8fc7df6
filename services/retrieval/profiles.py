"""The user's history from the profile service over gRPC; None when it cannot answer."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from magpie.v1 import common_pb2, profiles_pb2_grpc
from magpie.v1 import profiles_pb2 as pb
from services.retrieval import config
from services.retrieval.service import UserHistory

__all__ = ["GrpcProfiles"]

logger = logging.getLogger(__name__)


class GrpcProfiles:
    def __init__(self, connect: Callable[[], grpc.aio.Channel]) -> None:
        """``connect`` opens the channel, on first use (inside the serving event loop)."""
        self._connect = connect
        self._channel: grpc.aio.Channel | None = None
        self._stub: profiles_pb2_grpc.ProfileServiceStub | None = None
        self._failing = False

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    async def history(self, user_id: str) -> UserHistory | None:
        if self._stub is None:
            self._channel = self._connect()
            self._stub = profiles_pb2_grpc.ProfileServiceStub(self._channel)
        request = pb.GetProfileRequest(user_id=user_id, history_limit=config.PROFILE_HISTORY)
        try:
            reply = await self._stub.GetProfile(request, timeout=config.PROFILE_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as error:
            if not self._failing:
                logger.warning(
                    "profile service failing, serving non-personal candidates: %s",
                    error.code().name,
                )
            self._failing = True
            return None
        if self._failing:
            logger.info("profile service answers again")
        self._failing = False
        profile = reply.profile
        recent = (
            i.product_id
            for i in profile.recent_interactions
            if i.event_type != common_pb2.EVENT_TYPE_IMPRESSION
        )
        affinities = sorted(profile.category_affinities, key=lambda a: -a.score)
        return UserHistory(
            recent=tuple(dict.fromkeys(recent)),
            purchased=tuple(profile.purchased_product_ids),
            categories=tuple(dict.fromkeys(a.category for a in affinities)),
        )
