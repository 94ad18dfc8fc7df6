"""End to end: a like and a dislike sent as feedback change the user's next recommendation."""

from __future__ import annotations

import time

import grpc
import pytest

from magpie.v1 import (
    common_pb2,
    feedback_pb2,
    feedback_pb2_grpc,
    profiles_pb2,
    profiles_pb2_grpc,
    ranking_pb2,
    ranking_pb2_grpc,
)
from tests.integration.e2e.conftest import Platform

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

K = 10


def _recommend(platform: Platform, user_id: str) -> list[str]:
    with grpc.insecure_channel(platform.settings.ranking_addr) as channel:
        reply = ranking_pb2_grpc.RankingServiceStub(channel).Recommend(
            ranking_pb2.RecommendRequest(user_id=user_id, k=K), timeout=5
        )
    return [item.product_id for item in reply.items]


def test_a_disliked_product_is_gone_from_the_next_recommendation(platform: Platform) -> None:
    user_id = next(iter(platform.world.held_out))
    first = _recommend(platform, user_id)
    liked, disliked = first[1], first[0]
    events = [
        feedback_pb2.Event(
            event_id=f"loop-{kind}",
            user_id=user_id,
            product_id=product_id,
            event_type=kind,
            recommendation_id="loop",
            position=first.index(product_id) + 1,
        )
        for kind, product_id in (
            (common_pb2.EVENT_TYPE_LIKE, liked),
            (common_pb2.EVENT_TYPE_DISLIKE, disliked),
        )
    ]
    with grpc.insecure_channel(platform.settings.feedback_addr) as channel:
        reply = feedback_pb2_grpc.FeedbackServiceStub(channel).RecordEvents(
            feedback_pb2.RecordEventsRequest(events=events), timeout=10
        )
    assert reply.accepted == 2, reply

    give_up = time.monotonic() + 15  # the consumer folds, then the cached profile is dropped
    while disliked in (after := _recommend(platform, user_id)):
        assert time.monotonic() < give_up, f"{disliked} still recommended after 15 s: {after}"
        time.sleep(0.1)

    assert len(after) == K
    with grpc.insecure_channel(platform.settings.profiles_addr) as channel:
        profile = (
            profiles_pb2_grpc.ProfileServiceStub(channel)
            .GetProfile(profiles_pb2.GetProfileRequest(user_id=user_id), timeout=5)
            .profile
        )
    assert list(profile.disliked_product_ids) == [disliked]
    assert profile.recent_interactions[0].product_id == liked
    assert profile.recent_interactions[0].event_type == common_pb2.EVENT_TYPE_LIKE
