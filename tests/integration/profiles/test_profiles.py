"""The profile service with behaviour features, fed through the real feedback service."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
import redis

from magpie.runtime.locks import EVENT_FOLD_LOCK
from magpie.v1 import common_pb2, feedback_pb2
from magpie.v1 import profiles_pb2 as pb
from tests.integration.feedback.events import event, query
from tests.integration.profiles.conftest import Platform, at, wait_for_profile

pytestmark = pytest.mark.integration

CLICK, PURCHASE, IMPRESSION = (
    common_pb2.EVENT_TYPE_CLICK,
    common_pb2.EVENT_TYPE_PURCHASE,
    common_pb2.EVENT_TYPE_IMPRESSION,
)


async def test_unknown_user_gets_an_empty_profile(platform: Platform) -> None:
    reply = await platform.profiles.GetProfile(pb.GetProfileRequest(user_id="nobody"))

    assert reply.profile == pb.Profile(
        user_id="nobody",
        known=False,
        attributes=pb.UserAttributes(),  # consent never stated: unset
        counts=pb.InteractionCounts(),
    )


async def test_upsert_replaces_a_cached_profile(platform: Platform) -> None:
    def upsert(region: str) -> pb.UpsertProfilesRequest:
        attributes = pb.UserAttributes(region=region, age_band=pb.AGE_BAND_25_34)
        return pb.UpsertProfilesRequest(
            profiles=[pb.ProfileUpsert(user_id="u1", attributes=attributes)]
        )

    await platform.profiles.UpsertProfiles(upsert("DE-BY"))
    first = await platform.profiles.GetProfile(pb.GetProfileRequest(user_id="u1"))
    await platform.profiles.UpsertProfiles(upsert("FR-75"))
    second = await platform.profiles.GetProfile(pb.GetProfileRequest(user_id="u1"))

    assert first.profile.known and first.profile.attributes.region == "DE-BY"
    assert second.profile.attributes.region == "FR-75"
    assert second.profile.attributes.age_band == pb.AGE_BAND_25_34


async def test_behaviour_features_appear_within_a_second(platform: Platform) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    await platform.profiles.GetProfile(pb.GetProfileRequest(user_id="shopper"))  # cached as unknown
    events = [
        at(
            event("old", user_id="shopper", product_id="p3", event_type=CLICK),
            now - timedelta(days=40),
        ),
        at(
            event("mid", user_id="shopper", product_id="p2", event_type=PURCHASE),
            now - timedelta(days=20),
        ),
        at(
            event("new1", user_id="shopper", product_id="p1", event_type=IMPRESSION),
            now - timedelta(hours=2),
        ),
        at(
            event("new2", user_id="shopper", product_id="p1", event_type=CLICK),
            now - timedelta(hours=1),
        ),
        at(event("new3", user_id="shopper", product_id="p3", event_type=PURCHASE), now),
    ]
    started = time.monotonic()
    await platform.feedback.RecordEvents(feedback_pb2.RecordEventsRequest(events=events))

    profile = await wait_for_profile(platform, "shopper", clicks=2)
    lag = time.monotonic() - started

    assert lag < 3  # ~1 s when idle; generous for a shared, busy test machine
    assert profile.known
    assert [(i.product_id, i.event_type) for i in profile.recent_interactions] == [
        ("p3", PURCHASE),
        ("p1", CLICK),
        ("p1", IMPRESSION),
        ("p2", PURCHASE),
        ("p3", CLICK),
    ]
    assert profile.recent_interactions[0].occurred_at.ToDatetime(UTC) == now
    assert list(profile.purchased_product_ids) == ["p3", "p2"]
    assert profile.counts == pb.InteractionCounts(impressions=1, clicks=2, purchases=2)
    affinities = {(a.window, a.category): round(a.score, 4) for a in profile.category_affinities}
    # weights: Books 0.1 + 1 (7d), + 5 (30d); Garden 5 (7d, 30d), + 1 (all time)
    assert affinities == {
        (pb.FEATURE_WINDOW_7D, "Garden"): round(5 / 6.1, 4),
        (pb.FEATURE_WINDOW_7D, "Books"): round(1.1 / 6.1, 4),
        (pb.FEATURE_WINDOW_30D, "Books"): round(6.1 / 11.1, 4),
        (pb.FEATURE_WINDOW_30D, "Garden"): round(5 / 11.1, 4),
        (pb.FEATURE_WINDOW_ALL_TIME, "Books"): round(6.1 / 12.1, 4),
        (pb.FEATURE_WINDOW_ALL_TIME, "Garden"): round(6 / 12.1, 4),
    }
    limited = await platform.profiles.GetProfile(
        pb.GetProfileRequest(user_id="shopper", history_limit=2)
    )
    assert [i.product_id for i in limited.profile.recent_interactions] == ["p3", "p1"]


async def test_batch_get_keeps_request_order(platform: Platform) -> None:
    await platform.profiles.UpsertProfiles(
        pb.UpsertProfilesRequest(profiles=[pb.ProfileUpsert(user_id=u) for u in ("a", "b")])
    )
    reply = await platform.profiles.BatchGetProfiles(
        pb.BatchGetProfilesRequest(user_ids=["b", "ghost", "a", "b"])
    )

    assert [(p.user_id, p.known) for p in reply.profiles] == [
        ("b", True),
        ("ghost", False),
        ("a", True),
        ("b", True),
    ]


def tables_with_user_id(url: str) -> list[str]:
    rows = query(
        url,
        """SELECT table_name FROM information_schema.columns
           WHERE table_schema = 'public' AND column_name = 'user_id' ORDER BY 1""",
    )
    return [str(r[0]) for r in rows]


async def test_deleted_user_leaves_nothing_behind(
    platform: Platform, clean_db: str, redis_url: str
) -> None:
    await platform.profiles.UpsertProfiles(
        pb.UpsertProfilesRequest(
            profiles=[pb.ProfileUpsert(user_id="gone"), pb.ProfileUpsert(user_id="stays")]
        )
    )
    events = [event(f"g{i}", user_id="gone", event_type=CLICK) for i in range(3)]
    events.append(event("s0", user_id="stays", event_type=CLICK))
    await platform.feedback.RecordEvents(feedback_pb2.RecordEventsRequest(events=events))
    await wait_for_profile(platform, "gone", clicks=3)  # folded and cached
    tables = tables_with_user_id(clean_db)

    reply = await platform.profiles.DeleteProfile(pb.DeleteProfileRequest(user_id="gone"))
    again = await platform.profiles.DeleteProfile(pb.DeleteProfileRequest(user_id="gone"))

    assert (reply.existed, reply.deleted_events) == (True, 3)
    assert (again.existed, again.deleted_events) == (False, 0)
    assert {"users", "events", "user_counts", "user_category_daily"} <= set(tables)
    left = {t: query(clean_db, f"SELECT count(*) FROM {t} WHERE user_id = 'gone'") for t in tables}
    assert left == {t: [(0,)] for t in tables}
    stays = {
        t: query(clean_db, f"SELECT count(*) FROM {t} WHERE user_id = 'stays'") for t in tables
    }
    assert all(count != [(0,)] for count in stays.values())
    assert [k for k in redis.Redis.from_url(redis_url).scan_iter() if b"gone" in k] == []
    # Product counters are anonymous aggregates and stay.
    assert query(clean_db, "SELECT sum(clicks)::int FROM product_daily_counts") == [(4,)]
    profile = (await platform.profiles.GetProfile(pb.GetProfileRequest(user_id="gone"))).profile
    assert not profile.known and not profile.recent_interactions


async def test_delete_waits_for_the_consumer_lock(platform: Platform, clean_db: str) -> None:
    holder = psycopg2.connect(clean_db)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (EVENT_FOLD_LOCK,))
        delete = asyncio.ensure_future(
            platform.profiles.DeleteProfile(pb.DeleteProfileRequest(user_id="x"))
        )
        waiting = await _wait_for_advisory_lock_waiter(clean_db)
        blocked = not delete.done()
    finally:
        holder.rollback()
        holder.close()
    reply = await delete

    assert waiting and blocked
    assert not reply.existed


async def _wait_for_advisory_lock_waiter(url: str, timeout: float = 10.0) -> bool:
    """True once a backend of `url`'s database waits for an advisory lock (a delete that
    finished without taking the lock never shows up here, and the test fails)."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        waiting = query(
            url,
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
            " WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()",
        )
        if waiting[0][0]:
            return True
        await asyncio.sleep(0.02)
    return False
