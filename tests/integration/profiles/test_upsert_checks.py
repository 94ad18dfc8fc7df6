"""UpsertProfiles answers each user truthfully: bad users fail alone, the rest is stored."""

from __future__ import annotations

import grpc
import pytest

from magpie.v1 import profiles_pb2 as pb
from tests.integration.feedback.events import query
from tests.integration.profiles.conftest import Platform
from tests.support import field_violations

pytestmark = pytest.mark.integration


def upsert(user_id: str, **attributes: object) -> pb.ProfileUpsert:
    return pb.ProfileUpsert(user_id=user_id, attributes=pb.UserAttributes(**attributes))  # type: ignore[arg-type]


async def test_a_page_with_bad_users_stores_the_good_ones(
    platform: Platform, clean_db: str
) -> None:
    request = pb.UpsertProfilesRequest(
        profiles=[
            upsert("good", region="DE-BY", segments=["student"], age_band=pb.AGE_BAND_25_34),
            upsert("nul-region", region="DE\x00BY"),
            upsert("nul-segment", segments=["ok", "bad\x00"]),
            upsert("band-overflow", age_band=40_000),  # beyond smallint
            upsert("gender-unknown", gender=9),
            upsert("good", region="FR-75"),  # the same user again in one page
            upsert("good-2", consent=pb.Consent(personalization=True, analytics=False)),
        ]
    )

    reply = await platform.profiles.UpsertProfiles(request)

    assert [(r.user_id, r.ok) for r in reply.results] == [
        ("good", True),
        ("nul-region", False),
        ("nul-segment", False),
        ("band-overflow", False),
        ("gender-unknown", False),
        ("good", False),
        ("good-2", True),
    ]
    errors = [r.error for r in reply.results]
    assert errors[0] == errors[6] == ""
    assert errors[1].startswith("attributes.region: must not contain control characters")
    assert errors[2].startswith("attributes.segments: [1] must not contain control characters")
    assert errors[3] == "attributes.age_band: must be 0-7 (magpie.v1.AgeBand), got 40000"
    assert errors[4] == "attributes.gender: must be 0-3 (magpie.v1.Gender), got 9"
    assert errors[5] == "user_id: duplicate of profiles[0]"
    assert query(
        clean_db,
        "SELECT user_id, region, consent_personalization, consent_analytics FROM users ORDER BY 1",
    ) == [("good", "DE-BY", None, None), ("good-2", "", True, False)]


async def test_a_malformed_user_id_still_fails_the_request(platform: Platform) -> None:
    request = pb.UpsertProfilesRequest(profiles=[upsert("ok"), upsert("bad\x00id")])

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await platform.profiles.UpsertProfiles(request)

    assert field_violations(raised.value) == ["profiles[1].user_id"]
