"""Likes, dislikes and comments through RecordEvents into PostgreSQL."""

from __future__ import annotations

import pytest

from magpie.v1 import common_pb2, feedback_pb2_grpc
from magpie.v1 import feedback_pb2 as pb
from tests.integration.feedback.events import event, query

pytestmark = pytest.mark.integration

Stub = feedback_pb2_grpc.FeedbackServiceStub
LIKE, DISLIKE, COMMENT = (
    common_pb2.EVENT_TYPE_LIKE,
    common_pb2.EVENT_TYPE_DISLIKE,
    common_pb2.EVENT_TYPE_COMMENT,
)
TEXT = "Lovely,\nbut a \\n too small ✂️👍🏽 "
"""A comment with a line feed, a backslash and emoji (with variation selector and skin tone)."""


async def test_likes_dislikes_and_comments_are_stored(feedback: Stub, clean_db: str) -> None:
    reply = await feedback.RecordEvents(
        pb.RecordEventsRequest(
            events=[
                event("l1", product_id="p1", event_type=LIKE, recommendation_id="r", position=2),
                event("d2", product_id="p2", event_type=DISLIKE),
                event("m3", product_id="p3", event_type=COMMENT, comment=TEXT),
                event("bad", product_id="p3", event_type=COMMENT, comment="tab\there"),
                event("m4", product_id="p1", event_type=COMMENT, comment="x" * 500),
            ]
        )
    )

    assert [(r.event_id, r.outcome) for r in reply.results] == [
        ("l1", pb.EVENT_OUTCOME_ACCEPTED),
        ("d2", pb.EVENT_OUTCOME_ACCEPTED),
        ("m3", pb.EVENT_OUTCOME_ACCEPTED),
        ("bad", pb.EVENT_OUTCOME_REJECTED),
        ("m4", pb.EVENT_OUTCOME_ACCEPTED),
    ]
    assert reply.results[3].reason.startswith("comment must not contain control characters")
    assert query(
        clean_db,
        "SELECT event_id, product_id, event_type, comment, recommendation_id, position"
        " FROM events ORDER BY seq",
    ) == [
        ("l1", "p1", LIKE, "", "r", 2),
        ("d2", "p2", DISLIKE, "", "", 0),
        ("m3", "p3", COMMENT, TEXT, "", 0),
        ("m4", "p1", COMMENT, "x" * 500, "", 0),
    ]


async def test_a_comment_is_part_of_the_events_payload(feedback: Stub, clean_db: str) -> None:
    """Resent as it was: a duplicate; the id reused with another comment: a conflict."""
    sent = event("m1", event_type=COMMENT, comment="first")
    await feedback.RecordEvents(pb.RecordEventsRequest(events=[sent]))

    again = await feedback.RecordEvents(pb.RecordEventsRequest(events=[sent]))
    edited = await feedback.RecordEvents(
        pb.RecordEventsRequest(events=[event("m1", event_type=COMMENT, comment="second")])
    )

    assert again.results[0].outcome == pb.EVENT_OUTCOME_DUPLICATE
    assert edited.results[0].outcome == pb.EVENT_OUTCOME_CONFLICT
    assert query(clean_db, "SELECT comment FROM events") == [("first",)]


async def test_an_event_without_comment_keeps_the_digest_it_had_before_comments(
    feedback: Stub, clean_db: str
) -> None:
    """Events stored before migration 0007 must still answer DUPLICATE when resent."""
    await feedback.RecordEvents(
        pb.RecordEventsRequest(events=[event("c1", session_id="s", position=3)])
    )

    assert query(
        clean_db,
        """SELECT payload_sha256 = sha256(convert_to(concat_ws(E'\\t', user_id, product_id,
                  event_type, NULL, rating, recommendation_id, model_version, position,
                  session_id, device), 'UTF8')) FROM events""",
    ) == [(True,)]
