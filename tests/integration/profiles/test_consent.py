"""Consent is honoured: no behaviour features for a user who refused personalisation, no
training on the events of a user who refused analytics."""

from __future__ import annotations

import asyncio
import time

import pytest

from magpie.datasets.warehouse import read_dataset
from magpie.v1 import common_pb2, feedback_pb2
from magpie.v1 import profiles_pb2 as pb
from tests.integration.feedback.events import event, query
from tests.integration.profiles.conftest import Platform

pytestmark = pytest.mark.integration

CLICK, PURCHASE = common_pb2.EVENT_TYPE_CLICK, common_pb2.EVENT_TYPE_PURCHASE


def consenting(user_id: str, personalization: bool, analytics: bool) -> pb.ProfileUpsert:
    consent = pb.Consent(personalization=personalization, analytics=analytics)
    return pb.ProfileUpsert(user_id=user_id, attributes=pb.UserAttributes(consent=consent))


async def record_and_fold(platform: Platform, database_url: str, users: list[str]) -> None:
    """A click and a purchase per user, then waits until the consumer has folded them."""
    events = [
        event(f"{user}-{kind}", user_id=user, event_type=kind)
        for user in users
        for kind in (CLICK, PURCHASE)
    ]
    await platform.feedback.RecordEvents(feedback_pb2.RecordEventsRequest(events=events))
    give_up = time.monotonic() + 10
    while query(database_url, "SELECT count(*) FROM user_counts") != [(len(users),)]:
        assert time.monotonic() < give_up, "the consumer did not fold the events in 10 s"
        await asyncio.sleep(0.05)


async def test_a_user_who_refused_personalisation_gets_no_behaviour(
    platform: Platform, clean_db: str
) -> None:
    await platform.profiles.UpsertProfiles(
        pb.UpsertProfilesRequest(
            profiles=[
                consenting("private", personalization=False, analytics=True),
                consenting("open", personalization=True, analytics=True),
                pb.ProfileUpsert(user_id="unstated"),
            ]
        )
    )
    await record_and_fold(platform, clean_db, ["private", "open", "unstated"])

    reply = await platform.profiles.BatchGetProfiles(
        pb.BatchGetProfilesRequest(user_ids=["private", "open", "unstated"])
    )
    single = await platform.profiles.GetProfile(pb.GetProfileRequest(user_id="private"))

    private, open_, unstated = reply.profiles
    assert single.profile == private
    assert private.known and private.HasField("attributes")
    assert private.attributes.consent == pb.Consent(personalization=False, analytics=True)
    assert not private.recent_interactions and not private.purchased_product_ids
    assert not private.category_affinities and private.counts == pb.InteractionCounts()
    for profile in (open_, unstated):
        assert len(profile.recent_interactions) == 2 and profile.purchased_product_ids
        assert profile.counts.clicks == 1
    assert not unstated.attributes.HasField("consent")


async def test_training_leaves_out_users_who_refused_analytics(
    platform: Platform, clean_db: str
) -> None:
    await platform.profiles.UpsertProfiles(
        pb.UpsertProfilesRequest(
            profiles=[
                consenting("refused", personalization=True, analytics=False),
                consenting("agreed", personalization=False, analytics=True),
                pb.ProfileUpsert(user_id="unstated"),
            ]
        )
    )
    await record_and_fold(platform, clean_db, ["refused", "agreed", "unstated", "no-profile"])

    dataset = await asyncio.to_thread(read_dataset, clean_db)

    assert {i.user_id for i in dataset.interactions} == {"agreed", "unstated", "no-profile"}
    assert {u.user_id for u in dataset.users} == {"agreed", "unstated", "no-profile"}
