"""Deleting a user for good: no racing read caches them again, a delete the cache could not
follow fails, and replayed events of the user are refused."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial

import grpc
import pytest

from magpie.runtime.cache import PROFILES, Cache
from magpie.runtime.db import Database
from magpie.runtime.settings import Settings
from magpie.runtime.telemetry import user_digest
from magpie.v1 import common_pb2, feedback_pb2, profiles_pb2_grpc
from magpie.v1 import profiles_pb2 as pb
from services.profiles.server import build_spec as profiles_spec
from services.profiles.service import ProfileService, StoredProfile
from services.profiles.storage import WRITE_MARKERS, CachedProfiles, ProfileStore
from tests.integration.feedback.events import event, query
from tests.integration.profiles.conftest import Platform, at, wait_for_profile
from tests.support import free_port

pytestmark = pytest.mark.integration

CLICK = common_pb2.EVENT_TYPE_CLICK


async def test_a_read_racing_a_delete_does_not_cache_the_deleted_profile(
    platform: Platform, settings: Settings
) -> None:
    await platform.profiles.UpsertProfiles(
        pb.UpsertProfilesRequest(
            profiles=[pb.ProfileUpsert(user_id="gone", attributes=pb.UserAttributes(region="DE"))]
        )
    )

    class DeletedDuringRead(ProfileStore):
        """The real store; DeleteProfile (on the real server) completes after its read."""

        async def get_many(self, user_ids: Sequence[str], history: int) -> dict[str, StoredProfile]:
            found = await super().get_many(user_ids, history)
            await platform.profiles.DeleteProfile(pb.DeleteProfileRequest(user_id="gone"))
            return found

    db = Database.from_settings(settings, name="racing-reader")
    profiles, markers = (Cache.from_settings(settings, n) for n in (PROFILES, WRITE_MARKERS))
    user_hash = partial(user_digest, settings=settings)
    cache = CachedProfiles(profiles, markers, user_hash)
    reader = ProfileService(DeletedDuringRead(db), cache, user_hash)
    try:
        (read,) = await reader.get_many(["gone"])
        cached = await profiles.get_many(["gone"])
    finally:
        await profiles.close()
        await markers.close()
        db.close()
    served = await platform.profiles.GetProfile(pb.GetProfileRequest(user_id="gone"))

    assert read.known and read.attributes.region == "DE"  # read before the delete committed
    assert cached == {}
    assert not served.profile.known


async def test_a_delete_the_cache_cannot_follow_fails_unavailable(
    settings: Settings, clean_db: str, serve
) -> None:  # type: ignore[no-untyped-def]
    no_redis = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    running = await serve(profiles_spec(no_redis), no_redis)
    async with grpc.aio.insecure_channel(running.address) as channel:
        profiles = profiles_pb2_grpc.ProfileServiceStub(channel)
        await profiles.UpsertProfiles(
            pb.UpsertProfilesRequest(profiles=[pb.ProfileUpsert(user_id="gone")])
        )  # an upsert logs the failed invalidation and succeeds
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await profiles.DeleteProfile(pb.DeleteProfileRequest(user_id="gone"))
        served = await profiles.GetProfile(pb.GetProfileRequest(user_id="gone"))

    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert query(clean_db, "SELECT count(*) FROM users") == [(0,)]  # retrying is harmless
    assert not served.profile.known  # read from PostgreSQL while Redis is down


async def test_replayed_events_of_a_deleted_user_are_refused(
    platform: Platform, clean_db: str, settings: Settings
) -> None:
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    history = [at(event(f"g{i}", user_id="gone", event_type=CLICK), an_hour_ago) for i in range(3)]
    await platform.profiles.UpsertProfiles(
        pb.UpsertProfilesRequest(profiles=[pb.ProfileUpsert(user_id="gone")])
    )
    await platform.feedback.RecordEvents(feedback_pb2.RecordEventsRequest(events=history))
    await wait_for_profile(platform, "gone", clicks=3)
    await platform.profiles.DeleteProfile(pb.DeleteProfileRequest(user_id="gone"))

    replay = await platform.feedback.RecordEvents(
        feedback_pb2.RecordEventsRequest(
            events=[*history, event("other", user_id="stays", event_type=CLICK)]
        )
    )
    stored_for_gone = query(clean_db, "SELECT count(*) FROM events WHERE user_id = 'gone'")
    later = await platform.feedback.RecordEvents(  # no occurred_at: now, after the deletion
        feedback_pb2.RecordEventsRequest(events=[event("back", user_id="gone", event_type=CLICK)])
    )

    assert [(r.event_id, r.outcome) for r in replay.results] == [
        ("g0", feedback_pb2.EVENT_OUTCOME_REJECTED),
        ("g1", feedback_pb2.EVENT_OUTCOME_REJECTED),
        ("g2", feedback_pb2.EVENT_OUTCOME_REJECTED),
        ("other", feedback_pb2.EVENT_OUTCOME_ACCEPTED),
    ]
    assert replay.results[0].reason == (
        "user_id was deleted; events from before the deletion are not stored"
    )
    assert stored_for_gone == [(0,)]  # so no fold can derive rows about the user again
    assert later.accepted == 1  # a user who comes back after the deletion is a new user
    deleted = query(clean_db, "SELECT user_hash FROM deleted_users")
    assert deleted == [(user_digest("gone", settings),)]  # the hash, never the id
