"""ListProfiles: users paged by id through the real profile server, with their counts."""

from __future__ import annotations

import grpc
import psycopg2
import pytest

from magpie.v1 import profiles_pb2 as pb
from tests.integration.profiles.conftest import Platform
from tests.support import field_violations

pytestmark = pytest.mark.integration

USERS = ["a_b1", "a_b2", "a_b3", "axb1", "a%b1", "a%b2", "a\\_z", "a\\xz", "b_b1"]
REFUSED = "a_b3"


async def _seed(platform: Platform, database_url: str) -> None:
    refused = pb.UserAttributes(consent=pb.Consent(personalization=False, analytics=True))
    await platform.profiles.UpsertProfiles(
        pb.UpsertProfilesRequest(
            profiles=[
                pb.ProfileUpsert(user_id=u, attributes=refused if u == REFUSED else None)
                for u in USERS
            ]
        )
    )
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO user_counts (user_id, impressions, clicks, add_to_carts, purchases)"
            " VALUES (%s, %s, %s, %s, %s)",
            [("a_b2", 7, 3, 2, 1), (REFUSED, 5, 5, 5, 5), ("ghost", 1, 1, 1, 1)],
        )
    conn.close()


async def _walk(platform: Platform, request: pb.ListProfilesRequest) -> list[list[str]]:
    """The user ids of every page."""
    pages = []
    while True:
        reply = await platform.profiles.ListProfiles(request)
        pages.append([p.user_id for p in reply.profiles])
        if not reply.next_page_token:
            return pages
        request.page_token = reply.next_page_token


@pytest.mark.parametrize(
    ("prefix", "pages"),
    [
        ("a_b", [["a_b1", "a_b2"], ["a_b3"]]),  # not axb1: `_` is no wildcard
        ("a%", [["a%b1", "a%b2"]]),  # not every a...: `%` is no wildcard
        ("a\\_", [["a\\_z"]]),  # a backslash is no escape either
        ("", [["a%b1", "a%b2"], ["a\\_z", "a\\xz"], ["a_b1", "a_b2"], ["a_b3", "axb1"], ["b_b1"]]),
        ("c", [[]]),
    ],
)
async def test_pages_walk_the_users_with_the_prefix_once(
    platform: Platform, clean_db: str, prefix: str, pages: list[list[str]]
) -> None:
    await _seed(platform, clean_db)

    walked = await _walk(platform, pb.ListProfilesRequest(page_size=2, user_id_prefix=prefix))

    assert walked == pages


async def test_each_user_comes_with_counts_zero_when_none_or_refused(
    platform: Platform, clean_db: str
) -> None:
    await _seed(platform, clean_db)

    reply = await platform.profiles.ListProfiles(pb.ListProfilesRequest(user_id_prefix="a_b"))

    assert [(p.user_id, p.counts) for p in reply.profiles] == [
        ("a_b1", pb.InteractionCounts()),
        ("a_b2", pb.InteractionCounts(impressions=7, clicks=3, add_to_carts=2, purchases=1)),
        (REFUSED, pb.InteractionCounts()),  # refused personalisation: served without behaviour
    ]
    assert reply.next_page_token == ""


async def test_default_page_is_fifty_and_deleted_users_are_gone(platform: Platform) -> None:
    users = [f"u{i:03d}" for i in range(60)]
    await platform.profiles.UpsertProfiles(
        pb.UpsertProfilesRequest(profiles=[pb.ProfileUpsert(user_id=u) for u in users])
    )
    await platform.profiles.DeleteProfile(pb.DeleteProfileRequest(user_id="u010"))

    first = await platform.profiles.ListProfiles(pb.ListProfilesRequest())
    rest = await platform.profiles.ListProfiles(
        pb.ListProfilesRequest(page_token=first.next_page_token)
    )

    listed = [p.user_id for p in [*first.profiles, *rest.profiles]]
    assert len(first.profiles) == 50
    assert listed == [u for u in users if u != "u010"]
    assert rest.next_page_token == ""


async def test_a_token_only_continues_the_listing_of_its_prefix(
    platform: Platform, clean_db: str
) -> None:
    await _seed(platform, clean_db)
    first = await platform.profiles.ListProfiles(
        pb.ListProfilesRequest(page_size=1, user_id_prefix="a_b")
    )

    with pytest.raises(grpc.aio.AioRpcError) as other_prefix:
        await platform.profiles.ListProfiles(
            pb.ListProfilesRequest(user_id_prefix="a%", page_token=first.next_page_token)
        )
    with pytest.raises(grpc.aio.AioRpcError) as garbage:
        await platform.profiles.ListProfiles(pb.ListProfilesRequest(page_token="not-a-token"))

    assert field_violations(other_prefix.value) == ["page_token"]
    assert field_violations(garbage.value) == ["page_token"]


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (pb.ListProfilesRequest(page_size=501), ["page_size"]),
        (pb.ListProfilesRequest(page_size=-1), ["page_size"]),
        (pb.ListProfilesRequest(user_id_prefix="u" * 129), ["user_id_prefix"]),
        (pb.ListProfilesRequest(user_id_prefix="u\x00"), ["user_id_prefix"]),
        (
            pb.ListProfilesRequest(page_size=1000, user_id_prefix="a\tb"),
            ["page_size", "user_id_prefix"],
        ),
    ],
)
async def test_malformed_listings_name_the_field(
    platform: Platform, request_: pb.ListProfilesRequest, fields: list[str]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await platform.profiles.ListProfiles(request_)

    assert field_violations(raised.value) == fields
