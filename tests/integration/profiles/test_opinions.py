"""Likes, dislikes and comments, sent through the real feedback service, in the profile
and in what training reads."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from magpie.datasets.schema import EventKind
from magpie.datasets.warehouse import read_dataset
from magpie.v1 import common_pb2, feedback_pb2
from magpie.v1 import profiles_pb2 as pb
from tests.integration.feedback.events import event
from tests.integration.profiles.conftest import Platform, at

pytestmark = pytest.mark.integration

CLICK, LIKE, DISLIKE, COMMENT = (
    common_pb2.EVENT_TYPE_CLICK,
    common_pb2.EVENT_TYPE_LIKE,
    common_pb2.EVENT_TYPE_DISLIKE,
    common_pb2.EVENT_TYPE_COMMENT,
)


async def record(platform: Platform, events: list[feedback_pb2.Event]) -> None:
    reply = await platform.feedback.RecordEvents(feedback_pb2.RecordEventsRequest(events=events))
    assert reply.accepted == len(events), reply


async def wait_for_dislikes(platform: Platform, user_id: str, expected: list[str]) -> pb.Profile:
    """Polls (at most 10 s) until the user's profile lists `expected` as disliked."""
    give_up = time.monotonic() + 10
    while True:
        reply = await platform.profiles.GetProfile(pb.GetProfileRequest(user_id=user_id))
        if list(reply.profile.disliked_product_ids) == expected:
            return reply.profile
        assert time.monotonic() < give_up, f"disliked: {reply.profile.disliked_product_ids}"
        await asyncio.sleep(0.05)


async def test_the_profile_lists_dislikes_a_later_like_takes_back(platform: Platform) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    await platform.profiles.GetProfile(pb.GetProfileRequest(user_id="u1"))  # cached as unknown
    await record(
        platform,
        [
            at(event("c1", product_id="p1", event_type=CLICK), t0),
            at(event("d3", product_id="p3", event_type=DISLIKE), t0 + timedelta(minutes=1)),
            at(event("d2", product_id="p2", event_type=DISLIKE), t0 + timedelta(minutes=2)),
            at(event("l3", product_id="p3", event_type=LIKE), t0 + timedelta(minutes=3)),
            at(
                event("m1", product_id="p1", event_type=COMMENT, comment="Fits well"),
                t0 + timedelta(minutes=4),
            ),
        ],
    )

    profile = await wait_for_dislikes(platform, "u1", ["p2"])

    # Newest first; the dislike is no interest in p2, so it is not recent history.
    assert [(i.product_id, i.event_type) for i in profile.recent_interactions] == [
        ("p1", COMMENT),
        ("p3", LIKE),
        ("p1", CLICK),
    ]

    await record(platform, [event("d1", product_id="p1", event_type=DISLIKE)])  # now
    profile = await wait_for_dislikes(platform, "u1", ["p1", "p2"])
    assert ("p1", CLICK) in [(i.product_id, i.event_type) for i in profile.recent_interactions]


async def test_training_reads_a_like_as_a_click_and_never_a_dislike(
    platform: Platform, clean_db: str
) -> None:
    await record(
        platform,
        [
            event("l1", product_id="p1", event_type=LIKE),
            event("d2", product_id="p2", event_type=DISLIKE),
            event("m3", product_id="p3", event_type=COMMENT, comment="meh"),
        ],
    )

    interactions = read_dataset(clean_db).interactions

    assert [(i.item_id, i.kind) for i in interactions] == [("p1", EventKind.CLICK)]
