"""Fixtures of the profile tests: real profile and feedback servers on one database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import grpc
import pytest

from magpie.runtime.settings import Settings
from magpie.v1 import feedback_pb2, feedback_pb2_grpc, profiles_pb2_grpc
from magpie.v1 import profiles_pb2 as pb
from services.feedback.server import build_spec as feedback_spec
from services.profiles.server import build_spec as profiles_spec
from tests.integration.feedback.conftest import PRODUCTS, add_products

__all__ = ["Platform", "at", "platform", "wait_for_profile"]


@dataclass
class Platform:
    profiles: profiles_pb2_grpc.ProfileServiceStub
    feedback: feedback_pb2_grpc.FeedbackServiceStub


@pytest.fixture
async def platform(settings: Settings, clean_db: str, serve) -> AsyncIterator[Platform]:  # type: ignore[no-untyped-def]
    add_products(clean_db, PRODUCTS)
    profiles = await serve(profiles_spec(settings), settings)
    feedback = await serve(feedback_spec(settings), settings)
    async with (
        grpc.aio.insecure_channel(profiles.address) as p,
        grpc.aio.insecure_channel(feedback.address) as f,
    ):
        yield Platform(
            profiles_pb2_grpc.ProfileServiceStub(p), feedback_pb2_grpc.FeedbackServiceStub(f)
        )


def at(event_: feedback_pb2.Event, when: datetime) -> feedback_pb2.Event:
    event_.occurred_at.FromDatetime(when)
    return event_


async def wait_for_profile(platform: Platform, user_id: str, clicks: int) -> pb.Profile:
    """Polls until the consumer has folded `clicks` clicks of the user into the profile."""
    give_up = time.monotonic() + 30
    while True:
        reply = await platform.profiles.GetProfile(pb.GetProfileRequest(user_id=user_id))
        if reply.profile.counts.clicks >= clicks or time.monotonic() > give_up:
            return reply.profile
        await asyncio.sleep(0.05)
